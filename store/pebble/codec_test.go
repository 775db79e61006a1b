package pebblestore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/store"
)

// randValue returns a random attribute value of the JSON data model.
func randValue(r *rand.Rand, depth int) any {
	n := 7
	if depth > 3 {
		n = 5 // no more nesting
	}
	switch r.IntN(n) {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		switch r.IntN(4) {
		case 0:
			return float64(r.IntN(1000))
		case 1:
			return math.Round(r.Float64()*10000) / 100 // a price
		case 2:
			return r.NormFloat64() * 1e12
		default:
			return -r.ExpFloat64()
		}
	case 3:
		return randString(r, 20)
	case 4:
		return randString(r, 3) + "é\x00"
	case 5:
		a := make([]any, r.IntN(4))
		for i := range a {
			a[i] = randValue(r, depth+1)
		}
		return a
	default:
		m := map[string]any{}
		for range r.IntN(4) {
			m[randString(r, 8)] = randValue(r, depth+1)
		}
		return m
	}
}

func randString(r *rand.Rand, max int) string {
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return string(b)
}

// randCustomer builds a customer the way the store does: attributes from
// JSON, events through AddEvent, contacts through AddContact.
func randCustomer(r *rand.Rand, id string) *store.Customer {
	c := &store.Customer{ID: id}
	if r.IntN(5) > 0 {
		c.Attributes = map[string]any{}
		for range r.IntN(12) {
			c.Attributes[randString(r, 12)] = randValue(r, 0)
		}
	}
	base := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC).UnixNano()
	types := []string{"view", "cart", "purchase", "complaint", "login"}
	for range r.IntN(4) {
		typ := types[r.IntN(len(types))]
		for range r.IntN(60) {
			at := base - r.Int64N(int64(200*24*time.Hour)) + r.Int64N(int64(time.Hour))
			v := 0.0
			if r.IntN(2) == 0 {
				v = math.Round(r.Float64()*20000) / 100
			}
			c.AddEvent(typ, at, v)
		}
	}
	actions := []string{"winback-20", "brand-story", "free-shipping"}
	channels := []string{"web", "email", "app", ""}
	for range r.IntN(30) {
		c.AddContact(store.Contact{
			Action:  store.Intern(actions[r.IntN(len(actions))]),
			Outcome: store.Outcome(r.IntN(5)),
			Channel: store.Intern(channels[r.IntN(len(channels))]),
			At:      base - r.Int64N(int64(90*24*time.Hour)),
		})
	}
	return c
}

// canon maps empty slices and maps of the event aggregates and contacts to
// nil, which the encoding does not distinguish, and summarizes the
// contacts' outcomes as a store does.
func canon(c *store.Customer) *store.Customer {
	c = c.Copy()
	c.SetAttributes(c.AttributeMap())
	c.Events, c.EncodedEvents = c.EventMap(), nil
	c.Outcomes = store.SummarizeOutcomes(c.Contacts)
	if len(c.Events) == 0 {
		c.Events = nil
	}
	for _, s := range c.Events {
		if len(s.Days) == 0 {
			s.Days = nil
		}
		if len(s.Recent) == 0 {
			s.Recent = nil
		}
	}
	if len(c.Contacts) == 0 {
		c.Contacts = nil
	}
	return c
}

// roundTrip encodes c as its main record and contact log and decodes them.
// The log is written as Pebble's merger would leave it after appends of
// one to three contacts, in an order that keeps contacts at one time in
// their order but may put later times first (a customer recorded while
// not cached).
func roundTrip(t *testing.T, c *store.Customer) *store.Customer {
	t.Helper()
	rec, err := appendCustomer([]byte("garbage to keep"), c)
	if err != nil {
		t.Fatalf("appendCustomer: %v", err)
	}
	got, err := decodeCustomer(c.ID, string(rec[len("garbage to keep"):]))
	if err != nil {
		t.Fatalf("decodeCustomer: %v", err)
	}
	checkEncoded(t, got, c.Attributes)
	checkEncodedEvents(t, got, c.Events)
	var chunks [][]byte
	for cts := c.Contacts; len(cts) > 0; {
		n := min(len(cts), 1+len(chunks)%3)
		chunks = append(chunks, appendContacts(nil, cts[:n]))
		cts = cts[n:]
	}
	// Swap neighbouring chunks whose times do not overlap.
	for i := 1; i < len(chunks); i += 2 {
		a, b := decodeLog(t, chunks[i-1]), decodeLog(t, chunks[i])
		if a[len(a)-1].At < b[0].At {
			chunks[i-1], chunks[i] = chunks[i], chunks[i-1]
		}
	}
	var cd contactDecoder
	got.Contacts, err = cd.decodeContacts(nil, bytes.Join(chunks, nil))
	if err != nil {
		t.Fatalf("decoding contact log: %v", err)
	}
	got.Outcomes = store.SummarizeOutcomes(got.Contacts)
	got.SetAttributes(got.AttributeMap()) // compared as canon's
	got.Events, got.EncodedEvents = got.EventMap(), nil
	return got
}

