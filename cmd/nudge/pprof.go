package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"

	"github.com/rs/zerolog"
)

// servePprof serves Go's profiles on a separate listener, so that
// engineers can profile nudge under load (go tool pprof
// http://ADDR/debug/pprof/profile). Only loopback addresses are accepted:
// profiles expose internals.
func servePprof(addr string, log zerolog.Logger) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("bad --pprof-addr: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--pprof-addr must be a loopback address, not %s", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen for pprof: %w", err)
	}
	// Contention profiles (/debug/pprof/mutex and /block): one mutex
	// contention event in 10, blocking sampled per 100 µs blocked.
	runtime.SetMutexProfileFraction(10)
	runtime.SetBlockProfileRate(100_000)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil {
			log.Error().Err(err).Msg("pprof server stopped")
		}
	}()
	log.Info().Str("addr", ln.Addr().String()).Msg("serving pprof profiles")
	return nil
}
