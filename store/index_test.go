package store

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// naiveCount is CountContacts by definition.
func naiveCount(cs []Contact, action string, o Outcome, from, to, limit int64) int64 {
	var n int64
	for _, k := range cs {
		if k.Action.String() == action && k.Outcome == o && k.At >= from && k.At <= to {
			n++
		}
	}
	return min(n, max(limit, 0))
}

// checkCounts compares CountContacts on v with the definition for
// actions a0 to a5, four actions of v's contacts drawn at random, every
// outcome and a few windows and limits.
func checkCounts(t *testing.T, name string, v *Customer, r *rand.Rand) {
	t.Helper()
	if len(v.Contacts) == 0 {
		return
	}
	last := v.Contacts[len(v.Contacts)-1].At
	actions := []string{"a0", "a1", "a2", "a3", "a4", "a5"}
	for range 4 {
		actions = append(actions, v.Contacts[r.IntN(len(v.Contacts))].Action.String())
	}
	for _, action := range actions {
		for o := Served; o < Holdout; o++ {
			from := last - r.Int64N(int64(200*time.Second))
			to := last - r.Int64N(int64(20*time.Second))
			for _, lim := range []int64{1, 3, math.MaxInt64} {
				got := v.CountContacts(action, o, from, to, lim)
				want := naiveCount(v.Contacts, action, o, from, to, lim)
				if got != want {
					t.Fatalf("%s (%d contacts, indexed %v): CountContacts(%s, %v, window, limit %d) = %d; want %d",
						name, len(v.Contacts), v.index != nil, action, o, lim, got, want)
				}
			}
			if got, want := v.HadOutcome(action, o, to), naiveCount(v.Contacts, action, o, math.MinInt64, to, 1) > 0; got != want {
				t.Fatalf("%s: HadOutcome(%s, %v) = %v; want %v", name, action, o, got, want)
			}
		}
	}
}

// TestContactIndex: counts through the index equal the definition on the
// newest version and on every older one, through appends in place, out of
// order inserts, prunes, attribute copies and a rebuilt summary; with few
// actions (found by a scan) and with many (a map, and the newest scanned).
func TestContactIndex(t *testing.T) {
	for _, actions := range []int{5, 3 * indexScan} {
		t.Run(fmt.Sprint("actions=", actions), func(t *testing.T) { testContactIndex(t, actions) })
	}
}

func testContactIndex(t *testing.T, actions int) {
	r := rand.New(rand.NewPCG(1, uint64(actions)))
	sec := int64(time.Second)
	cur := &Customer{ID: "x", Outcomes: map[Name]uint8{}}
	var versions []*Customer
	at := int64(1_000_000) * sec
	indexed, tailed := false, false
	for step := range 600 {
		var cts []Contact
		for range 1 + r.IntN(3) {
			at += r.Int64N(3 * sec)
			k := Contact{Action: Intern(fmt.Sprintf("a%d", r.IntN(actions))), Outcome: Outcome(r.IntN(int(Holdout))), At: at}
			if r.IntN(20) == 0 {
				k.At -= 30 * sec // out of order: a new array
			}
			cts = append(cts, k)
		}
		cur = cur.AppendContacts(cts)
		switch r.IntN(40) {
		case 0:
			cur, _ = cur.Pruned(cur.Contacts[len(cur.Contacts)/4].At)
		case 1:
			cur = cur.CopySharingContacts()
		case 2:
			cp := cur.ShallowCopy()
			cp.Summarize()
			cur = cp
		}
		indexed = indexed || cur.index != nil
		tailed = tailed || cur.IndexMapped() > 0 && cur.IndexMapped() < cur.IndexedActions()
		if scanned := cur.IndexedActions() - cur.IndexMapped(); scanned > indexScan {
			t.Fatalf("step %d: %d of %d actions are found by a scan; want at most %d", step, scanned, cur.IndexedActions(), indexScan)
		}
		versions = append(versions, cur)
		checkCounts(t, fmt.Sprintf("step %d", step), cur, r)
	}
	if !indexed {
		t.Fatal("no version had an index")
	}
	if actions > indexScan && !tailed {
		t.Fatal("no version had both mapped actions and newer ones to scan")
	}
	for i, v := range versions {
		checkCounts(t, fmt.Sprintf("old version %d", i), v, r)
	}
	// A copy and a hand-built customer scan.
	cp := cur.Copy()
	cp.AddContact(Contact{Action: Intern("a1"), At: cur.Contacts[0].At})
	if cp.index != nil {
		t.Error("AddContact kept an index whose positions moved")
	}
	checkCounts(t, "copy", cp, r)
}