// checkEncoded checks that c, as decoded, keeps its attributes encoded and
// answers each of want's (the attributes encoded) through Attr, and nil
// for others; canon then compares the whole map (Map).
func checkEncoded(t *testing.T, c *store.Customer, want map[string]any) {
	t.Helper()
	if c.Attributes != nil {
		t.Fatalf("decoded attributes into a map: %v", c.Attributes)
	}
	if want == nil {
		if c.Encoded != nil {
			t.Fatalf("attributes %#v encoded for none", c.Encoded)
		}
		return
	}
	if c.Encoded == nil || c.Encoded.Len() != len(want) {
		t.Fatalf("encoded attributes %#v; want %d", c.Encoded, len(want))
	}
	for k, v := range want {
		if got := c.Attr(k); !reflect.DeepEqual(got, v) && !containsNaNValue(v) {
			t.Fatalf("attribute %q: got %#v; want %#v", k, got, v)
		}
	}
	for _, k := range []string{"", "absent", "\x00"} {
		if _, ok := want[k]; !ok && c.Attr(k) != nil {
			t.Fatalf("attribute %q is absent but Attr answers %#v", k, c.Attr(k))
		}
	}
	// One scan gives every key once, and the value at each position is
	// the key's.
	seen := map[string]bool{}
	if !c.ScanAttrs(func(k string, at int) {
		v, ok := want[k]
		if !ok || seen[k] {
			t.Fatalf("scan gave key %q: absent, or twice", k)
		}
		seen[k] = true
		got := c.AttrAt(at)
		if !reflect.DeepEqual(got, v) && !containsNaNValue(v) {
			t.Fatalf("attribute %q at %d: got %#v; want %#v", k, at, got, v)
		}
		// NumberAt answers a number as AttrAt does, and nothing else.
		f, isNum := c.NumberAt(at)
		if g, gNum := got.(float64); isNum != gNum || isNum && math.Float64bits(f) != math.Float64bits(g) {
			t.Fatalf("attribute %q at %d: NumberAt %v, %v; AttrAt %#v", k, at, f, isNum, got)
		}
	}) {
		t.Fatal("ScanAttrs declined encoded attributes")
	}
	if len(seen) != len(want) {
		t.Fatalf("scan gave %d keys; want %d", len(seen), len(want))
	}
}

// checkEncodedEvents checks that c, as decoded, keeps its events encoded
// and that Stats decodes each type of want (the events encoded) as Map
// does, into one EventStats reused from type to type, and finds no other.
func checkEncodedEvents(t *testing.T, c *store.Customer, want map[string]*store.EventStats) {
	t.Helper()
	if c.Events != nil {
		t.Fatalf("decoded events into a map: %v", c.Events)
	}
	if len(want) == 0 {
		if c.EncodedEvents != nil {
			t.Fatalf("events %#v encoded for none", c.EncodedEvents)
		}
		return
	}
	if c.EncodedEvents == nil || c.EncodedEvents.Len() != len(want) {
		t.Fatalf("encoded events %#v; want %d types", c.EncodedEvents, len(want))
	}
	all := c.EncodedEvents.Map()
	var s store.EventStats // reused: what one type leaves must not show in the next
	for _, typ := range slices.Sorted(maps.Keys(want)) {
		if !c.EncodedEvents.Stats(typ, &s) {
			t.Fatalf("Stats(%q) found nothing", typ)
		}
		got, w := canonStats(s), canonStats(*all[typ])
		if !reflect.DeepEqual(got, w) && !math.IsNaN(s.Sum) {
			t.Fatalf("Stats(%q) = %+v; Map has %+v", typ, got, w)
		}
	}
	if c.EncodedEvents.Stats("absent", &s) {
		t.Fatal("Stats found an absent type")
	}
}

