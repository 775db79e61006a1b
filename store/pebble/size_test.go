package pebblestore

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/bench/workload"
	"github.com/nudge-engine/nudge/store"
)

// TestCustomerBytes holds customerBytes against the heap that decoded
// customers really take: it loads n customers of each kind the way a cache
// fill does (Store.read, from Pebble), keeps them, and compares the heap
// growth measured by runtime.MemStats after a GC with the sum of the
// estimates. The estimate must be within [minRatio, maxRatio] of the
// measured size, kind by kind.
func TestCustomerBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("imports and decodes thousands of customers")
	}
	const minRatio, maxRatio = 0.85, 1.15
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	kinds := []struct {
		name string
		n    int
		make func(id string, i int) *store.Customer
	}{
		{"service", 3000, func(id string, i int) *store.Customer {
			// What nudge-bench gen writes, and the soak reads.
			c := workload.ServiceCustomer(workload.CustomerSpec{Now: now}, i)
			c.ID = id
			return c
		}},
		{"typical", 3000, func(id string, i int) *store.Customer { return typicalCustomer(id) }},
		{"bare", 5000, func(id string, i int) *store.Customer {
			return &store.Customer{ID: id, Attributes: map[string]any{"tier": "gold", "ltv": 12.5, "vip": true}}
		}},
		{"wide attributes", 1000, func(id string, i int) *store.Customer {
			a := map[string]any{
				"tags":    []any{"outdoor", "running", "trail", "sale"},
				"address": map[string]any{"city": "Lisbon", "zip": "1100-148", "geo": []any{38.71, -9.14}},
				"note":    strings.Repeat("x", 300),
			}
			for k := range 60 {
				a[fmt.Sprintf("score_%02d", k)] = float64(k) + 0.25
			}
			return &store.Customer{ID: id, Attributes: a}
		}},
		{"long history", 100, func(id string, i int) *store.Customer {
			c := typicalCustomer(id)
			at := now.Add(-20 * 24 * time.Hour).UnixNano()
			for k := range 3000 {
				o := store.Served
				if k%7 == 0 {
					o = store.Click
				}
				c.AddContact(store.Contact{Action: store.Intern(workload.ActionID(k % 300)), Outcome: o, Channel: store.Intern("web"), At: at + int64(k)*int64(time.Minute)})
			}
			return c
		}},
		{"hot customer", 100, func(id string, i int) *store.Customer {
			// Decided for thousands of times: few actions, served only.
			c := workload.ServiceCustomer(workload.CustomerSpec{Now: now}, i)
			c.ID = id
			at := now.Add(-10 * 24 * time.Hour).UnixNano()
			for k := range 4000 {
				c.AddContact(store.Contact{Action: store.Intern(workload.ActionID(k % 30)), Channel: store.Intern("web"), At: at + int64(k)*int64(time.Minute)})
			}
			return c
		}},
	}
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			s, err := Open(Options{Dir: t.TempDir(), BlockCacheMB: 64})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ids := make([]string, kind.n)
			batch := make([]*store.Customer, kind.n)
			for i := range ids {
				ids[i] = fmt.Sprintf("c-%07d", i)
				batch[i] = kind.make(ids[i], i)
			}
			if err := s.Import(batch); err != nil {
				t.Fatal(err)
			}
			batch = nil
			// Read everything once so that Pebble's caches and pools are
			// as full before the measurement as after it.
			for _, id := range ids {
				if _, _, err := s.read(id); err != nil {
					t.Fatal(err)
				}
			}
			held := make([]*store.Customer, kind.n)
			before := heapAfterGC()
			estimate, records := 0, 0
			for i, id := range ids {
				// The id of a cache fill comes from the request.
				c, size, err := s.read(strings.Clone(id))
				if err != nil {
					t.Fatal(err)
				}
				held[i] = c
				estimate += customerBytes(c, size)
				records += size
			}
			measured := heapAfterGC() - before
			runtime.KeepAlive(held)
			ratio := float64(estimate) / float64(measured)
			t.Logf("%d customers, records of %d B: estimate %d B, measured %d B per customer: ratio %.3f",
				kind.n, records/kind.n, estimate/kind.n, measured/int64(kind.n), ratio)
			if ratio < minRatio || ratio > maxRatio {
				t.Errorf("estimate/measured = %.3f; want it in [%.2f, %.2f]", ratio, minRatio, maxRatio)
			}
		})
	}
}

// TestEntryBytes holds entryBytes, the cost of an entry apart from its
// customer, against the heap that entries for unknown ids take.
func TestEntryBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("caches 100,000 entries")
	}
	const n = 100000
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("u-%07d", i)
	}
	if _, err := s.Customer("warm-up"); err != nil {
		t.Fatal(err)
	}
	s.waitCache()
	before := heapAfterGC()
	for _, id := range ids {
		if _, err := s.Customer(id); err != nil {
			t.Fatal(err)
		}
	}
	s.waitCache()
	measured := heapAfterGC() - before
	runtime.KeepAlive(ids)
	m := s.cache.Metrics
	cached := int64(m.KeysAdded() - m.KeysEvicted())
	if cached < n*9/10 {
		t.Fatalf("%d of %d entries cached", cached, n)
	}
	per := float64(measured) / float64(cached)
	t.Logf("%d entries: %.0f B each; entryBytes is %d", cached, per, entryBytes)
	if r := entryBytes / per; r < 0.75 || r > 1.33 {
		t.Errorf("entryBytes/measured = %.2f; want it in [0.75, 1.33]", r)
	}
}