// TestContactIndexConcurrent: readers count on the newest and on older
// versions, compared with the definition, while the writer appends to the
// shared history and index: new actions (slots), growth of the arrays,
// out-of-order inserts, discarded versions (a failed write), prunes and
// copies (run with -race).
func TestContactIndexConcurrent(t *testing.T) {
	sec := int64(time.Second)
	var published atomic.Pointer[[]*Customer]
	published.Store(&[]*Customer{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var checks atomic.Int64
	for g := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 11))
			for {
				select {
				case <-stop:
					return
				default:
				}
				vs := *published.Load()
				if len(vs) == 0 {
					continue
				}
				v := vs[len(vs)-1]
				if r.IntN(2) == 0 {
					v = vs[r.IntN(len(vs))]
				}
				if len(v.Contacts) == 0 {
					continue
				}
				action := fmt.Sprintf("c%d", r.IntN(50))
				o := Outcome(r.IntN(int(Holdout)))
				from := v.Contacts[len(v.Contacts)-1].At - r.Int64N(300*sec)
				got := v.CountContacts(action, o, from, math.MaxInt64, math.MaxInt64)
				if want := naiveCount(v.Contacts, action, o, from, math.MaxInt64, math.MaxInt64); got != want {
					t.Errorf("a version of %d contacts counted %d %s/%v; want %d", len(v.Contacts), got, action, o, want)
					return
				}
				checks.Add(1)
			}
		})
	}
	r := rand.New(rand.NewPCG(12, 13))
	cur := &Customer{ID: "x", Outcomes: map[Name]uint8{}}
	at := int64(1_000_000) * sec
	for step := range 6000 {
		var cts []Contact
		for range 1 + r.IntN(3) {
			at += r.Int64N(2 * sec)
			k := Contact{Action: Intern(fmt.Sprintf("c%d", r.IntN(1+min(step/100, 49)))), Outcome: Outcome(r.IntN(int(Holdout))), At: at}
			if r.IntN(50) == 0 {
				k.At -= 30 * sec // out of order: a new array
			}
			cts = append(cts, k)
		}
		next := cur.AppendContacts(cts)
		if r.IntN(8) == 0 {
			continue // discarded: the next append starts from cur again
		}
		switch r.IntN(60) {
		case 0:
			next, _ = next.Pruned(next.Contacts[len(next.Contacts)/3].At)
		case 1:
			next = next.CopySharingContacts()
		}
		cur = next
		vs := append(*published.Load(), cur)
		vs = slices.Clone(vs[max(0, len(vs)-200):])
		published.Store(&vs)
	}
	close(stop)
	wg.Wait()
	if checks.Load() == 0 {
		t.Error("the readers checked nothing")
	}
	t.Logf("%d counts checked", checks.Load())
	checkCounts(t, "newest", cur, r)
}