// canonStats is s with empty arrays nil, as the decoder leaves them.
func canonStats(s store.EventStats) store.EventStats {
	if len(s.Days) == 0 {
		s.Days = nil
	}
	if len(s.Recent) == 0 {
		s.Recent = nil
	}
	return s
}

func decodeLog(t *testing.T, log []byte) []store.Contact {
	t.Helper()
	var cd contactDecoder
	cts, err := cd.decodeContacts(nil, log)
	if err != nil {
		t.Fatalf("decoding contact log: %v", err)
	}
	return cts
}

func TestCodecRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for i := range 2000 {
		c := randCustomer(r, fmt.Sprintf("c-%d", i))
		got := roundTrip(t, c)
		if want := canon(c); !reflect.DeepEqual(got, want) {
			t.Fatalf("customer %d: round trip changed it\ngot  %#v\nwant %#v", i, got, want)
		}
	}
}

func TestCodecEdgeValues(t *testing.T) {
	f := func(name string, c *store.Customer) {
		t.Helper()
		if got, want := roundTrip(t, c), canon(c); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v; want %#v", name, got, want)
		}
	}
	f("empty", &store.Customer{ID: "a"})
	f("empty attributes", &store.Customer{ID: "a", Attributes: map[string]any{}})
	f("extreme numbers", &store.Customer{ID: "a", Attributes: map[string]any{
		"max": math.MaxFloat64, "min": -math.SmallestNonzeroFloat64, "negzero": math.Copysign(0, -1),
		"big": float64(1 << 53), "empty": "", "list": []any{}, "obj": map[string]any{},
		"prices": []any{19.99, -0.07, 0.1, 1e-7, 1250.5, float64(1<<50) - 0.5, float64(1 << 50), math.Inf(-1), 1.0 / 3},
	}})
	f("extreme times", &store.Customer{ID: "a",
		Events: map[string]*store.EventStats{"x": {Count: math.MaxInt64, Sum: -1, First: math.MinInt64 / 2, Last: math.MaxInt64 / 2,
			Days:   []store.DayBucket{{Day: math.MinInt32, Count: math.MaxUint32}, {Day: math.MaxInt32, Count: 1, Sum: 0.1}},
			Recent: []store.Stamp{{At: math.MaxInt64 / 2, Value: 1}, {At: math.MinInt64 / 2, Value: 2}}}},
		Contacts: []store.Contact{{Action: store.Intern("b"), Channel: store.Intern("a"), At: math.MinInt64}, {Action: store.Intern("a"), Outcome: store.Convert, At: math.MaxInt64}},
	})
}

func TestCodecSize(t *testing.T) {
	// A typical customer (bench_test.go): a dozen attributes, three event
	// types, twenty contacts. Its record must stay far below its JSON form.
	c := typicalCustomer("c-1042")
	rec, err := appendCustomer(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(c)
	t.Logf("record %d bytes, JSON %d bytes", len(rec), len(js))
	if len(rec)*2 > len(js) {
		t.Errorf("record is %d bytes; want less than half of JSON's %d", len(rec), len(js))
	}
}

func TestDecodeCorrupt(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 3))
	var c *store.Customer
	for c == nil || c.Attributes == nil || len(c.Events) == 0 || len(c.Contacts) == 0 {
		c = randCustomer(r, "x")
	}
	rec, err := appendCustomer(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	// Every truncation is an error, never a panic or a silent success.
	for n := range len(rec) {
		if _, err := decodeCustomer("x", string(rec[:n])); err == nil {
			t.Fatalf("decoding %d of %d bytes: no error", n, len(rec))
		}
	}
	if _, err := decodeCustomer("x", string(append(rec, 0))); err == nil {
		t.Error("trailing byte: no error")
	}
	bad := append([]byte{recordV2 + 1}, rec[1:]...)
	if _, err := decodeCustomer("x", string(bad)); err == nil {
		t.Error("unknown version: no error")
	}
}

