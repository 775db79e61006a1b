package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestParseMix(t *testing.T) {
	f := func(s string, want [numKinds]int, wantErr bool) {
		t.Helper()
		m, err := ParseMix(s)
		if (err != nil) != wantErr {
			t.Fatalf("ParseMix(%q): err %v; want error %v", s, err, wantErr)
		}
		if err == nil && m.Weights != want {
			t.Fatalf("ParseMix(%q) = %v; want %v", s, m.Weights, want)
		}
	}
	f("decide=90,events=8,feedback=2", [numKinds]int{90, 8, 2}, false)
	f("events=1", [numKinds]int{0, 1, 0}, false)
	f(" decide=1 , feedback=3", [numKinds]int{1, 0, 3}, false)
	f("decide=0", [numKinds]int{}, true)
	f("decide", [numKinds]int{}, true)
	f("decide=-1,events=2", [numKinds]int{}, true)
	f("simulate=3", [numKinds]int{}, true)

	m, _ := ParseMix("decide=2,events=1,feedback=1")
	got := []Kind{m.pick(0), m.pick(1), m.pick(2), m.pick(3)}
	want := []Kind{Decide, Decide, Events, Feedback}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("pick(%d) = %v; want %v", i, got[i], want[i])
		}
	}
}

func TestSchedule(t *testing.T) {
	start := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	s := Schedule{Start: start, Rate: 1000, Conns: 4}
	// The connections' slots interleave into one schedule at 1 ms spacing.
	var all []time.Time
	for k := range 25 {
		for w := range 4 {
			all = append(all, s.At(w, k))
		}
	}
	for j, at := range all {
		if want := start.Add(time.Duration(j) * time.Millisecond); !at.Equal(want) {
			t.Fatalf("slot %d at %v; want %v", j, at.Sub(start), want.Sub(start))
		}
	}
	// 100 ms hold 100 slots: 25 per connection.
	end := start.Add(100 * time.Millisecond)
	for w := range 4 {
		if got := s.Due(w, 0, end); got != 25 {
			t.Fatalf("Due(%d, 0) = %d; want 25", w, got)
		}
		if got := s.Due(w, 20, end); got != 5 {
			t.Fatalf("Due(%d, 20) = %d; want 5", w, got)
		}
	}
	if got := s.Due(0, 25, end); got != 0 {
		t.Fatalf("Due past the end = %d; want 0", got)
	}
}

func TestZipf(t *testing.T) {
	// Ranks map onto indexes one to one.
	for _, n := range []int{1, 2, 7, 1000, 4096} {
		z, err := NewZipf(rand.New(rand.NewPCG(1, 1)), 1.1, n)
		if err != nil {
			t.Fatal(err)
		}
		seen := make([]bool, n)
		for k := range uint64(n) {
			i := z.Index(k)
			if i < 0 || i >= n || seen[i] {
				t.Fatalf("n=%d: rank %d maps to %d (out of range or taken)", n, k, i)
			}
			seen[i] = true
		}
	}
	// Frequencies follow 1/(rank+1)^s: rank 0 is about 2^1.1 = 2.14 times
	// as popular as rank 1, and 10^1.1 = 12.6 times rank 9.
	const n, draws = 100_000, 400_000
	z, err := NewZipf(rand.New(rand.NewPCG(7, 7)), 1.1, n)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[int]int{}
	for range draws {
		i := z.Next()
		if i < 0 || i >= n {
			t.Fatalf("index %d out of [0, %d)", i, n)
		}
		counts[i]++
	}
	c0, c1, c9 := float64(counts[z.Index(0)]), float64(counts[z.Index(1)]), float64(counts[z.Index(9)])
	if r := c0 / c1; r < 1.9 || r > 2.4 {
		t.Fatalf("rank 0 / rank 1 = %.2f; want about 2.14", r)
	}
	if r := c0 / c9; r < 10.5 || r > 15 {
		t.Fatalf("rank 0 / rank 9 = %.2f; want about 12.6", r)
	}
	// The hot customers are not neighbours.
	if d := z.Index(1) - z.Index(0); d == 1 || d == -1 {
		t.Fatalf("ranks 0 and 1 are adjacent ids (%d, %d)", z.Index(0), z.Index(1))
	}
	if _, err := NewZipf(rand.New(rand.NewPCG(1, 1)), 1, 10); err == nil {
		t.Fatal("exponent 1 accepted")
	}
}

func TestCeilingBody(t *testing.T) {
	for _, n := range []int{0, 100, 150, 250, 546, 700, 4096} {
		b := CeilingBody(n)
		if want := max(n, 100); len(b) != want {
			t.Fatalf("CeilingBody(%d) is %d bytes; want %d", n, len(b), want)
		}
		if !json.Valid(b) {
			t.Fatalf("CeilingBody(%d) is not JSON: %s", n, b)
		}
	}
}

