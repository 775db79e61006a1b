// Package loadgen drives a running nudge (or the ceiling server) over HTTP
// and measures latency with HDR histograms.
//
// Two modes. Closed loop (ModeClosed): each of Conns connections sends its
// next request as soon as the previous one is answered; this finds the
// maximum throughput, and its latencies are those of a saturated server.
// Open loop (ModeOpen): requests are sent at a constant Rate on a schedule
// fixed in advance (Schedule); a request's latency is measured from the
// time it was due, not from when it was actually sent, so a server stall
// that delays the sender counts against every request it delayed. This is
// wrk2's correction for coordinated omission: a closed-loop tester that
// waits for a slow answer stops sending, and so never measures the
// requests real users would have sent meanwhile.
package loadgen

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// Modes of a run.
const (
	ModeClosed = "closed"
	ModeOpen   = "open"
)

// Kind is a kind of request in the mix.
type Kind int

// The kinds of request.
const (
	Decide Kind = iota
	Events
	Feedback
	numKinds
)

var kindNames = [numKinds]string{"decide", "events", "feedback"}

func (k Kind) String() string { return kindNames[k] }

// Mix weighs the kinds of request: each request is of kind k with
// probability Weights[k] / sum(Weights).
type Mix struct {
	Weights [numKinds]int
}

// ParseMix parses "decide=90,events=8,feedback=2"; kinds left out weigh 0.
func ParseMix(s string) (Mix, error) {
	var m Mix
	total := 0
	for part := range strings.SplitSeq(s, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return m, fmt.Errorf("mix %q: %q is not kind=weight", s, part)
		}
		n, err := strconv.Atoi(w)
		if err != nil || n < 0 {
			return m, fmt.Errorf("mix %q: weight of %s must be a whole number >= 0", s, name)
		}
		k := -1
		for i, kn := range kindNames {
			if kn == name {
				k = i
			}
		}
		if k < 0 {
			return m, fmt.Errorf("mix %q: unknown kind %q (want decide, events or feedback)", s, name)
		}
		m.Weights[k] = n
		total += n
	}
	if total == 0 {
		return m, fmt.Errorf("mix %q: all weights are 0", s)
	}
	return m, nil
}

func (m Mix) String() string {
	var parts []string
	for k, w := range m.Weights {
		if w > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", kindNames[k], w))
		}
	}
	return strings.Join(parts, ",")
}

// pick maps a uniform draw in [0, total) to a kind.
func (m Mix) pick(x int) Kind {
	for k, w := range m.Weights {
		if x < w {
			return Kind(k)
		}
		x -= w
	}
	return Decide
}

func (m Mix) total() int {
	t := 0
	for _, w := range m.Weights {
		t += w
	}
	return t
}

// Config is one run. The zero value of a field means its default.
type Config struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:8080. Required.
	URL string
	// AllowRemote permits a target that is not a loopback address.
	// Default: false (benchmarks stay on this machine).
	AllowRemote bool
	// Mode is ModeClosed (default) or ModeOpen.
	Mode string
	// Conns is the number of keep-alive connections, each driven by its
	// own goroutine. Default: 32.
	Conns int
	// Rate is the open-loop request rate per second (required in ModeOpen).
	Rate float64
	// Warmup runs the same load before measuring; default 0. Duration is
	// the measured time; default 10s.
	Warmup, Duration time.Duration
	// Timeout bounds each request. Default: 5s.
	Timeout time.Duration
	// Drain bounds how long an open-loop run keeps sending requests that
	// were due before the end; those still unsent then are counted as
	// unsent and their latency so far is recorded. Default: 2s.
	Drain time.Duration
	// Mix weighs decide, events and feedback. Default: decide only.
	Mix Mix
	// Customers is how many customers ids are drawn from; ZipfS their
	// popularity exponent; IDFormat formats an index into an id.
	// Defaults: 1,000,000, 1.1, "c-%07d" (bench/workload's ids).
	Customers int
	ZipfS     float64
	IDFormat  string
	// Placements are the placements decide asks for: each request names
	// PerRequest of them, consecutive in the list from a random start.
	// Defaults: the demo storefront's four placements, 2.
	Placements []string
	PerRequest int
	// Channel of decide requests. Default: "web".
	Channel string
	// EventTypes are drawn uniformly for events. Default: session, view,
	// add_to_cart, purchase.
	EventTypes []string
	// Batch is the number of events per events request: 1 (default)
	// sends one event object, more send {"events": [...]}.
	Batch int
	// APIKey is sent as X-API-Key when set.
	APIKey string
	// Seed makes the customer and kind draws reproducible. Default 1.
	Seed uint64
	// ServerMetrics is the URL of the server's Prometheus metrics, read
	// when measuring starts and ends (Result.Server). Default: none.
	ServerMetrics string
}

