package server

import (
	"encoding/json"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/store"
	"github.com/nudge-engine/nudge/store/memstore"
)

func TestAppendMatchesEncodingJSON(t *testing.T) {
	f := func(v any) {
		t.Helper()
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendValue(nil, v); string(got) != string(want) {
			t.Errorf("appendValue(%#v) = %s; want %s", v, got, want)
		}
	}
	f("plain")
	f("quote \" backslash \\ slash / tab \t nl \n cr \r bell \x07 del \x7f")
	f("<script>&amp;</script>")
	f("line\u2028sep\u2029 é 日本 🎉")
	f("bad \xff utf8 \xc3")
	f("")
	for _, x := range []float64{0, 1, -1, 0.83, 1e20, 1e21, 1e-6, 1e-7, 123456789.125, -2.5e-9, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		f(x)
	}
	f(map[string]any{"b": 1.5, "a": []any{true, false, nil, "x", map[string]any{}}, "c": map[string]any{"z": "y"}, "": 0})
	many := map[string]any{}
	for i := range 40 {
		many[strings.Repeat("k", i)] = float64(i)
	}
	f(many)
	f([]string{"a", "b"})
	f(42)
	f(int64(-7))
	f(struct{ X int }{3}) // through encoding/json
	if got := string(appendValue(nil, math.Inf(1))); got != "null" {
		t.Errorf("Inf = %s; want null", got)
	}
}

func TestCheckJSON(t *testing.T) {
	f := func(body string, depth, str int, wantCode string) {
		t.Helper()
		err := checkJSON([]byte(body), depth, str)
		switch {
		case wantCode == "" && err != nil:
			t.Errorf("checkJSON(%q) = %v; want ok", body, err)
		case wantCode != "" && (err == nil || err.code != wantCode):
			t.Errorf("checkJSON(%q) = %v; want %s", body, err, wantCode)
		}
	}
	f(`{"a":[1,{"b":[]}]}`, 4, 10, "")
	f(`{"a":[1,{"b":[]}]}`, 3, 10, codeTooDeep)
	f(`{"a":"[[[[[[["}`, 1, 10, "") // brackets inside strings do not nest
	f(`{"a":"\"[[[["}`, 1, 10, "")
	f(`"0123456789"`, 1, 10, "")
	f(`"01234567890"`, 1, 10, codeStringTooLong)
	f(`"\u00e9\u00e9\u00e9\u00e9\u00e9"`, 1, 10, "") // 5 × 2 bytes
	f(`"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"`, 1, 10, codeStringTooLong)
	f(`"\u65e5\u65e5\u65e5"`, 1, 9, "")       // 3 × 3 bytes
	f(`"\ud83c\udf89\ud83c\udf89"`, 1, 8, "") // 2 × 4 bytes
	f(`"\n\t\\\"\/abcde"`, 1, 10, "")         // 5 escapes, 5 letters
	f(`{"0123456789a":1}`, 1, 10, codeStringTooLong)
	f("\"\xff\"", 1, 10, codeInvalidUTF8)
	f(`"unterminated`, 1, 100, "")
	f(`"\u12`, 1, 100, "")
}

func TestCheckID(t *testing.T) {
	f := func(id string, ok bool) {
		t.Helper()
		err := store.ValidateID(id)
		if got := err == nil; got != ok {
			t.Errorf("store.ValidateID(%q) = %v; want ok=%v", id, err, ok)
		}
	}
	f("c-1042", true)
	f("visitor 7", true)
	f("Zoé@example.com", true)
	f(strings.Repeat("a", 128), true)
	f(strings.Repeat("a", 129), false)
	f("", false)
	f("a/b", false)
	f("a\x00b", false)
	f("a\tb", false)
	f("a\x7fb", false)
	f("a\u0085b", false) // C1 control
	f("a\u200bb", false) // zero-width space: not printable
	f("a\xffb", false)
}

func TestParseTime(t *testing.T) {
	f := func(s string, want time.Time, ok bool) {
		t.Helper()
		got, err := parseTime("time", &s, time.Time{})
		if (err == nil) != ok || (ok && !got.Equal(want)) {
			t.Errorf("parseTime(%q) = %v, %v; want %v ok=%v", s, got, err, want, ok)
		}
	}
	f("2026-11-23T10:00:00Z", time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), true)
	f("2026-11-23T10:00:00.25+01:00", time.Date(2026, 11, 23, 9, 0, 0, 25e7, time.UTC), true)
	f("2026-11-23", time.Time{}, false)
	f("9999-01-01T00:00:00Z", time.Time{}, false)
	def := time.Unix(5, 0)
	if got, err := parseTime("time", nil, def); err != nil || !got.Equal(def) {
		t.Errorf("absent time: %v %v", got, err)
	}
}

// FuzzDecide feeds arbitrary bodies to the decide, events, feedback and
// simulate handlers: no input may cause a 5xx or a response that is not
// JSON.
func FuzzDecide(f *testing.F) {
	for _, seed := range []string{
		`{"customer_id":"c-1","placements":["home_hero","cart"],"channel":"web","context":{"a":[1,{"b":null}]}}`,
		`{"customer_id":"c-1","placement":"home_hero"}`,
		`{"events":[{"customer_id":"c","type":"view","time":"2026-01-01T00:00:00Z","value":1,"properties":{}}]}`,
		`{"decision_id":"d","customer_id":"c","action":"a","outcome":"click","value":2}`,
		`{"customer_id":"c","placement":"p","customer":{"events":[{"type":"x"}],"contacts":[{"action":"a","outcome":"served"}]}}`,
		`[[[[[[`, `"\u00`, "{\"\xff\":1}", `{"customer_id":1e999}`, ``, `null`,
	} {
		f.Add(seed)
	}
	rs, err := rules.Compile([]rules.File{{Name: "r.yaml", Data: []byte(`
actions:
  - id: a
    placements: [home_hero]
    content: {t: "{{ context.a ?? 'x' }}"}
placements:
  home_hero: {limit: 1}
`)}})
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(Options{MaxDepth: 16, MaxStringBytes: 256}, memstore.New(), staticRules{rs}, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{"/v1/decide", "/v1/events", "/v1/feedback", "/v1/simulate", "/v1/customers/x"} {
			var req fasthttp.Request
			req.Header.SetMethod(fasthttp.MethodPost)
			if path == "/v1/customers/x" {
				req.Header.SetMethod(fasthttp.MethodPatch)
			}
			req.SetRequestURI(path)
			req.SetBodyString(body)
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, addr, nil)
			h(&ctx)
			if code := ctx.Response.StatusCode(); code >= 500 {
				t.Fatalf("%s %q: %d %s", path, body, code, ctx.Response.Body())
			}
			if !json.Valid(ctx.Response.Body()) {
				t.Fatalf("%s %q: invalid JSON response %q", path, body, ctx.Response.Body())
			}
		}
	})
}

type staticRules struct{ rs *rules.Ruleset }

func (s staticRules) Current() *rules.Ruleset { return s.rs }
func (s staticRules) Status() RulesStatus     { return RulesStatus{Version: s.rs.Version} }
func (s staticRules) Reload() (string, error) { return s.rs.Version, nil }
