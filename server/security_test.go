package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/server"
	"github.com/nudge-engine/nudge/store/memstore"
)

// nonLoopbackIP returns an address of this machine that is not loopback,
// or nil.
func nonLoopbackIP(t *testing.T) net.IP {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var v6 net.IP
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() || !ipn.IP.IsGlobalUnicast() {
			continue
		}
		if ipn.IP.To4() != nil {
			return ipn.IP
		}
		if v6 == nil {
			v6 = ipn.IP
		}
	}
	return v6
}

// serveOn starts a server with opts on a listener of ip.
func serveOn(t *testing.T, ip net.IP, opts server.Options) string {
	t.Helper()
	srv, err := server.New(opts, memstore.New(), &fakeRules{rs: mustCompile(t, testRules)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	go srv.Serve(ln) //nolint:errcheck // returns nil on Shutdown
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}

func status(t *testing.T, method, url, body string, headers ...string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAdminFromNonLoopbackAddress connects through a non-loopback address
// of this machine, with the real loopback check (no injected one): the
// admin endpoints refuse it without a token and accept it with one;
// client endpoints serve it either way.
func TestAdminFromNonLoopbackAddress(t *testing.T) {
	ip := nonLoopbackIP(t)
	if ip == nil {
		t.Skip("this machine has no non-loopback address to connect through; TestAdminLoopbackOnlyWithoutToken covers the check with an injected address")
	}
	t.Logf("connecting through %s", ip)
	open := serveOn(t, ip, server.Options{})
	decide := `{"customer_id":"c-1","placement":"home_hero"}`
	for _, a := range []struct{ method, path, body string }{
		{"GET", "/v1/customers/c-1", ""},
		{"PUT", "/v1/customers/c-1", "{}"},
		{"PATCH", "/v1/customers/c-1", "{}"},
		{"DELETE", "/v1/customers/c-1", ""},
		{"POST", "/v1/simulate", decide},
		{"GET", "/v1/stats", ""},
		{"POST", "/v1/rules/reload", ""},
	} {
		if got := status(t, a.method, open+a.path, a.body); got != 403 {
			t.Errorf("%s %s from %s without a token: %d; want 403", a.method, a.path, ip, got)
		}
	}
	if got := status(t, "POST", open+"/v1/decide", decide); got != 200 {
		t.Errorf("decide from %s: %d; want 200", ip, got)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/v1/rules"} {
		if got := status(t, "GET", open+p, ""); got != 200 {
			t.Errorf("GET %s from %s: %d; want 200", p, ip, got)
		}
	}
	// The same server code over loopback lets the admin in.
	local := serveOn(t, net.IPv4(127, 0, 0, 1), server.Options{})
	if got := status(t, "GET", local+"/v1/stats", ""); got != 200 {
		t.Errorf("GET /v1/stats over loopback: %d; want 200", got)
	}
	// With a token, the address does not matter; the token does.
	withToken := serveOn(t, ip, server.Options{AdminToken: "t0ken-t0ken"})
	if got := status(t, "GET", withToken+"/v1/stats", "", "Authorization", "Bearer t0ken-t0ken"); got != 200 {
		t.Errorf("GET /v1/stats from %s with the token: %d; want 200", ip, got)
	}
	if got := status(t, "GET", withToken+"/v1/stats", ""); got != 401 {
		t.Errorf("GET /v1/stats from %s without the token: %d; want 401", ip, got)
	}
}

// TestWrongSecretsRefused: credentials are compared in constant time
// (equalSecret hashes both sides with SHA-256 and compares the digests
// with crypto/subtle, so neither the position of the first wrong byte
// nor the length leaks). Whatever their length, wrong ones are refused.
func TestWrongSecretsRefused(t *testing.T) {
	const key, token = "k3y-0123456789abcdef", "t0ken-0123456789abcdef"
	h := newHarness(t, server.Options{APIKey: key, AdminToken: token}, nil)
	decide := `{"customer_id":"c-1","placement":"home_hero"}`
	wrong := func(s string) []string {
		last := s[len(s)-1] ^ 1
		return []string{
			"",
			s[:len(s)-1] + string(last),     // same length, last byte wrong
			string(s[0]^1) + s[1:],          // same length, first byte wrong
			strings.ToUpper(s),              // same length, case
			strings.Repeat("x", len(s)),     // same length, all wrong
			s[:len(s)-1],                    // a prefix
			s + "0",                         // longer
			s + s,                           // twice
			s[:1],                           // one byte
			strings.Repeat("x", 10<<10),     // very long
			strings.ReplaceAll(s, "-", "_"), // same length, near miss
		}
	}
	for _, w := range wrong(key) {
		checkError(t, h.do("POST", "/v1/decide", decide, "X-API-Key", w), 401, "unauthorized", "")
	}
	for _, w := range wrong(token) {
		checkError(t, h.do("GET", "/v1/stats", "", "Authorization", "Bearer "+w), 401, "unauthorized", "")
	}
	for _, auth := range []string{token, "Bearer", "Bearer ", "Basic " + token, "Bearer  " + token, "Token " + token, "Bearer " + token + " x", "Bearer " + key} {
		checkError(t, h.do("GET", "/v1/stats", "", "Authorization", auth), 401, "unauthorized", "")
	}
	// The admin token is no API key, nor the other way round.
	checkError(t, h.do("POST", "/v1/decide", decide, "X-API-Key", token), 401, "unauthorized", "")
	h.ok(h.do("POST", "/v1/decide", decide, "X-API-Key", key), 200)
	h.ok(h.do("GET", "/v1/stats", "", "Authorization", "Bearer "+token), 200)
	h.ok(h.do("GET", "/v1/stats", "", "Authorization", "bEaReR "+token), 200) // the scheme is case-insensitive
}

// secretValues are attribute, context and property values no log line
// at info level may hold.
var secretValues = []string{"SECRET-NAME-7f3a", "secret-mail-7f3a@example.com", "SECRET-BORN-7f3a", "SECRET-CTX-7f3a", "SECRET-PROP-7f3a", "SECRET-SIM-7f3a"}

// leakyRules are the test rules plus one that fails at runtime with an
// error quoting an attribute value (int() of a string), as a real rule
// can.
var leakyRules = strings.Replace(testRules, "\nplacements:\n", `
  - id: born
    placements: [home_hero]
    priority: 20
    when: int(customer.born) > 1990
placements:
`, 1)

// TestLogsNeverHoldAttributeValues runs requests carrying distinctive
// attribute, context and property values (good ones, bad ones, ones whose
// rules fail at runtime, failing stores) through a server logging at info
// level, and looks for the values in the logs. At debug level the rule
// runtime errors, which quote the value, are logged: that run proves the
// capture would see a leak.
func TestLogsNeverHoldAttributeValues(t *testing.T) {
	run := func(level zerolog.Level) string {
		var mu sync.Mutex
		var buf bytes.Buffer
		log := zerolog.New(lockedWriter{&mu, &buf}).Level(level)
		st := &hookStore{Store: memstore.New()}
		eng := engine.New(engine.Options{OnRuleError: func(rule string, err error) {
			log.Debug().Str("rule", rule).Err(err).Msg("rule runtime error") // as cmd/nudge does
		}})
		srv, err := server.New(server.Options{Logger: log}, st, &fakeRules{rs: mustCompile(t, leakyRules)}, eng, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		h := &harness{t: t, srv: srv, st: st, c: &http.Client{Timeout: 10 * time.Second}, reg: prometheus.NewRegistry()}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		h.url = "http://" + ln.Addr().String()
		go srv.Serve(ln) //nolint:errcheck // returns nil on Shutdown
		defer srv.Shutdown(context.Background())

		attrs := fmt.Sprintf(`{"first_name":%q,"email":%q,"born":%q,"ltv":"%s"}`, secretValues[0], secretValues[1], secretValues[2], secretValues[0])
		h.ok(h.do("PUT", "/v1/customers/c-1", attrs), 200)
		h.ok(h.do("PATCH", "/v1/customers/c-1", `{"nick":"`+secretValues[0]+`"}`), 200)
		h.ok(h.do("POST", "/v1/events", `{"customer_id":"c-1","type":"purchase","properties":{"note":"`+secretValues[4]+`"}}`), 202)
		h.ok(h.do("POST", "/v1/decide", `{"customer_id":"c-1","placements":["home_hero","cart_sidebar"],"context":{"page":"`+secretValues[3]+`"}}`), 200)
		h.ok(h.do("GET", "/v1/decide?customer_id=c-1&placement=home_hero&channel=web", ""), 200)
		h.ok(h.do("POST", "/v1/simulate", `{"customer_id":"c-2","placement":"home_hero","customer":{"attributes":{"born":"`+secretValues[5]+`"}}}`), 200)
		h.ok(h.do("GET", "/v1/customers/c-1", ""), 200)
		// Bad requests whose bodies hold the values.
		h.do("PUT", "/v1/customers/c-1", `{"first_name":"`+secretValues[0]+`"`)
		h.do("POST", "/v1/events", `{"customer_id":"c-1","type":"purchase","value":"`+secretValues[4]+`"}`)
		h.do("POST", "/v1/decide", `{"customer_id":"c-1","placement":"home_hero","context":"`+secretValues[3]+`"}`)
		h.do("POST", "/v1/decide", `{"customer_id":"`+secretValues[0]+`/x","placement":"home_hero"}`)
		// Store failures, logged at error level.
		st.onCustomer = func(string) error { return errDisk }
		h.do("POST", "/v1/decide", `{"customer_id":"c-1","placement":"home_hero","context":{"page":"`+secretValues[3]+`"}}`)
		st.onCustomer = nil
		st.onRecord = func() error { return errDisk }
		h.do("POST", "/v1/decide", `{"customer_id":"c-1","placement":"home_hero","context":{"page":"`+secretValues[3]+`"}}`)
		mu.Lock()
		defer mu.Unlock()
		return buf.String()
	}
	info := run(zerolog.InfoLevel)
	if !strings.Contains(info, "store failed") || !strings.Contains(info, "cannot record served contacts") {
		t.Errorf("the info log lacks the store failures; the capture does not work:\n%s", info)
	}
	for _, v := range secretValues {
		if strings.Contains(info, v) {
			t.Errorf("the info-level log holds the attribute value %q:\n%s", v, info)
		}
	}
	debug := run(zerolog.DebugLevel)
	if !strings.Contains(debug, secretValues[2]) || !strings.Contains(debug, secretValues[5]) {
		t.Errorf("the debug log does not quote the failing rule's value: the test cannot see a leak:\n%s", debug)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestDecideTimeoutDegrades: a decision over its budget answers the
// placements' fallbacks, marked "degraded", counted, and recorded like
// any served fallback.
func TestDecideTimeoutDegrades(t *testing.T) {
	h := newHarness(t, server.Options{DecideTimeout: time.Nanosecond}, nil)
	h.ok(h.do("POST", "/v1/events", `{"customer_id":"c-1","type":"purchase"}`), 202)
	m := h.ok(h.do("POST", "/v1/decide", `{"customer_id":"c-1","placements":["home_hero","cart_sidebar"],"channel":"web"}`), 200)
	if m["degraded"] != true {
		t.Errorf("degraded %v; want true: %v", m["degraded"], m)
	}
	// The buyer would get winback-20: over budget, the fallback.
	if got := ids(items(t, m, "home_hero")); fmt.Sprint(got) != "[brand-story]" {
		t.Errorf("home_hero %v; want [brand-story]", got)
	}
	if it := items(t, m, "home_hero"); len(it) == 1 && it[0]["fallback"] != true {
		t.Errorf("the degraded item is not marked as a fallback: %v", it[0])
	}
	if got := ids(items(t, m, "cart_sidebar")); len(got) != 0 {
		t.Errorf("cart_sidebar %v; want [] (no fallback)", got)
	}
	if n := h.metric("nudge_decide_degraded_total"); n != 1 {
		t.Errorf("nudge_decide_degraded_total %v; want 1", n)
	}
	c, _ := h.st.Customer("c-1")
	if len(c.Contacts) != 1 || c.Contacts[0].Action.String() != "brand-story" {
		t.Errorf("contacts %+v; want the served fallback", c.Contacts)
	}
	r := h.do("GET", "/metrics", "")
	if !strings.Contains(string(r.body), "nudge_decide_degraded_total 1") {
		t.Errorf("/metrics lacks nudge_decide_degraded_total 1")
	}
	// Simulate explains in full: it has no budget.
	if m := h.ok(h.do("POST", "/v1/simulate", `{"customer_id":"c-1","placement":"home_hero","channel":"web"}`), 200); m["degraded"] != nil || len(m["explain"].([]any)) == 0 {
		t.Errorf("simulate degraded: %v", m)
	}
}

// TestDecideTimeoutCoversEvaluationOnly: a customer read slower than the
// budget does not degrade the decision (the read has paid already), and
// without a deadline problem no "degraded" key appears.
func TestDecideTimeoutCoversEvaluationOnly(t *testing.T) {
	st := &slowStore{Store: memstore.New(), service: 40 * time.Millisecond}
	h := newHarness(t, server.Options{DecideTimeout: 20 * time.Millisecond}, st)
	h.ok(h.do("POST", "/v1/events", `{"customer_id":"c-1","type":"purchase"}`), 202)
	m := h.ok(h.do("POST", "/v1/decide", `{"customer_id":"c-1","placement":"home_hero","channel":"web"}`), 200)
	if _, ok := m["degraded"]; ok {
		t.Errorf("a slow read degraded the decision: %v", m)
	}
	if got := ids(items(t, m, "home_hero")); fmt.Sprint(got) != "[winback-20]" {
		t.Errorf("home_hero %v; want [winback-20]", got)
	}
	if n := h.metric("nudge_decide_degraded_total"); n != 0 {
		t.Errorf("nudge_decide_degraded_total %v; want 0", n)
	}
}