// EnsureDefaults fills in the zero fields with their defaults (Run does).
func (c *Config) EnsureDefaults() {
	if c.Mode == "" {
		c.Mode = ModeClosed
	}
	if c.Conns == 0 {
		c.Conns = 32
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = 2 * time.Second
	}
	if c.Mix.total() == 0 {
		c.Mix.Weights[Decide] = 1
	}
	if c.Customers == 0 {
		c.Customers = 1_000_000
	}
	if c.ZipfS == 0 {
		c.ZipfS = 1.1
	}
	if c.IDFormat == "" {
		c.IDFormat = "c-%07d"
	}
	if len(c.Placements) == 0 {
		c.Placements = []string{"home_hero", "product_page", "cart_sidebar", "checkout_banner"}
	}
	if c.PerRequest == 0 {
		c.PerRequest = 2
	}
	if c.Channel == "" {
		c.Channel = "web"
	}
	if len(c.EventTypes) == 0 {
		c.EventTypes = []string{"session", "view", "add_to_cart", "purchase"}
	}
	if c.Batch == 0 {
		c.Batch = 1
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
}

func (c *Config) validate() (host string, err error) {
	var errs []error
	u, err := url.Parse(c.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		errs = append(errs, fmt.Errorf("url %q: want http://host:port", c.URL))
	} else {
		host = u.Host
		if !c.AllowRemote && !isLoopback(u.Hostname()) {
			errs = append(errs, fmt.Errorf("url %q is not a loopback address (benchmarks stay on this machine)", c.URL))
		}
	}
	if c.Mode != ModeClosed && c.Mode != ModeOpen {
		errs = append(errs, fmt.Errorf("mode %q: want %s or %s", c.Mode, ModeClosed, ModeOpen))
	}
	if c.Mode == ModeOpen && c.Rate <= 0 {
		errs = append(errs, errors.New("open loop needs a rate > 0"))
	}
	if c.Conns < 1 || c.Conns > 10000 {
		errs = append(errs, fmt.Errorf("conns %d: want 1..10000", c.Conns))
	}
	if c.Duration <= 0 || c.Warmup < 0 {
		errs = append(errs, errors.New("duration must be > 0 and warmup >= 0"))
	}
	if c.PerRequest < 1 || c.PerRequest > len(c.Placements) {
		errs = append(errs, fmt.Errorf("per-request %d: want 1..%d (the placements given)", c.PerRequest, len(c.Placements)))
	}
	if c.Batch < 1 || c.Batch > 1000 {
		errs = append(errs, fmt.Errorf("batch %d: want 1..1000", c.Batch))
	}
	if c.ServerMetrics != "" {
		if u, err := url.Parse(c.ServerMetrics); err != nil || u.Scheme != "http" || u.Host == "" {
			errs = append(errs, fmt.Errorf("server metrics %q: want http://host:port/path", c.ServerMetrics))
		} else if !c.AllowRemote && !isLoopback(u.Hostname()) {
			errs = append(errs, fmt.Errorf("server metrics %q is not a loopback address", c.ServerMetrics))
		}
	}
	if c.Customers < 1 || c.ZipfS <= 1 {
		errs = append(errs, fmt.Errorf("customers %d, zipf %g: want >= 1 customers and an exponent > 1", c.Customers, c.ZipfS))
	}
	return host, errors.Join(errs...)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Histogram range: 1 µs to 100 s, 3 significant digits.
const (
	histMin  = 1
	histMax  = 100_000_000
	histSigs = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histSigs) }

// recorder collects the measurements of all connections. One mutex: at
// the rates a 2-core machine reaches it is never contended long, and it
// keeps a handful of histograms instead of a handful per connection.
type recorder struct {
	mu        sync.Mutex
	latency   *hdrhistogram.Histogram // from the due time (open) or the send (closed)
	service   *hdrhistogram.Histogram // from the actual send
	lag       *hdrhistogram.Histogram // actual send - due time (open)
	kinds     [numKinds]*hdrhistogram.Histogram
	ok        [numKinds]int64
	status    map[int]int64
	transport map[string]int64
	unsent    int64
	bytes     [numKinds]int64
}

func newRecorder() *recorder {
	r := &recorder{latency: newHist(), service: newHist(), lag: newHist(),
		status: map[int]int64{}, transport: map[string]int64{}}
	for k := range r.kinds {
		r.kinds[k] = newHist()
	}
	return r
}

func us(d time.Duration) int64 {
	v := d.Microseconds()
	if v < histMin {
		return histMin
	}
	if v > histMax {
		return histMax
	}
	return v
}

// observe records one answered or failed request. status is 0 for a
// transport error.
func (r *recorder) observe(k Kind, due, sent, done time.Time, status int, terr string, size int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if terr != "" {
		r.transport[terr]++
		return
	}
	if status < 200 || status > 299 {
		r.status[status]++
		return
	}
	r.status[status]++
	r.ok[k]++
	r.bytes[k] += int64(size)
	lat := us(done.Sub(due))
	_ = r.latency.RecordValue(lat)
	_ = r.kinds[k].RecordValue(lat)
	_ = r.service.RecordValue(us(done.Sub(sent)))
	_ = r.lag.RecordValue(us(sent.Sub(due)))
}

// missed records requests that were due but never sent: their latency is
// at least now - due.
func (r *recorder) missed(k Kind, lat time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unsent++
	_ = r.latency.RecordValue(us(lat))
	_ = r.kinds[k].RecordValue(us(lat))
}

// classify names a transport error for the error counts.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, syscall.EPIPE):
		return "connection_reset"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return "no_free_conns"
	}
	return "other"
}