// TestCacheCostFollowsCustomer checks that the cost the cache was told
// stays within the 1/8 margin of cacheLocked of the estimate as a cached
// customer's history grows through Record (which mostly skips the
// estimate) and its attributes change.
func TestCacheCostFollowsCustomer(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Import([]*store.Customer{typicalCustomer("c1")}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		if _, err := s.Customer("c1"); err != nil {
			t.Fatal(err)
		}
		s.waitCache()
		e, ok := s.cache.Get("c1")
		if !ok {
			t.Fatalf("%s: c1 is not cached", when)
		}
		mu := &s.stripes[s.stripe("c1")]
		mu.Lock()
		cost, want := e.cost, entryCost(e.c.Load(), e.size)
		mu.Unlock()
		if d := cost - want; d > want/8 || -d > want/8 {
			t.Errorf("%s: the cache was told %d; the estimate is %d", when, cost, want)
		}
	}
	check("loaded")
	now := time.Now().UnixNano()
	for i := range 3000 {
		k := []store.Contact{{Action: store.Intern(workload.ActionID(i % 40)), Channel: store.Intern("web"), At: now + int64(i)}}
		if err := s.Record("c1", k, nil); err != nil {
			t.Fatal(err)
		}
		if i == 10 || i == 100 {
			check(fmt.Sprintf("after %d contacts", i+1))
		}
	}
	check("after 3000 contacts")
	big := map[string]any{"note": strings.Repeat("x", 20000)}
	if err := s.PutAttributes("c1", big); err != nil {
		t.Fatal(err)
	}
	check("after a large attribute")
	if err := s.PutAttributes("c1", map[string]any{"tier": "gold"}); err != nil {
		t.Fatal(err)
	}
	check("after a small attribute")
}

// heapAfterGC returns the bytes of live heap objects after a full GC.
func heapAfterGC() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

func TestAllocBytes(t *testing.T) {
	f := func(n int, ptrs bool, want int) {
		t.Helper()
		if got := allocBytes(n, ptrs); got != want {
			t.Errorf("allocBytes(%d, %v) = %d; want %d", n, ptrs, got, want)
		}
	}
	f(0, true, 0)
	f(5, false, 5)   // tiny allocator
	f(5, true, 8)    // size class
	f(16, false, 16) // not tiny
	f(17, true, 24)
	f(512, true, 512)
	f(513, false, 576)
	f(505, true, 512)   // no header at 512 or below
	f(520, true, 576)   // 528 with its header
	f(1024, true, 1152) // 1032 with its header
	f(32768, false, 32768)
	f(32769, false, 40960) // pages
	f(32765, true, 32768)  // large: no header, one page rounding
}

func TestMapBytes(t *testing.T) {
	f := func(n, slot, want int) {
		t.Helper()
		if got := mapBytes(n, slot); got != want {
			t.Errorf("mapBytes(%d, %d) = %d; want %d", n, slot, got, want)
		}
	}
	f(0, attrSlot, 48)
	f(1, attrSlot, 48+288) // one group: 8 + 8*32 = 264
	f(8, attrSlot, 48+288)
	f(9, attrSlot, 48+8+32+576) // 16 slots: 2 groups, 528 + header
	f(14, attrSlot, 48+8+32+576)
	f(15, attrSlot, 48+8+32+1152)          // 32 slots: 4 groups, 1056 + header
	f(2000, eventSlot, 48+32+4*(32+27264)) // 4096 slots in 4 tables of 128 groups of 200 B (25600 + header)
}

var sinkBytes int

func BenchmarkCustomerBytes(b *testing.B) {
	c := workload.ServiceCustomer(workload.CustomerSpec{}, 1)
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = customerBytes(c, 900)
	}
}

// BenchmarkCustomerBytesIndexed estimates a customer decided for
// thousands of times: 2,000 contacts over 300 actions, half of them
// appended after its contact index was built (a hot customer's, which
// every event batch estimates again).
func BenchmarkCustomerBytesIndexed(b *testing.B) {
	c := workload.ServiceCustomer(workload.CustomerSpec{}, 1)
	cs := make([]store.Contact, 1000)
	for i := range cs {
		cs[i] = store.Contact{Action: store.Intern(fmt.Sprintf("a%03d", i%300)), Channel: store.Intern("web"), At: int64(i)}
	}
	c.Contacts = cs
	c.Summarize()
	for i := range 1000 {
		c = c.AppendContacts([]store.Contact{{Action: store.Intern(fmt.Sprintf("a%03d", (i*7)%300)), Channel: store.Intern("web"), At: int64(1000 + i)}})
	}
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = customerBytes(c, 900)
	}
}
