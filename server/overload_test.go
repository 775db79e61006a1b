package server_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/server"
	"github.com/nudge-engine/nudge/store"
	"github.com/nudge-engine/nudge/store/memstore"
)

// slowStore makes every customer read take service, and tracks how many
// reads run at once.
type slowStore struct {
	*memstore.Store
	service       time.Duration
	now, maxInUse atomic.Int64
}

func (s *slowStore) Customer(id string) (*store.Customer, error) {
	n := s.now.Add(1)
	for {
		m := s.maxInUse.Load()
		if n <= m || s.maxInUse.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(s.service)
	s.now.Add(-1)
	return s.Store.Customer(id)
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// TestOverload offers twice the throughput the server can give: with
// MaxInFlight 4 and 50 ms per decision it serves 80 decisions a second,
// and 160 a second arrive (open loop: arrivals do not wait for answers).
// The excess is answered 503 with Retry-After at once, not queued; the
// admitted requests take the service time, not longer; the work in
// progress, and so the memory, stays bounded.
func TestOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("a timed load test")
	}
	const (
		maxInFlight = 4
		service     = 50 * time.Millisecond
		rate        = 2 * maxInFlight * int(time.Second/service) // requests per second: twice the capacity
		duration    = 1500 * time.Millisecond
	)
	st := &slowStore{Store: memstore.New(), service: service}
	h := newHarness(t, server.Options{MaxInFlight: maxInFlight}, st)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 200, MaxConnsPerHost: 0}}
	defer client.CloseIdleConnections()

	type result struct {
		status     int
		retryAfter string
		code       string
		took       time.Duration
		err        error
	}
	results := make(chan result, 2*rate*int(duration/time.Second)+10)
	var memBefore runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&memBefore)
	goroutinesBefore := runtime.NumGoroutine()

	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	deadline := time.Now().Add(duration)
	sent := 0
	for now := range tick.C {
		if now.After(deadline) {
			break
		}
		sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			resp, err := client.Post(h.url+"/v1/decide", "application/json", strings.NewReader(`{"customer_id":"c-1","placement":"home_hero"}`))
			if err != nil {
				results <- result{err: err}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r := result{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), took: time.Since(start)}
			if strings.Contains(string(b), `"code":"overloaded"`) {
				r.code = "overloaded"
			}
			results <- r
		}()
	}
	tick.Stop()
	wg.Wait()
	close(results)

	var admitted, rejected []time.Duration
	for r := range results {
		switch {
		case r.err != nil:
			t.Errorf("request failed: %v", r.err)
		case r.status == 200:
			admitted = append(admitted, r.took)
		case r.status == 503:
			if r.retryAfter != "1" || r.code != "overloaded" {
				t.Errorf("503 with Retry-After %q, code %q; want 1 and overloaded", r.retryAfter, r.code)
			}
			rejected = append(rejected, r.took)
		default:
			t.Errorf("status %d; want 200 or 503", r.status)
		}
	}
	capacity := int(duration/service)*maxInFlight + maxInFlight
	t.Logf("%d requests in %v (%d/s, capacity %d/s): %d admitted (p50 %v, p99 %v), %d rejected (p50 %v, p99 %v); at most %d in the store at once",
		sent, duration, rate, rate/2, len(admitted), percentile(admitted, 0.5), percentile(admitted, 0.99),
		len(rejected), percentile(rejected, 0.5), percentile(rejected, 0.99), st.maxInUse.Load())
	if len(admitted) == 0 || len(rejected) == 0 {
		t.Fatalf("%d admitted, %d rejected: want both at twice the capacity", len(admitted), len(rejected))
	}
	if len(admitted) > capacity {
		t.Errorf("%d admitted in %v; at most %d fit", len(admitted), duration, capacity)
	}
	// About half of the offered load is over capacity.
	if frac := float64(len(rejected)) / float64(sent); frac < 0.3 {
		t.Errorf("%.0f%% rejected at twice the capacity; want about half", frac*100)
	}
	// Rejected at once: well within one service time (a queued request
	// would wait at least that).
	if p := percentile(rejected, 0.5); p > service/2 {
		t.Errorf("rejections take %v (median); want them at once, well under the %v service time", p, service)
	}
	if p := percentile(rejected, 0.99); p > service {
		t.Errorf("rejections take %v (p99); want under the %v service time: they are queued", p, service)
	}
	// Admitted requests are not slowed by the excess: no queue in front.
	if p := percentile(admitted, 0.99); p > 3*service {
		t.Errorf("admitted requests take %v (p99); want about the %v service time", p, service)
	}
	if n := st.maxInUse.Load(); n > maxInFlight {
		t.Errorf("%d requests in the store at once; MaxInFlight is %d", n, maxInFlight)
	}
	client.CloseIdleConnections()
	var memAfter runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&memAfter)
	grown := int64(memAfter.HeapAlloc) - int64(memBefore.HeapAlloc)
	t.Logf("live heap %+d KiB after the load", grown>>10)
	if grown > 32<<20 {
		t.Errorf("the heap grew by %d MiB under overload", grown>>20)
	}
	// Connections drain; no goroutine is left waiting for a slot.
	waitFor(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= goroutinesBefore+10 },
		func() string { return "goroutines did not return to their level before the load" })
	if got := h.metric("nudge_http_inflight_rejections_total"); int(got) != len(rejected) {
		t.Errorf("%v rejections counted; %d answered", got, len(rejected))
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	for end := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Error(msg())
			return
		}
	}
}