// Run runs cfg until its warmup and duration are over (or ctx is done) and
// returns the measurements of the measured part.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.EnsureDefaults()
	host, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	hc := &fasthttp.HostClient{
		Addr:                     host,
		MaxConns:                 cfg.Conns,
		ReadTimeout:              cfg.Timeout,
		WriteTimeout:             cfg.Timeout,
		MaxIdleConnDuration:      time.Minute,
		MaxConnWaitTimeout:       cfg.Timeout,
		NoDefaultUserAgentHeader: true,
	}
	defer hc.CloseIdleConnections()

	rec := newRecorder()
	start := time.Now().Add(10 * time.Millisecond)
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	sched := Schedule{Start: start, Rate: cfg.Rate, Conns: cfg.Conns}
	var wg sync.WaitGroup
	// When measuring starts and ends: the generator's own CPU time, and
	// the server's metrics if asked for.
	var before, after *scrape
	var scrapeErr error
	var cpu [2]time.Duration
	measured := false
	wg.Add(1)
	go func() {
		defer wg.Done()
		if !sleepUntil(ctx, measureFrom) {
			return
		}
		cpu[0] = processCPU()
		if cfg.ServerMetrics != "" {
			before, scrapeErr = scrapeMetrics(cfg.ServerMetrics, cfg.Timeout)
		}
		if !sleepUntil(ctx, end) {
			return
		}
		cpu[1], measured = processCPU(), true
		if cfg.ServerMetrics != "" && scrapeErr == nil {
			after, scrapeErr = scrapeMetrics(cfg.ServerMetrics, cfg.Timeout)
		}
	}()
	var pace *pacer
	if cfg.Mode == ModeOpen {
		pace = newPacer(sched)
		wg.Add(1)
		go func() {
			defer wg.Done()
			pace.run(ctx, end)
		}()
	}
	for w := range cfg.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newConn(&cfg, hc, rec, w)
			if cfg.Mode == ModeOpen {
				c.open(ctx, pace, measureFrom, end, cfg.Drain)
			} else {
				c.closed(ctx, start, measureFrom, end)
			}
		}()
	}
	wg.Wait()
	elapsed := cfg.Duration
	if now := time.Now(); now.Before(end) { // cancelled
		elapsed = max(now.Sub(measureFrom), time.Millisecond)
	}
	res := rec.result(&cfg, measureFrom, elapsed)
	if measured {
		res.Client = clientFigures(cpu[1]-cpu[0], res.Requests)
	}
	if scrapeErr != nil {
		res.ServerError = scrapeErr.Error()
	} else if before != nil && after != nil {
		res.Server = serverFigures(before, after, res.Requests)
	}
	return res, ctx.Err()
}