// TestBuildIndexAllocs: building the index of a loaded history (a cache
// miss) takes a bounded number of allocations, however many actions and
// contacts it has, and the index counts like the definition.
func TestBuildIndexAllocs(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, actions := range []int{1, 12, 40} {
		cs := make([]Contact, 200)
		for i := range cs {
			cs[i] = Contact{Action: Intern(fmt.Sprintf("a%d", r.IntN(actions))), Outcome: Outcome(r.IntN(int(Holdout))), At: int64(i) * int64(time.Second)}
		}
		distinct := map[string]bool{}
		for _, k := range cs {
			distinct[k.Action.String()] = true
		}
		c := &Customer{ID: "x", Contacts: cs}
		c.Summarize()
		// Room: a link per contact, a newest position per action, and
		// the names with the room to grow by 4.
		if want := len(cs) + 2*len(distinct) + 4; c.index == nil || c.IndexedActions() != len(distinct) || c.IndexRoom() != want {
			t.Fatalf("%d actions: index of %d actions, room %d; want %d actions, room %d", actions, c.IndexedActions(), c.IndexRoom(), len(distinct), want)
		}
		if mapped := c.IndexMapped(); (mapped > 0) != (len(distinct) > indexScan) || mapped > len(distinct) {
			t.Errorf("%d actions: %d of them in the index's map", len(distinct), mapped)
		}
		checkCounts(t, fmt.Sprintf("%d actions", actions), c, r)
		// Appends after a build, of a known action and a new one, grow
		// the links and the slots.
		more := c.AppendContacts([]Contact{{Action: Intern("a0"), At: cs[len(cs)-1].At + 1}, {Action: Intern("new"), At: cs[len(cs)-1].At + 2}})
		checkCounts(t, fmt.Sprintf("%d actions, appended", actions), more, r)
		if got, want := more.IndexRoom(), roomByWalk(more); got != want || more.IndexedActions() != len(distinct)+1 {
			t.Errorf("%d actions, appended: IndexRoom %d, %d actions; want %d, %d", actions, got, more.IndexedActions(), want, len(distinct)+1)
		}
		checkCounts(t, fmt.Sprintf("%d actions, before the append", actions), c, r)
		n := testing.AllocsPerRun(20, func() { buildIndex(cs) })
		// The three arrays and the index with its chains and their
		// headers; past indexScan actions, the map and its groups.
		limit := 4.0
		if actions > indexScan {
			limit += 2 + float64(actions)/8
		}
		t.Logf("%d actions: %.0f allocations", actions, n)
		if n > limit {
			t.Errorf("%d actions: buildIndex made %.0f allocations; want at most %.0f", actions, n, limit)
		}
	}
}

func BenchmarkBuildIndex(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	cs := make([]Contact, 60)
	for i := range cs {
		cs[i] = Contact{Action: Intern(fmt.Sprintf("a%d", r.IntN(10))), At: int64(i)}
	}
	b.ReportAllocs()
	for b.Loop() {
		buildIndex(cs)
	}
}

// BenchmarkCountContacts counts one action's contacts in a 7-day window
// up to a cap of 3, as a decision does for a capped candidate, through
// the index of histories of 200 contacts over few actions (found by a
// scan) and over many (a map).
func BenchmarkCountContacts(b *testing.B) {
	for _, actions := range []int{8, 60} {
		b.Run(fmt.Sprint("actions=", actions), func(b *testing.B) {
			r := rand.New(rand.NewPCG(7, uint64(actions)))
			hour := int64(time.Hour)
			cs := make([]Contact, 200)
			for i := range cs {
				cs[i] = Contact{Action: Intern(fmt.Sprintf("a%d", r.IntN(actions))), At: int64(i) * hour}
			}
			c := &Customer{ID: "x", Contacts: cs}
			c.Summarize()
			names := make([]Name, actions)
			for i := range names {
				names[i] = Intern(fmt.Sprintf("a%d", i))
			}
			now := cs[len(cs)-1].At
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c.CountContactsOf(names[i%actions], Served, now-7*24*hour, now, 3)
				i++
			}
		})
	}
}

// roomByWalk is IndexRoom by its definition: the links' array and the
// capacities of the slots' and the names' arrays.
func roomByWalk(c *Customer) int {
	if c.index == nil {
		return 0
	}
	return len(*c.index.ch.prev.Load()) + cap(*c.index.ch.last.Load()) + cap(c.index.names)
}

