// Command nudge-bench measures a running nudge: a load generator with
// closed- and open-loop modes and HDR histograms, the ceiling server it is
// compared with, the data and ruleset generators of the end-to-end
// benchmark and its report writer. bench/run.sh (make bench) drives it.
//
// It is its own command so the nudge binary carries no benchmark code.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/nudge-engine/nudge/bench/loadgen"
	"github.com/nudge-engine/nudge/bench/report"
	"github.com/nudge-engine/nudge/bench/workload"
)

const usage = `Usage: nudge-bench COMMAND [flags]

Commands:
  run       load a server: closed loop (max throughput) or open loop (constant rate)
  ceiling   serve a fixed decide-sized body: this machine's HTTP ceiling
  gen       generate customers straight into a nudge data directory
  rules     write a generated ruleset directory
  handler   time decide through the HTTP handler in process, caches warm and swept
  report    write the Markdown report (and SVG plots) of a directory of results
  wait      wait until a URL answers 200
  freeport  print a free TCP port on 127.0.0.1

Run "nudge-bench COMMAND --help" for a command's flags. bench/run.sh
(make bench, make bench-quick) runs them all end to end.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func([]string, io.Writer, io.Writer) int{
		"run": runLoad, "ceiling": runCeiling, "gen": runGen, "rules": runRules,
		"report": runReport, "wait": runWait, "freeport": runFreePort, "handler": runHandler,
	}
	f, ok := cmds[args[0]]
	if !ok {
		if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "nudge-bench: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	return f(args[1:], stdout, stderr)
}

func newFlags(name, help string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: nudge-bench %s [flags]\n\n%s\nFlags:\n", name, help)
		fs.PrintDefaults()
	}
	return fs
}

func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// signalContext is cancelled by SIGINT or SIGTERM, or after limit.
func signalContext(limit time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, limit)
	return ctx, func() { cancel(); stop() }
}

const runHelp = `Loads a nudge server (or the ceiling) and prints p50, p90, p99, p99.9,
max, throughput and errors, and the load generator's own CPU time per
request; --out writes the full result as JSON.

  closed loop:  nudge-bench run --url http://127.0.0.1:8080 --conns 32 --duration 10s
  open loop:    nudge-bench run --mode open --rate 5000 --duration 10s
  ingest:       nudge-bench run --mix events=1 --batch 100

In open loop the latency of a request is measured from when it was due on
the fixed schedule, not from when it was sent (coordinated omission).`

func runLoad(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", runHelp, stderr)
	var cfg loadgen.Config
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "base URL of the server (loopback only unless --allow-remote)")
	fs.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow a target that is not a loopback address")
	fs.StringVar(&cfg.Mode, "mode", loadgen.ModeClosed, "closed (max throughput) or open (constant rate)")
	fs.IntVar(&cfg.Conns, "conns", 32, "keep-alive connections")
	fs.Float64Var(&cfg.Rate, "rate", 0, "open loop: requests per second")
	rateFrom := fs.String("rate-from", "", "open loop: comma-separated result files; the rate is --rate-factor × their mean throughput")
	factor := fs.Float64("rate-factor", 0.5, "with --rate-from: the share of the measured throughput to run at")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured time")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "time under the same load before measuring")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "per-request timeout")
	mix := fs.String("mix", "decide=100", "request mix: decide=W,events=W,feedback=W")
	fs.IntVar(&cfg.Customers, "customers", 1_000_000, "customer ids are drawn from this many")
	fs.Float64Var(&cfg.ZipfS, "zipf", 1.1, "Zipf exponent of customer popularity (> 1)")
	fs.StringVar(&cfg.IDFormat, "id-format", "c-%07d", "format of a customer index into an id (nudge-bench gen's ids)")
	placements := fs.String("placements", "home_hero,product_page,cart_sidebar,checkout_banner", "placements decide asks for")
	fs.IntVar(&cfg.PerRequest, "per-request", 2, "placements per decide request (consecutive in --placements from a random one)")
	fs.StringVar(&cfg.Channel, "channel", "web", "channel of decide requests")
	eventTypes := fs.String("event-types", "session,view,add_to_cart,purchase", "event types, drawn uniformly")
	fs.IntVar(&cfg.Batch, "batch", 1, "events per events request (1: a single event object)")
	fs.StringVar(&cfg.ServerMetrics, "server-metrics", "", "URL of the server's Prometheus metrics, read when measuring starts and ends: its CPU per request, collections and scheduler waits go in the result")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed")
	name := fs.String("name", "", "name of the run in reports (default: mode)")
	group := fs.String("group", "", "group of runs compared in reports (e.g. the ruleset)")
	role := fs.String("role", report.RoleNudge, "nudge or ceiling")
	out := fs.String("out", "", "write the result as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	var err error
	if cfg.Mix, err = loadgen.ParseMix(*mix); err != nil {
		fmt.Fprintf(stderr, "nudge-bench run: %v\n", err)
		return 2
	}
	cfg.Placements, cfg.EventTypes = splitList(*placements), splitList(*eventTypes)
	cfg.APIKey = os.Getenv("NUDGE_API_KEY")
	if *rateFrom != "" {
		mean, err := meanThroughput(splitList(*rateFrom))
		if err != nil {
			fmt.Fprintf(stderr, "nudge-bench run: --rate-from: %v\n", err)
			return 1
		}
		cfg.Rate = mean * *factor
		fmt.Fprintf(stderr, "rate %.0f/s = %.2f × %.0f req/s (%s)\n", cfg.Rate, *factor, mean, *rateFrom)
	}
	if *name == "" {
		*name = cfg.Mode
	}
	// Bounded: the run itself, the drain and the request timeout, and a
	// margin.
	ctx, cancel := signalContext(cfg.Warmup + cfg.Duration + cfg.Timeout + time.Minute)
	defer cancel()
	res, err := loadgen.Run(ctx, cfg)
	if err != nil && res == nil {
		fmt.Fprintf(stderr, "nudge-bench run: %v\n", err)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "nudge-bench run: stopped early: %v\n", err)
	}
	res.Name, res.Group, res.Role = *name, *group, *role
	res.Command = "nudge-bench run " + strings.Join(args, " ")
	fmt.Fprintln(stdout, res.Summary())
	if *out != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(stderr, "nudge-bench run: %v\n", err)
			return 1
		}
	}
	if err != nil || res.Requests == 0 {
		return 1
	}
	return 0
}

func readResult(path string) (*loadgen.Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r loadgen.Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

func meanThroughput(files []string) (float64, error) {
	if len(files) == 0 {
		return 0, errors.New("no files")
	}
	sum := 0.0
	for _, f := range files {
		r, err := readResult(f)
		if err != nil {
			return 0, err
		}
		sum += r.Throughput
	}
	return sum / float64(len(files)), nil
}

const ceilingHelp = `Serves a fixed body of the size of a typical decide answer on every path,
until SIGTERM or --max-time: the most any fasthttp server can serve on this
machine, to compare nudge with in the same run. GET /metrics alone serves
the process's CPU time and memory and the Go runtime's metrics, which
"run --server-metrics" reads as it reads nudge's.`

