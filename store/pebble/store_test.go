package pebblestore

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/store"
)

func openTest(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustCustomer(t testing.TB, s *Store, id string) *store.Customer {
	t.Helper()
	c, err := s.Customer(id)
	if err != nil {
		t.Fatalf("Customer(%q): %v", id, err)
	}
	return c
}

func eventCount(t testing.TB, s *Store, id, typ string) int64 {
	t.Helper()
	c := mustCustomer(t, s, id)
	if c == nil || c.EventMap()[typ] == nil {
		return 0
	}
	return c.EventMap()[typ].Count
}

func TestOptions(t *testing.T) {
	var o Options
	o.EnsureDefaults()
	if o.CacheMB != 256 || o.BlockCacheMB != 32 || o.SyncInterval != time.Second || o.Logger == nil {
		t.Errorf("defaults: got %+v", o)
	}
	err := o.Validate()
	if err == nil || !strings.Contains(err.Error(), "Dir is required") {
		t.Errorf("Validate without Dir: got %v", err)
	}

	// Every problem at once.
	bad := Options{CacheMB: -1, BlockCacheMB: -2, SyncInterval: time.Hour}
	bad.EnsureDefaults()
	err = bad.Validate()
	if err == nil {
		t.Fatal("Validate: no error")
	}
	for _, want := range []string{"Dir", "CacheMB is -1", "BlockCacheMB is -2", "SyncInterval is 1h0m0s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %q does not mention %q", err, want)
		}
	}
	if _, err := Open(bad); err == nil {
		t.Error("Open with bad options: no error")
	}
}