// conn is one connection's sender.
type conn struct {
	cfg   *Config
	hc    *fasthttp.HostClient
	rec   *recorder
	rng   *rand.Rand
	zipf  *Zipf
	base  string
	index int // of the connection: its share of the open-loop schedule

	req  *fasthttp.Request
	resp *fasthttp.Response
	body []byte

	// The latest decision this connection received, for feedback.
	lastDecision []byte
	lastAction   []byte
	lastCustomer int
}

func newConn(cfg *Config, hc *fasthttp.HostClient, rec *recorder, w int) *conn {
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)+1))
	z, _ := NewZipf(rng, cfg.ZipfS, cfg.Customers) // validated
	return &conn{cfg: cfg, hc: hc, rec: rec, rng: rng, zipf: z,
		base: strings.TrimSuffix(cfg.URL, "/"), index: w,
		req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse()}
}

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *conn) closed(ctx context.Context, start, measureFrom, end time.Time) {
	if !sleepUntil(ctx, start) {
		return
	}
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		if c.send(now, !now.Before(measureFrom)) != "" {
			// The server is down or refusing: do not spin.
			sleepUntil(ctx, time.Now().Add(10*time.Millisecond))
		}
	}
}

func (c *conn) open(ctx context.Context, p *pacer, measureFrom, end time.Time, drain time.Duration) {
	s := p.s
	stop := end.Add(drain)
	for k := 0; ; k++ {
		due := s.At(c.index, k)
		if !due.Before(end) {
			return
		}
		if !p.await(ctx, c.index, k) {
			return
		}
		if now := time.Now(); !now.Before(stop) {
			// Overdue requests still owed at the drain deadline: count
			// them, with the latency they have at least.
			for j := range s.Due(c.index, k, end) {
				d := s.At(c.index, k+j)
				if !d.Before(measureFrom) {
					c.rec.missed(c.pickKind(), now.Sub(d))
				}
			}
			return
		}
		c.send(due, !due.Before(measureFrom))
	}
}

func (c *conn) pickKind() Kind { return c.cfg.Mix.pick(c.rng.IntN(c.cfg.Mix.total())) }

// send sends one request due at due and records it when measured. It
// returns the transport error class, if any.
func (c *conn) send(due time.Time, measured bool) string {
	k := c.pickKind()
	if k == Feedback && c.lastDecision == nil {
		k = Decide // nothing to give feedback on yet
	}
	req := c.req
	req.Reset()
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	if c.cfg.APIKey != "" {
		req.Header.Set("X-API-Key", c.cfg.APIKey)
	}
	var customer int
	switch k {
	case Decide:
		req.SetRequestURI(c.base + "/v1/decide")
		customer = c.zipf.Next()
		c.body = c.appendDecide(c.body[:0], customer)
	case Events:
		req.SetRequestURI(c.base + "/v1/events")
		c.body = c.appendEvents(c.body[:0])
	case Feedback:
		req.SetRequestURI(c.base + "/v1/feedback")
		c.body = c.appendFeedback(c.body[:0])
	}
	req.SetBody(c.body)
	c.resp.Reset()
	sent := time.Now()
	err := c.hc.Do(req, c.resp)
	done := time.Now()
	terr := ""
	if err != nil {
		terr = classify(err)
	}
	status := c.resp.StatusCode()
	if err == nil && k == Decide && status == fasthttp.StatusOK {
		c.remember(c.resp.Body(), customer)
	}
	if measured {
		c.rec.observe(k, due, sent, done, status, terr, len(c.resp.Body()))
	}
	return terr
}

