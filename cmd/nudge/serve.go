package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/server"
	pebblestore "github.com/nudge-engine/nudge/store/pebble"
)

const serveUsage = `Usage: nudge serve --rules DIR --data DIR [flags]

Serves decisions over HTTP (SPEC 3). The rules directory is watched: a
change is compiled and its tests run before it goes live; a rejected change
keeps the old rules. SIGHUP reloads; SIGTERM drains and exits.

Environment: NUDGE_API_KEY (decide, events, feedback need X-API-Key),
NUDGE_ADMIN_TOKEN (admin endpoints need "Authorization: Bearer ..."; unset:
admin endpoints answer loopback clients only), GOMEMLIMIT (the Go runtime's
memory limit, kept unless --memory-limit-mb is given).

Flags:
`

// serveConfig holds the flags of nudge serve.
type serveConfig struct {
	addr, rulesDir, dataDir  string
	cacheMB                  int
	blockCacheMB             int
	memoryLimitMB            int
	logFormat, logLevel      string
	cors                     string
	maxBody, maxInFlight     int
	readTimeout, idleTimeout time.Duration
	writeTimeout             time.Duration
	shutdownTimeout          time.Duration
	pprofAddr                string
	decideTimeout            time.Duration
}

func runServe(args []string, stderr io.Writer) int {
	var c serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, serveUsage); fs.PrintDefaults() }
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "address to listen on")
	fs.StringVar(&c.rulesDir, "rules", "", "rules directory (required)")
	fs.StringVar(&c.dataDir, "data", "", "data directory of the store (required)")
	fs.IntVar(&c.cacheMB, "cache-mb", 256, "size of the customer cache in MiB")
	fs.IntVar(&c.blockCacheMB, "block-cache-mb", pebblestore.DefaultBlockCacheMB, "size of Pebble's block cache in MiB (serves cache misses without reading the disk)")
	fs.IntVar(&c.memoryLimitMB, "memory-limit-mb", 0,
		"soft memory limit of the Go runtime in MiB; 0: GOMEMLIMIT if set, else 128 + 2 × cache-mb (+ Pebble's caches in a build without cgo)")
	fs.StringVar(&c.logFormat, "log-format", "json", "log format: json or console")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.cors, "cors-origin", "", "comma-separated origins allowed to call decide and feedback from browsers")
	fs.IntVar(&c.maxBody, "max-body", 1<<20, "largest request body in bytes (413 above)")
	fs.IntVar(&c.maxInFlight, "max-in-flight", 1024, "requests served at once; more are answered 503 with Retry-After")
	fs.DurationVar(&c.readTimeout, "read-timeout", 10*time.Second, "time to read a request")
	fs.DurationVar(&c.writeTimeout, "write-timeout", 10*time.Second, "time to write a response")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 60*time.Second, "how long an idle keep-alive connection is kept")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long SIGTERM waits for in-flight requests")
	fs.StringVar(&c.pprofAddr, "pprof-addr", "", "serve Go's pprof profiles on this (loopback) address, e.g. 127.0.0.1:6060; off by default")
	fs.DurationVar(&c.decideTimeout, "decide-timeout", server.DefaultDecideTimeout,
		"latency budget of a decision's evaluation; over it, the placements' fallbacks are answered with \"degraded\": true (0: no budget)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if c.rulesDir == "" || c.dataDir == "" || fs.NArg() != 0 || c.memoryLimitMB < 0 {
		fs.Usage()
		return 2
	}
	log, err := newLogger(stderr, c.logFormat, c.logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "nudge serve: %v\n", err)
		return 2
	}
	if err := serve(c, log); err != nil {
		log.Error().Err(err).Msg("nudge stopped")
		return 1
	}
	return 0
}

