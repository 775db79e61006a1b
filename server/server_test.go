package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/server"
	"github.com/nudge-engine/nudge/store"
	"github.com/nudge-engine/nudge/store/memstore"
)

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

// variantOf is the winback-copy variant the engine assigns.
func variantOf(t *testing.T, h *harness, customer string) string {
	t.Helper()
	return engine.Assign(h.src.Current().Action("winback-20").Experiment, customer).Name
}

func items(t *testing.T, m map[string]any, placement string) []map[string]any {
	t.Helper()
	ps, ok := m["placements"].(map[string]any)
	if !ok {
		t.Fatalf("no placements object: %v", m)
	}
	list, ok := ps[placement].([]any)
	if !ok {
		t.Fatalf("placement %s is not a list: %v", placement, ps[placement])
	}
	out := make([]map[string]any, len(list))
	for i, it := range list {
		out[i] = it.(map[string]any)
	}
	return out
}

func ids(list []map[string]any) []string {
	out := []string{}
	for _, it := range list {
		out = append(out, it["action"].(string))
	}
	return out
}

func TestDecideRecordsServedContacts(t *testing.T) {
	h := newHarness(t, server.Options{}, nil)
	h.ok(h.do("PUT", "/v1/customers/c-1042", `{"first_name":"Ana","tier":"gold"}`), 200)
	h.ok(h.do("POST", "/v1/events", `{"customer_id":"c-1042","type":"purchase","value":50,"time":"`+h.now.Add(-72*time.Hour).Format(time.RFC3339)+`"}`), 202)

	body := `{"customer_id":"c-1042","placements":["home_hero","cart_sidebar"],"channel":"web","context":{"page":"/","cart_value":82.5}}`
	m := h.ok(h.do("POST", "/v1/decide", body), 200)
	if id, _ := m["decision_id"].(string); !hex32.MatchString(id) {
		t.Errorf("decision_id %q; want 32 hex digits", id)
	}
	if m["customer_id"] != "c-1042" || m["ruleset"] != h.src.Current().Version {
		t.Errorf("customer_id %v, ruleset %v", m["customer_id"], m["ruleset"])
	}
	hero := items(t, m, "home_hero")
	if len(hero) != 1 {
		t.Fatalf("home_hero: %v", hero)
	}
	variant := variantOf(t, h, "c-1042")
	wantTitle := "We miss you, Ana: 20% off"
	if variant == "b" {
		wantTitle = "Come back: 20% off"
	}
	want := map[string]any{"action": "winback-20", "kind": "offer", "channel": "web", "priority": 10.0, "score": 0.83,
		"content": map[string]any{"title": wantTitle, "code": "WINBACK20"}, "experiment": "winback-copy", "variant": variant}
	if fmt.Sprint(hero[0]) != fmt.Sprint(want) {
		t.Errorf("home_hero item\n got %v\nwant %v", hero[0], want)
	}
	// cart-held is held out by its experiment, boom's when fails at runtime.
	if got := ids(items(t, m, "cart_sidebar")); fmt.Sprint(got) != "[cart-tip]" {
		t.Errorf("cart_sidebar %v; want [cart-tip]", got)
	}
	if h.metric("nudge_rule_errors_total", "rule", "action:boom:when") != 1 {
		t.Errorf("rule error not counted")
	}
	if h.metric("nudge_decisions_total", "placement", "home_hero") != 1 || h.metric("nudge_decide_duration_seconds") != 1 {
		t.Errorf("decision metrics not counted")
	}

	c := h.ok(h.do("GET", "/v1/customers/c-1042", ""), 200)
	contacts := c["contacts"].(map[string]any)
	for _, a := range []string{"winback-20", "cart-tip"} {
		got, _ := contacts[a].(map[string]any)
		if got == nil || got["served"] != 1.0 || got["click"] != 0.0 || got["last_at"] != h.now.Format(time.RFC3339Nano) {
			t.Errorf("contacts[%s] = %v; want served 1 at %s", a, got, h.now.Format(time.RFC3339Nano))
		}
	}
	if _, ok := contacts["cart-held"]; ok {
		t.Errorf("a holdout was recorded as a contact: %v", contacts)
	}
	ev := c["events"].(map[string]any)["purchase"].(map[string]any)
	if ev["count"] != 1.0 || ev["sum"] != 50.0 || ev["count_7d"] != 1.0 || ev["count_30d"] != 1.0 || ev["sum_30d"] != 50.0 {
		t.Errorf("events.purchase = %v", ev)
	}
	if c["attributes"].(map[string]any)["first_name"] != "Ana" {
		t.Errorf("attributes = %v", c["attributes"])
	}

	// Stats: served with the variant, the holdout counted.
	_, stats := h.st.Stats()
	if w := stats["winback-20"]; w == nil || w.Served != 1 || w.Variants[variant] == nil || w.Variants[variant].Served != 1 {
		t.Errorf("winback-20 stats %+v", w)
	}
	if hd := stats["cart-held"]; hd == nil || hd.Holdout != 1 || hd.Variants["control"].Holdout != 1 || hd.Served != 0 {
		t.Errorf("cart-held stats %+v", hd)
	}

	// The cap of cart-tip (2 in 7 days) counts the recorded contacts.
	h.ok(h.do("POST", "/v1/decide", body), 200)
	m = h.ok(h.do("POST", "/v1/decide", body), 200)
	if got := ids(items(t, m, "cart_sidebar")); len(got) != 0 {
		t.Errorf("third decide: cart_sidebar %v; want [] (capped)", got)
	}
}