// TestSlowClientsAreCut: connections that send their request byte by byte
// (slowloris), or a body byte by byte, or nothing at all, are closed once
// the read timeout passes, while other clients are served as usual.
func TestSlowClientsAreCut(t *testing.T) {
	const readTimeout = 300 * time.Millisecond
	h := newHarness(t, server.Options{ReadTimeout: readTimeout, MaxInFlight: 4}, nil)
	addr := strings.TrimPrefix(h.url, "http://")
	slow := []struct {
		name  string
		bytes string
	}{
		{"headers byte by byte", "GET /healthz HTTP/1.1\r\nHost: nudge\r\nX-Slow: " + strings.Repeat("a", 200) + "\r\n\r\n"},
		{"body byte by byte", "POST /v1/events HTTP/1.1\r\nHost: nudge\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n" + strings.Repeat(" ", 200)},
		{"nothing", ""},
	}
	const perKind = 20 // 60 slow connections, far more than MaxInFlight
	type cut struct {
		name   string
		after  time.Duration
		sent   int
		answer string
		err    error
	}
	cuts := make(chan cut, perKind*len(slow))
	var wg sync.WaitGroup
	start := time.Now()
	for _, s := range slow {
		for range perKind {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					cuts <- cut{name: s.name, err: err}
					return
				}
				defer conn.Close()
				began := time.Now()
				closed := make(chan struct{})
				var answer []byte
				go func() {
					// The server's answer (a 408), then EOF.
					answer, _ = io.ReadAll(conn)
					close(closed)
				}()
				sent := 0
				for i := 0; i < len(s.bytes); i++ {
					select {
					case <-closed:
					case <-time.After(30 * time.Millisecond):
						if _, err := conn.Write([]byte{s.bytes[i]}); err == nil {
							sent++
							continue
						}
					}
					break
				}
				select {
				case <-closed:
					cuts <- cut{name: s.name, after: time.Since(began), sent: sent, answer: string(answer)}
				case <-time.After(5 * time.Second):
					cuts <- cut{name: s.name, err: errors.New("still open 5 s after the read timeout")}
				}
			}()
		}
	}
	// Meanwhile, ordinary clients are served promptly.
	time.Sleep(100 * time.Millisecond)
	for range 5 {
		began := time.Now()
		h.ok(h.do("POST", "/v1/decide", `{"customer_id":"c-1","placement":"home_hero"}`), 200)
		if d := time.Since(began); d > readTimeout {
			t.Errorf("a decision took %v while slow clients were connected", d)
		}
	}
	wg.Wait()
	close(cuts)
	var longest time.Duration
	n := 0
	for c := range cuts {
		n++
		if c.err != nil {
			t.Errorf("%s: %v", c.name, c.err)
			continue
		}
		if c.after < readTimeout/2 {
			t.Errorf("%s: cut after %v, before the %v read timeout", c.name, c.after, readTimeout)
		}
		if !strings.HasPrefix(c.answer, "HTTP/1.1 408 ") || !strings.Contains(c.answer, `{"error":{"code":"timeout"`) {
			t.Errorf("%s: answered %q; want 408 with the timeout error", c.name, c.answer)
		}
		if c.name != "nothing" && c.sent >= 200 {
			t.Errorf("%s: the whole request went through (%d bytes) before the cut", c.name, c.sent)
		}
		longest = max(longest, c.after)
	}
	t.Logf("%d slow connections cut within %v (read timeout %v) in %v", n, longest, readTimeout, time.Since(start))
	if longest > readTimeout+time.Second {
		t.Errorf("a slow connection lasted %v; the read timeout is %v", longest, readTimeout)
	}
}
