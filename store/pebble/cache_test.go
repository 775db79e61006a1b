package pebblestore

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/nudge-engine/nudge/store"
)

// TestSmallCache: with a cache far smaller than the working set, reads are
// right and a write is never shadowed by a stale cached value.
func TestSmallCache(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), CacheMB: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// 3000 customers of about 1.5 KiB: over 4 MiB of records.
	const n = 3000
	pad := strings.Repeat("p", 1500)
	batch := make([]*store.Customer, 0, n)
	for i := range n {
		batch = append(batch, &store.Customer{ID: fmt.Sprint("c", i), Attributes: map[string]any{"i": float64(i), "pad": pad}})
	}
	if err := s.Import(batch); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for pass := range 3 {
		for _, i := range r.Perm(n) {
			c := mustCustomer(t, s, fmt.Sprint("c", i))
			if c == nil || c.AttributeMap()["i"] != float64(i) {
				t.Fatalf("pass %d: c%d: got %v", pass, i, c)
			}
		}
	}
	hits, misses := s.CacheStats()
	t.Logf("cache: %d hits, %d misses", hits, misses)
	if misses < n {
		t.Errorf("cache misses: got %d; want at least %d (the cache should not hold everything)", misses, n)
	}
	// Once the cache is full, each miss's fill evicts entries or is
	// declined: the counters EngineStats exports account for most misses.
	if ev, rej := cacheCounters(t, s); ev == 0 || ev+rej < float64(misses)/2 {
		t.Errorf("%v evictions, %v rejections for %d misses; want evictions, and the two for at least half the misses", ev, rej, misses)
	}

	// Hammer one customer: writers add events (synced) and contacts (not
	// synced) while readers read it and other customers evict it. Every
	// reader sees counts that never go down and that include every write
	// acknowledged before its read started.
	const writers, readers, each = 4, 4, 100
	var acked atomic.Int64 // events acknowledged
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				ev := store.Event{CustomerID: "hot", Type: "view", At: int64(w*each + i)}
				if err := s.AddEvents([]store.Event{ev}); err != nil {
					t.Error(err)
					return
				}
				acked.Add(1)
				if err := s.Record("hot", []store.Contact{{Action: store.Intern("a"), At: s.now().UnixNano()}}, nil); err != nil {
					t.Error(err)
					return
				}
				// Read our own write, through the cache.
				before := acked.Load()
				if got := eventCount(t, s, "hot", "view"); got < before {
					t.Errorf("writer read %d events after %d acknowledged", got, before)
				}
			}
		})
	}
	var readerWG sync.WaitGroup
	for g := range readers {
		readerWG.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 3))
			var last, lastContacts int64
			for {
				select {
				case <-stop:
					return
				default:
				}
				before := acked.Load()
				c := mustCustomer(t, s, "hot")
				var got, contacts int64
				if c != nil && c.EventMap()["view"] != nil {
					got = c.EventMap()["view"].Count
					contacts = int64(len(c.Contacts))
				}
				if got < before || got < last || contacts < lastContacts {
					t.Errorf("read %d events, %d contacts after %d acknowledged, %d events, %d contacts read before", got, contacts, before, last, lastContacts)
					return
				}
				last, lastContacts = got, contacts
				// Churn the cache.
				for range 5 {
					mustCustomer(t, s, fmt.Sprint("c", r.IntN(n)))
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readerWG.Wait()
	if got := eventCount(t, s, "hot", "view"); got != writers*each {
		t.Errorf("events: got %d; want %d", got, writers*each)
	}
	if c := mustCustomer(t, s, "hot"); len(c.Contacts) != writers*each {
		t.Errorf("contacts: got %d; want %d", len(c.Contacts), writers*each)
	}
}

// TestFillRace races a cache fill of a customer with its first write: the
// write must be visible to the writer's next read and to every later one.
func TestFillRace(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), CacheMB: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const rounds, parallel = 300, 8
	for round := range rounds {
		var wg sync.WaitGroup
		for p := range parallel {
			id := fmt.Sprint("r", round, "-", p)
			wg.Go(func() { mustCustomer(t, s, id) })
			wg.Go(func() {
				if err := s.AddEvents([]store.Event{{CustomerID: id, Type: "view"}}); err != nil {
					t.Error(err)
					return
				}
				for range 3 {
					if got := eventCount(t, s, id, "view"); got != 1 {
						t.Errorf("%s: read %d events after the write; want 1", id, got)
						return
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
}

// TestMissWaitsOnlyForItsStripe: a miss waits for the cache's queue only
// when an item queued for its stripe may still be pending, and what it
// then reads is current.
func TestMissWaitsOnlyForItsStripe(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	var batch []*store.Customer
	for i := range n {
		id := fmt.Sprint("c", i)
		batch = append(batch, &store.Customer{ID: id, Attributes: map[string]any{"name": id}})
	}
	if err := s.Import(batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// An empty cache, nothing queued; no sync loop tick (which waits)
	// during the test.
	if s, err = Open(Options{Dir: dir, SyncInterval: time.Minute}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// x and z share a stripe (of this Open: the hash is seeded), y has
	// another.
	var x, y, z string
	byStripe := map[int]string{}
	for i := 0; i < n && z == ""; i++ {
		id := fmt.Sprint("c", i)
		if other, ok := byStripe[s.stripe(id)]; ok {
			x, z = other, id
		}
		byStripe[s.stripe(id)] = id
	}
	// Any customer of another stripe (not only those the search above
	// saw: if c0 and c1 share one, it saw no other).
	for i := 0; i < n && y == ""; i++ {
		if id := fmt.Sprint("c", i); s.stripe(id) != s.stripe(x) {
			y = id
		}
	}
	if z == "" || y == "" {
		t.Fatal("no two customers share a stripe")
	}
	read := func(id string) {
		t.Helper()
		if c := mustCustomer(t, s, id); c == nil || c.AttributeMap()["name"] != id {
			t.Fatalf("%s: got %v", id, c)
		}
	}
	read(x) // a miss with nothing queued; queues x's entry
	if n := s.waits.Load(); n != 0 {
		t.Fatalf("%d waits for a miss with nothing queued", n)
	}
	// The decision's record right after: x's entry is the pending item
	// of its stripe, so no wait, whether the cache applied it yet or not.
	if err := s.Record(x, []store.Contact{{Action: store.Intern("a"), At: time.Now().UnixNano()}}, nil); err != nil {
		t.Fatal(err)
	}
	if n := s.waits.Load(); n != 0 {
		t.Errorf("%d waits to record for the customer just read", n)
	}
	read(y)
	if n := s.waits.Load(); n != 0 {
		t.Errorf("%d waits for a miss in a stripe with nothing queued", n)
	}
	read(z)
	if n := s.waits.Load(); n != 1 {
		t.Errorf("%d waits for a miss in the stripe of a queued entry; want 1", n)
	}
	read(x) // whether x's entry was admitted or not
	if c := mustCustomer(t, s, x); len(c.Contacts) != 1 {
		t.Errorf("%s: %d contacts; want 1", x, len(c.Contacts))
	}
}

// TestPendingEntryAfterEviction: the entry a stripe notes as its last
// queued item stays the current value of its customer even when the
// cache applied it and evicted it before any Wait: writes update it, and
// once it is forgotten, Pebble has the same.
func TestPendingEntryAfterEviction(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), SyncInterval: time.Minute}) // no tick during the test
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UnixNano()
	if err := s.Import([]*store.Customer{{ID: "u", Attributes: map[string]any{"tier": "gold"}}}); err != nil {
		t.Fatal(err)
	}
	s.forgetApplied()
	mustCustomer(t, s, "u") // a miss: queues u's entry
	reads := s.reads.Load()
	// The cache applies and evicts it, unknown to the store.
	s.cache.Wait()
	s.cache.Del("u")
	s.cache.Wait()
	if err := s.Record("u", []store.Contact{served("a", now)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddEvents([]store.Event{{CustomerID: "u", Type: "view", At: now}}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		c := mustCustomer(t, s, "u")
		if c == nil || c.AttributeMap()["tier"] != "gold" || actions(c.Contacts) != "a" || eventCount(t, s, "u", "view") != 1 {
			t.Fatalf("%s: %+v", when, c)
		}
	}
	check("with the pending entry")
	if n := s.reads.Load() - reads; n != 0 {
		t.Errorf("%d reads from Pebble while the pending entry was noted", n)
	}
	s.forgetApplied()
	s.cache.Del("u")
	s.waitCache()
	check("read from Pebble")
	if n := s.reads.Load() - reads; n != 1 {
		t.Errorf("%d reads from Pebble once the entry was forgotten; want 1", n)
	}
}

// TestBlockCacheBesideMemtables: Pebble charges every memtable's size to
// the block cache, and the memtables grow to 64 MiB. With two full-size
// memtables charged, reads that miss the customer cache must still find
// their blocks in the block cache the second time (a cache of
// BlockCacheMB alone held no block at all).
func TestBlockCacheBesideMemtables(t *testing.T) {
	var cache *pebble.Cache
	testHookBlockCache = func(c *pebble.Cache) { cache = c }
	defer func() { testHookBlockCache = nil }()
	s := openTest(t, t.TempDir())
	if cache == nil {
		t.Fatal("Open did not show its block cache")
	}
	ids := make([]string, 500)
	for i := range ids {
		ids[i] = fmt.Sprintf("c-%04d", i)
		if err := s.PutAttributes(ids[i], map[string]any{"tier": "gold", "ltv": float64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		release := cache.Reserve(memTableMB << 20)
		defer release()
	}
	// The hits as the server's metrics export them.
	hits := func() float64 {
		n := -1.0
		s.EngineStats(func(name, _ string, counter bool, v float64) {
			if name == "pebble_block_cache_hits_total" && counter {
				n = v
			}
		})
		if n < 0 {
			t.Fatal("EngineStats has no pebble_block_cache_hits_total counter")
		}
		return n
	}
	readAll := func() float64 {
		t.Helper()
		before := hits()
		for _, id := range ids {
			if c, _, err := s.readMain(id); err != nil || c == nil {
				t.Fatalf("readMain(%q): %v, %v", id, c, err)
			}
		}
		return hits() - before
	}
	readAll() // fills the block cache
	if n := readAll(); n < float64(len(ids)) {
		t.Errorf("reading %d stored customers again: %.0f block cache hits; want at least one each", len(ids), n)
	}
}

// TestMissDecodesIntoItsOwnArray: customers read from Pebble one after
// the other, through the pooled scratch array, each get an array of
// their own, of their length and historyRoom's room, which the next
// read does not overwrite.
func TestMissDecodesIntoItsOwnArray(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sizes := []int{300, 40, 1000, 7}
	var batch []*store.Customer
	for i, n := range sizes {
		batch = append(batch, historyCustomer(fmt.Sprint("c", i), n))
	}
	if err := s.Import(batch); err != nil {
		t.Fatal(err)
	}
	var got []*store.Customer
	for i := range sizes {
		c, _, err := s.read(fmt.Sprint("c", i))
		if err != nil || c == nil {
			t.Fatal(c, err)
		}
		got = append(got, c)
	}
	for i, c := range got {
		if len(c.Contacts) != sizes[i] || cap(c.Contacts) != historyRoom(sizes[i]) {
			t.Errorf("c%d: %d contacts with room for %d; want %d and %d", i, len(c.Contacts), cap(c.Contacts), sizes[i], historyRoom(sizes[i]))
		}
		if !reflect.DeepEqual(c.Contacts, batch[i].Contacts) {
			t.Errorf("c%d: the contacts read are not those imported", i)
		}
	}
}

// cacheCounters returns the customer cache's evictions and rejections as
// EngineStats exports them, once the cache has applied what is queued.
func cacheCounters(t *testing.T, s *Store) (evicted, rejected float64) {
	t.Helper()
	s.waitCache()
	evicted, rejected = -1, -1
	s.EngineStats(func(name, _ string, counter bool, v float64) {
		switch {
		case name == "cache_evictions_total" && counter:
			evicted = v
		case name == "cache_rejections_total" && counter:
			rejected = v
		}
	})
	if evicted < 0 || rejected < 0 {
		t.Fatalf("EngineStats lacks a counter: evictions %v, rejections %v", evicted, rejected)
	}
	return evicted, rejected
}

// TestEvictionCountersIdle: a cache that holds every customer read counts
// no eviction and no rejection (TestSmallCache checks that one far too
// small counts them).
func TestEvictionCountersIdle(t *testing.T) {
	s := openTest(t, t.TempDir())
	const n = 100
	batch := make([]*store.Customer, 0, n)
	for i := range n {
		batch = append(batch, &store.Customer{ID: fmt.Sprint("c", i), Attributes: map[string]any{"i": float64(i)}})
	}
	if err := s.Import(batch); err != nil {
		t.Fatal(err)
	}
	for pass := range 2 {
		for i := range n {
			if c := mustCustomer(t, s, fmt.Sprint("c", i)); c == nil {
				t.Fatalf("pass %d: c%d not found", pass, i)
			}
		}
	}
	if ev, rej := cacheCounters(t, s); ev != 0 || rej != 0 {
		t.Errorf("default cache, %d customers: %v evictions, %v rejections; want none", n, ev, rej)
	}
}
