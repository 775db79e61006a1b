package pebblestore

import (
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/store"
)

// stageOnly records contacts like Record, but leaves them staged: the
// apply that Record runs after releasing the lock is not run, as when
// another goroutine is applying.
func stageOnly(t *testing.T, s *Store, id string, cts ...store.Contact) {
	t.Helper()
	apply, err := s.recordLocked(id, cts)
	if err != nil || apply == nil {
		t.Fatalf("recordLocked: %v (apply %v)", err, apply != nil)
	}
	if s.pend.empty() {
		t.Fatal("nothing staged")
	}
}

// evict drops id's cache entry, as the cache's eviction does.
func evict(s *Store, id string) {
	mu := &s.stripes[s.stripe(id)]
	mu.Lock()
	s.waitCache()
	s.cache.Del(id)
	mu.Unlock()
}

// TestPendingOrder: staged contacts reach Pebble before anything that
// follows them: a cache miss, a delete, an attribute write, the sync, and
// Close.
func TestPendingOrder(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	now := time.Now().UnixNano()

	// A miss reads what was staged for the customer.
	stageOnly(t, s, "miss", served("a", now))
	s.waitCache()
	s.cache.Del("miss")
	if c := mustCustomer(t, s, "miss"); c == nil || actions(c.Contacts) != "a" {
		t.Fatalf("miss after a staged contact: %+v", c)
	}
	if !s.pend.empty() {
		t.Error("the miss left writes staged")
	}

	// A delete after a staged contact deletes it; one staged after the
	// delete survives it.
	stageOnly(t, s, "del", served("a", now))
	if ok, err := s.Delete("del"); err != nil || !ok {
		t.Fatalf("Delete: %v, %v", ok, err)
	}
	stageOnly(t, s, "del", served("b", now+1))

	// An attribute write keeps a contact staged before it.
	stageOnly(t, s, "put", served("a", now))
	if err := s.PutAttributes("put", map[string]any{"tier": "gold"}); err != nil {
		t.Fatal(err)
	}
	if _, contacts := countKeys(t, s, "put"); contacts != 1 {
		t.Errorf("put: %d contacts on disk after the synced write; want 1", contacts)
	}

	// Close applies what is left.
	stageOnly(t, s, "close", served("a", now), served("b", now+1))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	for id, want := range map[string]string{"miss": "a", "del": "b", "put": "a", "close": "a b"} {
		if c := mustCustomer(t, s, id); c == nil || actions(c.Contacts) != want {
			t.Errorf("%s after reopening: %+v; want contacts %q", id, c, want)
		}
	}
	if c := mustCustomer(t, s, "put"); c == nil || c.AttributeMap()["tier"] != "gold" {
		t.Errorf("put lost its attributes: %+v", c)
	}
}

