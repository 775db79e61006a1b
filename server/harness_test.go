package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/server"
	"github.com/nudge-engine/nudge/store"
	"github.com/nudge-engine/nudge/store/memstore"
)

// testRules is the ruleset of the integration tests.
const testRules = `
segments:
  buyer: count("purchase", "all") > 0
actions:
  - id: winback-20
    kind: offer
    placements: [home_hero]
    channels: [web, app]
    when: segment("buyer")
    priority: 10
    score: 0.83
    content:
      title: "We miss you, {{ customer.first_name ?? 'friend' }}: 20% off"
      code: WINBACK20
    experiment:
      id: winback-copy
      variants:
        a: {weight: 50}
        b: {weight: 50, content: {title: "Come back: 20% off"}}
  - id: brand-story
    kind: message
    content: {title: Our story}
  - id: cart-tip
    kind: message
    placements: [cart_sidebar]
    channels: [web]
    score: 0.5
    caps:
      - {max: 2, window: 7d}
    content: {text: "Free shipping over 50 <EUR>"}
  - id: cart-held
    placements: [cart_sidebar]
    score: 0.4
    experiment:
      variants:
        control: {weight: 1, holdout: true}
  - id: boom
    placements: [cart_sidebar]
    when: customer.ltv > 5
    score: 0.1
placements:
  home_hero: {limit: 1, fallback: brand-story}
  cart_sidebar: {limit: 2}
`

const badRules = `
actions:
  - id: broken
    placements: [home_hero]
    when: count("purchase", "all") >
`

func mustCompile(t testing.TB, src string) *rules.Ruleset {
	t.Helper()
	rs, err := rules.Compile([]rules.File{{Name: "main.yaml", Data: []byte(src)}})
	if err != nil {
		t.Fatalf("cannot compile test rules: %v", err)
	}
	return rs
}

// fakeRules is a RulesSource over inline rule files.
type fakeRules struct {
	mu       sync.Mutex
	rs       *rules.Ruleset
	loadedAt time.Time
	next     string // the rules Reload compiles
	lastErr  *server.RulesError
	reloads  func(ok bool)
}

func (f *fakeRules) Current() *rules.Ruleset {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rs
}

func (f *fakeRules) Status() server.RulesStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := server.RulesStatus{LoadedAt: f.loadedAt, LastError: f.lastErr}
	if f.rs != nil {
		st.Version, st.Files = f.rs.Version, f.rs.Files
		st.Actions, st.Segments = len(f.rs.Actions), len(f.rs.Segments)
	}
	return st
}

func (f *fakeRules) Reload() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rs, err := rules.Compile([]rules.File{{Name: "main.yaml", Data: []byte(f.next)}})
	if f.reloads != nil {
		f.reloads(err == nil)
	}
	if err != nil {
		f.lastErr = &server.RulesError{At: time.Now(), Details: server.ErrorDetails(err)}
		return "", fmt.Errorf("cannot load rules: %w", err)
	}
	f.rs, f.loadedAt, f.lastErr = rs, time.Now(), nil
	return rs.Version, nil
}

// harness is a real server on a loopback port.
type harness struct {
	t   *testing.T
	srv *server.Server
	st  store.Store
	mem *memstore.Store
	src *fakeRules
	reg *prometheus.Registry
	url string
	now time.Time
	c   *http.Client
}

// newHarness starts a server with opts over st (nil: a fresh memstore)
// and the test rules. The clock is fixed near the real time, so memstore's
// retention keeps the contacts.
func newHarness(t *testing.T, opts server.Options, st store.Store) *harness {
	t.Helper()
	h := &harness{t: t, reg: prometheus.NewRegistry(), now: time.Now().UTC().Truncate(time.Second)}
	h.mem = memstore.New()
	if st == nil {
		st = h.mem
	}
	h.st = st
	h.src = &fakeRules{rs: mustCompile(t, testRules), loadedAt: h.now, next: testRules}
	if opts.Now == nil {
		opts.Now = func() time.Time { return h.now }
	}
	srv, err := server.New(opts, st, h.src, engine.New(engine.Options{}), h.reg)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	h.src.reloads = srv.ObserveReload
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.url = "http://" + ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	h.c = &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return h
}

// response is an answer of the server.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

// do sends a request; headers alternate names and values.
func (h *harness) do(method, path, body string, headers ...string) *response {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := h.c.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}
}