func runCeiling(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("ceiling", ceilingHelp, stderr)
	addr := fs.String("addr", "127.0.0.1:8089", "listen address")
	size := fs.Int("body-bytes", 700, "response body size")
	from := fs.String("body-bytes-from", "", "take the size from the mean decide answer of this result file")
	maxTime := fs.Duration("max-time", time.Hour, "exit after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *from != "" {
		r, err := readResult(*from)
		if err != nil {
			fmt.Fprintf(stderr, "nudge-bench ceiling: %v\n", err)
			return 1
		}
		if d := r.Kinds["decide"].ResponseBytes; d > 0 {
			*size = int(d + 0.5)
		}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "nudge-bench ceiling: %v\n", err)
		return 1
	}
	srv := loadgen.CeilingServer(loadgen.CeilingBody(*size))
	fmt.Fprintf(stderr, "ceiling: serving %d-byte bodies on %s\n", *size, ln.Addr())
	ctx, cancel := signalContext(*maxTime)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		fmt.Fprintf(stderr, "nudge-bench ceiling: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := srv.ShutdownWithContext(sctx); err != nil {
		fmt.Fprintf(stderr, "nudge-bench ceiling: shutdown: %v\n", err)
	}
	return 0
}

const rulesHelp = `Writes a generated ruleset (bench/workload: segments over attributes and
events, actions spread over placements p00..pNN, a share of them capped)
to a directory that nudge serve --rules can load.`

func runRules(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rules", rulesHelp, stderr)
	var spec workload.RulesetSpec
	fs.IntVar(&spec.Actions, "actions", 1000, "actions")
	fs.IntVar(&spec.Segments, "segments", 100, "segments")
	fs.IntVar(&spec.Placements, "placements", 20, "placements")
	fs.Float64Var(&spec.CappedShare, "capped", 1.0/3, "share of actions with a cap")
	fs.Uint64Var(&spec.Seed, "seed", 1, "random seed")
	out := fs.String("out", "", "directory to write (required; created)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	if err := writeRuleset(*out, spec); err != nil {
		fmt.Fprintf(stderr, "nudge-bench rules: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote a ruleset of %d actions to %s\n", spec.Actions, *out)
	return 0
}

func writeRuleset(dir string, spec workload.RulesetSpec) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range workload.Ruleset(spec) {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func runWait(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("wait", "Polls a URL until it answers 200 or the timeout passes (exit 1).", stderr)
	url := fs.String("url", "http://127.0.0.1:8080/readyz", "URL to poll")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	deadline := time.Now().Add(*timeout)
	for {
		status, _, err := fasthttp.GetTimeout(nil, *url, time.Second)
		if err == nil && status == fasthttp.StatusOK {
			return 0
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(stderr, "nudge-bench wait: %s not ready after %v (status %d, %v)\n", *url, *timeout, status, err)
			return 1
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func runFreePort(args []string, stdout, stderr io.Writer) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(stderr, "nudge-bench freeport: %v\n", err)
		return 1
	}
	defer ln.Close()
	fmt.Fprintln(stdout, ln.Addr().(*net.TCPAddr).Port)
	return 0
}