func FuzzDecodeCustomer(f *testing.F) {
	r := rand.New(rand.NewPCG(4, 5))
	for range 8 {
		rec, err := appendCustomer(nil, randCustomer(r, "x"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(rec)
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		c, err := decodeCustomer("x", string(rec))
		if err != nil {
			if _, _, everr := decodeEvents("x", string(rec), nil); everr == nil {
				t.Fatalf("decodeCustomer: %v; decodeEvents: no error", err)
			}
			return
		}
		// A write of events touches some of the record's types, every
		// other one of them here, and a type it does not have.
		var types []string
		for i, typ := range slices.Sorted(maps.Keys(c.Events)) {
			if i%2 == 0 {
				types = append(types, typ)
			}
		}
		types = append(types, "fuzz-new-type")
		events, k, everr := decodeEvents("x", string(rec), types)
		if everr != nil {
			t.Fatalf("decodeCustomer: no error; decodeEvents: %v", everr)
		}
		// What decodes re-encodes to something that decodes the same.
		again, err := appendCustomer(nil, c)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		c2, err := decodeCustomer("x", string(again))
		if err != nil {
			t.Fatalf("decoding the re-encoding: %v", err)
		}
		if !containsNaN(c) && !reflect.DeepEqual(canon(c), canon(c2)) {
			t.Fatalf("re-encoding changed the customer")
		}
		// The events decoded are the record's of those types, and with
		// what was kept encoded they make the same record again.
		if events.AttributeMap() != nil {
			t.Fatalf("decodeEvents decoded attributes %v", events.AttributeMap())
		}
		want := &store.Customer{ID: "x"}
		for _, typ := range types {
			if s, ok := c.Events[typ]; ok {
				if want.Events == nil {
					want.Events = map[string]*store.EventStats{}
				}
				want.Events[typ] = s
			}
		}
		if !containsNaN(c) && !reflect.DeepEqual(canon(want), canon(events)) {
			t.Fatalf("decodeEvents: events %+v; want %+v", events.Events, want.Events)
		}
		rebuilt, err := appendRecord(nil, events, k)
		if err != nil {
			t.Fatal(err)
		}
		c3, err := decodeCustomer("x", string(rebuilt))
		if err != nil {
			t.Fatalf("decoding events and what was kept %+v: %v", k, err)
		}
		if !containsNaN(c) && !reflect.DeepEqual(canon(c), canon(c3)) {
			t.Fatalf("events and what was kept: %+v; want %+v", c3, c)
		}
		// Events of the types decoded, written with what was kept, give
		// what the same events give on the whole customer.
		for _, typ := range types {
			events.AddEvent(typ, 1_700_000_000_000_000_000, 2.5)
			c.AddEvent(typ, 1_700_000_000_000_000_000, 2.5)
		}
		if rebuilt, err = appendRecord(nil, events, k); err != nil {
			t.Fatal(err)
		}
		if c3, err = decodeCustomer("x", string(rebuilt)); err != nil {
			t.Fatalf("decoding after events: %v", err)
		}
		if !containsNaN(c) && !reflect.DeepEqual(canon(c), canon(c3)) {
			t.Fatalf("after events, written with what was kept: %+v; want %+v", c3, c)
		}
	})
}

// containsNaNValue reports whether attribute value v holds a NaN, which
// no comparison finds equal.
func containsNaNValue(v any) bool {
	switch v := v.(type) {
	case float64:
		return math.IsNaN(v)
	case []any:
		return slices.ContainsFunc(v, containsNaNValue)
	case map[string]any:
		for _, e := range v {
			if containsNaNValue(e) {
				return true
			}
		}
	}
	return false
}

func containsNaN(c *store.Customer) bool {
	if containsNaNValue(c.AttributeMap()) {
		return true
	}
	for _, s := range c.EventMap() {
		if math.IsNaN(s.Sum) {
			return true
		}
		for _, d := range s.Days {
			if math.IsNaN(d.Sum) {
				return true
			}
		}
		for _, st := range s.Recent {
			if math.IsNaN(st.Value) {
				return true
			}
		}
	}
	return false
}

func TestNormalize(t *testing.T) {
	in := map[string]any{"a": 1, "b": map[string]any{"c": int64(2), "d": []any{uint8(3), "x"}}, "e": 1.5, "f": json.Number("7")}
	got, err := normalize(in)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": 1.0, "b": map[string]any{"c": 2.0, "d": []any{3.0, "x"}}, "e": 1.5, "f": 7.0}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v; want %#v", got, want)
	}
	if _, ok := in["a"].(int); !ok {
		t.Error("normalize modified its input")
	}
	// Already JSON: the same map, not a copy.
	js := map[string]any{"a": 1.0, "b": []any{"x", nil, true}}
	if got, _ := normalize(js); reflect.ValueOf(got).Pointer() != reflect.ValueOf(js).Pointer() {
		t.Error("normalize copied a JSON map")
	}
	if _, err := normalize(map[string]any{"nan": math.NaN()}); err == nil {
		t.Error("NaN: no error")
	}
	if _, err := normalize(map[string]any{"ch": make(chan int)}); err == nil {
		t.Error("channel: no error")
	}
}

