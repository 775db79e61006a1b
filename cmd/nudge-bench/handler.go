package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/nudge-engine/nudge/bench/loadgen"
	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/server"
	pebblestore "github.com/nudge-engine/nudge/store/pebble"
)

const handlerHelp = `Runs POST /v1/decide through nudge's HTTP handler in this process, on a
data directory and a rules directory, with the requests the load generator
sends (customer ids Zipf-distributed, two placements, the same context),
and prints the handler's time per request: with the CPU's caches as the
previous request left them (warm), and with --sweep-mb of other memory
written between requests (swept), as the load generator, the kernel and
the rest of a server evict them in an end-to-end run. The difference is
what a decision costs in cache misses. No network, one goroutine.

The decisions record their contacts: run it on a copy of the data.`

func runHandler(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("handler", handlerHelp, stderr)
	data := fs.String("data", "", "data directory (required; decisions are recorded into it)")
	rulesDir := fs.String("rules", "", "rules directory (required)")
	placements := fs.String("placements", "", "placements, comma-separated; each request asks for two consecutive ones (default: the demo storefront's, as nudge-bench run)")
	customers := fs.Int("customers", 1_000_000, "customer ids are drawn from 0 to this, as nudge-bench gen numbers them")
	zipfS := fs.Float64("zipf", 1.1, "Zipf exponent of the customer ids (> 1)")
	warmup := fs.Int("warmup", 100_000, "requests before measuring (filling the customer cache)")
	n := fs.Int("requests", 20_000, "requests measured in each mode")
	sweepMB := fs.Int("sweep-mb", 4, "MiB written between two requests in the swept mode")
	seed := fs.Uint64("seed", 1, "random seed")
	name := fs.String("name", "", "name printed with the result (default: the rules directory)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// The load generator's requests: its defaults, these placements.
	cfg := loadgen.Config{Placements: splitList(*placements), Customers: *customers, ZipfS: *zipfS}
	cfg.EnsureDefaults()
	if *data == "" || *rulesDir == "" || fs.NArg() != 0 || len(cfg.Placements) < cfg.PerRequest || *customers < 1 ||
		*warmup < 0 || *n < 1 || *sweepMB < 1 || *sweepMB > 1024 {
		fs.Usage()
		return 2
	}
	st, err := pebblestore.Open(pebblestore.Options{Dir: *data})
	if err != nil {
		fmt.Fprintf(stderr, "nudge-bench handler: cannot open store: %v\n", err)
		return 1
	}
	defer st.Close()
	src, err := server.NewRules(server.RulesOptions{Dir: *rulesDir,
		OnActivate: func(rs *rules.Ruleset) { st.SetRetention(rs.MaxWindow) }})
	if err != nil {
		fmt.Fprintf(stderr, "nudge-bench handler: %v\n", err)
		return 1
	}
	srv, err := server.New(server.Options{}, st, src, nil, nil)
	if err != nil {
		fmt.Fprintf(stderr, "nudge-bench handler: %v\n", err)
		return 1
	}
	rng := rand.New(rand.NewPCG(*seed, 0))
	zipf, err := loadgen.NewZipf(rng, cfg.ZipfS, cfg.Customers)
	if err != nil {
		fmt.Fprintf(stderr, "nudge-bench handler: %v\n", err)
		return 2
	}
	if *name == "" {
		*name = *rulesDir
	}
	h := &handlerBench{handle: srv.Handler(), sweep: make([]byte, *sweepMB<<20)}
	// As many distinct requests as a run measures, built beforehand.
	for range min(*n, 1<<16) {
		h.add(cfg.AppendDecide(nil, zipf.Next(), rng.IntN(len(cfg.Placements))))
	}
	if _, err := h.run(*warmup, false); err != nil {
		fmt.Fprintf(stderr, "nudge-bench handler: %v\n", err)
		return 1
	}
	warm, err := h.run(*n, false)
	if err == nil {
		var swept time.Duration
		if swept, err = h.run(*n, true); err == nil {
			fmt.Fprintf(stdout, "handler %s: warm %.1fµs per request, swept (%d MiB between requests) %.1fµs per request, over %d requests each\n",
				*name, micros(warm), *sweepMB, micros(swept), *n)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "nudge-bench handler: %v\n", err)
		return 1
	}
	return 0
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// handlerBench runs prepared decide requests through a handler.
type handlerBench struct {
	handle fasthttp.RequestHandler
	ctxs   []*fasthttp.RequestCtx
	next   int
	sweep  []byte
}

func (h *handlerBench) add(body []byte) {
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI("/v1/decide")
	req.Header.SetContentType("application/json")
	req.SetBody(body)
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	h.ctxs = append(h.ctxs, ctx)
}

// run handles n requests and returns the mean time the handler took for
// one; with sweep, the sweep buffer is written between two requests,
// outside the time measured.
func (h *handlerBench) run(n int, sweep bool) (time.Duration, error) {
	var total time.Duration
	for range n {
		if sweep {
			for i := 0; i < len(h.sweep); i += 64 {
				h.sweep[i]++
			}
		}
		ctx := h.ctxs[h.next%len(h.ctxs)]
		h.next++
		ctx.Response.Reset()
		start := time.Now()
		h.handle(ctx)
		total += time.Since(start)
		if code := ctx.Response.StatusCode(); code != fasthttp.StatusOK {
			return 0, fmt.Errorf("decide answered %d: %s", code, ctx.Response.Body())
		}
	}
	return total / time.Duration(max(n, 1)), nil
}