func (c *conn) appendDecide(b []byte, customer int) []byte {
	return c.cfg.AppendDecide(b, customer, c.rng.IntN(len(c.cfg.Placements)))
}

// AppendDecide appends the body of the decide request the load generator
// sends for customer index customer: PerRequest of the Placements from
// index first on (wrapping), Channel, and a fixed context. The defaults
// must be filled in.
func (c *Config) AppendDecide(b []byte, customer, first int) []byte {
	b = append(b, `{"customer_id":"`...)
	b = fmt.Appendf(b, c.IDFormat, customer)
	b = append(b, `","placements":[`...)
	p := c.Placements
	for i := range c.PerRequest {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, p[(first+i)%len(p)])
	}
	b = append(b, `],"channel":`...)
	b = strconv.AppendQuote(b, c.Channel)
	b = append(b, `,"context":{"page":"/","device":"mobile"}}`...)
	return b
}

func (c *conn) appendEvent(b []byte) []byte {
	b = append(b, `{"customer_id":"`...)
	b = fmt.Appendf(b, c.cfg.IDFormat, c.zipf.Next())
	b = append(b, `","type":`...)
	b = strconv.AppendQuote(b, c.cfg.EventTypes[c.rng.IntN(len(c.cfg.EventTypes))])
	b = append(b, `,"value":`...)
	b = strconv.AppendFloat(b, float64(c.rng.IntN(30000))/100, 'f', -1, 64)
	return append(b, '}')
}

func (c *conn) appendEvents(b []byte) []byte {
	if c.cfg.Batch == 1 {
		return c.appendEvent(b)
	}
	b = append(b, `{"events":[`...)
	for i := range c.cfg.Batch {
		if i > 0 {
			b = append(b, ',')
		}
		b = c.appendEvent(b)
	}
	return append(b, "]}"...)
}

var outcomes = []string{"click", "click", "dismiss", "accept", "convert"}

func (c *conn) appendFeedback(b []byte) []byte {
	b = append(b, `{"decision_id":"`...)
	b = append(b, c.lastDecision...)
	b = append(b, `","customer_id":"`...)
	b = fmt.Appendf(b, c.cfg.IDFormat, c.lastCustomer)
	b = append(b, `","action":"`...)
	b = append(b, c.lastAction...)
	b = append(b, `","outcome":"`...)
	b = append(b, outcomes[c.rng.IntN(len(outcomes))]...)
	return append(b, `"}`...)
}

// remember keeps the decision id and first action of a decide answer for
// the next feedback. Answers without an action are skipped.
func (c *conn) remember(body []byte, customer int) {
	id := field(body, `"decision_id":"`)
	action := field(body, `"action":"`)
	if id == nil || action == nil {
		return
	}
	c.lastDecision = append(c.lastDecision[:0], id...)
	c.lastAction = append(c.lastAction[:0], action...)
	c.lastCustomer = customer
}

// field returns the string after key up to the next quote (ids have no
// escapes), or nil.
func field(body []byte, key string) []byte {
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return nil
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 {
		return nil
	}
	return rest[:j]
}

// Percentiles of a histogram, in microseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_us"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p99_9_us"`
	Max   float64 `json:"max_us"`
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	return Percentiles{Count: h.TotalCount(), Mean: h.Mean(),
		P50: float64(h.ValueAtQuantile(50)), P90: float64(h.ValueAtQuantile(90)),
		P99: float64(h.ValueAtQuantile(99)), P999: float64(h.ValueAtQuantile(99.9)),
		Max: float64(h.Max())}
}

