package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// metricsText is a server's metrics at its nth scrape (from 0): CPU time,
// collections and the scheduler histogram grow between scrapes.
func metricsText(n int) string {
	cpu := 10 + 2.5*float64(n)
	gcs := 3 + 2*n
	// Cumulative buckets; each scrape adds 1,000 wake-ups, of which 100
	// waited longer than 81.92 µs, 20 longer than 917.5 µs and 5 longer
	// than 10.49 ms.
	base := []int{50, 60, 70, 100, 100, 100, 100}
	delta := []int{100, 300, 500, 900, 980, 995, 1000}
	b := make([]int, len(base))
	for i := range b {
		b[i] = base[i] + n*delta[i]
	}
	count := 100 + 1000*n
	var s strings.Builder
	fmt.Fprintf(&s, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %g\n", cpu)
	fmt.Fprintf(&s, "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %d\n", 100<<20+n)
	fmt.Fprintf(&s, "# TYPE go_gc_duration_seconds summary\ngo_gc_duration_seconds{quantile=\"0.5\"} 0.001\ngo_gc_duration_seconds_sum 0.01\ngo_gc_duration_seconds_count %d\n", gcs)
	s.WriteString("# TYPE go_sched_latencies_seconds histogram\n")
	for i, ub := range []string{"6.4e-08", "6.4e-07", "7.168e-06", "8.192e-05", "0.0009175039999999999", "0.010485759999999998", "0.11744051199999998"} {
		fmt.Fprintf(&s, "go_sched_latencies_seconds_bucket{le=%q} %d\n", ub, b[i])
	}
	fmt.Fprintf(&s, "go_sched_latencies_seconds_bucket{le=\"+Inf\"} %d\ngo_sched_latencies_seconds_sum 1\ngo_sched_latencies_seconds_count %d\n", count, count)
	return s.String()
}

// TestServerFigures: with ServerMetrics, a run reads the server's metrics
// when measuring starts and when it ends, and reports the differences.
func TestServerFigures(t *testing.T) {
	var (
		mu      sync.Mutex
		scrapes []time.Time
	)
	url := serve(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/metrics" {
			mu.Lock()
			n := len(scrapes)
			scrapes = append(scrapes, time.Now())
			mu.Unlock()
			ctx.SetBodyString(metricsText(n))
			return
		}
		ctx.SetBodyString(`{"decision_id":"d1","placements":{}}`)
	})
	begin := time.Now()
	res, err := Run(context.Background(), Config{URL: url, Conns: 2, Warmup: 300 * time.Millisecond,
		Duration: 700 * time.Millisecond, Customers: 10, ServerMetrics: url + "/metrics"})
	if err != nil {
		t.Fatal(err)
	}
	if len(scrapes) != 2 {
		t.Fatalf("%d scrapes; want 2 (when measuring starts and ends)", len(scrapes))
	}
	if d := scrapes[0].Sub(begin); d < 300*time.Millisecond {
		t.Errorf("first scrape %v after the start; want after the 300ms warm-up", d)
	}
	if d := scrapes[1].Sub(scrapes[0]); d < 650*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("scrapes %v apart; want the measured 700ms", d)
	}
	s := res.Server
	if s == nil {
		t.Fatalf("no server figures (error %q)", res.ServerError)
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= 1e-9*max(1, math.Abs(want)) }
	if !near(s.CPUSeconds, 2.5) || s.GCCycles != 2 || s.Wakeups != 1000 || s.RSSBytes != 100<<20+1 {
		t.Errorf("figures %+v; want 2.5 CPU s, 2 collections, 1000 wake-ups, the last RSS", s)
	}
	if res.Requests == 0 || !near(s.CPUPerRequest, 2.5e6/float64(res.Requests)) {
		t.Errorf("CPU per request %v µs for %d requests; want 2.5 s over them", s.CPUPerRequest, res.Requests)
	}
	if s.Seconds < 0.65 || s.Seconds > 1.5 {
		t.Errorf("seconds %v; want the measured time", s.Seconds)
	}
	for _, tc := range []struct{ near, over, share float64 }{
		{1000, 917.504, 0.02}, {10000, 10485.76, 0.005}, {80, 81.92, 0.1},
	} {
		share, over, ok := s.Share(tc.near)
		if !ok || !near(share, tc.share) || math.Abs(over-tc.over) > 0.01 {
			t.Errorf("Share(%v) = %v over %v, %v; want %v over %v", tc.near, share, over, ok, tc.share, tc.over)
		}
	}
	if got := res.Summary(); !strings.Contains(got, "2.00 % of goroutine wake-ups waited > 918µs") {
		t.Errorf("summary lacks the wait share:\n%s", got)
	}
	// The generator's own CPU: some over the measured 700 ms (it sent
	// requests the whole time), at most two of this machine's CPUs'
	// worth per CPU, and per request.
	c := res.Client
	if c == nil || c.CPUSeconds <= 0 || c.CPUSeconds > 1.5*float64(runtime.NumCPU()) {
		t.Fatalf("client figures %+v; want the CPU time of the measured 700ms", c)
	}
	if !near(c.CPUPerRequest, c.CPUSeconds*1e6/float64(res.Requests)) {
		t.Errorf("client CPU per request %v µs; want %v s over %d requests", c.CPUPerRequest, c.CPUSeconds, res.Requests)
	}
	if got := res.Summary(); !strings.Contains(got, "load generator: CPU "+FormatMicros(c.CPUPerRequest)+"/request") {
		t.Errorf("summary lacks the generator's CPU:\n%s", got)
	}
}