// ok checks the status and returns the JSON body.
func (h *harness) ok(r *response, status int) map[string]any {
	h.t.Helper()
	if r.status != status {
		h.t.Fatalf("status %d; want %d\n%s", r.status, status, r.body)
	}
	if status == http.StatusNoContent {
		if len(r.body) != 0 {
			h.t.Fatalf("204 with a body: %s", r.body)
		}
		return nil
	}
	return r.json(h.t)
}

// checkError checks the status and the error shape; field "" means no
// field.
func checkError(t *testing.T, r *response, status int, code, field string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d; want %d\n%s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q; want application/json", ct)
	}
	var body struct {
		Error map[string]any `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Error == nil {
		t.Fatalf("not an error body (%v): %s", err, r.body)
	}
	if got := body.Error["code"]; got != code {
		t.Errorf("code %v; want %s (%s)", got, code, r.body)
	}
	if msg, _ := body.Error["message"].(string); msg == "" {
		t.Errorf("no message: %s", r.body)
	}
	got, has := body.Error["field"]
	if field == "" && has {
		t.Errorf("field %v; want none", got)
	}
	if field != "" && got != field {
		t.Errorf("field %v; want %s", got, field)
	}
	for k := range body.Error {
		switch k {
		case "code", "message", "field", "details":
		default:
			t.Errorf("unexpected key %q in error", k)
		}
	}
	if status == http.StatusServiceUnavailable && r.header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
}

// metric returns the value of one sample of the registry, 0 if absent.
func (h *harness) metric(name string, labels ...string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

// hookStore wraps a memstore; hooks, when set, run before the method.
type hookStore struct {
	*memstore.Store
	onCustomer func(id string) error
	onRecord   func() error
}

func (s *hookStore) Customer(id string) (*store.Customer, error) {
	if s.onCustomer != nil {
		if err := s.onCustomer(id); err != nil {
			return nil, err
		}
	}
	return s.Store.Customer(id)
}

func (s *hookStore) Record(id string, c []store.Contact, d []store.StatDelta) error {
	if s.onRecord != nil {
		if err := s.onRecord(); err != nil {
			return err
		}
	}
	return s.Store.Record(id, c, d)
}

var errDisk = errors.New("disk on fire")

// checkStore wraps a memstore and watches what reaches it: it counts the
// writes, and records every invalid id or event type a write carries (the
// server must validate everything before the store sees it). Between two
// requests it can be emptied (reset), so a long fuzz run does not grow.
type checkStore struct {
	*memstore.Store
	writes atomic.Int64
	events atomic.Int64 // events stored
	mu     sync.Mutex
	bad    []string
}

func newCheckStore() *checkStore { return &checkStore{Store: memstore.New()} }

// reset empties the store and its counts; not safe while requests run.
func (s *checkStore) reset() {
	s.Store = memstore.New()
	s.writes.Store(0)
	s.events.Store(0)
	s.bad = nil
}

func (s *checkStore) badWrites() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.bad)
}

func (s *checkStore) write(ids ...string) {
	s.writes.Add(1)
	for _, id := range ids {
		if err := store.ValidateID(id); err != nil {
			s.mu.Lock()
			s.bad = append(s.bad, fmt.Sprintf("id %q: %v", id, err))
			s.mu.Unlock()
		}
	}
}

func (s *checkStore) PutAttributes(id string, attrs map[string]any) error {
	s.write(id)
	return s.Store.PutAttributes(id, attrs)
}

func (s *checkStore) PatchAttributes(id string, patch map[string]any) (map[string]any, error) {
	s.write(id)
	return s.Store.PatchAttributes(id, patch)
}

func (s *checkStore) Delete(id string) (bool, error) {
	s.write(id)
	return s.Store.Delete(id)
}

func (s *checkStore) AddEvents(events []store.Event) error {
	s.events.Add(int64(len(events)))
	ids := make([]string, 0, len(events))
	for _, e := range events {
		ids = append(ids, e.CustomerID)
		if err := store.ValidateEventType(e.Type); err != nil {
			s.mu.Lock()
			s.bad = append(s.bad, fmt.Sprintf("event type %q: %v", e.Type, err))
			s.mu.Unlock()
		}
	}
	s.write(ids...)
	return s.Store.AddEvents(events)
}

func (s *checkStore) Record(id string, contacts []store.Contact, stats []store.StatDelta) error {
	ids := []string{id}
	for _, c := range contacts {
		ids = append(ids, c.Action.String())
	}
	s.write(ids...)
	return s.Store.Record(id, contacts, stats)
}