// CurvePoint is one point of a latency-by-percentile curve.
type CurvePoint struct {
	Percentile float64 `json:"percentile"`
	Micros     float64 `json:"us"`
}

// CurvePercentiles are the points kept for plots.
var CurvePercentiles = []float64{0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100}

// KindResult is the measurement of one kind of request.
type KindResult struct {
	Requests      int64       `json:"requests"`
	ResponseBytes float64     `json:"mean_response_bytes"`
	Latency       Percentiles `json:"latency"`
}

// RunConfig is the configuration as recorded in a Result.
type RunConfig struct {
	URL        string   `json:"url"`
	Mode       string   `json:"mode"`
	Conns      int      `json:"conns"`
	Rate       float64  `json:"rate,omitempty"`
	Mix        string   `json:"mix"`
	Batch      int      `json:"batch"`
	WarmupS    float64  `json:"warmup_s"`
	DurationS  float64  `json:"duration_s"`
	Customers  int      `json:"customers"`
	ZipfS      float64  `json:"zipf_s"`
	Placements []string `json:"placements"`
	PerRequest int      `json:"per_request"`
	Channel    string   `json:"channel"`
}

// Result is the outcome of a run, as written to the JSON result file.
type Result struct {
	// Name, Group and Role label the run in reports: Role is "ceiling" or
	// "nudge"; runs of one Group are compared with each other.
	Name    string    `json:"name"`
	Group   string    `json:"group,omitempty"`
	Role    string    `json:"role,omitempty"`
	Command string    `json:"command,omitempty"`
	Config  RunConfig `json:"config"`
	Start   time.Time `json:"start"`

	// Requests answered 2xx during the measured time, and per second.
	Requests   int64   `json:"requests"`
	Throughput float64 `json:"throughput_rps"`
	// EventsPerSec counts the events acknowledged (batches count each).
	EventsPerSec float64 `json:"events_per_s,omitempty"`

	// Latency of 2xx answers: from the due time in open loop (corrected
	// for coordinated omission), from the send in closed loop.
	Latency Percentiles `json:"latency"`
	// Service is open loop's latency from the actual send (uncorrected,
	// for comparison); SendLag how late requests left (the generator or
	// the server falling behind the schedule).
	Service *Percentiles          `json:"service,omitempty"`
	SendLag *Percentiles          `json:"send_lag,omitempty"`
	Kinds   map[string]KindResult `json:"kinds"`
	Curve   []CurvePoint          `json:"curve"`

	// Errors: non-2xx answers by status, transport errors by class, and
	// (open loop) requests due but never sent before the drain deadline.
	Errors    int64            `json:"errors"`
	Status    map[string]int64 `json:"status"`
	Transport map[string]int64 `json:"transport,omitempty"`
	Unsent    int64            `json:"unsent,omitempty"`

	// Client is what the load generator itself spent on the measured
	// time (nil when the run was cancelled before its end).
	Client *ClientFigures `json:"client,omitempty"`
	// Server is what the server's metrics say about the measured time
	// (Config.ServerMetrics), ServerError why they could not be read.
	Server      *ServerFigures `json:"server,omitempty"`
	ServerError string         `json:"server_error,omitempty"`

	// Histogram is the latency histogram (µs) in the HdrHistogram V2
	// compressed base64 format, for tools that want more than the curve.
	Histogram string `json:"histogram,omitempty"`
}