func TestDecideUnknownCustomerGetsFallback(t *testing.T) {
	h := newHarness(t, server.Options{}, nil)
	// GET with a comma list, a repeated placement and an unknown placement.
	m := h.ok(h.do("GET", "/v1/decide?customer_id=visitor-1&placement=home_hero,nowhere&placement=home_hero", ""), 200)
	hero := items(t, m, "home_hero")
	want := map[string]any{"action": "brand-story", "kind": "message", "channel": nil, "priority": 0.0, "score": 0.0,
		"content": map[string]any{"title": "Our story"}, "fallback": true}
	if len(hero) != 1 || fmt.Sprint(hero[0]) != fmt.Sprint(want) {
		t.Errorf("home_hero %v; want [%v]", hero, want)
	}
	if got := items(t, m, "nowhere"); len(got) != 0 {
		t.Errorf("nowhere: %v", got)
	}
	if n := len(m["placements"].(map[string]any)); n != 2 {
		t.Errorf("%d placements; want 2", n)
	}
	// The fallback was recorded: the visitor now exists.
	c := h.ok(h.do("GET", "/v1/customers/visitor-1", ""), 200)
	if got := c["contacts"].(map[string]any)["brand-story"].(map[string]any)["served"]; got != 1.0 {
		t.Errorf("brand-story served %v; want 1", got)
	}
	if h.metric("nudge_decisions_total", "placement", "other") != 1 {
		t.Errorf("unknown placement not counted as other")
	}
}

func TestDecideEscapesContent(t *testing.T) {
	h := newHarness(t, server.Options{}, nil)
	r := h.do("POST", "/v1/decide", `{"customer_id":"x","placement":"cart_sidebar","channel":"web"}`)
	h.ok(r, 200)
	if !strings.Contains(string(r.body), `"Free shipping over 50 \u003cEUR\u003e"`) {
		t.Errorf("content not HTML-escaped like encoding/json: %s", r.body)
	}
}

func TestFeedbackUpdatesStats(t *testing.T) {
	h := newHarness(t, server.Options{}, nil)
	h.ok(h.do("POST", "/v1/events", `{"customer_id":"c1","type":"purchase"}`), 202)
	m := h.ok(h.do("POST", "/v1/decide", `{"customer_id":"c1","placement":"home_hero","channel":"app"}`), 200)
	id := m["decision_id"].(string)
	fb := func(outcome string, value float64) *response {
		return h.do("POST", "/v1/feedback", fmt.Sprintf(`{"decision_id":%q,"customer_id":"c1","action":"winback-20","outcome":%q,"value":%v}`, id, outcome, value))
	}
	if got := h.ok(fb("click", 0), 202); got["accepted"] != 1.0 {
		t.Errorf("feedback answer %v", got)
	}
	h.ok(fb("convert", 49.5), 202)

	s := h.ok(h.do("GET", "/v1/stats", ""), 200)
	if s["since"] == nil {
		t.Errorf("no since: %v", s)
	}
	w := s["actions"].(map[string]any)["winback-20"].(map[string]any)
	want := map[string]any{"served": 1.0, "click": 1.0, "accept": 0.0, "dismiss": 0.0, "convert": 1.0, "holdout": 0.0,
		"value": 49.5, "ctr": 1.0, "conversion_rate": 1.0}
	for k, v := range want {
		if w[k] != v {
			t.Errorf("stats.winback-20.%s = %v; want %v", k, w[k], v)
		}
	}
	v := w["variants"].(map[string]any)[variantOf(t, h, "c1")].(map[string]any)
	if v["served"] != 1.0 || v["click"] != 1.0 || v["ctr"] != 1.0 || v["value"] != 49.5 {
		t.Errorf("variant stats %v", v)
	}
	// The feedback contacts carry the channel the action was served on.
	c, _ := h.st.Customer("c1")
	for _, k := range c.Contacts {
		if k.Channel.String() != "app" {
			t.Errorf("contact %+v; want channel app", k)
		}
	}
	if h.metric("nudge_feedback_total", "outcome", "click") != 1 {
		t.Errorf("feedback not counted")
	}
}

func TestSimulateExplainsWithoutSideEffects(t *testing.T) {
	h := newHarness(t, server.Options{}, nil)
	body := `{"customer_id":"sim-1","placements":["home_hero","cart_sidebar"],"channel":"web",
		"now":"2026-11-23T10:00:00Z","seed":7,
		"customer":{"id":"sim-1","attributes":{"first_name":"Bo"},
			"events":[{"type":"purchase","time":"2026-08-01T00:00:00Z","value":50}],
			"contacts":[{"action":"cart-tip","outcome":"served","time":"2026-11-22T08:00:00Z","channel":"web"},
			            {"action":"cart-tip","outcome":"served","time":"2026-11-23T08:00:00Z","channel":"web"}]}}`
	m := h.ok(h.do("POST", "/v1/simulate", body), 200)
	if got := ids(items(t, m, "home_hero")); fmt.Sprint(got) != "[winback-20]" {
		t.Errorf("home_hero %v", got)
	}
	if got := ids(items(t, m, "cart_sidebar")); len(got) != 0 {
		t.Errorf("cart_sidebar %v; want [] (cart-tip capped, cart-held held out)", got)
	}
	explain := map[string]map[string]any{}
	for _, e := range m["explain"].([]any) {
		e := e.(map[string]any)
		explain[e["placement"].(string)+"/"+e["action"].(string)] = e
	}
	f := func(key string, eligible, selected bool, reason, score, rank any) {
		t.Helper()
		e := explain[key]
		if e == nil {
			t.Errorf("no explain entry %s in %v", key, m["explain"])
			return
		}
		got := fmt.Sprint(e["eligible"], e["selected"], e["reason"], e["score"], e["rank"])
		if want := fmt.Sprint(eligible, selected, reason, score, rank); got != want {
			t.Errorf("%s: got %s; want %s", key, got, want)
		}
	}
	f("home_hero/winback-20", true, true, nil, 0.83, 1.0)
	f("cart_sidebar/cart-tip", false, false, "cap:cart-tip", nil, nil)
	f("cart_sidebar/cart-held", true, false, "holdout", 0.4, 1.0)
	f("cart_sidebar/boom", false, false, "when", nil, nil)

	// Nothing was written: no customer, no stats.
	if c, _ := h.st.Customer("sim-1"); c != nil {
		t.Errorf("simulate stored the customer: %+v", c)
	}
	if _, stats := h.st.Stats(); len(stats) != 0 {
		t.Errorf("simulate counted stats: %v", stats)
	}

	// Without an inline customer the stored one is read, and still
	// nothing is written.
	h.ok(h.do("POST", "/v1/events", `{"customer_id":"stored","type":"purchase"}`), 202)
	m = h.ok(h.do("POST", "/v1/simulate", `{"customer_id":"stored","placement":"home_hero"}`), 200)
	if got := ids(items(t, m, "home_hero")); fmt.Sprint(got) != "[winback-20]" {
		t.Errorf("stored customer: home_hero %v", got)
	}
	if c, _ := h.st.Customer("stored"); len(c.Contacts) != 0 {
		t.Errorf("simulate recorded contacts: %+v", c.Contacts)
	}
}