func serve(c serveConfig, log zerolog.Logger) error {
	sopts := pebblestore.Options{Dir: c.dataDir, CacheMB: c.cacheMB, BlockCacheMB: c.blockCacheMB, Logger: pebbleLogger{log}}
	sopts.EnsureDefaults()
	if limit, from := memoryLimit(c.memoryLimitMB, &sopts, os.Getenv("GOMEMLIMIT") != "", pebbleInGoHeap()); limit > 0 {
		debug.SetMemoryLimit(limit)
		log.Info().Int64("memory_limit_mib", limit>>20).Str("from", from).Msg("Go memory limit set")
	} else {
		log.Info().Str("GOMEMLIMIT", os.Getenv("GOMEMLIMIT")).Msg("Go memory limit from the environment")
	}
	st, err := pebblestore.Open(sopts)
	if err != nil {
		return fmt.Errorf("cannot open store: %w", err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error().Err(err).Msg("cannot close store")
		}
	}()

	reg := prometheus.NewRegistry()
	// The scheduler's latencies (go_sched_latencies_seconds: how long
	// runnable goroutines waited for a CPU) tell an operator when the
	// machine, not nudge, makes requests wait.
	reg.MustRegister(
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	var srv *server.Server
	rs, err := server.NewRules(server.RulesOptions{
		Dir:    c.rulesDir,
		Logger: log,
		OnReload: func(ok bool) {
			if srv != nil {
				srv.ObserveReload(ok)
			}
		},
		OnActivate: func(rs *rules.Ruleset) { st.SetRetention(rs.MaxWindow) },
	})
	if err != nil {
		var rej *server.RejectedError
		if errors.As(err, &rej) {
			for _, d := range rej.Details {
				log.Error().Str("file", d.File).Int("line", d.Line).Int("column", d.Column).Msg(d.Message)
			}
		}
		return fmt.Errorf("cannot load rules from %s: %w", c.rulesDir, err)
	}

	eng := engine.New(engine.Options{OnRuleError: func(rule string, err error) {
		log.Debug().Str("rule", rule).Err(err).Msg("rule runtime error")
	}})
	opts := server.Options{
		APIKey:       os.Getenv("NUDGE_API_KEY"),
		AdminToken:   os.Getenv("NUDGE_ADMIN_TOKEN"),
		MaxBodyBytes: c.maxBody,
		MaxInFlight:  c.maxInFlight,
		ReadTimeout:  c.readTimeout,
		WriteTimeout: c.writeTimeout,
		IdleTimeout:  c.idleTimeout,
		Logger:       log,
	}
	opts.DecideTimeout = c.decideTimeout
	if c.decideTimeout <= 0 {
		opts.DecideTimeout = -1 // server.Options: negative is no budget, zero the default
	}
	if c.cors != "" {
		for _, o := range strings.Split(c.cors, ",") {
			if o = strings.TrimSpace(o); o != "" {
				opts.CORSOrigins = append(opts.CORSOrigins, o)
			}
		}
	}
	srv, err = server.New(opts, st, rs, eng, reg)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("cannot listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		if err := rs.Watch(ctx); err != nil && ctx.Err() == nil {
			log.Error().Err(err).Msg("cannot watch the rules directory: reload with SIGHUP or POST /v1/rules/reload")
		}
	}()
	if c.pprofAddr != "" {
		if err := servePprof(c.pprofAddr, log); err != nil {
			return err
		}
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Str("rules", rs.Status().Version).
		Str("rules_dir", c.rulesDir).Str("data", c.dataDir).Msg("nudge is serving")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	for {
		select {
		case err := <-served:
			return fmt.Errorf("server stopped: %w", err)
		case s := <-sig:
			if s == syscall.SIGHUP {
				log.Info().Msg("SIGHUP: reloading rules")
				_, _ = rs.Reload() // the outcome is logged and kept in the rules status
				continue
			}
			log.Info().Str("signal", s.String()).Msg("draining in-flight requests")
			cancel()
			sctx, stop := context.WithTimeout(context.Background(), c.shutdownTimeout)
			err := srv.Shutdown(sctx)
			stop()
			if err != nil {
				return fmt.Errorf("cannot drain: %w", err)
			}
			log.Info().Msg("drained; closing the store")
			return nil
		}
	}
}

// memoryBaseMB is the part of the derived memory limit that is not the
// customer cache: the rulesets, the requests in flight, the cache's
// admission counters, Pebble's Go-side state (table readers, iterators),
// goroutine stacks, and room for garbage.
const memoryBaseMB = 128

// memoryLimit returns the soft memory limit nudge serve gives the Go
// runtime (debug.SetMemoryLimit), in bytes, and where it comes from:
// flagMB if positive; none (0) if GOMEMLIMIT is set (envSet), which the
// runtime has applied already; else derived from the store's options:
// memoryBaseMB plus the cache and as much again as room for garbage,
// plus Pebble's block cache and memtables when they are in the Go heap
// (pebbleInGo). With GOGC=100 alone, the heap grows to twice the live
// heap before a collection, and the cache, once full, is most of the live
// heap: the limit makes the collector run before that, once the heap
// exceeds the cache by its headroom. A live heap over the limit makes the
// collector run more often (at most half the CPU), never fail.
func memoryLimit(flagMB int, st *pebblestore.Options, envSet, pebbleInGo bool) (int64, string) {
	switch {
	case flagMB > 0:
		return int64(flagMB) << 20, "--memory-limit-mb"
	case envSet:
		return 0, "GOMEMLIMIT"
	}
	mb := int64(memoryBaseMB) + 2*int64(st.CacheMB)
	if pebbleInGo {
		mb += int64(st.PebbleMB())
	}
	return mb << 20, "derived from --cache-mb"
}

// pebbleInGoHeap reports whether Pebble's block cache and memtables are
// allocated from the Go heap: without cgo, and in race builds (sometimes).
// With cgo, Pebble allocates them with C's malloc, outside the limit.
func pebbleInGoHeap() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return true
	}
	cgo := false
	for _, s := range bi.Settings {
		switch {
		case s.Key == "CGO_ENABLED":
			cgo = s.Value == "1"
		case s.Key == "-race" && s.Value == "true":
			return true
		}
	}
	return !cgo
}