func (r *recorder) result(cfg *Config, start time.Time, elapsed time.Duration) *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &Result{
		Config: RunConfig{URL: cfg.URL, Mode: cfg.Mode, Conns: cfg.Conns, Rate: cfg.Rate, Mix: cfg.Mix.String(),
			Batch: cfg.Batch, WarmupS: cfg.Warmup.Seconds(), DurationS: cfg.Duration.Seconds(),
			Customers: cfg.Customers, ZipfS: cfg.ZipfS, Placements: cfg.Placements, PerRequest: cfg.PerRequest,
			Channel: cfg.Channel},
		Start:     start,
		Latency:   percentiles(r.latency),
		Kinds:     map[string]KindResult{},
		Status:    map[string]int64{},
		Transport: r.transport,
		Unsent:    r.unsent,
	}
	for k := range numKinds {
		res.Requests += r.ok[k]
		if r.ok[k] > 0 || r.kinds[k].TotalCount() > 0 {
			kr := KindResult{Requests: r.ok[k], Latency: percentiles(r.kinds[k])}
			if r.ok[k] > 0 {
				kr.ResponseBytes = float64(r.bytes[k]) / float64(r.ok[k])
			}
			res.Kinds[kindNames[k]] = kr
		}
	}
	secs := elapsed.Seconds()
	res.Throughput = float64(res.Requests) / secs
	if r.ok[Events] > 0 {
		res.EventsPerSec = float64(r.ok[Events]*int64(cfg.Batch)) / secs
	}
	if cfg.Mode == ModeOpen {
		s, l := percentiles(r.service), percentiles(r.lag)
		res.Service, res.SendLag = &s, &l
	}
	for code, n := range r.status {
		res.Status[strconv.Itoa(code)] = n
		if code < 200 || code > 299 {
			res.Errors += n
		}
	}
	for _, n := range r.transport {
		res.Errors += n
	}
	for _, p := range CurvePercentiles {
		v := r.latency.ValueAtQuantile(p)
		if p == 100 {
			v = r.latency.Max()
		}
		res.Curve = append(res.Curve, CurvePoint{Percentile: p, Micros: float64(v)})
	}
	if enc, err := r.latency.Encode(hdrhistogram.V2CompressedEncodingCookieBase); err == nil {
		res.Histogram = base64.StdEncoding.EncodeToString(enc)
	}
	return res
}

// Summary is a one-line human summary of a result.
func (r *Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-24s %-6s %9.0f req/s", r.Name, r.Config.Mode, r.Throughput)
	if r.EventsPerSec > 0 {
		fmt.Fprintf(&b, " %9.0f events/s", r.EventsPerSec)
	}
	l := r.Latency
	fmt.Fprintf(&b, "  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  errors %d", FormatMicros(l.P50), FormatMicros(l.P90),
		FormatMicros(l.P99), FormatMicros(l.P999), FormatMicros(l.Max), r.Errors)
	if r.Unsent > 0 {
		fmt.Fprintf(&b, " unsent %d", r.Unsent)
	}
	if len(r.ErrorList()) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(r.ErrorList(), ", "))
	}
	if r.Client != nil {
		fmt.Fprintf(&b, "\n%-24s load generator: CPU %s/request", "", FormatMicros(r.Client.CPUPerRequest))
	}
	if r.Server != nil {
		fmt.Fprintf(&b, "\n%-24s %s", "", r.Server)
	} else if r.ServerError != "" {
		fmt.Fprintf(&b, "\n%-24s server metrics: %s", "", r.ServerError)
	}
	return b.String()
}

// ErrorList lists the error counts as "503: 12", "timeout: 3", sorted.
func (r *Result) ErrorList() []string {
	var out []string
	for code, n := range r.Status {
		if c, _ := strconv.Atoi(code); c < 200 || c > 299 {
			out = append(out, fmt.Sprintf("%s: %d", code, n))
		}
	}
	for class, n := range r.Transport {
		out = append(out, fmt.Sprintf("%s: %d", class, n))
	}
	sort.Strings(out)
	return out
}

// FormatMicros formats a latency in µs for people: 850µs, 1.25ms, 2.1s.
func FormatMicros(v float64) string {
	switch {
	case v < 1000:
		return fmt.Sprintf("%.0fµs", v)
	case v < 1_000_000:
		return fmt.Sprintf("%.2fms", v/1000)
	}
	return fmt.Sprintf("%.2fs", v/1_000_000)
}
