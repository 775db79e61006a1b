package server

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

var eventBodies = []struct {
	body string
	fast bool // decodeEventsFast decodes it
}{
	{`{"customer_id":"c-0000042","type":"view","value":12.5}`, true},
	{`{"events":[{"customer_id":"c1","type":"view","value":1},{"customer_id":"c2","type":"cart","value":0.25},{"customer_id":"c1","type":"view"}]}`, true},
	{` { "events" : [ ] } `, true},
	{"{\n\t\"customer_id\": \"c1\",\r\n\"type\": \"view\", \"time\": \"2026-11-23T10:00:00Z\", \"properties\": {\"path\": \"/shoes\", \"n\": -1e3, \"ok\": true, \"x\": null}}\n", true},
	{`{"customer_id": "c1", "type": "view", "value": 1}`, true},
	{`{"events": [{"customer_id": "c1", "type": "view", "value": -2.5e1 }]}`, true},
	{`{"customer_id":"c1","type":"view","properties":null}`, true},
	{`{"customer_id":"c1","type":"view","properties":{}}`, true},
	{`{}`, true},
	{`{"events":[{}]}`, true},
	// Not the engine's to accept, but encoding/json decodes it: the
	// handler refuses top-level fields beside a batch.
	{`{"customer_id":"c1","events":[{"customer_id":"c2","type":"view"}]}`, true},
	// The rest go to encoding/json: unusual, wrong, or not ours to judge.
	{`{"customer_id":"c\u0031","type":"view"}`, false},
	{`{"Customer_ID":"c1","type":"view"}`, false},
	{`{"customer_id":"c1","customer_id":"c2"}`, false},
	{`{"events":[{"type":"a","type":"b"}]}`, false},
	{`{"events":[],"events":[]}`, false},
	{`{"customer_id":"c1","extra":1}`, false},
	{`{"events":[{"customer_id":"c1","events":[]}]}`, false},
	{`{"customer_id":null}`, false},
	{`{"value":null}`, false},
	{`{"events":null}`, false},
	{`{"events":{}}`, false},
	{`{"events":[1]}`, false},
	{`{"events":[{"customer_id":"c1"},]}`, false},
	{`{"events":[{"customer_id":"c1"}`, false},
	{`{"value":"1"}`, false},
	{`{"value":1e999}`, false},
	{`{"value":01}`, false},
	{`{"type":1}`, false},
	{`{"properties":{"nested":{"a":1}}}`, false},
	{`{"properties":[1]}`, false},
	{`{"properties":"a string"}`, false},
	{`{"customer_id":"c1",}`, false},
	{`{"customer_id":"c1"}x`, false},
	{`{"customer_id" "c1"}`, false},
	{`[{"customer_id":"c1"}]`, false},
	{``, false},
	{"{\"customer_id\":\"a\tb\"}", false},
}

// compareEvents decodes body both ways; when the fast decoder accepts it,
// encoding/json must accept it too and produce the same events.
func compareEvents(t *testing.T, body []byte) bool {
	t.Helper()
	in, batch, ok := decodeEventsFast(body)
	if !ok {
		return false
	}
	var want eventsFast
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatalf("%q: the fast decoder accepted what encoding/json rejects: %v", body, err)
	}
	if !reflect.DeepEqual(in, want.eventIn) || !reflect.DeepEqual(batch, want.Events) {
		t.Fatalf("%q:\nfast decoder  %s\nencoding/json %s", body, showEvents(in, batch), showEvents(want.eventIn, want.Events))
	}
	return true
}

// showEvents prints what the pointers point to.
func showEvents(in eventIn, batch *[]eventIn) string {
	show := func(in eventIn) string {
		s := func(p *string) string {
			if p == nil {
				return "nil"
			}
			return fmt.Sprintf("%q", *p)
		}
		v := "nil"
		if in.Value != nil {
			v = fmt.Sprint(*in.Value)
		}
		return fmt.Sprintf("{%s %s %s %s %#v}", s(in.CustomerID), s(in.Type), s(in.Time), v, in.Properties)
	}
	out := show(in)
	if batch == nil {
		return out + " events nil"
	}
	out += " events"
	for _, e := range *batch {
		out += " " + show(e)
	}
	return out
}

func TestDecodeEventsFast(t *testing.T) {
	for _, c := range eventBodies {
		if got := compareEvents(t, []byte(c.body)); got != c.fast {
			t.Errorf("%q: decoded in one pass %v; want %v", c.body, got, c.fast)
		}
	}
	// A batch as large as the handler takes, past the slabs' sizes.
	body := batchBody(1000)
	if !compareEvents(t, body) {
		t.Fatal("a batch of 1,000 events was not decoded in one pass")
	}
}

// batchBody is a batch of n events as nudge-bench sends them, of four
// types, with a value.
func batchBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"events":[`)
	types := []string{"view", "purchase", "cart", "search"}
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"customer_id":"c-%07d","type":%q,"value":%g}`, i*7919%1000000, types[i*31%len(types)], float64(i%30000)/100)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// FuzzDecodeEventsFast: whatever the fast decoder accepts, encoding/json
// decodes the same way.
func FuzzDecodeEventsFast(f *testing.F) {
	for _, c := range eventBodies {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !utf8.Valid(body) {
			return // checkJSON rejects it before either decoder runs
		}
		compareEvents(t, body)
	})
}

func BenchmarkDecodeEvents(b *testing.B) {
	body := batchBody(100)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, batch, ok := decodeEventsFast(body); !ok || len(*batch) != 100 {
				b.Fatal("not decoded")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var d eventsFast
			if err := json.Unmarshal(body, &d); err != nil || len(*d.Events) != 100 {
				b.Fatal(err)
			}
		}
	})
}