func TestStatsCodec(t *testing.T) {
	stats := map[string]*store.ActionStats{
		"a": {Counters: store.Counters{Served: 10, Click: 3, Accept: 1, Dismiss: 2, Convert: 1, Holdout: 4, Value: 99.5}},
		"b": {Counters: store.Counters{Served: 1}, Variants: map[string]*store.Counters{
			"x": {Served: 1, Value: -1}, "control": {Holdout: 7},
		}},
	}
	got, err := decodeStats(string(appendStats(nil, stats)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, stats) {
		t.Errorf("got %#v; want %#v", got, stats)
	}
	if _, err := decodeStats(string(appendStats(nil, stats)[:10])); err == nil {
		t.Error("truncated: no error")
	}
}

func TestServeLog(t *testing.T) {
	base := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) int64 { return base.Add(d).UnixNano() }
	var l serveLog
	// One serve at 00:00:30, two at 10:15:10, one every hour of the 40
	// days before base (older ones lose minute detail).
	l.add(at(30*time.Second), 1)
	l.add(at(10*time.Hour+15*time.Minute+10*time.Second), 1)
	l.add(at(10*time.Hour+15*time.Minute+50*time.Second), 1)
	for h := 1; h <= 40*24; h++ {
		l.add(at(-time.Duration(h)*time.Hour+5*time.Minute), 1)
	}
	f := func(since time.Duration, want int64) {
		t.Helper()
		if got := l.since(at(since)); got != want {
			t.Errorf("since %v: got %d; want %d", since, got, want)
		}
	}
	f(10*time.Hour+16*time.Minute, 0)
	f(10*time.Hour+15*time.Minute+55*time.Second, 2) // the minute holding since counts fully
	f(10*time.Hour+15*time.Minute, 2)
	f(10*time.Hour+14*time.Minute, 2)
	f(time.Minute, 2)
	f(0, 3)
	f(-time.Hour+6*time.Minute, 3)      // minutes still kept 11h before the latest
	f(-time.Hour+5*time.Minute, 4)      //
	f(-30*time.Hour+10*time.Minute, 33) // beyond 25 hours the whole hour counts
	f(-40*24*time.Hour, 3+40*24)
	f(-100*24*time.Hour, 3+40*24)

	// A serve 100 days later drops everything older than the kept days.
	l.add(at(100*24*time.Hour), 1)
	f(-100*24*time.Hour, 1)
	if !l.pruned {
		t.Error("pruned not set")
	}
}

// TestContactNames: contacts decoded from different logs, each by its
// own decoder, hold the same names, the store's for those strings; a
// decoder that decoded a log before (decoderPool) decodes the next as a
// new one does.
func TestContactNames(t *testing.T) {
	log := appendContacts(nil, []store.Contact{{Action: store.Intern("shared-action-x"), Channel: store.Intern("web")}, {Action: store.Intern("shared-action-x"), Channel: store.Intern("email")}})
	var a, b contactDecoder
	ca, err := a.decodeContacts(nil, log)
	if err != nil {
		t.Fatal(err)
	}
	// A log written by an earlier process: its names are new to this one.
	other := appendString(binary.AppendVarint([]byte{contactV2, 0}, 1), "action-of-another-process")
	other = appendString(other, "kiosk")
	cb, err := b.decodeContacts(nil, append(slices.Clone(log), other...))
	if err != nil {
		t.Fatal(err)
	}
	if ca[0].Action != cb[1].Action || ca[1].Channel != cb[1].Channel || ca[0].Channel == ca[1].Channel {
		t.Errorf("names differ between decoders: %v, %v", ca, cb)
	}
	for _, k := range []store.Contact{ca[0], ca[1], cb[2]} {
		for _, n := range []store.Name{k.Action, k.Channel} {
			if m, ok := store.LookupName(n.String()); !ok || m != n {
				t.Errorf("decoded name %d (%q) is not the store's (%d, %v)", n, n, m, ok)
			}
		}
	}
	if cb[2].Action.String() != "action-of-another-process" || cb[2].Channel.String() != "kiosk" {
		t.Errorf("new names decoded as %q, %q", cb[2].Action, cb[2].Channel)
	}
	for range 2 {
		again, err := a.decodeContacts(nil, append(slices.Clone(log), other...))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(again, cb) {
			t.Errorf("a used decoder decoded %v; want %v", again, cb)
		}
	}
}

