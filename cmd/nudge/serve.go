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
admin endpoints answer loopback clients only).

Flags:
`

// serveConfig holds the flags of nudge serve.
type serveConfig struct {
	addr, rulesDir, dataDir  string
	cacheMB                  int
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
	if c.rulesDir == "" || c.dataDir == "" || fs.NArg() != 0 {
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
	st, err := pebblestore.Open(pebblestore.Options{Dir: c.dataDir, CacheMB: c.cacheMB, Logger: pebbleLogger{log}})
	if err != nil {
		return fmt.Errorf("cannot open store: %w", err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error().Err(err).Msg("cannot close store")
		}
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

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
