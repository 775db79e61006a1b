package loadgen

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/valyala/fasthttp"
)

// ServerFigures is what the server's own Prometheus metrics say about the
// measured time (Config.ServerMetrics): the difference between a scrape
// when measuring starts and one when it ends. They tell a slow run on a
// busy machine (goroutines waiting for a CPU) from a slow server (more
// CPU per request), which the latency alone cannot.
type ServerFigures struct {
	// CPUSeconds is the server process's CPU time (user and system,
	// process_cpu_seconds_total), CPUPerRequest that over the requests
	// answered 2xx, in µs.
	CPUSeconds    float64 `json:"cpu_s"`
	CPUPerRequest float64 `json:"cpu_us_per_request"`
	// Seconds is the time between the two scrapes.
	Seconds float64 `json:"seconds"`
	// GCCycles is the number of garbage collections that ended
	// (go_gc_duration_seconds_count).
	GCCycles int64 `json:"gc_cycles"`
	// Wakeups counts goroutines that became runnable and then ran, and
	// Waits how many of them waited longer than each bound before they
	// got a CPU (go_sched_latencies_seconds, whose buckets give the
	// bounds; the Go runtime samples one scheduling in eight). Empty
	// when the server does not export the histogram.
	Wakeups int64       `json:"sched_wakeups,omitempty"`
	Waits   []SchedTail `json:"sched_waits,omitempty"`
	// RSSBytes is the server's resident memory at the end.
	RSSBytes float64 `json:"rss_bytes,omitempty"`
}

// ClientFigures is the load generator's own CPU time over the measured
// time, and per request answered 2xx, in µs. On a machine the generator
// shares with the server it is part of what a request costs, and it is
// not the same for every server: a slower server's answers arrive one by
// one, each a wake-up of its own, where a fast one's arrive together.
type ClientFigures struct {
	CPUSeconds    float64 `json:"cpu_s"`
	CPUPerRequest float64 `json:"cpu_us_per_request"`
}

func clientFigures(cpu time.Duration, requests int64) *ClientFigures {
	f := &ClientFigures{CPUSeconds: cpu.Seconds()}
	if requests > 0 {
		f.CPUPerRequest = f.CPUSeconds / float64(requests) * 1e6
	}
	return f
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// SchedTail is how many wake-ups waited longer than OverMicros.
type SchedTail struct {
	OverMicros float64 `json:"over_us"`
	Count      int64   `json:"count"`
}

// Share is the fraction of wake-ups that waited longer than the bound
// nearest to micros (by ratio), and that bound; false without wake-ups.
func (s *ServerFigures) Share(micros float64) (share, over float64, ok bool) {
	if s.Wakeups <= 0 {
		return 0, 0, false
	}
	best := math.Inf(1)
	for _, w := range s.Waits {
		if d := math.Abs(math.Log(w.OverMicros / micros)); d < best {
			best, share, over, ok = d, float64(w.Count)/float64(s.Wakeups), w.OverMicros, true
		}
	}
	return share, over, ok
}

// CPUs is the server's CPU time over the time between the scrapes.
func (s *ServerFigures) CPUs() float64 { return s.CPUSeconds / max(s.Seconds, 1e-9) }

// String is a one-line summary for people.
func (s *ServerFigures) String() string {
	out := fmt.Sprintf("server: CPU %s/request (%.2f CPUs), collections %d", FormatMicros(s.CPUPerRequest),
		s.CPUs(), s.GCCycles)
	if share, over, ok := s.Share(1000); ok {
		out += fmt.Sprintf(", %.2f %% of goroutine wake-ups waited > %s for a CPU", 100*share, FormatMicros(over))
	}
	return out
}

// Metric names read from the server.
const (
	metricCPU   = "process_cpu_seconds_total"
	metricRSS   = "process_resident_memory_bytes"
	metricGC    = "go_gc_duration_seconds"
	metricSched = "go_sched_latencies_seconds"
)

// scrape is one reading of the server's metrics.
type scrape struct {
	at       time.Time
	cpu, rss float64
	gcs      int64
	// sched holds the cumulative bucket counts of the scheduler latency
	// histogram by upper bound (s), and its count; nil without it.
	sched      map[float64]uint64
	schedCount uint64
}

// maxMetricsBytes bounds a scrape of the server's metrics.
const maxMetricsBytes = 4 << 20

// scrapeMetrics reads url (Prometheus text format).
func scrapeMetrics(url string, timeout time.Duration) (*scrape, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	c := &fasthttp.Client{MaxResponseBodySize: maxMetricsBytes, NoDefaultUserAgentHeader: true}
	if err := c.DoTimeout(req, resp, timeout); err != nil {
		return nil, fmt.Errorf("cannot scrape %s: %w", url, err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return nil, fmt.Errorf("cannot scrape %s: status %d", url, resp.StatusCode())
	}
	s, err := parseMetrics(resp.Body())
	if err == nil {
		s.at = time.Now()
	}
	return s, err
}

// parseMetrics reads the figures ServerFigures needs from Prometheus text;
// the process CPU time is required, the rest optional.
func parseMetrics(body []byte) (*scrape, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("cannot read the server's metrics: %w", err)
	}
	first := func(name string) *dto.Metric {
		if f := fams[name]; f != nil && len(f.GetMetric()) > 0 {
			return f.GetMetric()[0]
		}
		return nil
	}
	m := first(metricCPU)
	if m == nil {
		return nil, fmt.Errorf("the server's metrics have no %s", metricCPU)
	}
	s := &scrape{cpu: m.GetCounter().GetValue()}
	if m := first(metricRSS); m != nil {
		s.rss = m.GetGauge().GetValue()
	}
	if m := first(metricGC); m != nil {
		s.gcs = int64(m.GetSummary().GetSampleCount())
	}
	if m := first(metricSched); m != nil && m.GetHistogram() != nil {
		h := m.GetHistogram()
		s.sched = map[float64]uint64{}
		for _, b := range h.GetBucket() {
			s.sched[b.GetUpperBound()] = b.GetCumulativeCount()
		}
		s.schedCount = h.GetSampleCount()
	}
	return s, nil
}

// serverFigures is the difference from a to b, for requests answered.
func serverFigures(a, b *scrape, requests int64) *ServerFigures {
	f := &ServerFigures{CPUSeconds: b.cpu - a.cpu, Seconds: b.at.Sub(a.at).Seconds(), GCCycles: b.gcs - a.gcs, RSSBytes: b.rss}
	if requests > 0 {
		f.CPUPerRequest = f.CPUSeconds / float64(requests) * 1e6
	}
	if a.sched != nil && b.sched != nil {
		f.Wakeups = int64(b.schedCount - a.schedCount)
		var bounds []float64
		for ub := range b.sched {
			if _, ok := a.sched[ub]; ok && !math.IsInf(ub, 1) {
				bounds = append(bounds, ub)
			}
		}
		slices.Sort(bounds)
		for _, ub := range bounds {
			within := int64(b.sched[ub] - a.sched[ub])
			f.Waits = append(f.Waits, SchedTail{OverMicros: ub * 1e6, Count: f.Wakeups - within})
		}
	}
	return f
}