// FuzzDecodeContacts: a contact log decodes without a panic or an error,
// and what decodes is in time order and re-encodes to a log that decodes
// the same.
func FuzzDecodeContacts(f *testing.F) {
	r := rand.New(rand.NewPCG(6, 7))
	for range 8 {
		c := randCustomer(r, "x")
		f.Add(appendContacts(nil, c.Contacts))
	}
	f.Add(appendContacts(nil, []store.Contact{{Action: store.Intern("b"), At: 2}, {Action: store.Intern("a"), At: 1}, {Action: store.Intern("c"), At: 2}}))
	f.Fuzz(func(t *testing.T, log []byte) {
		var cd contactDecoder
		cts, err := cd.decodeContacts(nil, log)
		if err != nil {
			return
		}
		for i := 1; i < len(cts); i++ {
			if cts[i].At < cts[i-1].At {
				t.Fatalf("contact %d is older than the one before", i)
			}
		}
		var cd2 contactDecoder
		again, err := cd2.decodeContacts(nil, appendContacts(nil, cts))
		if err != nil {
			t.Fatalf("decoding the re-encoding: %v", err)
		}
		if !reflect.DeepEqual(again, cts) {
			t.Fatalf("re-encoding changed the contacts:\n%+v\n%+v", cts, again)
		}
	})
}

// TestDecodeContactsAllocs: decoding a contact log into a slice with room
// allocates nothing when the log names at most decoderNames actions and
// channels known to the store (the decoder stays on the stack), and the
// names are the interned ones; past that, the names are still right.
func TestDecodeContactsAllocs(t *testing.T) {
	for _, actions := range []int{decoderNames - 3, 3 * decoderNames} {
		t.Run(fmt.Sprintf("actions=%d", actions), func(t *testing.T) { testDecodeContactsAllocs(t, actions) })
	}
}

func testDecodeContactsAllocs(t *testing.T, actions int) {
	cts := make([]store.Contact, 300)
	for i := range cts {
		cts[i] = store.Contact{Action: store.Intern(fmt.Sprintf("act-%d", i%actions)), Channel: store.Intern([]string{"web", "email", ""}[i%3]), At: int64(i)}
	}
	log := appendContacts(nil, cts)
	out := make([]store.Contact, 0, len(cts))
	decode := func() {
		var cd contactDecoder
		got, err := cd.decodeContacts(out[:0], log)
		if err != nil || len(got) != len(cts) {
			t.Fatalf("decoded %d contacts, %v; want %d", len(got), err, len(cts))
		}
	}
	decode() // interns the names
	if n := testing.AllocsPerRun(20, decode); n != 0 {
		t.Errorf("decoding a log of %d names made %.0f allocations; want 0", actions+2, n)
	}
	var cd contactDecoder
	got, _ := cd.decodeContacts(nil, log)
	for i := range got {
		if got[i] != cts[i] {
			t.Fatalf("contact %d: %+v; want %+v", i, got[i], cts[i])
		}
	}
}

// TestDecodeContactsCut: a log cut anywhere, inside a time, a length or
// a name (one long enough for a two-byte length too), is corrupt without
// a panic, unless it is cut between entries.
func TestDecodeContactsCut(t *testing.T) {
	cts := []store.Contact{
		{Action: store.Intern("winback-20"), Channel: store.Intern("web"), At: time.Now().UnixNano()},
		{Action: store.Intern(strings.Repeat("long-action-", 12)), Outcome: store.Click, Channel: store.Intern("email"), At: time.Now().UnixNano() + 1},
		{Action: store.Intern("free-ship"), At: time.Now().UnixNano() + 2},
	}
	var ends []int // where each entry ends
	for i := range cts {
		ends = append(ends, len(appendContacts(nil, cts[:i+1])))
	}
	log := appendContacts(nil, cts)
	for cut := range len(log) {
		whole := 0
		for whole < len(ends) && ends[whole] <= cut {
			whole++
		}
		var cd contactDecoder
		if got, err := cd.decodeContacts(nil, log[:cut]); (err == nil) != (cut == 0 || whole > 0 && ends[whole-1] == cut) {
			t.Fatalf("cut at %d of %d: %d contacts, %v", cut, len(log), len(got), err)
		}
	}
}