// TestRoundTrip exercises every method, then checks that everything
// acknowledged is there after Close and Open.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	now := time.Now()
	ns := func(d time.Duration) int64 { return now.Add(d).UnixNano() }

	if empty, err := s.Empty(); err != nil || !empty {
		t.Fatalf("Empty on a new store: %v, %v", empty, err)
	}
	since, stats := s.Stats()
	if time.Since(since) > time.Minute || len(stats) != 0 {
		t.Fatalf("Stats on a new store: %v, %v", since, stats)
	}
	if c := mustCustomer(t, s, "nobody"); c != nil {
		t.Fatalf("unknown customer: got %+v", c)
	}

	// Attributes.
	attrs := map[string]any{"tier": "gold", "ltv": 1200.0, "consent": map[string]any{"email": true, "sms": false}, "tags": []any{"a", 1.0, nil}}
	if err := s.PutAttributes("c1", attrs); err != nil {
		t.Fatal(err)
	}
	got, err := s.PatchAttributes("c1", map[string]any{"tier": nil, "consent": map[string]any{"sms": true}, "n": 3})
	if err != nil {
		t.Fatal(err)
	}
	wantAttrs := map[string]any{"ltv": 1200.0, "consent": map[string]any{"email": true, "sms": true}, "tags": []any{"a", 1.0, nil}, "n": 3.0}
	if !reflect.DeepEqual(got, wantAttrs) {
		t.Errorf("PatchAttributes: got %v; want %v", got, wantAttrs)
	}
	if err := s.PutAttributes("", attrs); err == nil {
		t.Error("PutAttributes with an empty id: no error")
	}

	// Events: one batch over three customers.
	err = s.AddEvents([]store.Event{
		{CustomerID: "c1", Type: "purchase", At: ns(-48 * time.Hour), Value: 20},
		{CustomerID: "c2", Type: "view", At: ns(-time.Hour)},
		{CustomerID: "c1", Type: "purchase", At: ns(-time.Hour), Value: 30.5},
		{CustomerID: "c3", Type: "view", At: ns(-time.Minute)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddEvents([]store.Event{{CustomerID: "c9", Type: "x"}, {Type: "x"}}); err == nil {
		t.Error("AddEvents with an empty customer id: no error")
	}
	if c := mustCustomer(t, s, "c9"); c != nil {
		t.Error("a rejected batch wrote its valid events")
	}
	c1 := mustCustomer(t, s, "c1")
	if n, sum := c1.EventMap()["purchase"].Window(ns(0), 7*24*time.Hour); n != 2 || sum != 50.5 {
		t.Errorf("c1 purchases in 7d: got %d, %v; want 2, 50.5", n, sum)
	}
	if !reflect.DeepEqual(c1.AttributeMap(), wantAttrs) {
		t.Errorf("c1 attributes after events: got %v", c1.AttributeMap())
	}

	// Contacts and statistics.
	err = s.Record("c2", []store.Contact{
		{Action: store.Intern("winback-20"), Outcome: store.Served, Channel: store.Intern("web"), At: ns(-2 * time.Hour)},
		{Action: store.Intern("winback-20"), Outcome: store.Click, Channel: store.Intern("web"), At: ns(-time.Hour)},
	}, []store.StatDelta{
		{Action: "winback-20", Variant: "b", Outcome: store.Served, At: ns(-2 * time.Hour)},
		{Action: "winback-20", Variant: "b", Outcome: store.Click, Value: 2, At: ns(-time.Hour)},
		{Action: "winback-20", Variant: "control", Outcome: store.Holdout, At: ns(-time.Hour)},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Record("", nil, []store.StatDelta{
		{Action: "brand-story", Outcome: store.Served, At: ns(-30 * time.Hour)},
		{Action: "brand-story", Outcome: store.Served, At: ns(-10 * time.Minute)},
		{Action: "brand-story", Outcome: store.Convert, Value: 99, At: ns(-5 * time.Minute)},
	})
	if err != nil {
		t.Fatal(err)
	}
	c2 := mustCustomer(t, s, "c2")
	if len(c2.Contacts) != 2 || c2.Contacts[1].Outcome != store.Click || c2.EventMap()["view"].Count != 1 {
		t.Errorf("c2: got %+v", c2)
	}
	check := func(s *Store) {
		t.Helper()
		if got := s.ServedSince("brand-story", ns(-24*time.Hour)); got != 1 {
			t.Errorf("brand-story served in 24h: got %d; want 1", got)
		}
		if got := s.ServedSince("brand-story", ns(-48*time.Hour)); got != 2 {
			t.Errorf("brand-story served in 48h: got %d; want 2", got)
		}
		if got := s.ServedSince("nothing", 0); got != 0 {
			t.Errorf("unknown action served: got %d", got)
		}
		if served, convert := s.ActionStats("brand-story"); served != 2 || convert != 1 {
			t.Errorf("ActionStats(brand-story): got %d, %d; want 2, 1", served, convert)
		}
		_, stats := s.Stats()
		want := map[string]*store.ActionStats{
			"winback-20": {Counters: store.Counters{Served: 1, Click: 1, Holdout: 1, Value: 2}, Variants: map[string]*store.Counters{
				"b": {Served: 1, Click: 1, Value: 2}, "control": {Holdout: 1},
			}},
			"brand-story": {Counters: store.Counters{Served: 2, Convert: 1, Value: 99}},
		}
		if !reflect.DeepEqual(stats, want) {
			t.Errorf("Stats: got %v; want %v", stats, want)
		}
	}
	check(s)
	// Stats returns a copy.
	_, stats = s.Stats()
	stats["winback-20"].Variants["b"].Served = 1000
	if _, stats := s.Stats(); stats["winback-20"].Variants["b"].Served != 1 {
		t.Error("Stats returned the store's own counters")
	}

	// Delete.
	if ok, err := s.Delete("c3"); err != nil || !ok {
		t.Errorf("Delete(c3): got %v, %v; want true", ok, err)
	}
	if ok, err := s.Delete("c3"); err != nil || ok {
		t.Errorf("Delete(c3) again: got %v, %v; want false", ok, err)
	}
	if ok, err := s.Delete("never"); err != nil || ok {
		t.Errorf("Delete(never): got %v, %v; want false", ok, err)
	}
	if c := mustCustomer(t, s, "c3"); c != nil {
		t.Errorf("deleted customer: got %+v", c)
	}
	if empty, err := s.Empty(); err != nil || empty {
		t.Errorf("Empty: got %v, %v; want false", empty, err)
	}

	before := map[string]*store.Customer{"c1": mustCustomer(t, s, "c1"), "c2": mustCustomer(t, s, "c2")}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Customer("c1"); err != ErrClosed {
		t.Errorf("Customer after Close: got %v; want ErrClosed", err)
	}
	if err := s.AddEvents([]store.Event{{CustomerID: "c1", Type: "x"}}); err != ErrClosed {
		t.Errorf("AddEvents after Close: got %v; want ErrClosed", err)
	}

	s = openTest(t, dir)
	for id, want := range before {
		if got := mustCustomer(t, s, id); !reflect.DeepEqual(canon(got), canon(want)) {
			t.Errorf("%s after reopen:\ngot  %+v\nwant %+v", id, got, want)
		}
	}
	if c := mustCustomer(t, s, "c3"); c != nil {
		t.Errorf("deleted customer after reopen: got %+v", c)
	}
	if since2, _ := s.Stats(); !since2.Equal(since) {
		t.Errorf("since after reopen: got %v; want %v", since2, since)
	}
	check(s)

	// Import replaces whole customers, including cached ones.
	imported := []*store.Customer{
		{ID: "c1", Attributes: map[string]any{"tier": "bronze", "visits": 3}},
		{ID: "c4", Events: map[string]*store.EventStats{"purchase": {Count: 1, Sum: 5, First: 7, Last: 7}}},
	}
	if err := s.Import(imported); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if c := mustCustomer(t, s, "c1"); !reflect.DeepEqual(c.AttributeMap(), map[string]any{"tier": "bronze", "visits": 3.0}) || c.EventMap() != nil {
		t.Errorf("c1 after import: got %+v", c)
	}
	if _, ok := imported[0].Attributes["visits"].(int); !ok {
		t.Error("Import modified its input")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	if got := eventCount(t, s, "c4", "purchase"); got != 1 {
		t.Errorf("imported c4 after reopen: %d purchases; want 1", got)
	}
	if c := mustCustomer(t, s, "c1"); c.AttributeMap()["tier"] != "bronze" {
		t.Errorf("imported c1 after reopen: got %+v", c)
	}
}

// TestConcurrentWrites: concurrent writes to one customer lose nothing.
func TestConcurrentWrites(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	const goroutines, each = 20, 50
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*2)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				err := s.AddEvents([]store.Event{{CustomerID: "hot", Type: "view", At: int64(g*each + i), Value: 1}})
				if err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() {
			_, err := s.PatchAttributes("hot", map[string]any{fmt.Sprintf("k%d", g): float64(g)})
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		c := mustCustomer(t, s, "hot")
		if n, sum := c.EventMap()["view"].Window(0, store.All); n != goroutines*each || sum != goroutines*each {
			t.Errorf("count(view, all): got %d, sum %v; want %d", n, sum, goroutines*each)
		}
		for g := range goroutines {
			if v := c.AttributeMap()[fmt.Sprintf("k%d", g)]; v != float64(g) {
				t.Errorf("attribute k%d: got %v; want %d", g, v, g)
			}
		}
	}
	check()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	check()
}

// TestConcurrentBatches: batches over overlapping customers in different
// orders neither deadlock nor lose events.
func TestConcurrentBatches(t *testing.T) {
	s := openTest(t, t.TempDir())
	ids := make([]string, 50)
	for i := range ids {
		ids[i] = fmt.Sprintf("c%d", i)
	}
	const goroutines, each = 8, 20
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				batch := make([]store.Event, 0, len(ids))
				for k := range ids {
					id := ids[(k*(g+1)+i)%len(ids)]
					batch = append(batch, store.Event{CustomerID: id, Type: "view", At: int64(i)})
				}
				if err := s.AddEvents(batch); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var total int64
	for _, id := range ids {
		total += eventCount(t, s, id, "view")
	}
	if total != goroutines*each*int64(len(ids)) {
		t.Errorf("events stored: got %d; want %d", total, goroutines*each*len(ids))
	}
}

func TestRetentionAndDelete(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	ct := func(age time.Duration) store.Contact {
		return store.Contact{Action: store.Intern("a"), Channel: store.Intern("web"), At: now.Add(-age).UnixNano()}
	}
	ages := func(c *store.Customer) []time.Duration {
		var out []time.Duration
		for _, k := range c.Contacts {
			out = append(out, now.Sub(time.Unix(0, k.At)))
		}
		return out
	}

	// The default keeps MaxDays days.
	if err := s.Record("c", []store.Contact{ct(91 * 24 * time.Hour), ct(89 * 24 * time.Hour), ct(3 * time.Hour), ct(time.Hour)}, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := ages(mustCustomer(t, s, "c")), []time.Duration{89 * 24 * time.Hour, 3 * time.Hour, time.Hour}; !reflect.DeepEqual(got, want) {
		t.Errorf("contacts kept by default: got %v; want %v", got, want)
	}

	// A shorter retention prunes at the next write of the customer, of any
	// kind.
	s.SetRetention(2 * time.Hour)
	if err := s.AddEvents([]store.Event{{CustomerID: "c", Type: "view", At: now.UnixNano()}}); err != nil {
		t.Fatal(err)
	}
	if got, want := ages(mustCustomer(t, s, "c")), []time.Duration{time.Hour}; !reflect.DeepEqual(got, want) {
		t.Errorf("contacts kept with 2h retention: got %v; want %v", got, want)
	}
	// Retention is clamped to [1h, MaxDays].
	s.SetRetention(time.Minute)
	if err := s.Record("c", []store.Contact{ct(30 * time.Minute)}, nil); err != nil {
		t.Fatal(err)
	}
	if got := len(mustCustomer(t, s, "c").Contacts); got != 2 {
		t.Errorf("contacts kept with retention clamped to 1h: got %d; want 2", got)
	}
	s.SetRetention(1000 * 24 * time.Hour)
	if err := s.Record("c", []store.Contact{ct(95 * 24 * time.Hour)}, nil); err != nil {
		t.Fatal(err)
	}
	if got := len(mustCustomer(t, s, "c").Contacts); got != 2 {
		t.Errorf("contacts kept with retention clamped to MaxDays: got %d; want 2", got)
	}

	// Delete erases the customer, from the cache too.
	if c := mustCustomer(t, s, "c"); c == nil {
		t.Fatal("customer missing before Delete")
	}
	if ok, err := s.Delete("c"); !ok || err != nil {
		t.Fatalf("Delete: got %v, %v", ok, err)
	}
	if c := mustCustomer(t, s, "c"); c != nil {
		t.Errorf("Customer after Delete: got %+v", c)
	}
	// A new write starts from nothing.
	if err := s.Record("c", []store.Contact{ct(time.Minute)}, nil); err != nil {
		t.Fatal(err)
	}
	if c := mustCustomer(t, s, "c"); len(c.Contacts) != 1 || c.EventMap() != nil {
		t.Errorf("customer re-created after Delete: got %+v", c)
	}
	if ok, err := s.Delete("c"); !ok || err != nil {
		t.Fatalf("Delete: got %v, %v", ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	if c := mustCustomer(t, s, "c"); c != nil {
		t.Errorf("Customer after Delete and reopen: got %+v", c)
	}
	if empty, err := s.Empty(); err != nil || !empty {
		t.Errorf("Empty after deleting the only customer: got %v, %v", empty, err)
	}
}

// TestSyncLoop: the background loop persists statistics without Close.
func TestSyncLoop(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, SyncInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Record("", nil, []store.StatDelta{{Action: "a", Outcome: store.Served, At: 1}}); err != nil {
		t.Fatal(err)
	}
	// Wait for the loop (no deadline: the test times out if it never runs).
	for {
		v, closer, err := s.db.Get(keyStats)
		if err == nil {
			st, err := decodeStats(string(v))
			closer.Close()
			if err != nil {
				t.Fatal(err)
			}
			if st["a"] == nil || st["a"].Served != 1 {
				t.Fatalf("persisted stats: got %v", st)
			}
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for {
		if !s.unsynced.Load() {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBudgetPersistence: serve counts keep their minute resolution across a
// restart, and pruned hours stay pruned.
func TestBudgetPersistence(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	base := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) int64 { return base.Add(d).UnixNano() }
	served := func(ts ...int64) {
		t.Helper()
		var ds []store.StatDelta
		for _, ts := range ts {
			ds = append(ds, store.StatDelta{Action: "a", Outcome: store.Served, At: ts})
		}
		if err := s.Record("", nil, ds); err != nil {
			t.Fatal(err)
		}
	}
	served(at(-50*24*time.Hour), at(-2*time.Hour), at(-10*time.Minute), at(-time.Minute))
	check := func(since time.Duration, want int64) {
		t.Helper()
		if got := s.ServedSince("a", at(since)); got != want {
			t.Errorf("ServedSince(%v): got %d; want %d", since, got, want)
		}
	}
	for range 2 {
		check(-5*time.Minute, 1)
		check(-15*time.Minute, 2)
		check(-60*24*time.Hour, 4)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openTest(t, dir)
	}
	// A serve 60 days later prunes the one 50 days before base; reopening
	// must not bring it back.
	served(at(60 * 24 * time.Hour))
	check(-60*24*time.Hour, 4) // 5 without the pruning
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	check(-60*24*time.Hour, 4)
}

// Every way a customer enters the cache keeps its attributes and events
// encoded, not as maps that the collector would scan (see attrs and
// encEvents): a read, an attribute write, a patch, an event and a recorded
// contact.
func TestCachedAttributesStayEncoded(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	read := &store.Customer{ID: "read", Attributes: map[string]any{"tier": "gold"}}
	read.AddEvent("view", time.Now().UnixNano(), 0)
	if err := s.Import([]*store.Customer{read}); err != nil {
		t.Fatal(err)
	}
	views := map[string]int64{"read": 1}
	check := func(step, id string, want map[string]any) {
		t.Helper()
		c := mustCustomer(t, s, id)
		if c == nil || c.Attributes != nil || c.Encoded == nil {
			t.Fatalf("%s: cached customer %+v; want its attributes encoded", step, c)
		}
		if c.Events != nil || (views[id] > 0) != (c.EncodedEvents != nil) {
			t.Fatalf("%s: cached customer's events %v, %v; want them encoded", step, c.Events, c.EncodedEvents)
		}
		if v := c.EventMap()["view"]; views[id] > 0 && (v == nil || v.Count != views[id]) {
			t.Fatalf("%s: view aggregates %+v; want a count of %d", step, v, views[id])
		}
		if got := c.AttributeMap(); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: attributes %v; want %v", step, got, want)
		}
		for k, v := range want {
			if c.Attr(k) != v {
				t.Fatalf("%s: Attr(%q) = %v; want %v", step, k, c.Attr(k), v)
			}
		}
	}
	check("read", "read", map[string]any{"tier": "gold"})
	if err := s.PutAttributes("w", map[string]any{"tier": "silver", "ltv": 12.5}); err != nil {
		t.Fatal(err)
	}
	check("put", "w", map[string]any{"tier": "silver", "ltv": 12.5})
	if _, err := s.PatchAttributes("w", map[string]any{"ltv": nil, "city": "Lisbon"}); err != nil {
		t.Fatal(err)
	}
	check("patch", "w", map[string]any{"tier": "silver", "city": "Lisbon"})
	for range 2 { // the first decodes a map of events, the second encoded ones
		if err := s.AddEvents([]store.Event{{CustomerID: "w", Type: "view", At: time.Now().UnixNano()}, {CustomerID: "w", Type: "cart", At: time.Now().UnixNano()}}); err != nil {
			t.Fatal(err)
		}
		views["w"]++
		check("event", "w", map[string]any{"tier": "silver", "city": "Lisbon"})
	}
	if err := s.AddEvents([]store.Event{{CustomerID: "w", Type: "cart", At: time.Now().UnixNano()}}); err != nil {
		t.Fatal(err)
	}
	check("another type's event", "w", map[string]any{"tier": "silver", "city": "Lisbon"})
	if c := mustCustomer(t, s, "w"); c.EventMap()["cart"].Count != 3 {
		t.Fatalf("cart count %d; want 3", c.EventMap()["cart"].Count)
	}
	if err := s.PutAttributes("w", map[string]any{"tier": "silver", "city": "Lisbon"}); err != nil {
		t.Fatal(err)
	}
	check("put after events", "w", map[string]any{"tier": "silver", "city": "Lisbon"})
	if err := s.Record("w", []store.Contact{{Action: store.Intern("a"), At: time.Now().UnixNano()}}, nil); err != nil {
		t.Fatal(err)
	}
	check("contact", "w", map[string]any{"tier": "silver", "city": "Lisbon"})
}