// TestIndexRoomKept: the room the index keeps as its lists grow is the
// room by definition after every append, lists new and old, in the shared
// array or out of it, one contact or several at a time; and actions new to
// the index join its map once there are more than indexScan to scan.
func TestIndexRoomKept(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	cs := make([]Contact, 40)
	for i := range cs {
		cs[i] = Contact{Action: Intern(fmt.Sprintf("a%d", r.IntN(10))), At: int64(i)}
	}
	c := &Customer{ID: "x", Contacts: cs}
	c.Summarize()
	if got, want := c.IndexRoom(), roomByWalk(c); got != want || got != len(cs)+2*c.IndexedActions()+4 {
		t.Fatalf("built: IndexRoom %d; want %d (%d links, %d slots and names, and room for 4 more names)", got, want, len(cs), c.IndexedActions())
	}
	at := int64(len(cs))
	for step := range 300 {
		batch := make([]Contact, 1+r.IntN(3))
		for i := range batch {
			batch[i] = Contact{Action: Intern(fmt.Sprintf("a%d", r.IntN(60))), At: at}
			at++
		}
		c = c.AppendContacts(batch)
		if c.index == nil {
			t.Fatalf("step %d: no index", step)
		}
		if got, want := c.IndexRoom(), roomByWalk(c); got != want {
			t.Fatalf("step %d (%d contacts, %d actions): IndexRoom %d; want %d", step, len(c.Contacts), c.IndexedActions(), got, want)
		}
		// New actions join the map indexScan at a time.
		if scanned := c.IndexedActions() - c.IndexMapped(); scanned > indexScan {
			t.Fatalf("step %d: %d of %d actions are found by a scan; want at most %d", step, scanned, c.IndexedActions(), indexScan)
		}
		// The links grow with the history's array, when a store
		// re-estimates the customer's memory.
		if links := len(*c.index.ch.prev.Load()); links != cap(c.Contacts) {
			t.Fatalf("step %d: %d links for a history of capacity %d", step, links, cap(c.Contacts))
		}
	}
}

// TestContactIndexDiscarded: a version appended to and then discarded (a
// store whose write failed does not cache it) has linked its contacts in
// the shared chains; the next append to the version before it, at the
// same positions, still counts like the definition, old and new actions.
func TestContactIndexDiscarded(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	cur := &Customer{ID: "x", Outcomes: map[Name]uint8{}}
	for i := range 60 {
		cur = cur.AppendContacts([]Contact{{Action: Intern(fmt.Sprintf("a%d", i%3)), At: int64(i) * int64(time.Second)}})
	}
	if cur.index == nil {
		t.Fatal("no index after 60 contacts")
	}
	for _, discarded := range [][]Contact{
		{{Action: Intern("a1"), At: 100 * int64(time.Second)}},
		{{Action: Intern("a5"), At: 100 * int64(time.Second)}, {Action: Intern("a1"), At: 101 * int64(time.Second)}},
	} {
		_ = cur.AppendContacts(discarded)
		next := cur.AppendContacts([]Contact{{Action: Intern("a2"), At: 100 * int64(time.Second)}, {Action: Intern("a4"), At: 102 * int64(time.Second)}})
		checkCounts(t, "after a discarded version", next, r)
		checkCounts(t, "the version before", cur, r)
		cur = next
	}
}

// BenchmarkCollectIndexed measures what the contact index of a long
// history costs the garbage collector, which marks every cached customer
// in each cycle: one op is a full collection with 20,000 customers of 100
// contacts over 10 actions live, with their index or without it.
// scan-B/customer is the heap the collector scans per customer.
func BenchmarkCollectIndexed(b *testing.B) {
	const n = 20000
	for _, indexed := range []bool{true, false} {
		b.Run(fmt.Sprint("indexed=", indexed), func(b *testing.B) {
			held := make([]*Customer, n)
			for i := range held {
				cs := make([]Contact, 100)
				for j := range cs {
					cs[j] = Contact{Action: Intern(fmt.Sprintf("a%d", (i+j*3)%10)), At: int64(j)}
				}
				c := &Customer{ID: "x", Contacts: cs}
				c.Summarize()
				if !indexed {
					c.index = nil
				} else if c.index == nil {
					b.Fatal("no index")
				}
				held[i] = c
			}
			for b.Loop() {
				runtime.GC()
			}
			scan1 := heapScan()
			runtime.KeepAlive(held) // live up to here, not beyond
			scan0 := heapScan()
			b.ReportMetric(float64(int64(scan1)-int64(scan0))/n, "scan-B/customer")
		})
	}
}

// heapScan returns, after a collection, the scannable heap.
func heapScan() uint64 {
	runtime.GC()
	m := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
	metrics.Read(m)
	return m[0].Value.Uint64()
}