func TestCustomers(t *testing.T) {
	h := newHarness(t, server.Options{}, nil)
	checkError(t, h.do("GET", "/v1/customers/nobody", ""), 404, "not_found", "")
	checkError(t, h.do("GET", "/v1/customers/nobody?x=1/2", ""), 404, "not_found", "")

	got := h.ok(h.do("PUT", "/v1/customers/c%20%C3%A9", `{"tier":"silver","consent":{"email":true,"sms":false},"tags":["a"]}`), 200)
	if fmt.Sprint(got) != "map[attributes:map[consent:map[email:true sms:false] tags:[a] tier:silver] id:c é]" {
		t.Errorf("PUT answered %v", got)
	}
	got = h.ok(h.do("PATCH", "/v1/customers/c%20%C3%A9", `{"tier":null,"consent":{"sms":true},"ltv":10}`, "Content-Type", "application/merge-patch+json"), 200)
	if fmt.Sprint(got["attributes"]) != "map[consent:map[email:true sms:true] ltv:10 tags:[a]]" {
		t.Errorf("PATCH answered %v", got)
	}
	h.ok(h.do("PATCH", "/v1/customers/c%20%C3%A9", `{"ltv":11}`, "Content-Type", "application/json; charset=utf-8"), 200)
	checkError(t, h.do("PATCH", "/v1/customers/c%20%C3%A9", `{"ltv":12}`, "Content-Type", "text/plain"), 415, "unsupported_media_type", "")

	got = h.ok(h.do("GET", "/v1/customers/c%20%C3%A9", ""), 200)
	if fmt.Sprint(got) != "map[attributes:map[consent:map[email:true sms:true] ltv:11 tags:[a]] contacts:map[] events:map[] id:c é]" {
		t.Errorf("GET answered %v", got)
	}
	// PUT replaces.
	h.ok(h.do("PUT", "/v1/customers/c%20%C3%A9", `{}`), 200)
	h.ok(h.do("POST", "/v1/events", `{"customer_id":"c é","type":"view"}`), 202)
	got = h.ok(h.do("GET", "/v1/customers/c%20%C3%A9", ""), 200)
	if fmt.Sprint(got["attributes"]) != "map[]" {
		t.Errorf("attributes after PUT {}: %v", got["attributes"])
	}

	h.ok(h.do("DELETE", "/v1/customers/c%20%C3%A9", ""), 204)
	checkError(t, h.do("GET", "/v1/customers/c%20%C3%A9", ""), 404, "not_found", "")
	h.ok(h.do("DELETE", "/v1/customers/c%20%C3%A9", ""), 204) // idempotent

	checkError(t, h.do("PUT", "/v1/customers/x", `[1]`), 400, "invalid_json", "")
	checkError(t, h.do("PUT", "/v1/customers/x", `null`), 400, "invalid_json", "")
	checkError(t, h.do("PUT", "/v1/customers/a%2Fb", `{}`), 400, "invalid_field", "id")
	checkError(t, h.do("GET", "/v1/customers/a%01b", ""), 400, "invalid_field", "id")
	checkError(t, h.do("GET", "/v1/customers/"+strings.Repeat("x", 129), ""), 400, "invalid_field", "id")
	checkError(t, h.do("GET", "/v1/customers/", ""), 400, "missing_field", "id")
	checkError(t, h.do("GET", "/v1/customers/a/b", ""), 404, "not_found", "")
	h.ok(h.do("GET", "/v1/customers/"+strings.Repeat("x", 128), ""), 404)
	checkError(t, h.do("POST", "/v1/decide", `{"customer_id":"`+strings.Repeat("é", 65)+`","placement":"p"}`), 400, "invalid_field", "customer_id")
	h.ok(h.do("POST", "/v1/decide", `{"customer_id":"`+strings.Repeat("é", 64)+`","placement":"p"}`), 200)
}