// TestDecodeEventsKept: for every subset of a record's five event types,
// and a type it lacks, decodeEvents decodes that subset alone, and events
// of those types written with what it kept encoded give the record that
// the same events give on the whole customer.
func TestDecodeEventsKept(t *testing.T) {
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	all := []string{"a-cart", "b-purchase", "c-session", "d-view", "e-wish"}
	c := &store.Customer{ID: "x", Attributes: map[string]any{"tier": "gold", "ltv": 12.5}}
	for i, typ := range all {
		for j := range 3 + 7*i {
			c.AddEvent(typ, base+int64(j)*int64(19*time.Hour), float64(j)+0.25)
		}
	}
	rec, err := appendCustomer(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	for mask := range 1 << len(all) {
		types := []string{"new-type"}
		for i, typ := range all {
			if mask&(1<<i) != 0 {
				types = append(types, typ)
			}
		}
		got, k, err := decodeEvents("x", string(rec), types)
		if err != nil {
			t.Fatalf("%v: %v", types, err)
		}
		if len(got.Events)+k.n != len(all) || got.AttributeMap() != nil {
			t.Fatalf("%v: %d types decoded, %d kept, attributes %v", types, len(got.Events), k.n, got.AttributeMap())
		}
		whole, err := decodeCustomer("x", string(rec))
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range types {
			if typ != "new-type" && !reflect.DeepEqual(got.Events[typ], whole.EventMap()[typ]) {
				t.Fatalf("%v: %s decoded as %+v; want %+v", types, typ, got.Events[typ], whole.EventMap()[typ])
			}
			at := base + int64(40*24*time.Hour)
			got.AddEvent(typ, at, 1)
			whole.AddEvent(typ, at, 1)
		}
		out, err := appendRecord(nil, got, k)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeCustomer("x", string(out))
		if err != nil {
			t.Fatalf("%v: the record written with what was kept: %v", types, err)
		}
		if !reflect.DeepEqual(canon(back), canon(whole)) {
			t.Fatalf("%v: the record written with what was kept decodes to %+v; want %+v", types, back, whole)
		}
	}
}

// TestFlatEventsMapFor: MapFor copies the aggregates of the types to be
// changed and shares the others' arrays with the flatEvents, capped so
// that an append copies them; changing the copies leaves the flatEvents
// as they were.
func TestFlatEventsMapFor(t *testing.T) {
	c := &store.Customer{ID: "c"}
	day := int64(24 * time.Hour)
	for i := range 30 {
		at := int64(20000+i) * day
		c.AddEvent("view", at, 0)
		c.AddEvent("cart", at, 2.5)
		if i%3 == 0 {
			c.AddEvent("purchase", at, 40)
		}
	}
	f := newFlatEvents(c.Events)
	m := f.MapFor([]string{"cart"})
	if !reflect.DeepEqual(m, f.Map()) {
		t.Fatalf("MapFor gives %v; Map %v", m, f.Map())
	}
	var s store.EventStats
	for typ, got := range m {
		f.Stats(typ, &s)
		shared := &got.Days[0] == &s.Days[0] || &got.Recent[0] == &s.Recent[0]
		if shared != (typ != "cart") {
			t.Errorf("%s: arrays shared with the flatEvents: %v; want %v", typ, shared, typ != "cart")
		}
		if shared && (cap(got.Days) != len(got.Days) || cap(got.Recent) != len(got.Recent)) {
			t.Errorf("%s: capacity past the arrays (%d days in %d, %d recent in %d): an append would write the next type's",
				typ, len(got.Days), cap(got.Days), len(got.Recent), cap(got.Recent))
		}
	}
	before := f.Map()
	m["cart"].Add(20040*day, 9)
	m["cart"].Days[0].Count += 100
	if !reflect.DeepEqual(f.Map(), before) {
		t.Fatal("changing the copy of cart changed the flatEvents")
	}
}
