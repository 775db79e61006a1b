package server

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

var decideBodies = []struct {
	body string
	fast bool // decodeDecideFast decodes it
}{
	{`{"customer_id":"c-0000042","placements":["home_hero","cart"],"channel":"web","context":{"page":"/","device":"mobile"}}`, true},
	{` { "customer_id" : "c1" , "placement" : "home_hero" } `, true},
	{"{\n\t\"customer_id\": \"c1\",\r\n\"placements\": [ ],\"context\": {}}\n", true},
	{`{"customer_id":"c1","placements":["a"],"context":{"n":-12.5e3,"z":0,"f":false,"t":true,"x":null,"s":"Zürich","e":1E+2,"d":0.25}}`, true},
	{`{"context":null,"customer_id":"c1"}`, true},
	{`{}`, true},
	// The rest go to encoding/json: unusual, wrong, or not ours to judge.
	{`{"customer_id":"c\u0031","placements":["a"]}`, false},
	{`{"Customer_ID":"c1","placements":["a"]}`, false},
	{`{"customer_id":"c1","customer_id":"c2"}`, false},
	{`{"customer_id":"c1","extra":1}`, false},
	{`{"customer_id":null}`, false},
	{`{"placements":null}`, false},
	{`{"placements":["a",1]}`, false},
	{`{"context":{"nested":{"a":1}}}`, false},
	{`{"context":{"list":[1]}}`, false},
	{`{"context":"a string"}`, false},
	{`{"context":{"n":01}}`, false},
	{`{"context":{"n":1.}}`, false},
	{`{"context":{"n":-}}`, false},
	{`{"context":{"n":1e999}}`, false},
	{`{"context":{"n":+1}}`, false},
	{`{"context":{"b":tru}}`, false},
	{`{"customer_id":"c1",}`, false},
	{`{"customer_id":"c1"}x`, false},
	{`{"customer_id":"c1"`, false},
	{`{"customer_id" "c1"}`, false},
	{`["c1"]`, false},
	{``, false},
	{"{\"customer_id\":\"a\tb\"}", false},
}

// compareDecode decodes body both ways; when the fast decoder accepts it,
// encoding/json must accept it too and produce the same body. The fast
// decoder decodes into a reset body that held another request, as in the
// server's pool.
func compareDecode(t *testing.T, body []byte) bool {
	t.Helper()
	var fast decideBody
	if !decodeDecideFast([]byte(decideBodies[0].body), &fast) {
		t.Fatal("the first body was not decoded in one pass")
	}
	fast.reset()
	if !decodeDecideFast(body, &fast) {
		return false
	}
	var want decideBody
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatalf("%q: the fast decoder accepted what encoding/json rejects: %v", body, err)
	}
	if fast.CustomerID != want.CustomerID || fast.Placement != want.Placement || fast.Channel != want.Channel ||
		!slices.Equal(fast.Placements, want.Placements) || !reflect.DeepEqual(fast.Context, want.Context) {
		t.Fatalf("%q:\nfast decoder  %#v\nencoding/json %#v", body, fast, want)
	}
	return true
}

func TestDecodeDecideFast(t *testing.T) {
	for _, c := range decideBodies {
		if got := compareDecode(t, []byte(c.body)); got != c.fast {
			t.Errorf("%q: decoded in one pass %v; want %v", c.body, got, c.fast)
		}
	}
}

// FuzzDecodeDecideFast: whatever the fast decoder accepts, encoding/json
// decodes the same way.
func FuzzDecodeDecideFast(f *testing.F) {
	for _, c := range decideBodies {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !utf8.Valid(body) {
			return // checkJSON rejects it before either decoder runs
		}
		compareDecode(t, body)
	})
}

