package loadgen

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// CeilingBody returns a JSON body of exactly n bytes (at least 100) shaped
// like a decide answer: what the ceiling server sends, so its responses
// cost the network and the client what nudge's do.
func CeilingBody(n int) []byte {
	n = max(n, 100)
	head := `{"decision_id":"00000000000000000000000000000000","customer_id":"c-0000000","ruleset":"ceiling0",` +
		`"placements":{"home_hero":[{"action":"ceiling","kind":"offer","channel":"web","priority":0,"score":0,` +
		`"content":{"title":"`
	tail := `"}}]}}` + "\n"
	if pad := n - len(head) - len(tail); pad > 0 {
		return []byte(head + strings.Repeat("x", pad) + tail)
	}
	// Too short for the decide shape: a padded object.
	return []byte(`{"p":"` + strings.Repeat("x", n-9) + `"}` + "\n")
}

// CeilingMetricsPath is where the ceiling serves its own metrics.
const CeilingMetricsPath = "/metrics"

// CeilingServer returns a minimal fasthttp server that answers every
// request 200 with body: the HTTP ceiling of this machine, what a fasthttp
// service that does no work at all serves here. Its transport settings
// are those of nudge's server (timeouts, 16 KiB read buffer, 1 MiB body
// limit, no Server header), so the two differ only by the work nudge does.
//
// GET CeilingMetricsPath is the exception: it serves the process's CPU
// time and memory and the Go runtime's metrics (the scheduler's latencies
// included), as nudge's /metrics does, so that Config.ServerMetrics
// measures the ceiling's CPU per request as it does nudge's. The load
// generator never asks for that path.
func CeilingServer(body []byte) *fasthttp.Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	metrics := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if string(ctx.Path()) == CeilingMetricsPath && ctx.IsGet() {
				metrics(ctx)
				return
			}
			ctx.SetContentType("application/json")
			ctx.SetBody(body)
		},
		ReadTimeout:                  10 * time.Second,
		WriteTimeout:                 10 * time.Second,
		IdleTimeout:                  60 * time.Second,
		MaxRequestBodySize:           1 << 20,
		ReadBufferSize:               16 << 10,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		CloseOnShutdown:              true,
	}
}
