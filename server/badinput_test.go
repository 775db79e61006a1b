package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/server"
)

// badCase is one bad request: sent raw, so that anything a client could
// put on the wire can be (control characters in the path, bodies larger
// than the limit, methods no library sends).
type badCase struct {
	name        string
	method      string
	target      string // path and query, sent as is
	body        string
	contentType string // default application/json when there is a body
	status      int
	code        string // "" : any code (the shape is still checked)
	field       string // "" : not checked
}

// rawResponse is what the server answered to a raw request.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// raw sends one request on a new connection and reads the answer. The
// body is written concurrently: a server that answers 413 before reading
// the body must still get its answer through.
func (h *harness) raw(method, target, contentType string, body []byte) (*rawResponse, error) {
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(h.url, "http://"), 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	var head bytes.Buffer
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: nudge\r\nConnection: close\r\n", method, target)
	if contentType != "" {
		fmt.Fprintf(&head, "Content-Type: %s\r\n", contentType)
	}
	fmt.Fprintf(&head, "Content-Length: %d\r\n\r\n", len(body))
	go func() {
		if _, err := conn.Write(head.Bytes()); err != nil {
			return
		}
		_, _ = conn.Write(body) // may fail once the server has answered and closed
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && len(b) == 0 {
		return nil, err
	}
	return &rawResponse{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// badInputCases builds the table: every endpoint, every kind of bad
// input of issue 5.
func badInputCases() []badCase {
	var cases []badCase
	add := func(c badCase) { cases = append(cases, c) }

	deep := `{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`
	huge := strings.Repeat("x", 100<<10)                   // over the 64 KiB string limit, under the 1 MiB body limit
	twoMiB := `{"a":"` + strings.Repeat("y", 2<<20) + `"}` // over the 1 MiB body limit
	long := strings.Repeat("i", 10<<10)                    // a 10 KB id

	// Generic malformed bodies, for every endpoint that reads one.
	bodies := []struct{ method, path string }{
		{"POST", "/v1/decide"},
		{"PUT", "/v1/customers/c-1"},
		{"PATCH", "/v1/customers/c-1"},
		{"POST", "/v1/events"},
		{"POST", "/v1/feedback"},
		{"POST", "/v1/simulate"},
	}
	for _, e := range bodies {
		n := func(s string) string { return e.method + " " + e.path + ": " + s }
		for _, g := range []struct {
			name, body string
			status     int
			code       string
		}{
			{"empty body", "", 400, "invalid_json"},
			{"only spaces", "  \n\t ", 400, "invalid_json"},
			{"truncated", `{"customer_id":`, 400, "invalid_json"},
			{"single quotes", `{'customer_id':'c-1'}`, 400, "invalid_json"},
			{"trailing comma", `{"customer_id":"c-1",}`, 400, "invalid_json"},
			{"two values", `{} {}`, 400, "invalid_json"},
			{"trailing garbage", `{"customer_id":"c-1"} x`, 400, "invalid_json"},
			{"raw control character", "{\"customer_id\":\"a\x01b\"}", 400, "invalid_json"},
			{"bad escape", `{"customer_id":"\q"}`, 400, "invalid_json"},
			{"bare word", `customer_id=c-1`, 400, "invalid_json"},
			{"array body", `[]`, 400, ""},
			{"array of object body", `[{"customer_id":"c-1"}]`, 400, ""},
			{"string body", `"c-1"`, 400, ""},
			{"number body", `42`, 400, ""},
			{"invalid UTF-8 in a string", "{\"customer_id\":\"c-\xff\"}", 400, "invalid_utf8"},
			{"invalid UTF-8 outside strings", "\xff{}", 400, "invalid_utf8"},
			{"overlong UTF-8", "{\"a\":\"\xc0\xaf\"}", 400, "invalid_utf8"},
			{"UTF-16 surrogate in UTF-8", "{\"a\":\"\xed\xa0\x80\"}", 400, "invalid_utf8"},
			{"10,000-deep nesting", deep, 400, "too_deep"},
			{"10,000-deep objects", strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000), 400, "too_deep"},
			{"huge string value", `{"customer_id":"` + huge + `"}`, 400, "string_too_long"},
			{"huge key", `{"` + huge + `":1}`, 400, "string_too_long"},
			{"huge escaped string", `{"a":"` + strings.Repeat(`\u00e9`, 40<<10) + `"}`, 400, "string_too_long"},
			{"2 MiB body", twoMiB, 413, "body_too_large"},
		} {
			add(badCase{name: n(g.name), method: e.method, target: e.path, body: g.body, status: g.status, code: g.code})
		}
	}

	// Decide (POST): wrong types, missing fields, bad ids.
	decide := func(name, body string, status int, code, field string) {
		add(badCase{name: "decide: " + name, method: "POST", target: "/v1/decide", body: body, status: status, code: code, field: field})
	}
	decide("null body", `null`, 400, "missing_field", "customer_id")
	decide("no customer_id", `{"placement":"home_hero"}`, 400, "missing_field", "customer_id")
	decide("no placements", `{"customer_id":"c-1"}`, 400, "missing_field", "placements")
	decide("empty placements", `{"customer_id":"c-1","placements":[]}`, 400, "missing_field", "placements")
	decide("customer_id number", `{"customer_id":7,"placement":"home_hero"}`, 400, "invalid_field", "customer_id")
	decide("customer_id object", `{"customer_id":{"id":"c"},"placement":"home_hero"}`, 400, "invalid_field", "customer_id")
	decide("customer_id array", `{"customer_id":["c-1"],"placement":"home_hero"}`, 400, "invalid_field", "customer_id")
	decide("placements string", `{"customer_id":"c-1","placements":"home_hero"}`, 400, "invalid_field", "placements")
	decide("placements numbers", `{"customer_id":"c-1","placements":[1,2]}`, 400, "invalid_field", "placements")
	decide("placements object", `{"customer_id":"c-1","placements":{"home_hero":1}}`, 400, "invalid_field", "placements")
	decide("placement array", `{"customer_id":"c-1","placement":["home_hero"]}`, 400, "invalid_field", "placement")
	decide("channel number", `{"customer_id":"c-1","placement":"home_hero","channel":1}`, 400, "invalid_field", "channel")
	decide("context array", `{"customer_id":"c-1","placement":"home_hero","context":[{"page":"/"}]}`, 400, "invalid_field", "context")
	decide("context string", `{"customer_id":"c-1","placement":"home_hero","context":"page=/"}`, 400, "invalid_field", "context")
	decide("context number", `{"customer_id":"c-1","placement":"home_hero","context":1}`, 400, "invalid_field", "context")
	decide("empty customer_id", `{"customer_id":"","placement":"home_hero"}`, 400, "missing_field", "customer_id")
	decide("10 KB customer_id", `{"customer_id":"`+long+`","placement":"home_hero"}`, 400, "invalid_field", "customer_id")
	decide("129-byte customer_id", `{"customer_id":"`+strings.Repeat("c", 129)+`","placement":"home_hero"}`, 400, "invalid_field", "customer_id")
	decide("control character in customer_id", `{"customer_id":"c\u0000-1","placement":"home_hero"}`, 400, "invalid_field", "customer_id")
	decide("escape character in customer_id", `{"customer_id":"c\u001b[31m","placement":"home_hero"}`, 400, "invalid_field", "customer_id")
	decide("DEL in customer_id", `{"customer_id":"c\u007f","placement":"home_hero"}`, 400, "invalid_field", "customer_id")
	decide("newline in customer_id", `{"customer_id":"c\n1","placement":"home_hero"}`, 400, "invalid_field", "customer_id")
	decide("slash in customer_id", `{"customer_id":"../c-1","placement":"home_hero"}`, 400, "invalid_field", "customer_id")
	decide("bad placement id", `{"customer_id":"c-1","placements":["home_hero","a/b"]}`, 400, "invalid_field", "placements[1]")
	decide("empty placement id", `{"customer_id":"c-1","placements":[""]}`, 400, "invalid_field", "placements[0]")
	decide("control character in placement", `{"customer_id":"c-1","placement":"home\u0001hero"}`, 400, "invalid_field", "placement")
	decide("33 placements", `{"customer_id":"c-1","placements":["p`+strings.Repeat(`","p`, 32)+`"]}`, 400, "too_many", "placements")
	decide("bad channel", `{"customer_id":"c-1","placement":"home_hero","channel":"web/app"}`, 400, "invalid_field", "channel")

	// Decide (GET): bad query strings.
	query := func(name, q string, status int, code, field string) {
		add(badCase{name: "decide query: " + name, method: "GET", target: "/v1/decide?" + q, status: status, code: code, field: field})
	}
	query("none", "", 400, "missing_field", "customer_id")
	query("no customer_id", "placement=home_hero", 400, "missing_field", "customer_id")
	query("no placement", "customer_id=c-1", 400, "missing_field", "placements")
	query("empty placement list", "customer_id=c-1&placement=,,", 400, "missing_field", "placements")
	query("invalid UTF-8", "customer_id=%FF%FE&placement=home_hero", 400, "invalid_field", "customer_id")
	query("escaped slash", "customer_id=a%2Fb&placement=home_hero", 400, "invalid_field", "customer_id")
	query("escaped NUL", "customer_id=c%00&placement=home_hero", 400, "invalid_field", "customer_id")
	query("10 KB customer_id", "customer_id="+long+"&placement=home_hero", 400, "invalid_field", "customer_id")
	query("bad escape in placement", "customer_id=c-1&placement=%zz/", 400, "invalid_field", "placements[0]")
	query("33 placements", "customer_id=c-1&placement="+strings.Repeat("p,", 33), 400, "too_many", "placements")
	query("bad placement", "customer_id=c-1&placement=a%2Fb", 400, "invalid_field", "placements[0]")
	query("bad channel", "customer_id=c-1&placement=home_hero&channel=%01", 400, "invalid_field", "channel")
	query("only separators", "&&&=&=", 400, "missing_field", "customer_id")
	query("20 KB query", "customer_id=c-1&placement=home_hero&x="+strings.Repeat("q", 20<<10), 431, "header_too_large", "")

	// Customers: bad ids in the path, for every method.
	for _, m := range []string{"GET", "PUT", "PATCH", "DELETE"} {
		body := ""
		if m == "PUT" || m == "PATCH" {
			body = `{"tier":"gold"}`
		}
		id := func(name, id string, status int, code, field string) {
			add(badCase{name: m + " customer: " + name, method: m, target: "/v1/customers/" + id, body: body, status: status, code: code, field: field})
		}
		id("empty id", "", 400, "missing_field", "id")
		id("10 KB id", long, 400, "invalid_field", "id")
		id("129-byte id", strings.Repeat("c", 129), 400, "invalid_field", "id")
		id("escaped control character", "c%01", 400, "invalid_field", "id")
		id("escaped NUL", "c%00", 400, "invalid_field", "id")
		id("escaped DEL", "c%7F", 400, "invalid_field", "id")
		id("escaped newline", "c%0A1", 400, "invalid_field", "id")
		id("escaped slash", "a%2Fb", 400, "invalid_field", "id")
		// fasthttp resolves the dot segments first: /etc is no route.
		id("escaped dot-dot-slash", "..%2F..%2Fetc", 404, "not_found", "")
		id("invalid UTF-8", "c%FF", 400, "invalid_field", "id")
		id("bad escape", "c%zz", 400, "invalid_field", "id")
		id("raw control character", "c\x01", 400, "", "")
		id("raw slash", "a/b", 404, "not_found", "")
	}
	// Customers: bodies that are no attributes object.
	for _, m := range []string{"PUT", "PATCH"} {
		attrs := func(name, body string) {
			add(badCase{name: m + " customer: " + name, method: m, target: "/v1/customers/c-1", body: body, status: 400, code: "invalid_json"})
		}
		attrs("null", `null`)
		attrs("array", `[{"tier":"gold"}]`)
		attrs("string", `"gold"`)
		attrs("boolean", `true`)
	}
	add(badCase{name: "PATCH customer: text/plain", method: "PATCH", target: "/v1/customers/c-1", body: `{"tier":"gold"}`,
		contentType: "text/plain", status: 415, code: "unsupported_media_type"})
	add(badCase{name: "PATCH customer: form", method: "PATCH", target: "/v1/customers/c-1", body: `tier=gold`,
		contentType: "application/x-www-form-urlencoded", status: 415, code: "unsupported_media_type"})

	// Events.
	event := func(name, body string, status int, code, field string) {
		add(badCase{name: "events: " + name, method: "POST", target: "/v1/events", body: body, status: status, code: code, field: field})
	}
	event("null", `null`, 400, "missing_field", "customer_id")
	event("no customer_id", `{"type":"view"}`, 400, "missing_field", "customer_id")
	event("no type", `{"customer_id":"c-1"}`, 400, "missing_field", "type")
	event("empty customer_id", `{"customer_id":"","type":"view"}`, 400, "missing_field", "customer_id")
	event("10 KB customer_id", `{"customer_id":"`+long+`","type":"view"}`, 400, "invalid_field", "customer_id")
	event("control character in customer_id", `{"customer_id":"c\u0002","type":"view"}`, 400, "invalid_field", "customer_id")
	event("slash in customer_id", `{"customer_id":"c/1","type":"view"}`, 400, "invalid_field", "customer_id")
	event("bad type", `{"customer_id":"c-1","type":"Page View"}`, 400, "invalid_field", "type")
	event("65-character type", `{"customer_id":"c-1","type":"`+strings.Repeat("t", 65)+`"}`, 400, "invalid_field", "type")
	event("type number", `{"customer_id":"c-1","type":3}`, 400, "invalid_field", "type")
	event("time not RFC 3339", `{"customer_id":"c-1","type":"view","time":"23/11/2026"}`, 400, "invalid_field", "time")
	event("time number", `{"customer_id":"c-1","type":"view","time":1764000000}`, 400, "invalid_field", "time")
	event("time out of range", `{"customer_id":"c-1","type":"view","time":"9999-12-31T23:59:59Z"}`, 400, "invalid_field", "time")
	event("value string", `{"customer_id":"c-1","type":"view","value":"12.5"}`, 400, "invalid_field", "value")
	event("value overflow", `{"customer_id":"c-1","type":"view","value":1e309}`, 400, "invalid_field", "value")
	event("value object", `{"customer_id":"c-1","type":"view","value":{}}`, 400, "invalid_field", "value")
	event("properties array", `{"customer_id":"c-1","type":"view","properties":["sku"]}`, 400, "invalid_field", "properties")
	event("properties string", `{"customer_id":"c-1","type":"view","properties":"sku=A1"}`, 400, "invalid_field", "properties")
	event("events object", `{"events":{"customer_id":"c-1","type":"view"}}`, 400, "invalid_field", "events")
	event("events string", `{"events":"c-1"}`, 400, "invalid_field", "events")
	event("batch element array", `{"events":[{"customer_id":"c-1","type":"view"},[]]}`, 400, "invalid_field", "events[1]")
	event("batch element null", `{"events":[null]}`, 400, "missing_field", "events[0].customer_id")
	event("batch and single", `{"customer_id":"c-1","type":"view","events":[]}`, 400, "invalid_field", "events")
	event("bad event deep in a batch", `{"events":[`+strings.Repeat(`{"customer_id":"c-1","type":"view"},`, 500)+`{"customer_id":"c-1","type":"VIEW"}]}`, 400, "invalid_field", "events[500].type")
	var batch strings.Builder
	batch.WriteString(`{"events":[`)
	for i := range 1001 {
		if i > 0 {
			batch.WriteByte(',')
		}
		fmt.Fprintf(&batch, `{"customer_id":"c-%d","type":"view"}`, i)
	}
	batch.WriteString(`]}`)
	event("1,001-event batch", batch.String(), 400, "too_many", "events")

	// Feedback.
	fb := func(name, body string, status int, code, field string) {
		add(badCase{name: "feedback: " + name, method: "POST", target: "/v1/feedback", body: body, status: status, code: code, field: field})
	}
	fb("null", `null`, 400, "missing_field", "decision_id")
	fb("no decision_id", `{"customer_id":"c-1","action":"winback-20","outcome":"click"}`, 400, "missing_field", "decision_id")
	fb("no customer_id", `{"decision_id":"d-1","action":"winback-20","outcome":"click"}`, 400, "missing_field", "customer_id")
	fb("no action", `{"decision_id":"d-1","customer_id":"c-1","outcome":"click"}`, 400, "missing_field", "action")
	fb("no outcome", `{"decision_id":"d-1","customer_id":"c-1","action":"winback-20"}`, 400, "missing_field", "outcome")
	for _, o := range []string{"love", "served", "holdout", "CLICK", "click ", ""} {
		fb(fmt.Sprintf("unknown outcome %q", o), `{"decision_id":"d-1","customer_id":"c-1","action":"winback-20","outcome":"`+o+`"}`, 400, "invalid_field", "outcome")
	}
	fb("outcome number", `{"decision_id":"d-1","customer_id":"c-1","action":"winback-20","outcome":1}`, 400, "invalid_field", "outcome")
	fb("outcome array", `{"decision_id":"d-1","customer_id":"c-1","action":"winback-20","outcome":["click"]}`, 400, "invalid_field", "outcome")
	fb("value string", `{"decision_id":"d-1","customer_id":"c-1","action":"winback-20","outcome":"click","value":"9"}`, 400, "invalid_field", "value")
	fb("empty decision_id", `{"decision_id":"","customer_id":"c-1","action":"winback-20","outcome":"click"}`, 400, "missing_field", "decision_id")
	fb("10 KB decision_id", `{"decision_id":"`+long+`","customer_id":"c-1","action":"winback-20","outcome":"click"}`, 400, "invalid_field", "decision_id")
	fb("10 KB customer_id", `{"decision_id":"d-1","customer_id":"`+long+`","action":"winback-20","outcome":"click"}`, 400, "invalid_field", "customer_id")
	fb("control character in action", `{"decision_id":"d-1","customer_id":"c-1","action":"a\u0003","outcome":"click"}`, 400, "invalid_field", "action")
	fb("slash in action", `{"decision_id":"d-1","customer_id":"c-1","action":"a/b","outcome":"click"}`, 400, "invalid_field", "action")
	fb("bad channel", `{"decision_id":"d-1","customer_id":"c-1","action":"winback-20","outcome":"click","channel":"w/b"}`, 400, "invalid_field", "channel")

	// Simulate.
	sim := func(name, body string, status int, code, field string) {
		add(badCase{name: "simulate: " + name, method: "POST", target: "/v1/simulate", body: body, status: status, code: code, field: field})
	}
	sim("null", `null`, 400, "missing_field", "customer_id")
	sim("no placements", `{"customer_id":"c-1"}`, 400, "missing_field", "placements")
	sim("bad customer_id", `{"customer_id":"c\u0000","placement":"home_hero"}`, 400, "invalid_field", "customer_id")
	sim("now not RFC 3339", `{"customer_id":"c-1","placement":"home_hero","now":"tomorrow"}`, 400, "invalid_field", "now")
	sim("now number", `{"customer_id":"c-1","placement":"home_hero","now":0}`, 400, "invalid_field", "now")
	sim("seed string", `{"customer_id":"c-1","placement":"home_hero","seed":"7"}`, 400, "invalid_field", "seed")
	sim("seed negative", `{"customer_id":"c-1","placement":"home_hero","seed":-7}`, 400, "invalid_field", "seed")
	sim("customer array", `{"customer_id":"c-1","placement":"home_hero","customer":[]}`, 400, "invalid_field", "customer")
	sim("customer string", `{"customer_id":"c-1","placement":"home_hero","customer":"c-1"}`, 400, "invalid_field", "customer")
	sim("customer id mismatch", `{"customer_id":"c-1","placement":"home_hero","customer":{"id":"c-2"}}`, 400, "invalid_field", "customer.id")
	sim("inline id only, invalid", `{"placement":"home_hero","customer":{"id":"a/b"}}`, 400, "invalid_field", "customer_id")
	sim("attributes array", `{"customer_id":"c-1","placement":"home_hero","customer":{"attributes":[]}}`, 400, "invalid_field", "customer.attributes")
	sim("events object", `{"customer_id":"c-1","placement":"home_hero","customer":{"events":{}}}`, 400, "invalid_field", "customer.events")
	sim("event type", `{"customer_id":"c-1","placement":"home_hero","customer":{"events":[{"type":"view"},{"type":"Bad Type"}]}}`, 400, "invalid_field", "customer.events[1].type")
	sim("event time", `{"customer_id":"c-1","placement":"home_hero","customer":{"events":[{"type":"view","time":"now"}]}}`, 400, "invalid_field", "customer.events[0].time")
	sim("contact unknown outcome", `{"customer_id":"c-1","placement":"home_hero","customer":{"contacts":[{"action":"winback-20","outcome":"love"}]}}`, 400, "invalid_field", "customer.contacts[0].outcome")
	sim("contact no action", `{"customer_id":"c-1","placement":"home_hero","customer":{"contacts":[{"outcome":"click"}]}}`, 400, "missing_field", "customer.contacts[0].action")
	sim("contact bad action", `{"customer_id":"c-1","placement":"home_hero","customer":{"contacts":[{"action":"a/b","outcome":"click"}]}}`, 400, "invalid_field", "customer.contacts[0].action")
	sim("contact array", `{"customer_id":"c-1","placement":"home_hero","customer":{"contacts":[[]]}}`, 400, "invalid_field", "customer.contacts[0]")

	// Wrong methods on every route.
	for _, m := range []struct{ method, path, allow string }{
		{"PUT", "/v1/decide", "GET, POST, OPTIONS"},
		{"DELETE", "/v1/decide", "GET, POST, OPTIONS"},
		{"PATCH", "/v1/decide", "GET, POST, OPTIONS"},
		{"TRACE", "/v1/decide", "GET, POST, OPTIONS"},
		{"FROB", "/v1/decide", "GET, POST, OPTIONS"},
		{"POST", "/v1/customers/c-1", "GET, PUT, PATCH, DELETE, OPTIONS"},
		{"GET", "/v1/events", "POST, OPTIONS"},
		{"PUT", "/v1/events", "POST, OPTIONS"},
		{"GET", "/v1/feedback", "POST, OPTIONS"},
		{"DELETE", "/v1/feedback", "POST, OPTIONS"},
		{"GET", "/v1/simulate", "POST, OPTIONS"},
		{"POST", "/v1/rules", "GET, HEAD, OPTIONS"},
		{"DELETE", "/v1/rules", "GET, HEAD, OPTIONS"},
		{"GET", "/v1/rules/reload", "POST, OPTIONS"},
		{"PUT", "/v1/rules/reload", "POST, OPTIONS"},
		{"POST", "/v1/stats", "GET, HEAD, OPTIONS"},
		{"DELETE", "/v1/stats", "GET, HEAD, OPTIONS"},
		{"POST", "/healthz", "GET, HEAD, OPTIONS"},
		{"DELETE", "/readyz", "GET, HEAD, OPTIONS"},
		{"PUT", "/metrics", "GET, HEAD, OPTIONS"},
	} {
		status := 405
		add(badCase{name: m.method + " " + m.path, method: m.method, target: m.path, body: `{}`, status: status, code: "method_not_allowed"})
	}

	// Unknown paths.
	for _, p := range []string{"/", "/v1", "/v1/", "/v2/decide", "/v1/decide/", "/V1/DECIDE", "/v1/decide/x", "/v1/customers",
		"/v1/customers/a/b", "/v1/customers/c-1/", "/v1/events/1", "/v1/rules/reload/now", "/healthz/x", "/metrics.json",
		"/..%2F..%2Fetc%2Fpasswd", "/v1/%2e%2e/stats", "/favicon.ico"} {
		for _, m := range []string{"GET", "POST"} {
			add(badCase{name: m + " unknown path " + p, method: m, target: p, body: `{}`, status: 404, code: "not_found"})
		}
	}
	return cases
}

// TestBadInput sends every bad request of badInputCases to a server: each
// must be answered with its 4xx and the SPEC error shape, write nothing,
// and leave the server healthy: /healthz answers 200 and a good decision
// is made after each.
func TestBadInput(t *testing.T) {
	st := newCheckStore()
	h := newHarness(t, server.Options{}, st)
	if err := st.PutAttributes("c-1", map[string]any{"tier": "gold"}); err != nil {
		t.Fatal(err)
	}
	good := `{"customer_id":"c-1","placements":["home_hero"],"channel":"web"}`
	for _, c := range badInputCases() {
		t.Run(c.name, func(t *testing.T) {
			before := st.writes.Load()
			statsBefore := statsJSON(t, st)
			ct := c.contentType
			if ct == "" && c.body != "" {
				ct = "application/json"
			}
			r, err := h.raw(c.method, c.target, ct, []byte(c.body))
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			resp := &response{status: r.status, header: r.header, body: r.body}
			code, field := c.code, c.field
			if code == "" || field == "" {
				// Not pinned by the case: the shape is still checked.
				var body struct {
					Error struct{ Code, Field string } `json:"error"`
				}
				_ = json.Unmarshal(r.body, &body)
				if code == "" {
					code = body.Error.Code
				}
				if field == "" {
					field = body.Error.Field
				}
			}
			checkError(t, resp, c.status, code, field)
			if c.status == 405 && resp.header.Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
			if n := st.writes.Load() - before; n != 0 {
				t.Errorf("the bad request wrote to the store %d times", n)
			}
			if bad := st.badWrites(); len(bad) > 0 {
				t.Fatalf("invalid data reached the store: %v", bad)
			}
			if statsJSON(t, st) != statsBefore {
				t.Errorf("the bad request changed the stats")
			}
			// Healthy: probes and a good decision.
			if r := h.do("GET", "/healthz", ""); r.status != 200 {
				t.Fatalf("healthz after the bad request: %d %s", r.status, r.body)
			}
			if got := ids(items(t, h.ok(h.do("POST", "/v1/decide", good), 200), "home_hero")); len(got) != 1 {
				t.Fatalf("good decision after the bad request: home_hero %v", got)
			}
		})
	}
	if n := h.metric("nudge_http_panics_total"); n != 0 {
		t.Errorf("%v panics", n)
	}
	if n := h.metric("nudge_http_inflight_requests"); n != 0 {
		t.Errorf("%v requests still in flight", n)
	}
	// Every bad request was counted as an error of its route.
	var errs float64
	for _, code := range []string{"invalid_json", "invalid_utf8", "too_deep", "string_too_long", "missing_field", "invalid_field",
		"too_many", "body_too_large", "header_too_large", "bad_request", "not_found", "method_not_allowed", "unsupported_media_type"} {
		for _, route := range []string{"other", "decide", "customers", "events", "feedback", "simulate", "rules", "rules_reload", "stats", "healthz", "readyz", "metrics"} {
			errs += h.metric("nudge_http_errors_total", "route", route, "code", code)
		}
	}
	if want := float64(len(badInputCases())); errs != want {
		t.Errorf("%v errors counted; want %v (one per bad request)", errs, want)
	}
}

// statsJSON is a snapshot of the store's stats.
func statsJSON(t *testing.T, st *checkStore) string {
	t.Helper()
	_, stats := st.Stats()
	b, err := json.Marshal(stats)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBadHTTP sends requests that are not HTTP, or too large to be read:
// they are answered in the error shape by fasthttp's error handler, and
// the server lives on.
func TestBadHTTP(t *testing.T) {
	h := newHarness(t, server.Options{MaxHeaderBytes: 4096}, nil)
	send := func(raw string) *response {
		t.Helper()
		conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		go func() { _, _ = conn.Write([]byte(raw)) }()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer to %.40q: %v", raw, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return &response{status: resp.StatusCode, header: resp.Header, body: b}
	}
	checkError(t, send("GARBAGE\r\n\r\n"), 400, "bad_request", "")
	checkError(t, send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("h", 8<<10)+"\r\n\r\n"), 431, "header_too_large", "")
	checkError(t, send("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"), 400, "bad_request", "")
	checkError(t, send("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n"), 413, "body_too_large", "")
	checkError(t, send("POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), 400, "bad_request", "")
	h.ok(h.do("GET", "/healthz", ""), 200)
	h.ok(h.do("POST", "/v1/decide", `{"customer_id":"c-1","placement":"home_hero"}`), 200)
}