// TestCeilingMetrics: the ceiling answers its fixed body on every path but
// /metrics, where it serves the process and runtime metrics a run reads,
// so that its CPU per request is measured as nudge's is.
func TestCeilingMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	body := CeilingBody(300)
	srv := CeilingServer(body)
	go srv.Serve(ln) //nolint:errcheck // ends with the listener
	t.Cleanup(func() { srv.Shutdown() })
	url := "http://" + ln.Addr().String()

	res, err := Run(context.Background(), Config{URL: url, Conns: 2, Duration: 300 * time.Millisecond,
		Customers: 10, ServerMetrics: url + CeilingMetricsPath})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Kinds["decide"].ResponseBytes != float64(len(body)) {
		t.Fatalf("%d requests of %v bytes; want the %d-byte body", res.Requests, res.Kinds["decide"].ResponseBytes, len(body))
	}
	s := res.Server
	if s == nil {
		t.Fatalf("no figures from the ceiling's metrics: %s", res.ServerError)
	}
	// The ceiling runs in this process: it used CPU to answer, and the
	// runtime's scheduler histogram is there.
	if s.CPUSeconds <= 0 || s.CPUPerRequest <= 0 || s.Wakeups <= 0 || s.RSSBytes <= 0 {
		t.Fatalf("figures %+v; want CPU time, wake-ups and RSS", s)
	}
	// POST /metrics is the body like any other request.
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url + CeilingMetricsPath)
	req.Header.SetMethod(fasthttp.MethodPost)
	if err := fasthttp.Do(req, resp); err != nil || !bytes.Equal(resp.Body(), body) {
		t.Fatalf("POST /metrics: %v, %d bytes; want the %d-byte body", err, len(resp.Body()), len(body))
	}
}

// TestServerFiguresUnreadable: a server without readable metrics still
// gets its run measured, with the reason the figures are missing.
func TestServerFiguresUnreadable(t *testing.T) {
	url := serve(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/metrics" {
			ctx.SetBodyString("# TYPE up gauge\nup 1\n")
			return
		}
		ctx.SetBodyString(`{"decision_id":"d1","placements":{}}`)
	})
	res, err := Run(context.Background(), Config{URL: url, Conns: 1, Duration: 200 * time.Millisecond,
		Customers: 10, ServerMetrics: url + "/metrics"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Server != nil || !strings.Contains(res.ServerError, "process_cpu_seconds_total") {
		t.Fatalf("requests %d, figures %+v, error %q; want the run measured and the missing metric named",
			res.Requests, res.Server, res.ServerError)
	}
	if _, err := Run(context.Background(), Config{URL: url, Duration: time.Second,
		ServerMetrics: "http://192.0.2.1/metrics"}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err %v; want a refusal of remote metrics", err)
	}
}