// TestDecideBodyReuse: a reset body reuses its context map, empty.
func TestDecideBodyReuse(t *testing.T) {
	var b decideBody
	if !decodeDecideFast([]byte(`{"context":{"a":"1","b":2}}`), &b) {
		t.Fatal("not decoded in one pass")
	}
	first := reflect.ValueOf(b.Context).UnsafePointer()
	b.reset()
	if b.Context != nil || len(b.ctx) != 0 {
		t.Fatalf("after reset: context %v, pooled map %v", b.Context, b.ctx)
	}
	if !decodeDecideFast([]byte(`{"context":{"c":true}}`), &b) {
		t.Fatal("not decoded in one pass")
	}
	if got := b.Context.(map[string]any); !reflect.DeepEqual(got, map[string]any{"c": true}) ||
		reflect.ValueOf(got).UnsafePointer() != first {
		t.Errorf("second context %v: want map[c:true] in the first request's map", got)
	}
	// A body the fast decoder gives up on midway leaves the map empty.
	b.reset()
	if decodeDecideFast([]byte(`{"context":{"a":"1","b":[2]}}`), &b) {
		t.Fatal("a nested context was decoded in one pass")
	}
	b.reset()
	if len(b.ctx) != 0 {
		t.Errorf("after a failed decode and reset: pooled map %v", b.ctx)
	}
	// A large context's map is not kept.
	big := `{"context":{`
	for i := range maxPooledContext + 1 {
		if i > 0 {
			big += ","
		}
		big += `"k` + strconv.Itoa(i) + `":1`
	}
	if !decodeDecideFast([]byte(big+"}}"), &b) {
		t.Fatal("not decoded in one pass")
	}
	if b.reset(); b.ctx != nil {
		t.Errorf("a map of %d keys was kept for reuse", maxPooledContext+1)
	}
}

func BenchmarkDecodeDecide(b *testing.B) {
	body := []byte(decideBodies[0].body)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		var d decideBody
		for b.Loop() {
			d.reset()
			if !decodeDecideFast(body, &d) {
				b.Fatal("not decoded")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		var d decideBody
		for b.Loop() {
			d = decideBody{Placements: d.Placements[:0]}
			if err := json.Unmarshal(body, &d); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A decide body repeating the names of the request before (placements,
// channel, context keys and string values) decodes them without
// allocating: only the customer id is new.
func TestDecodeDecideWords(t *testing.T) {
	body := []byte(`{"customer_id":"c-0000042","placements":["home_hero","product_page"],"channel":"web","context":{"page":"/","device":"mobile","n":2}}`)
	var b decideBody
	if !decodeDecideFast(body, &b) {
		t.Fatal("not decoded in one pass")
	}
	want := map[string]any{"page": "/", "device": "mobile", "n": 2.0}
	if !reflect.DeepEqual(b.Context, want) || b.Channel != "web" || !reflect.DeepEqual(b.Placements, []string{"home_hero", "product_page"}) {
		t.Fatalf("decoded %+v", b)
	}
	allocs := testing.AllocsPerRun(100, func() {
		b.reset()
		if !decodeDecideFast(body, &b) {
			t.Fatal("not decoded in one pass")
		}
	})
	// The customer id, and the number 2 boxed in the context's any.
	if allocs > 2 {
		t.Errorf("%.0f allocations decoding the same body again; want at most 2", allocs)
	}

	// Ever new strings: the words stay bounded, and long ones are not kept.
	for i := range 3 * maxWords {
		b.reset()
		long := strings.Repeat("x", maxWordBytes+1)
		req := fmt.Sprintf(`{"customer_id":"c","placements":["p%d"],"context":{"k%d":"%s"}}`, i, i, long)
		if !decodeDecideFast([]byte(req), &b) {
			t.Fatalf("%s: not decoded in one pass", req)
		}
		if b.Placements[0] != fmt.Sprintf("p%d", i) || b.Context.(map[string]any)[fmt.Sprintf("k%d", i)] != long {
			t.Fatalf("%s: decoded %+v", req, b)
		}
		if len(b.words) > maxWords {
			t.Fatalf("%d words kept; want at most %d", len(b.words), maxWords)
		}
		if _, kept := b.words[long]; kept {
			t.Fatalf("a %d-byte string was kept", len(long))
		}
	}
}