// TestPendingConcurrent: many goroutines recording for a few customers
// (one applying, the others staging behind it), with misses forced by
// deleting cache entries, lose no contact.
func TestPendingConcurrent(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	const workers, per, ids = 8, 200, 5
	base := time.Now().UnixNano()
	// Applies run all along, as the sync loop's do, so that misses read
	// while an apply commits what they also find staged.
	done := make(chan struct{})
	var applier sync.WaitGroup
	applier.Add(1)
	go func() {
		defer applier.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if err := s.pend.drain(); err != nil {
				t.Error(err)
				return
			}
			runtime.Gosched()
		}
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				id := string(rune('a' + (w+i)%ids))
				if err := s.Record(id, []store.Contact{served("x", base+int64(i))}, nil); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					evict(s, id)
					if _, err := s.Customer(id); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	applier.Wait()
	// Read back from Pebble and what is left staged.
	s.waitCache()
	total := 0
	for i := range ids {
		s.cache.Del(string(rune('a' + i)))
	}
	for i := range ids {
		c := mustCustomer(t, s, string(rune('a'+i)))
		if c != nil {
			total += len(c.Contacts)
		}
	}
	if total != workers*per {
		t.Errorf("%d contacts in memory; want %d", total, workers*per)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	total = 0
	for i := range ids {
		_, n := countKeys(t, s, string(rune('a'+i)))
		total += n
	}
	if total != workers*per {
		t.Errorf("%d contacts on disk after reopening; want %d", total, workers*per)
	}
}

// TestRecordUncached: recording for a stored customer that is not cached
// only appends to its contact log, without reading the customer: its attributes
// and earlier contacts stay, and a customer whose history grew past
// MaxContacts that way is pruned when it is next read.
func TestRecordUncached(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	now := time.Now().UnixNano()
	if err := s.PutAttributes("u", map[string]any{"tier": "gold"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Record("u", []store.Contact{served("a", now)}, nil); err != nil {
		t.Fatal(err)
	}
	evict(s, "u")
	for i := range 3 {
		if err := s.Record("u", []store.Contact{served("b", now+int64(i+1)), served("c", now+int64(i+1))}, nil); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.cache.Get("u"); ok {
			t.Fatal("a record for an uncached customer cached a partial customer")
		}
	}
	c := mustCustomer(t, s, "u")
	if c == nil || c.AttributeMap()["tier"] != "gold" || actions(c.Contacts) != "a b c b c b c" {
		t.Fatalf("after uncached records: %+v", c)
	}
	if !c.HadOutcome("c", store.Served, now+10) || c.CountContacts("b", store.Served, now, now+10, 100) != 3 {
		t.Error("the reloaded history lost its index or summary")
	}

	// Grow past MaxContacts without a read, then read: pruned.
	evict(s, "u")
	big := make([]store.Contact, store.MaxContacts)
	for i := range big {
		big[i] = served("z", now+100+int64(i))
	}
	if err := s.Record("u", big, nil); err != nil {
		t.Fatal(err)
	}
	c = mustCustomer(t, s, "u")
	if n := len(c.Contacts); n > store.MaxContacts || n < store.MaxContacts/2 {
		t.Errorf("%d contacts after a read past MaxContacts", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	if _, n := countKeys(t, s, "u"); n != len(c.Contacts) {
		t.Errorf("%d contacts on disk after the prune; %d in memory", n, len(c.Contacts))
	}
}

// TestEventsUncached: events for a stored customer that is not cached
// read and rewrite its main record only: its contacts stay, the events
// count, and no partial customer is cached.
func TestEventsUncached(t *testing.T) {
	s := openTest(t, t.TempDir())
	now := time.Now().UnixNano()
	if err := s.PutAttributes("u", map[string]any{"tier": "gold"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Record("u", []store.Contact{served("a", now), served("b", now+1)}, nil); err != nil {
		t.Fatal(err)
	}
	s.waitCache()
	s.cache.Del("u")
	if err := s.AddEvents([]store.Event{{CustomerID: "u", Type: "view", At: now}, {CustomerID: "new", Type: "view", At: now}}); err != nil {
		t.Fatal(err)
	}
	s.waitCache()
	if _, ok := s.cache.Get("u"); ok {
		t.Fatal("events for an uncached customer cached a partial customer")
	}
	c := mustCustomer(t, s, "u")
	if c == nil || c.AttributeMap()["tier"] != "gold" || actions(c.Contacts) != "a b" || eventCount(t, s, "u", "view") != 1 {
		t.Fatalf("after events: %+v", c)
	}
	if eventCount(t, s, "new", "view") != 1 {
		t.Error("the event for a new customer was lost")
	}
}

// TestRecordAfterDelete: a customer read from Pebble, not cached, then
// deleted is created anew by the next contact (Record must not take it
// for the customer it read before the delete), and a read customer that
// was not cached still gets its contacts appended.
func TestRecordAfterDelete(t *testing.T) {
	s := openTest(t, t.TempDir())
	now := time.Now().UnixNano()
	for _, id := range []string{"kept", "gone"} {
		if err := s.PutAttributes(id, map[string]any{"tier": "gold"}); err != nil {
			t.Fatal(err)
		}
		evict(s, id)
		if c := mustCustomer(t, s, id); c == nil { // read from Pebble
			t.Fatalf("%s: missing", id)
		}
		evict(s, id)
	}
	if ok, err := s.Delete("gone"); !ok || err != nil {
		t.Fatalf("Delete: %v, %v", ok, err)
	}
	evict(s, "gone")
	for _, id := range []string{"kept", "gone"} {
		if err := s.Record(id, []store.Contact{served("a", now)}, nil); err != nil {
			t.Fatal(err)
		}
		evict(s, id)
	}
	if c := mustCustomer(t, s, "kept"); c == nil || c.AttributeMap()["tier"] != "gold" || actions(c.Contacts) != "a" {
		t.Errorf("kept: %+v", c)
	}
	if c := mustCustomer(t, s, "gone"); c == nil || c.AttributeMap() != nil || actions(c.Contacts) != "a" {
		t.Errorf("gone, then contacted: %+v; want a new customer with one contact", c)
	}
}

// TestStageReusesBuffer: staging a customer's writes reuses the scratch
// buffer from its front: after the first call, only appendCustomer's
// sorting of the event types allocates (a shrinking buffer allocated at
// every call and was a third of the bytes batch ingest allocated).
func TestStageReusesBuffer(t *testing.T) {
	s := openTest(t, t.TempDir())
	b := s.db.NewBatch()
	defer b.Close()
	c := typicalCustomer("c")
	chs := []change{
		{id: "c", c: c, main: true, added: c.Contacts[:2]},
		{id: "c", c: c, main: true, replace: true},
		{id: "c", c: c, added: c.Contacts[:1]},
	}
	buf := make([]byte, 0, 16)
	run := func() {
		b.Reset()
		for i := range chs {
			if err := stage(b, &chs[i], &buf); err != nil {
				t.Fatal(err)
			}
		}
	}
	run()
	if allocs := testing.AllocsPerRun(100, run); allocs > float64(len(chs)) {
		t.Errorf("%v allocations to stage %d changes; want at most %d", allocs, len(chs), len(chs))
	}
}

// TestPrereadCurrent: a main record read before a batch of events takes
// its locks is used only if no write to the stripe came between; each kind
// of write makes it stale, and the batch then reads the record again.
func TestPrereadCurrent(t *testing.T) {
	s := openTest(t, t.TempDir())
	now := time.Now().UnixNano()
	current := func(p *preread, id string) bool {
		mu := &s.stripes[s.stripe(id)]
		mu.Lock()
		defer mu.Unlock()
		return p.current(s, id)
	}
	writes := map[string]func(id string) error{
		"put":    func(id string) error { return s.PutAttributes(id, map[string]any{"tier": "silver"}) },
		"record": func(id string) error { return s.Record(id, []store.Contact{served("a", now)}, nil) },
		"events": func(id string) error { return s.AddEvents([]store.Event{{CustomerID: id, Type: "view", At: now}}) },
		"delete": func(id string) error { _, err := s.Delete(id); return err },
		"import": func(id string) error { return s.Import([]*store.Customer{{ID: id}}) },
	}
	for name, write := range writes {
		id := "u-" + name
		if err := s.PutAttributes(id, map[string]any{"tier": "gold"}); err != nil {
			t.Fatal(err)
		}
		evict(s, id)
		pre, err := s.preread([]string{id}, [][]string{{"view"}})
		if err != nil {
			t.Fatal(err)
		}
		if !current(&pre[0], id) || pre[0].c == nil || !strings.Contains(pre[0].kept.attrs, "gold") {
			t.Fatalf("%s: fresh read: current %v, %+v, attributes %q", name, current(&pre[0], id), pre[0].c, pre[0].kept.attrs)
		}
		if err := write(id); err != nil {
			t.Fatal(err)
		}
		evict(s, id)
		if current(&pre[0], id) {
			t.Errorf("%s: a read from before the write is taken as current", name)
		}
	}
	// The batch reads again: the put's attributes and both events stay.
	id := "u-put"
	if err := s.AddEvents([]store.Event{{CustomerID: id, Type: "view", At: now}}); err != nil {
		t.Fatal(err)
	}
	if c := mustCustomer(t, s, id); c.AttributeMap()["tier"] != "silver" || c.EventMap()["view"] == nil || c.EventMap()["view"].Count != 1 {
		t.Errorf("after a batch on a stale read: %+v", c)
	}
}

// TestEventsUncachedKeepAttributes: events for a customer that is not
// cached rewrite its main record with its attributes as they were encoded
// (decodeEvents), not decoded and encoded again; they must come back
// exactly, nested values included, batch after batch.
func TestEventsUncachedKeepAttributes(t *testing.T) {
	s := openTest(t, t.TempDir())
	id := "u-rich"
	attrs := map[string]any{
		"tier": "gold", "ltv": 1250.5, "visits": 3.0, "vip": true, "gone": nil, "score": -0.125,
		"consent": map[string]any{"email": true, "sms": false, "prefs": map[string]any{"lang": "fr"}},
		"tags":    []any{"a", 2.5, false, nil, []any{"x"}, map[string]any{"k": "v"}},
		"empty":   map[string]any{}, "none": []any{}, "name": "Zoë « Ana »",
	}
	if err := s.PutAttributes(id, attrs); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	for i := range 3 {
		evict(s, id)
		if _, ok := s.cache.Get(id); ok {
			t.Fatal("the customer is still cached")
		}
		if err := s.AddEvents([]store.Event{{CustomerID: id, Type: "view", At: now + int64(i)}, {CustomerID: "u-other", Type: "view", At: now}}); err != nil {
			t.Fatal(err)
		}
	}
	evict(s, id)
	c := mustCustomer(t, s, id)
	if !reflect.DeepEqual(c.AttributeMap(), attrs) {
		t.Errorf("attributes after three batches on the uncached customer:\n%#v\nwant\n%#v", c.AttributeMap(), attrs)
	}
	if v := c.EventMap()["view"]; v == nil || v.Count != 3 {
		t.Errorf("view events: %+v; want 3", v)
	}
}

// TestPendingAppends: a customer's appends are staged as one operand per
// apply, a cache miss reads them without applying them, and they reach
// Pebble, in order, at the next apply.
func TestPendingAppends(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	now := time.Now().UnixNano()
	if err := s.Record("u", []store.Contact{served("a", now)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.pend.drain(); err != nil {
		t.Fatal(err)
	}
	evict(s, "u")
	for i := range 3 { // not cached: appends only
		if err := s.Record("u", []store.Contact{served(string(rune('b'+i)), now+int64(i+1))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.pend.mu.Lock()
	keys, n := len(s.pend.logs.keys), s.pend.n
	s.pend.mu.Unlock()
	if keys != 1 || n != 3 {
		t.Errorf("3 records for one customer staged %d writes under %d keys; want 3 under 1", n, keys)
	}
	c := mustCustomer(t, s, "u")
	if got := actions(c.Contacts); got != "a b c d" {
		t.Errorf("a miss with appends staged read %q; want \"a b c d\"", got)
	}
	if s.pend.empty() {
		t.Error("the miss applied the appends staged")
	}

	// An apply between taking what is staged and reading Pebble: the
	// read starts again rather than count the appends twice.
	evict(s, "u")
	applied := 0
	s.testAfterStaged = func() {
		if applied++; applied == 1 {
			if err := s.pend.drain(); err != nil {
				t.Error(err)
			}
		}
	}
	c = mustCustomer(t, s, "u")
	s.testAfterStaged = nil
	if got := actions(c.Contacts); got != "a b c d" || applied != 2 {
		t.Errorf("a miss during an apply read %q after %d tries; want \"a b c d\" after 2", got, applied)
	}
	if _, k := countKeys(t, s, "u"); k != 4 {
		t.Errorf("%d contacts in Pebble after the apply; want 4", k)
	}
}

// TestPendingGen: a read of Pebble is current only if no apply started
// since it took what was staged, and an apply in progress makes readers
// wait for it.
func TestPendingGen(t *testing.T) {
	s := openTest(t, t.TempDir())
	key := keyHistory(nil, "u")
	if err := s.Record("u", []store.Contact{served("a", time.Now().UnixNano())}, nil); err != nil {
		t.Fatal(err)
	}
	staged, gen, busy := s.pend.staged(nil, key)
	if busy || len(staged) == 0 || !s.pend.current(gen) {
		t.Fatalf("staged: %d bytes, busy %v, current %v", len(staged), busy, s.pend.current(gen))
	}
	if err := s.pend.drain(); err != nil {
		t.Fatal(err)
	}
	if s.pend.current(gen) {
		t.Error("still current after an apply")
	}
	if staged, _, _ := s.pend.staged(nil, key); len(staged) != 0 {
		t.Errorf("%d bytes still staged after the apply", len(staged))
	}
	s.pend.mu.Lock()
	s.pend.gen++ // as applyLocked does while it commits
	s.pend.mu.Unlock()
	if _, _, busy := s.pend.staged(nil, key); !busy {
		t.Error("not busy while an apply commits")
	}
	s.pend.mu.Lock()
	s.pend.gen++
	s.pend.mu.Unlock()
}

// TestPendingRewrite: a write that sets a log drops the appends staged
// for it (its value has them); appends staged after it follow it.
func TestPendingRewrite(t *testing.T) {
	s := openTest(t, t.TempDir())
	key := keyHistory(nil, "u")
	st := s.stripe("u")
	stageOp := func(merge bool, v string) {
		t.Helper()
		b := s.db.NewBatch()
		defer b.Close()
		op := b.Set
		if merge {
			op = b.Merge
		}
		if err := op(key, []byte(v), nil); err != nil {
			t.Fatal(err)
		}
		if err := s.pend.stage(b, st); err != nil {
			t.Fatal(err)
		}
	}
	staged := func() string {
		v, _, _ := s.pend.staged(nil, key)
		return string(v)
	}
	stageOp(true, "a")
	stageOp(true, "b")
	if got := staged(); got != "ab" {
		t.Errorf("staged %q; want \"ab\"", got)
	}
	stageOp(false, "abS")
	if got := staged(); got != "" {
		t.Errorf("staged after the rewrite: %q; want nothing", got)
	}
	stageOp(true, "c")
	if err := s.pend.drain(); err != nil {
		t.Fatal(err)
	}
	v, closer, err := s.db.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if got := string(v); got != "abSc" {
		t.Errorf("after the apply: %q; want \"abSc\"", got)
	}
	if n, size := s.pend.count.Load(), s.pend.size.Load(); n != 0 || size != 0 {
		t.Errorf("after the apply: %d writes and %d bytes counted as staged", n, size)
	}
}

// TestPendingKick: passing the bound of what is staged wakes the sync
// loop, which applies it long before its next tick.
func TestPendingKick(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), SyncInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Now().UnixNano()
	record := func(i int) {
		t.Helper()
		if err := s.Record(fmt.Sprint("u", i), []store.Contact{served("a", now)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Create the customers first: a first contact's main record is
	// drained by the next first contact in its stripe.
	for i := range maxStaged + 1 {
		record(i)
	}
	if err := s.pend.drain(); err != nil {
		t.Fatal(err)
	}
	for i := range maxStaged {
		record(i)
	}
	if s.pend.empty() {
		t.Fatal("applied before the bound")
	}
	record(maxStaged)
	deadline := time.Now().Add(10 * time.Second)
	for !s.pend.empty() {
		if time.Now().After(deadline) {
			t.Fatal("still staged 10 s after passing the bound")
		}
		time.Sleep(time.Millisecond)
	}
	for _, i := range []int{0, maxStaged} {
		if m, k := countKeys(t, s, fmt.Sprint("u", i)); m != 1 || k != 2 {
			t.Errorf("u%d in Pebble: %d main, %d contacts; want 1, 2", i, m, k)
		}
	}
}

// TestAppends: the staged appends of a failed apply go back in front of
// those staged since, in buffers that its reset and reuse leave alone.
func TestAppends(t *testing.T) {
	failed, since := newAppends(), newAppends()
	failed.add([]byte("a"), []byte("1"))
	failed.add([]byte("b"), []byte("x"))
	failed.add([]byte("a"), []byte("2"))
	failed.add([]byte("d"), []byte("gone"))
	failed.drop([]byte("d"))
	since.add([]byte("a"), []byte("3"))
	since.add([]byte("c"), []byte("y"))
	since.prepend(failed)
	failed.reset()
	failed.add([]byte("a"), []byte("reused"))
	failed.add([]byte("b"), []byte("reused"))
	got := map[string]string{}
	for i, k := range since.keys {
		got[k] = string(since.bufs[i])
	}
	want := map[string]string{"a": "123", "b": "x", "c": "y"}
	if !reflect.DeepEqual(got, want) || since.bytes != 5 {
		t.Errorf("after prepend: %v (%d bytes); want %v (5 bytes)", got, since.bytes, want)
	}
	if g := string(since.get([]byte("d"))); g != "" {
		t.Errorf("a dropped key came back: %q", g)
	}
}

// TestStageAppendCounts: a Record that only appends to a cached
// customer's log is staged without a batch (stageAppend), and counts as
// stage counts a staged log write: the writes, its stripe's log writes,
// its bytes; passing the byte bound makes what is staged full, and an
// apply takes it all back to zero.
func TestStageAppendCounts(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), SyncInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Now().UnixNano()
	if err := s.Record("u", []store.Contact{served("a", now)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.pend.drain(); err != nil {
		t.Fatal(err)
	}
	p, st := s.pend, s.stripe("u")
	ct := served(strings.Repeat("x", 400), now)
	stageOnly(t, s, "u", ct)
	want := int64(len(appendContacts(nil, []store.Contact{ct})))
	if p.count.Load() != 1 || p.perLog[st].Load() != 1 || p.perMain[st].Load() != 0 || p.size.Load() != want {
		t.Fatalf("staged: count %d, log writes %d, main writes %d, bytes %d; want 1, 1, 0, %d",
			p.count.Load(), p.perLog[st].Load(), p.perMain[st].Load(), p.size.Load(), want)
	}
	for n := 1; !p.full(1); n++ {
		if n > maxStaged {
			t.Fatalf("not full after %d appends of %d bytes", n, want)
		}
		p.stageAppend(keyHistory(nil, "u"), appendContacts(nil, []store.Contact{ct}), st)
	}
	if p.count.Load() >= maxStaged {
		t.Fatalf("full by its count (%d), not its bytes", p.count.Load())
	}
	if err := p.drain(); err != nil {
		t.Fatal(err)
	}
	if p.count.Load() != 0 || p.perLog[st].Load() != 0 || p.size.Load() != 0 {
		t.Errorf("after the apply: count %d, log writes %d, bytes %d; want 0", p.count.Load(), p.perLog[st].Load(), p.size.Load())
	}
}