func TestEvents(t *testing.T) {
	h := newHarness(t, server.Options{}, nil)
	got := h.ok(h.do("POST", "/v1/events", `{"events":[
		{"customer_id":"e1","type":"purchase","value":10,"time":"2026-01-02T03:04:05.5+01:00","properties":{"sku":"A"}},
		{"customer_id":"e1","type":"purchase","value":5},
		{"customer_id":"e2","type":"page.view"}]}`), 202)
	if got["accepted"] != 3.0 {
		t.Errorf("accepted %v", got["accepted"])
	}
	c, _ := h.st.Customer("e1")
	if p := c.Events["purchase"]; p.Count != 2 || p.Sum != 15 || p.First != time.Date(2026, 1, 2, 2, 4, 5, 5e8, time.UTC).UnixNano() || p.Last != h.now.UnixNano() {
		t.Errorf("e1 purchases %+v", p)
	}
	if h.metric("nudge_events_ingested_total") != 3 {
		t.Errorf("events not counted")
	}

	// All or nothing: one bad event rejects the batch.
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i := range 5 {
		typ := "view"
		if i == 3 {
			typ = "View!"
		}
		fmt.Fprintf(&b, `%s{"customer_id":"batch","type":%q}`, map[bool]string{true: "", false: ","}[i == 0], typ)
	}
	b.WriteString(`]}`)
	checkError(t, h.do("POST", "/v1/events", b.String()), 400, "invalid_field", "events[3].type")
	if c, _ := h.st.Customer("batch"); c != nil {
		t.Errorf("a rejected batch was partly written: %+v", c)
	}

	// 1001 events: rejected, nothing written.
	b.Reset()
	b.WriteString(`{"events":[`)
	for i := range 1001 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"customer_id":"big-%d","type":"view"}`, i)
	}
	b.WriteString(`]}`)
	checkError(t, h.do("POST", "/v1/events", b.String()), 400, "too_many", "events")
	if c, _ := h.st.Customer("big-0"); c != nil {
		t.Errorf("an oversized batch was written")
	}
	if h.ok(h.do("POST", "/v1/events", `{"events":[]}`), 202)["accepted"] != 0.0 {
		t.Errorf("empty batch")
	}
}

func TestErrors(t *testing.T) {
	h := newHarness(t, server.Options{MaxBodyBytes: 4096, MaxDepth: 8, MaxStringBytes: 200}, nil)
	deep := strings.Repeat("[", 9) + strings.Repeat("]", 9)
	tests := []struct {
		name, method, path, body string
		status                   int
		code, field              string
	}{
		{"unknown path", "GET", "/v2/decide", "", 404, "not_found", ""},
		{"root", "GET", "/", "", 404, "not_found", ""},
		{"decide method", "DELETE", "/v1/decide", "", 405, "method_not_allowed", ""},
		{"events method", "GET", "/v1/events", "", 405, "method_not_allowed", ""},
		{"customers method", "POST", "/v1/customers/x", "{}", 405, "method_not_allowed", ""},
		{"reload method", "GET", "/v1/rules/reload", "", 405, "method_not_allowed", ""},
		{"empty body", "POST", "/v1/decide", "", 400, "invalid_json", ""},
		{"syntax", "POST", "/v1/decide", `{"customer_id":`, 400, "invalid_json", ""},
		{"not an object", "POST", "/v1/decide", `["x"]`, 400, "invalid_json", ""},
		{"too deep", "POST", "/v1/decide", `{"customer_id":"x","placement":"p","context":{"a":` + deep + `}}`, 400, "too_deep", ""},
		{"long string", "POST", "/v1/decide", `{"customer_id":"x","placement":"p","context":{"a":"` + strings.Repeat("y", 201) + `"}}`, 400, "string_too_long", ""},
		{"long escaped string", "POST", "/v1/decide", `{"customer_id":"x","placement":"p","context":{"a":"` + strings.Repeat(`\u00e9`, 101) + `"}}`, 400, "string_too_long", ""},
		{"long key", "POST", "/v1/decide", `{"customer_id":"x","placement":"p","context":{"` + strings.Repeat("k", 201) + `":1}}`, 400, "string_too_long", ""},
		{"invalid utf8", "POST", "/v1/decide", "{\"customer_id\":\"\xff\",\"placement\":\"p\"}", 400, "invalid_utf8", ""},
		{"no customer", "POST", "/v1/decide", `{"placement":"p"}`, 400, "missing_field", "customer_id"},
		{"empty customer", "POST", "/v1/decide", `{"customer_id":"","placement":"p"}`, 400, "missing_field", "customer_id"},
		{"customer number", "POST", "/v1/decide", `{"customer_id":7,"placement":"p"}`, 400, "invalid_field", "customer_id"},
		{"customer slash", "POST", "/v1/decide", `{"customer_id":"a/b","placement":"p"}`, 400, "invalid_field", "customer_id"},
		{"customer control", "POST", "/v1/decide", `{"customer_id":"a\u0007","placement":"p"}`, 400, "invalid_field", "customer_id"},
		{"customer too long", "POST", "/v1/decide", `{"customer_id":"` + strings.Repeat("é", 65) + `","placement":"p"}`, 400, "invalid_field", "customer_id"},
		{"no placements", "POST", "/v1/decide", `{"customer_id":"x"}`, 400, "missing_field", "placements"},
		{"bad placement", "POST", "/v1/decide", `{"customer_id":"x","placements":["ok","a/b"]}`, 400, "invalid_field", "placements[1]"},
		{"placements type", "POST", "/v1/decide", `{"customer_id":"x","placements":"p"}`, 400, "invalid_field", "placements"},
		{"too many placements", "POST", "/v1/decide", `{"customer_id":"x","placements":["` + strings.Repeat(`p","`, 32) + `p"]}`, 400, "too_many", "placements"},
		{"context array", "POST", "/v1/decide", `{"customer_id":"x","placement":"p","context":[]}`, 400, "invalid_field", "context"},
		{"context string", "POST", "/v1/decide", `{"customer_id":"x","placement":"p","context":"a"}`, 400, "invalid_field", "context"},
		{"bad channel", "POST", "/v1/decide", `{"customer_id":"x","placement":"p","channel":"a/b"}`, 400, "invalid_field", "channel"},
		{"get no customer", "GET", "/v1/decide?placement=p", "", 400, "missing_field", "customer_id"},
		{"get no placement", "GET", "/v1/decide?customer_id=x", "", 400, "missing_field", "placements"},
		{"get bad utf8", "GET", "/v1/decide?customer_id=%FF&placement=p", "", 400, "invalid_field", "customer_id"},
		{"get too many", "GET", "/v1/decide?customer_id=x&placement=" + strings.Repeat("p,", 33), "", 400, "too_many", "placements"},
		{"event no customer", "POST", "/v1/events", `{"type":"view"}`, 400, "missing_field", "customer_id"},
		{"event no type", "POST", "/v1/events", `{"customer_id":"x"}`, 400, "missing_field", "type"},
		{"event type", "POST", "/v1/events", `{"customer_id":"x","type":"a b"}`, 400, "invalid_field", "type"},
		{"event type long", "POST", "/v1/events", `{"customer_id":"x","type":"` + strings.Repeat("a", 65) + `"}`, 400, "invalid_field", "type"},
		{"event time", "POST", "/v1/events", `{"customer_id":"x","type":"view","time":"yesterday"}`, 400, "invalid_field", "time"},
		{"event time number", "POST", "/v1/events", `{"customer_id":"x","type":"view","time":5}`, 400, "invalid_field", "time"},
		{"event value", "POST", "/v1/events", `{"customer_id":"x","type":"view","value":"5"}`, 400, "invalid_field", "value"},
		{"event value range", "POST", "/v1/events", `{"customer_id":"x","type":"view","value":1e400}`, 400, "invalid_field", "value"},
		{"event properties", "POST", "/v1/events", `{"customer_id":"x","type":"view","properties":[1]}`, 400, "invalid_field", "properties"},
		{"batch element", "POST", "/v1/events", `{"events":[{"customer_id":"x","type":"view"},7]}`, 400, "invalid_field", "events[1]"},
		{"batch not array", "POST", "/v1/events", `{"events":{}}`, 400, "invalid_field", "events"},
		{"batch mixed", "POST", "/v1/events", `{"customer_id":"x","events":[]}`, 400, "invalid_field", "events"},
		{"batch element field", "POST", "/v1/events", `{"events":[{"customer_id":"x","type":"view","value":true}]}`, 400, "invalid_field", "events[0].value"},
		{"feedback no decision", "POST", "/v1/feedback", `{"customer_id":"x","action":"a","outcome":"click"}`, 400, "missing_field", "decision_id"},
		{"feedback no action", "POST", "/v1/feedback", `{"decision_id":"d","customer_id":"x","outcome":"click"}`, 400, "missing_field", "action"},
		{"feedback no outcome", "POST", "/v1/feedback", `{"decision_id":"d","customer_id":"x","action":"a"}`, 400, "missing_field", "outcome"},
		{"feedback outcome", "POST", "/v1/feedback", `{"decision_id":"d","customer_id":"x","action":"a","outcome":"love"}`, 400, "invalid_field", "outcome"},
		{"feedback served", "POST", "/v1/feedback", `{"decision_id":"d","customer_id":"x","action":"a","outcome":"served"}`, 400, "invalid_field", "outcome"},
		{"feedback action", "POST", "/v1/feedback", `{"decision_id":"d","customer_id":"x","action":"a/b","outcome":"click"}`, 400, "invalid_field", "action"},
		{"feedback value", "POST", "/v1/feedback", `{"decision_id":"d","customer_id":"x","action":"a","outcome":"click","value":"1"}`, 400, "invalid_field", "value"},
		{"simulate now", "POST", "/v1/simulate", `{"customer_id":"x","placement":"p","now":"soon"}`, 400, "invalid_field", "now"},
		{"simulate customer id", "POST", "/v1/simulate", `{"customer_id":"x","placement":"p","customer":{"id":"y"}}`, 400, "invalid_field", "customer.id"},
		{"simulate attributes", "POST", "/v1/simulate", `{"customer_id":"x","placement":"p","customer":{"attributes":1}}`, 400, "invalid_field", "customer.attributes"},
		{"simulate event", "POST", "/v1/simulate", `{"customer_id":"x","placement":"p","customer":{"events":[{"type":"ok"},{"type":"NO"}]}}`, 400, "invalid_field", "customer.events[1].type"},
		{"simulate contact", "POST", "/v1/simulate", `{"customer_id":"x","placement":"p","customer":{"contacts":[{"action":"a","outcome":"meh"}]}}`, 400, "invalid_field", "customer.contacts[0].outcome"},
		{"simulate customer type", "POST", "/v1/simulate", `{"customer_id":"x","placement":"p","customer":[]}`, 400, "invalid_field", "customer"},
		{"too large", "POST", "/v1/events", `{"customer_id":"x","type":"view","properties":{"a":"` + strings.Repeat("y", 190) + `","b":"` + strings.Repeat("é", 99) + `","c":"` + strings.Repeat("z", 4000) + `"}}`, 413, "body_too_large", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkError(t, h.do(tt.method, tt.path, tt.body), tt.status, tt.code, tt.field)
		})
	}
	r := h.do("PUT", "/v1/decide", "{}")
	if allow := r.header.Get("Allow"); allow != "GET, POST, OPTIONS" {
		t.Errorf("405 Allow %q", allow)
	}
	if _, stats := h.st.Stats(); len(stats) != 0 {
		t.Errorf("bad requests wrote stats: %v", stats)
	}
	if h.metric("nudge_http_errors_total", "route", "decide", "code", "invalid_field") == 0 {
		t.Errorf("errors not counted by route and code")
	}
}

func TestAuth(t *testing.T) {
	loopback := true
	h := newHarness(t, server.Options{
		APIKey:     "k3y",
		AdminToken: "t0ken",
		IsLoopback: func(net.Addr) bool { return loopback },
	}, nil)
	decide := `{"customer_id":"x","placement":"home_hero"}`
	checkError(t, h.do("POST", "/v1/decide", decide), 401, "unauthorized", "")
	checkError(t, h.do("POST", "/v1/decide", decide, "X-API-Key", "nope"), 401, "unauthorized", "")
	h.ok(h.do("POST", "/v1/decide", decide, "X-API-Key", "k3y"), 200)
	checkError(t, h.do("POST", "/v1/events", `{"customer_id":"x","type":"v"}`), 401, "unauthorized", "")
	checkError(t, h.do("POST", "/v1/feedback", `{}`), 401, "unauthorized", "")

	admin := []struct{ method, path, body string }{
		{"GET", "/v1/customers/x", ""},
		{"PUT", "/v1/customers/x", "{}"},
		{"PATCH", "/v1/customers/x", "{}"},
		{"DELETE", "/v1/customers/x", ""},
		{"POST", "/v1/simulate", decide},
		{"GET", "/v1/stats", ""},
		{"POST", "/v1/rules/reload", ""},
	}
	for _, a := range admin {
		checkError(t, h.do(a.method, a.path, a.body), 401, "unauthorized", "")
		checkError(t, h.do(a.method, a.path, a.body, "Authorization", "Bearer wrong"), 401, "unauthorized", "")
		checkError(t, h.do(a.method, a.path, a.body, "X-API-Key", "k3y"), 401, "unauthorized", "")
		if r := h.do(a.method, a.path, a.body, "Authorization", "Bearer t0ken"); r.status >= 400 && r.status != 404 {
			t.Errorf("%s %s with the admin token: %d %s", a.method, a.path, r.status, r.body)
		}
	}
	// The token suffices off loopback too.
	loopback = false
	h.ok(h.do("GET", "/v1/stats", "", "Authorization", "bearer t0ken"), 200)
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/v1/rules"} {
		if r := h.do("GET", p, ""); r.status != 200 {
			t.Errorf("GET %s without credentials: %d", p, r.status)
		}
	}
}

func TestAdminLoopbackOnlyWithoutToken(t *testing.T) {
	loopback := false
	h := newHarness(t, server.Options{IsLoopback: func(net.Addr) bool { return loopback }}, nil)
	for _, p := range []string{"/v1/customers/x", "/v1/stats"} {
		checkError(t, h.do("GET", p, ""), 403, "forbidden", "")
	}
	checkError(t, h.do("POST", "/v1/rules/reload", ""), 403, "forbidden", "")
	checkError(t, h.do("POST", "/v1/simulate", "{}"), 403, "forbidden", "")
	// Client endpoints do not care where the client is.
	h.ok(h.do("POST", "/v1/decide", `{"customer_id":"x","placement":"home_hero"}`), 200)
	loopback = true
	h.ok(h.do("GET", "/v1/stats", ""), 200)
}

func TestDefaultLoopbackCheck(t *testing.T) {
	// The real check: the harness connects from 127.0.0.1.
	h := newHarness(t, server.Options{}, nil)
	h.ok(h.do("GET", "/v1/stats", ""), 200)
}

func TestCORS(t *testing.T) {
	h := newHarness(t, server.Options{CORSOrigins: []string{"https://shop.example"}, APIKey: "k"}, nil)
	r := h.do("OPTIONS", "/v1/decide", "", "Origin", "https://shop.example", "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "content-type,x-api-key")
	if r.status != 204 || len(r.body) != 0 {
		t.Fatalf("preflight: %d %s", r.status, r.body)
	}
	for k, v := range map[string]string{
		"Access-Control-Allow-Origin":  "https://shop.example",
		"Access-Control-Allow-Methods": "GET, POST, OPTIONS",
		"Access-Control-Allow-Headers": "Content-Type, X-API-Key",
	} {
		if got := r.header.Get(k); got != v {
			t.Errorf("preflight %s: %q; want %q", k, got, v)
		}
	}
	r = h.do("OPTIONS", "/v1/feedback", "", "Origin", "https://shop.example")
	if r.status != 204 || r.header.Get("Access-Control-Allow-Methods") != "POST, OPTIONS" {
		t.Errorf("feedback preflight: %d %v", r.status, r.header)
	}
	r = h.do("OPTIONS", "/v1/decide", "", "Origin", "https://evil.example")
	if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("unlisted origin got CORS headers: %d %v", r.status, r.header)
	}
	r = h.do("POST", "/v1/decide", `{"customer_id":"x","placement":"home_hero"}`, "Origin", "https://shop.example", "X-API-Key", "k")
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "https://shop.example" {
		t.Errorf("decide from the origin: %d %v", r.status, r.header)
	}
	// Errors carry the CORS headers too, so the page can read them.
	r = h.do("POST", "/v1/decide", `{}`, "Origin", "https://shop.example")
	if r.status != 401 || r.header.Get("Access-Control-Allow-Origin") != "https://shop.example" {
		t.Errorf("error to the origin: %d %v", r.status, r.header)
	}
	// "*" allows any origin.
	wild := newHarness(t, server.Options{CORSOrigins: []string{"*"}}, nil)
	r = wild.do("OPTIONS", "/v1/feedback", "", "Origin", "https://anyone.example")
	if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("wildcard preflight: %d %v", r.status, r.header)
	}
	// Admin endpoints are not for browsers.
	r = h.do("OPTIONS", "/v1/stats", "", "Origin", "https://shop.example")
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("stats allows CORS")
	}
}

func TestRulesAndReload(t *testing.T) {
	h := newHarness(t, server.Options{}, nil)
	m := h.ok(h.do("GET", "/v1/rules", ""), 200)
	v := h.src.Current().Version
	if m["version"] != v || fmt.Sprint(m["files"]) != "[main.yaml]" || m["actions"] != 5.0 || m["segments"] != 1.0 ||
		m["last_error"] != nil || m["loaded_at"] != h.now.Format(time.RFC3339) {
		t.Errorf("GET /v1/rules = %v", m)
	}

	h.src.mu.Lock()
	h.src.next = badRules
	h.src.mu.Unlock()
	r := h.do("POST", "/v1/rules/reload", "")
	checkError(t, r, 422, "invalid_rules", "")
	details := r.json(t)["error"].(map[string]any)["details"].([]any)
	d := details[0].(map[string]any)
	if len(details) == 0 || d["file"] != "main.yaml" || d["line"].(float64) < 1 || d["column"].(float64) < 1 || d["message"] == "" {
		t.Errorf("details %v", details)
	}
	if h.src.Current().Version != v {
		t.Errorf("a rejected reload replaced the ruleset")
	}
	m = h.ok(h.do("GET", "/v1/rules", ""), 200)
	le, _ := m["last_error"].(map[string]any)
	if le == nil || le["at"] == nil || len(le["details"].([]any)) == 0 {
		t.Errorf("last_error %v", m["last_error"])
	}

	// A placement the ruleset lacks counts as other, and under its name
	// once a reload adds it.
	h.do("POST", "/v1/decide", `{"customer_id":"x","placement":"side_slot"}`)
	h.src.mu.Lock()
	h.src.next = testRules + "  side_slot: {limit: 1}\n# changed\n"
	h.src.mu.Unlock()
	m = h.ok(h.do("POST", "/v1/rules/reload", ""), 200)
	h.do("POST", "/v1/decide", `{"customer_id":"x","placement":"side_slot"}`)
	if h.metric("nudge_decisions_total", "placement", "other") != 1 || h.metric("nudge_decisions_total", "placement", "side_slot") != 1 {
		t.Errorf("decisions counted as other %v and side_slot %v; want 1 each", h.metric("nudge_decisions_total", "placement", "other"),
			h.metric("nudge_decisions_total", "placement", "side_slot"))
	}
	if nv, _ := m["version"].(string); nv == "" || nv == v || nv != h.src.Current().Version {
		t.Errorf("reload answered %v", m)
	}
	if h.metric("nudge_rules_reloads_total", "result", "ok") != 1 || h.metric("nudge_rules_reloads_total", "result", "error") != 1 {
		t.Errorf("reloads not counted")
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	h := newHarness(t, server.Options{}, nil)
	if m := h.ok(h.do("GET", "/healthz", ""), 200); m["status"] != "ok" {
		t.Errorf("healthz %v", m)
	}
	if m := h.ok(h.do("GET", "/readyz", ""), 200); m["status"] != "ready" {
		t.Errorf("readyz %v", m)
	}
	r := h.do("HEAD", "/healthz", "")
	if r.status != 200 || len(r.body) != 0 {
		t.Errorf("HEAD /healthz: %d %q", r.status, r.body)
	}
	h.do("POST", "/v1/decide", `{"customer_id":"x","placement":"home_hero"}`)
	r = h.do("GET", "/metrics", "")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %s", r.status, r.header.Get("Content-Type"))
	}
	for _, name := range []string{"nudge_decide_duration_seconds_bucket", `nudge_decisions_total{placement="home_hero"} 1`,
		`nudge_http_requests_total{route="decide"} 1`, "nudge_http_inflight_requests", "nudge_feedback_total"} {
		if !strings.Contains(string(r.body), name) {
			t.Errorf("metrics lack %s", name)
		}
	}

	h.src.mu.Lock()
	h.src.rs = nil
	h.src.mu.Unlock()
	checkError(t, h.do("GET", "/readyz", ""), 503, "not_ready", "")
	checkError(t, h.do("POST", "/v1/decide", `{"customer_id":"x","placement":"home_hero"}`), 503, "not_ready", "")
}

type cachedStore struct{ *memstore.Store }

func (cachedStore) CacheStats() (uint64, uint64) { return 7, 3 }
func (cachedStore) Ready() error                 { return errDisk }
func (cachedStore) EngineStats(f func(name, help string, counter bool, value float64)) {
	f("pebble_block_cache_hits_total", "Hits.", true, 11)
	f("pebble_read_amplification", "Read amplification.", false, 2)
}

func TestOptionalStoreInterfaces(t *testing.T) {
	h := newHarness(t, server.Options{}, cachedStore{memstore.New()})
	if h.metric("nudge_cache_hits_total") != 7 || h.metric("nudge_cache_misses_total") != 3 {
		t.Errorf("cache metrics")
	}
	if h.metric("nudge_pebble_block_cache_hits_total") != 11 || h.metric("nudge_pebble_read_amplification") != 2 {
		t.Errorf("engine metrics: hits %v, read amplification %v; want 11, 2",
			h.metric("nudge_pebble_block_cache_hits_total"), h.metric("nudge_pebble_read_amplification"))
	}
	checkError(t, h.do("GET", "/readyz", ""), 503, "not_ready", "")
}

func TestStoreFailure(t *testing.T) {
	st := &hookStore{Store: memstore.New(), onCustomer: func(string) error { return errDisk }}
	h := newHarness(t, server.Options{}, st)
	checkError(t, h.do("POST", "/v1/decide", `{"customer_id":"x","placement":"home_hero"}`), 503, "store_unavailable", "")
	checkError(t, h.do("GET", "/v1/customers/x", ""), 503, "store_unavailable", "")
	// A failed record does not fail the decision.
	st.onCustomer = nil
	st.onRecord = func() error { return errDisk }
	h.ok(h.do("POST", "/v1/decide", `{"customer_id":"x","placement":"home_hero"}`), 200)
	if h.metric("nudge_record_errors_total") != 1 {
		t.Errorf("record error not counted")
	}
	checkError(t, h.do("POST", "/v1/feedback", `{"decision_id":"d","customer_id":"x","action":"a","outcome":"click"}`), 503, "store_unavailable", "")
}

func TestPanicRecovered(t *testing.T) {
	st := &hookStore{Store: memstore.New(), onCustomer: func(id string) error {
		if id == "boom" {
			panic("store exploded")
		}
		return nil
	}}
	h := newHarness(t, server.Options{}, st)
	checkError(t, h.do("POST", "/v1/decide", `{"customer_id":"boom","placement":"home_hero"}`, "Origin", "x"), 500, "internal", "")
	if h.metric("nudge_http_panics_total") != 1 {
		t.Errorf("panic not counted")
	}
	// The server lives on and the in-flight slot was released.
	h.ok(h.do("POST", "/v1/decide", `{"customer_id":"fine","placement":"home_hero"}`), 200)
	if n := h.metric("nudge_http_inflight_requests"); n != 0 {
		t.Errorf("in flight after the panic: %v", n)
	}
}

// blockingStore blocks Customer until release is closed.
func blockingStore() (*hookStore, chan struct{}, chan struct{}) {
	entered, release := make(chan struct{}, 16), make(chan struct{})
	st := &hookStore{Store: memstore.New(), onCustomer: func(string) error {
		entered <- struct{}{}
		<-release
		return nil
	}}
	return st, entered, release
}

func TestInFlightLimit(t *testing.T) {
	st, entered, release := blockingStore()
	h := newHarness(t, server.Options{MaxInFlight: 1}, st)
	var wg sync.WaitGroup
	wg.Add(1)
	var first *response
	go func() {
		defer wg.Done()
		first = h.do("POST", "/v1/decide", `{"customer_id":"x","placement":"home_hero"}`)
	}()
	<-entered
	r := h.do("POST", "/v1/decide", `{"customer_id":"y","placement":"home_hero"}`)
	checkError(t, r, 503, "overloaded", "")
	if r.header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
	}
	// Probes are exempt.
	h.ok(h.do("GET", "/healthz", ""), 200)
	close(release)
	wg.Wait()
	if first.status != 200 {
		t.Errorf("the request in flight got %d", first.status)
	}
	if h.metric("nudge_http_inflight_rejections_total") != 1 {
		t.Errorf("rejection not counted")
	}
	h.ok(h.do("POST", "/v1/decide", `{"customer_id":"y","placement":"home_hero"}`), 200)
}

func TestShutdownDrains(t *testing.T) {
	st, entered, release := blockingStore()
	mem := st.Store
	srv, err := server.New(server.Options{}, st, &fakeRules{rs: mustCompile(t, testRules)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	type result struct {
		status int
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Post("http://"+ln.Addr().String()+"/v1/decide", "application/json",
			strings.NewReader(`{"customer_id":"x","placement":"home_hero"}`))
		if err != nil {
			got <- result{err: err}
			return
		}
		resp.Body.Close()
		got <- result{status: resp.StatusCode}
	}()
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	close(release)
	if r := <-got; r.err != nil || r.status != 200 {
		t.Errorf("the request in flight: %d %v", r.status, r.err)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the request was answered")
	}
	// The drained request was recorded.
	if c, _ := mem.Customer("x"); c == nil || len(c.Contacts) != 1 {
		t.Errorf("drained decision not recorded: %+v", c)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Errorf("still accepting connections after Shutdown")
	}
}

func TestShutdownTimesOut(t *testing.T) {
	st, entered, release := blockingStore()
	defer close(release)
	srv, err := server.New(server.Options{}, st, &fakeRules{rs: mustCompile(t, testRules)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)                                                                                                                              //nolint:errcheck // returns nil on Shutdown
	go http.Post("http://"+ln.Addr().String()+"/v1/decide", "application/json", strings.NewReader(`{"customer_id":"x","placement":"home_hero"}`)) //nolint:errcheck
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Errorf("Shutdown = %v; want DeadlineExceeded", err)
	}
}

func TestOptions(t *testing.T) {
	var o server.Options
	o.EnsureDefaults()
	if o.MaxBodyBytes != 1<<20 || o.MaxDepth != 64 || o.MaxStringBytes != 64<<10 || o.MaxPlacements != 32 ||
		o.MaxBatch != 1000 || o.ReadTimeout != 10*time.Second || o.IdleTimeout != time.Minute || o.MaxInFlight != 1024 ||
		o.DecideTimeout != 50*time.Millisecond || o.Now == nil || o.IsLoopback == nil {
		t.Errorf("defaults: %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	if !o.IsLoopback(&net.TCPAddr{IP: net.IPv6loopback}) || o.IsLoopback(&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1)}) {
		t.Errorf("IsLoopback")
	}
	bad := o
	bad.MaxDepth, bad.MaxBatch, bad.APIKey = -1, -2, "a key"
	bad.CORSOrigins = []string{"https://ok.example", "shop.example", "https://x.example/path"}
	err := bad.Validate()
	if err == nil {
		t.Fatal("invalid options accepted")
	}
	for _, want := range []string{"MaxDepth", "MaxBatch", "APIKey", `"shop.example"`, `"https://x.example/path"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate does not report %s: %v", want, err)
		}
	}
	if _, err := server.New(bad, memstore.New(), &fakeRules{}, nil, nil); err == nil {
		t.Errorf("New accepted invalid options")
	}
}

func TestErrorDetails(t *testing.T) {
	_, err := (&fakeRules{next: badRules}).Reload()
	d := server.ErrorDetails(err)
	if len(d) == 0 || d[0].File != "main.yaml" || d[0].Line == 0 {
		t.Errorf("ErrorDetails(rules error) = %+v", d)
	}
	d = server.ErrorDetails(fmt.Errorf("cannot read rules directory: %w", errDisk))
	if len(d) != 1 || d[0].File != "" || d[0].Message != "cannot read rules directory: disk on fire" {
		t.Errorf("ErrorDetails(plain error) = %+v", d)
	}
	if server.ErrorDetails(nil) != nil {
		t.Errorf("ErrorDetails(nil) not nil")
	}
	_ = store.Served
}