// serve starts a fasthttp server with h on a loopback port and returns
// its base URL.
func serve(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	go srv.Serve(ln) //nolint:errcheck // ends with the listener
	t.Cleanup(func() { srv.Shutdown() })
	return "http://" + ln.Addr().String()
}

// TestOpenLoopCountsStall: a server that stalls once for 200 ms delays the
// requests due during the stall; measured from their due time they show in
// the p99, measured from their send (as a closed-loop tester would) they
// would not.
func TestOpenLoopCountsStall(t *testing.T) {
	var (
		mu         sync.Mutex
		first      time.Time
		stallUntil time.Time
		stalled    bool
	)
	url := serve(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		now := time.Now()
		if first.IsZero() {
			first = now
		}
		if !stalled && now.Sub(first) > 500*time.Millisecond {
			stalled, stallUntil = true, now.Add(200*time.Millisecond)
		}
		wait := stallUntil.Sub(now)
		mu.Unlock()
		if wait > 0 {
			time.Sleep(wait)
		}
		ctx.SetBodyString(`{"decision_id":"d1","placements":{}}`)
	})
	res, err := Run(context.Background(), Config{URL: url, Mode: ModeOpen, Rate: 500, Conns: 4,
		Duration: 2 * time.Second, Customers: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if !stalled {
		t.Fatal("the server never stalled")
	}
	if res.Errors != 0 {
		t.Fatalf("errors: %v", res.ErrorList())
	}
	// About 1,000 requests, of which those due in the first 100 ms of the
	// stall (about 50, 5%) waited at least 100 ms.
	if res.Requests < 900 {
		t.Fatalf("%d requests; want about 1000", res.Requests)
	}
	if res.Latency.P99 < 100_000 {
		t.Fatalf("p99 %s; want >= 100ms: the stall must count for every request due during it", FormatMicros(res.Latency.P99))
	}
	if res.Latency.Max < 150_000 {
		t.Fatalf("max %s; want about 200ms", FormatMicros(res.Latency.Max))
	}
	// From the send, only the requests in flight when the stall began
	// (one per connection) took that long.
	if res.Service == nil || res.Service.P99 >= res.Latency.P99 {
		t.Fatalf("uncorrected p99 %v; want below the corrected %s", res.Service, FormatMicros(res.Latency.P99))
	}
}

// TestOpenLoopCountsUnsent: requests still owed when the drain ends are
// counted, with their latency so far, not dropped.
func TestOpenLoopCountsUnsent(t *testing.T) {
	url := serve(t, func(ctx *fasthttp.RequestCtx) {
		time.Sleep(1500 * time.Millisecond)
	})
	res, err := Run(context.Background(), Config{URL: url, Mode: ModeOpen, Rate: 200, Conns: 2,
		Duration: time.Second, Drain: 100 * time.Millisecond, Timeout: 3 * time.Second, Customers: 10})
	if err != nil {
		t.Fatal(err)
	}
	// 200 requests were due; each connection got one answer, the rest
	// were never sent.
	if res.Unsent < 190 || res.Unsent > 200 {
		t.Fatalf("unsent %d; want about 198", res.Unsent)
	}
	if got := res.Latency.Count; got != res.Unsent+res.Requests {
		t.Fatalf("latency histogram holds %d; want unsent + answered = %d", got, res.Unsent+res.Requests)
	}
	if res.Latency.P50 < 500_000 {
		t.Fatalf("p50 %s; want >= 500ms (requests due at 0.5s were still unsent at 1.1s)", FormatMicros(res.Latency.P50))
	}
}

// TestClosedLoopMix: the mix reaches every endpoint, feedback names a
// decision the server gave, batches carry Batch events, failures are
// counted by status.
func TestClosedLoopMix(t *testing.T) {
	var decides, events, feedback, bad atomic.Int64
	url := serve(t, func(ctx *fasthttp.RequestCtx) {
		body := ctx.PostBody()
		switch string(ctx.Path()) {
		case "/v1/decide":
			n := decides.Add(1)
			if n%10 == 0 {
				ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
				return
			}
			var in struct {
				CustomerID string   `json:"customer_id"`
				Placements []string `json:"placements"`
			}
			if err := json.Unmarshal(body, &in); err != nil || !strings.HasPrefix(in.CustomerID, "c-") || len(in.Placements) != 2 {
				bad.Add(1)
			}
			ctx.SetBodyString(`{"decision_id":"dec-` + in.CustomerID + `","customer_id":"` + in.CustomerID +
				`","placements":{"p":[{"action":"act-` + in.CustomerID + `","kind":"offer"}]}}`)
		case "/v1/events":
			var in struct {
				Events []map[string]any `json:"events"`
			}
			if err := json.Unmarshal(body, &in); err != nil || len(in.Events) != 5 {
				bad.Add(1)
			}
			events.Add(1)
			ctx.SetStatusCode(fasthttp.StatusAccepted)
		case "/v1/feedback":
			var in map[string]string
			if err := json.Unmarshal(body, &in); err != nil || in["decision_id"] != "dec-"+in["customer_id"] ||
				in["action"] != "act-"+in["customer_id"] || in["outcome"] == "" {
				bad.Add(1)
				ctx.SetStatusCode(fasthttp.StatusBadRequest)
				return
			}
			feedback.Add(1)
			ctx.SetStatusCode(fasthttp.StatusAccepted)
		default:
			ctx.SetStatusCode(fasthttp.StatusNotFound)
		}
	})
	mix, _ := ParseMix("decide=6,events=2,feedback=2")
	res, err := Run(context.Background(), Config{URL: url, Conns: 4, Duration: 500 * time.Millisecond,
		Mix: mix, Batch: 5, Customers: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if bad.Load() != 0 {
		t.Fatalf("%d malformed requests", bad.Load())
	}
	if decides.Load() == 0 || events.Load() == 0 || feedback.Load() == 0 {
		t.Fatalf("decide %d, events %d, feedback %d; want all > 0", decides.Load(), events.Load(), feedback.Load())
	}
	if res.Status["503"] == 0 || res.Errors != res.Status["503"] {
		t.Fatalf("errors %d, status %v; want the 503s counted as errors", res.Errors, res.Status)
	}
	ev := res.Kinds["events"].Requests
	if ev == 0 || res.EventsPerSec != float64(ev*5)/0.5 {
		t.Fatalf("events/s %.0f with %d batch requests; want %d", res.EventsPerSec, ev, ev*5*2)
	}
	if sum := res.Kinds["decide"].Requests + ev + res.Kinds["feedback"].Requests; sum != res.Requests {
		t.Fatalf("kinds sum to %d; want %d", sum, res.Requests)
	}
	if res.Service != nil {
		t.Fatal("a closed-loop result has open-loop fields")
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(res); err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back.Requests != res.Requests || len(back.Curve) != len(CurvePercentiles) {
		t.Fatalf("result does not survive JSON: %v", err)
	}
}

func TestRefusesRemoteTargets(t *testing.T) {
	_, err := Run(context.Background(), Config{URL: "http://192.0.2.1:80", Duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err %v; want a refusal of the non-loopback target", err)
	}
}

// TestClosedLoopWarmsUp: a closed loop sends during its warm-up, and counts
// only what is answered after it.
func TestClosedLoopWarmsUp(t *testing.T) {
	var mu sync.Mutex
	var first time.Time
	var total atomic.Int64
	url := serve(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		if first.IsZero() {
			first = time.Now()
		}
		mu.Unlock()
		total.Add(1)
		ctx.SetBodyString(`{"decision_id":"d1","placements":{}}`)
	})
	begin := time.Now()
	res, err := Run(context.Background(), Config{URL: url, Conns: 2, Warmup: 400 * time.Millisecond,
		Duration: 400 * time.Millisecond, Customers: 10})
	if err != nil {
		t.Fatal(err)
	}
	if d := first.Sub(begin); d > 200*time.Millisecond {
		t.Errorf("first request %v after the start; want it during the 400ms warm-up", d)
	}
	if res.Requests == 0 || res.Requests >= total.Load() {
		t.Errorf("%d requests measured of %d answered; want the warm-up's left out", res.Requests, total.Load())
	}
}

// TestPacerReleasesOnSchedule: the pacer releases every slot of every
// connection once, in order, never before it is due, and none due after
// the end.
func TestPacerReleasesOnSchedule(t *testing.T) {
	s := Schedule{Start: time.Now().Add(5 * time.Millisecond), Rate: 4000, Conns: 4}
	end := s.Start.Add(100 * time.Millisecond)
	p := newPacer(s)
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		p.run(ctx, end)
		close(done)
	}()
	var wg sync.WaitGroup
	early := make([]int, s.Conns)
	got := make([]int, s.Conns)
	for w := range s.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; s.At(w, k).Before(end); k++ {
				if !p.await(ctx, w, k) {
					return
				}
				if time.Now().Before(s.At(w, k)) {
					early[w]++
				}
				got[w]++
			}
		}()
	}
	wg.Wait()
	<-done
	for w := range s.Conns {
		want := s.Due(w, 0, end)
		if got[w] != want || early[w] != 0 {
			t.Errorf("connection %d: %d slots, %d of them before due; want %d, none early", w, got[w], early[w], want)
		}
		if n := p.released[w].Load(); n != int64(want) {
			t.Errorf("connection %d: %d slots released; want %d", w, n, want)
		}
	}
}
