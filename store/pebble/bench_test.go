package pebblestore

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/store"
)

var sinkCustomer *store.Customer

// typicalCustomer has a dozen attributes, three event types and twenty
// contacts.
func typicalCustomer(id string) *store.Customer {
	c := &store.Customer{ID: id, Attributes: map[string]any{
		"first_name": "Ana", "tier": "silver", "ltv": 1250.5, "churn_risk": 0.8,
		"email_open_rate": 0.31, "consent": map[string]any{"email": true, "sms": false},
		"city": "Lisbon", "complaint_open": false, "signup": "2024-03-01", "segment": "b2c",
	}}
	base := time.Now()
	for i := range 40 {
		at := base.Add(-time.Duration(i) * 37 * time.Hour).UnixNano()
		c.AddEvent("view", at, 0)
		if i%4 == 0 {
			c.AddEvent("purchase", at, 49.99)
		}
		if i%10 == 0 {
			c.AddEvent("cart", at, 82.5)
		}
		if i < 20 {
			c.AddContact(store.Contact{Action: store.Intern("winback-20"), Channel: store.Intern("web"), At: at})
		}
	}
	return c
}

func benchStore(b *testing.B, customers int) *Store {
	b.Helper()
	s, err := openBenchStore(b.TempDir(), customers)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// openBenchStore opens a store in dir holding customers c0, c1, ...
// (typicalCustomer).
func openBenchStore(dir string, customers int) (*Store, error) {
	s, err := Open(Options{Dir: dir})
	if err != nil {
		return nil, err
	}
	batch := make([]*store.Customer, customers)
	for i := range batch {
		batch[i] = typicalCustomer(fmt.Sprint("c", i))
	}
	if err := s.Import(batch); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func BenchmarkCustomerCached(b *testing.B) {
	s := benchStore(b, 1000)
	for i := range 1000 {
		if _, err := s.Customer(fmt.Sprint("c", i)); err != nil {
			b.Fatal(err)
		}
	}
	s.waitCache()
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprint("c", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var c *store.Customer
		i := rand.IntN(len(ids))
		for pb.Next() {
			c, _ = s.Customer(ids[i%len(ids)])
			i++
		}
		sinkCustomer = c
	})
}

// BenchmarkCustomerMiss reads a customer that is not cached: a Pebble point
// read (from the block cache), a decode, and the cache fill.
func BenchmarkCustomerMiss(b *testing.B) {
	s := benchStore(b, 1)
	b.ReportAllocs()
	reads, n := s.reads.Load(), uint64(0)
	for b.Loop() {
		n++
		// Evict c0 once its fill is applied: its entry, still noted as
		// its stripe's pending item, would otherwise answer (see
		// cachedLocked). The Wait this takes is what every miss paid
		// before the store tracked pending items.
		s.waitCache()
		s.cache.Del("c0")
		c, err := s.Customer("c0")
		if err != nil || c == nil {
			b.Fatal(c, err)
		}
		sinkCustomer = c
	}
	if got := s.reads.Load() - reads; got != n {
		b.Fatalf("%d reads from Pebble in %d iterations: not every iteration missed", got, n)
	}
}

// BenchmarkDecode compares the record decoder with encoding/json decoding
// the same customer's attributes alone.
func BenchmarkDecode(b *testing.B) {
	c := typicalCustomer("c")
	b.Run("record", func(b *testing.B) {
		rec, err := appendCustomer(nil, c)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(rec)))
		for b.Loop() {
			sinkCustomer, err = decodeCustomer("c", string(rec))
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("record-attributes-only", func(b *testing.B) {
		rec, err := appendObject(nil, c.Attributes, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(rec)))
		for b.Loop() {
			d := decoder{s: string(rec[1:])}
			if d.object(0); d.err != nil {
				b.Fatal(d.err)
			}
		}
	})
	b.Run("json-attributes-only", func(b *testing.B) {
		js, _ := json.Marshal(c.Attributes)
		b.ReportAllocs()
		b.SetBytes(int64(len(js)))
		for b.Loop() {
			var m map[string]any
			if err := json.Unmarshal(js, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAttr reads three attributes of a typical customer (a number, a
// string, one absent), as a decision's rules do once each: from the
// encoding a cached customer keeps (attrs) and from a map.
func BenchmarkAttr(b *testing.B) {
	c := typicalCustomer("c")
	enc, err := appendObject(nil, c.Attributes, 0)
	if err != nil {
		b.Fatal(err)
	}
	for _, held := range []*store.Customer{{Encoded: encoded(attrs(enc))}, {Attributes: c.Attributes}} {
		name := "map"
		if held.Encoded != nil {
			name = "encoded"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if held.Attr("churn_risk") != 0.8 || held.Attr("segment") != "b2c" || held.Attr("absent") != nil {
					b.Fatal("wrong attributes")
				}
			}
		})
	}
	// Every attribute, as rules that read them all do (1,000 generated
	// actions read 16): searched one by one, or placed by one scan and
	// decoded where it found them, as rules.Env does.
	held := &store.Customer{Encoded: encoded(attrs(enc))}
	keys := slices.Sorted(maps.Keys(c.Attributes))
	b.Run("encoded-all/search", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, k := range keys {
				if held.Attr(k) == nil {
					b.Fatalf("attribute %q not found", k)
				}
			}
		}
	})
	// Placed by one scan, each value decoded as an any, or each number
	// decoded unboxed (NumberAt) and the rest as an any, as rules.Env
	// reads an attribute a rule compares with a number.
	anyAt := func(at int) bool { return held.AttrAt(at) != nil }
	numberAt := func(at int) bool {
		if _, ok := held.NumberAt(at); ok {
			return true
		}
		return held.AttrAt(at) != nil
	}
	for _, read := range []struct {
		name string
		fn   func(at int) bool
	}{{"scan", anyAt}, {"scan-numbers", numberAt}} {
		b.Run("encoded-all/"+read.name, func(b *testing.B) {
			slot := map[string]int{}
			for i, k := range keys {
				slot[k] = i
			}
			pos := make([]int, len(keys))
			note := func(k string, at int) {
				if i, ok := slot[k]; ok {
					pos[i] = at
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				clear(pos)
				held.ScanAttrs(note)
				for i, k := range keys {
					if pos[i] == 0 || !read.fn(pos[i]) {
						b.Fatalf("attribute %q not found", k)
					}
				}
			}
		})
	}
}

// BenchmarkEventStats reads a typical customer's aggregates of three event
// types (one absent), as a decision's rules do once each: from the form a
// cached customer keeps them in (flatEvents), and from a map.
func BenchmarkEventStats(b *testing.B) {
	c := typicalCustomer("c")
	rec, err := appendCustomer(nil, c)
	if err != nil {
		b.Fatal(err)
	}
	dec, err := decodeCustomer("c", string(rec))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UnixNano()
	b.Run("encoded", func(b *testing.B) {
		var s store.EventStats
		b.ReportAllocs()
		for b.Loop() {
			n := int64(0)
			for _, typ := range []string{"view", "purchase", "absent"} {
				if dec.EncodedEvents.Stats(typ, &s) {
					k, _ := s.Window(now, 30*24*time.Hour)
					n += k
				}
			}
			if n == 0 {
				b.Fatal("no events")
			}
		}
	})
	b.Run("map", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := int64(0)
			for _, typ := range []string{"view", "purchase", "absent"} {
				k, _ := c.Events[typ].Window(now, 30*24*time.Hour)
				n += k
			}
			if n == 0 {
				b.Fatal("no events")
			}
		}
	})
}

// BenchmarkAddEvents commits batches of 100 events over 20 customers, each
// batch synced.
func BenchmarkAddEvents(b *testing.B) {
	s := benchStore(b, 1000)
	batch := make([]store.Event, 100)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		for j := range batch {
			batch[j] = store.Event{CustomerID: fmt.Sprint("c", (i*20+j%20)%1000), Type: "view", At: time.Now().UnixNano(), Value: 1}
		}
		if err := s.AddEvents(batch); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkAddEventsCached commits batches of 100 events for 100 cached
// customers (of 1,000), each batch synced, the events in turn views,
// purchases, carts and a type the customers do not have: the hot
// customers of a server, whose cached aggregates (flatEvents) an event
// copies and replaces.
func BenchmarkAddEventsCached(b *testing.B) {
	const n = 1000
	s := benchStore(b, n)
	for i := range n {
		s.Customer(fmt.Sprint("c", i))
	}
	s.waitCache()
	benchEventBatches(b, s, n, []string{"view", "purchase", "cart", "add_to_cart"})
}

// benchEventBatches times batches of 100 events for customers c0..c<n-1>
// of s, 100 in a row per batch, their types in turn, and reports the CPU
// a batch costs: its time is mostly its fsync's, and the CPU (the
// process's, Pebble's work included) is what a change of code moves.
func benchEventBatches(b *testing.B, s *Store, n int, types []string) {
	events := make([]store.Event, 100)
	b.ReportAllocs()
	cpu0 := cpuTime()
	i := 0
	for b.Loop() {
		for j := range events {
			events[j] = store.Event{CustomerID: fmt.Sprint("c", (i*100+j)%n), Type: types[(i+j)%len(types)], At: time.Now().UnixNano(), Value: 1}
		}
		if err := s.AddEvents(events); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkAddEventsUncached commits batches of 100 events for 100
// customers that are not cached (10,000 customers, a 1 MiB cache), each
// batch synced: the main records are read, their events changed and
// written back. The events are views, the largest of a customer's three
// types (types=view), or in turn views, purchases, carts and a type the
// customers do not have (types=4, like nudge-bench's mix).
func BenchmarkAddEventsUncached(b *testing.B) {
	for _, types := range [][]string{{"view"}, {"view", "purchase", "cart", "add_to_cart"}} {
		name := "types=view"
		if len(types) > 1 {
			name = fmt.Sprintf("types=%d", len(types))
		}
		b.Run(name, func(b *testing.B) {
			s, err := Open(Options{Dir: b.TempDir(), CacheMB: 1})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			const n = 10000
			batch := make([]*store.Customer, n)
			for i := range batch {
				batch[i] = typicalCustomer(fmt.Sprint("c", i))
			}
			if err := s.Import(batch); err != nil {
				b.Fatal(err)
			}
			benchEventBatches(b, s, n, types)
		})
	}
}

// cpuTime is the CPU time the process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRecord records a served contact and its statistics, as a
// decision does, for cached customers drawn Zipf(1.1) from 1,000 or
// 100,000: the larger set is the benchmark server's case, whose memtable
// fills with the contacts of many customers. cpu-ns/op is the process's
// CPU per record, the background apply included.
//
// RunParallel calls the function once per round of its b.N ramp: the
// store is made at the first round only (100,000 customers take seconds
// to import and cache), and closed when the benchmark ends.
func BenchmarkRecord(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		var s *Store
		var ids []string
		dir := b.TempDir()
		b.Cleanup(func() {
			if s != nil {
				s.Close()
			}
		})
		b.Run(fmt.Sprintf("customers=%d", n), func(b *testing.B) {
			if s == nil {
				var err error
				if s, err = openBenchStore(dir, n); err != nil {
					b.Fatal(err)
				}
				ids = make([]string, n)
				for i := range ids {
					ids[i] = fmt.Sprint("c", i)
					if _, err := s.Customer(ids[i]); err != nil {
						b.Fatal(err)
					}
				}
				s.waitCache()
			}
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				z := rand.NewZipf(rand.New(rand.NewPCG(rand.Uint64(), 1)), 1.1, 1, uint64(n-1))
				for pb.Next() {
					now := time.Now().UnixNano()
					err := s.Record(ids[z.Uint64()],
						[]store.Contact{{Action: store.Intern("winback-20"), Channel: store.Intern("web"), At: now}},
						[]store.StatDelta{{Action: "winback-20", Variant: "a", Outcome: store.Served, At: now}})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
