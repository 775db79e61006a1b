package pebblestore

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/nudge-engine/nudge/store"
)

// countKeys counts what Pebble holds of the customer once what is staged
// is applied: its main record (0 or 1) and the contacts in its contact
// log.
func countKeys(t testing.TB, s *Store, id string) (main, contacts int) {
	t.Helper()
	if err := s.pend.drain(); err != nil {
		t.Fatal(err)
	}
	if _, closer, err := s.db.Get(keyCustomer(nil, id)); err == nil {
		closer.Close()
		main = 1
	} else if err != pebble.ErrNotFound {
		t.Fatal(err)
	}
	log, closer, err := s.db.Get(keyHistory(nil, id))
	if err == pebble.ErrNotFound {
		return main, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	var cd contactDecoder
	cts, err := cd.decodeContacts(nil, log)
	if err != nil {
		t.Fatalf("contact log of %q: %v", id, err)
	}
	return main, len(cts)
}

func served(action string, at int64) store.Contact {
	return store.Contact{Action: store.Intern(action), Channel: store.Intern("web"), At: at}
}

// TestRecordAllocs: recording a contact allocates the same whatever the
// length of the history (no timing: allocations).
func TestRecordAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("imports a long history")
	}
	s := openTest(t, t.TempDir())
	long := store.MaxContacts * 3 / 4 // below the cap: no prune
	if err := s.Import([]*store.Customer{historyCustomer("short", 10), historyCustomer("long", long)}); err != nil {
		t.Fatal(err)
	}
	allocs := func(id string, want int) float64 {
		if err := s.Record(id, []store.Contact{served("warm", time.Now().UnixNano())}, nil); err != nil {
			t.Fatal(err)
		}
		s.waitCache()
		a := testing.AllocsPerRun(300, func() {
			if err := s.Record(id, []store.Contact{served("winback-20", time.Now().UnixNano())}, nil); err != nil {
				t.Fatal(err)
			}
		})
		if c := mustCustomer(t, s, id); len(c.Contacts) != want+302 {
			t.Errorf("%s: %d contacts; want %d", id, len(c.Contacts), want+302)
		}
		return a
	}
	short, longAllocs := allocs("short", 10), allocs("long", long)
	t.Logf("allocations per Record: %v with 10 contacts, %v with %d", short, longAllocs, long)
	if longAllocs > short+1 {
		t.Errorf("Record allocates %v times with %d contacts, %v with 10", longAllocs, long, short)
	}
}

// TestContactLog: contacts are appended to a log of their own that
// survives a reopen, is pruned on disk and erased by Delete.
func TestContactLog(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	ns := func(d time.Duration) int64 { return now.Add(d).UnixNano() }

	// Out of order and at equal times, over several calls.
	if err := s.Record("c", []store.Contact{served("a", ns(-3*time.Hour)), served("b", ns(-time.Hour))}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Record("c", []store.Contact{served("c", ns(-2*time.Hour)), served("d", ns(-time.Hour)), served("e", ns(-time.Hour))}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Record("c", []store.Contact{{Action: store.Intern("f"), Outcome: store.Click, At: ns(-3 * time.Hour)}, served("g", ns(-10*time.Minute))}, nil); err != nil {
		t.Fatal(err)
	}
	want := "a f c b d e g"
	c := mustCustomer(t, s, "c")
	if got := actions(c.Contacts); got != want {
		t.Errorf("contacts: got %q; want %q", got, want)
	}
	if !c.HasOutcome("f", store.Click) || c.Outcomes[store.Intern("f")] != 1<<store.Click || c.HasOutcome("a", store.Click) {
		t.Errorf("outcome summary: %v", c.Outcomes)
	}
	if m, k := countKeys(t, s, "c"); m != 1 || k != 7 {
		t.Errorf("keys: %d main, %d contacts; want 1, 7", m, k)
	}
	// An event rewrites the main record, not the contacts.
	if err := s.AddEvents([]store.Event{{CustomerID: "c", Type: "view", At: ns(0)}}); err != nil {
		t.Fatal(err)
	}
	before := mustCustomer(t, s, "c")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	s.now = func() time.Time { return now }
	c = mustCustomer(t, s, "c")
	if !reflect.DeepEqual(canon(c), canon(before)) {
		t.Errorf("after reopen:\ngot  %+v\nwant %+v", c, before)
	}
	if !reflect.DeepEqual(c.Outcomes, map[store.Name]uint8{store.Intern("f"): 1 << store.Click}) {
		t.Errorf("outcome summary after reopen: %v", c.Outcomes)
	}

	// Pruning waits for the slack (1h for a 2h retention), then drops the
	// old contacts and their keys.
	s.SetRetention(2 * time.Hour)
	if err := s.Record("c", []store.Contact{served("h", ns(0))}, nil); err != nil {
		t.Fatal(err)
	}
	if got := len(mustCustomer(t, s, "c").Contacts); got != 8 {
		t.Errorf("contacts within the slack: got %d; want 8", got)
	}
	now = now.Add(time.Hour + time.Minute) // a, f: 4h01 old, beyond 2h + 1h
	if err := s.Record("c", []store.Contact{served("i", ns(0)), served("too old", ns(-3*time.Hour))}, nil); err != nil {
		t.Fatal(err)
	}
	want = "g h i" // b, d, e are 2h01 old: pruned with the rest
	if got := actions(mustCustomer(t, s, "c").Contacts); got != want {
		t.Errorf("after pruning: got %q; want %q", got, want)
	}
	if c := mustCustomer(t, s, "c"); c.HasOutcome("f", store.Click) {
		t.Errorf("pruned outcome still summarized: %v", c.Outcomes)
	}
	if _, k := countKeys(t, s, "c"); k != 3 {
		t.Errorf("contacts on disk after pruning: %d; want 3", k)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	if got := actions(mustCustomer(t, s, "c").Contacts); got != want {
		t.Errorf("after pruning and reopen: got %q; want %q", got, want)
	}

	// Delete erases both records; a new customer starts from nothing.
	if ok, err := s.Delete("c"); !ok || err != nil {
		t.Fatalf("Delete: %v, %v", ok, err)
	}
	if m, k := countKeys(t, s, "c"); m != 0 || k != 0 {
		t.Errorf("keys after Delete: %d main, %d contacts", m, k)
	}
	// An id whose keys would follow c's keys in a naive prefix scheme.
	if err := s.Record("c\x00", []store.Contact{served("x", time.Now().UnixNano())}, nil); err != nil {
		t.Fatal(err)
	}
	if c := mustCustomer(t, s, "c"); c != nil {
		t.Errorf("after Delete: %+v", c)
	}
	if ok, err := s.Delete("c"); ok || err != nil {
		t.Errorf("Delete again: %v, %v", ok, err)
	}
	if _, k := countKeys(t, s, "c\x00"); k != 1 {
		t.Errorf("another customer's keys: %d; want 1", k)
	}
}

// TestImportContacts: Import replaces the contact log too, and applies the
// cap.
func TestImportContacts(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	now := time.Now()
	if err := s.Record("c", []store.Contact{served("old", now.UnixNano())}, nil); err != nil {
		t.Fatal(err)
	}
	imp := &store.Customer{ID: "c"}
	for i := range store.MaxContacts + 10 {
		imp.Contacts = append(imp.Contacts, served("new", now.Add(-time.Hour+time.Duration(i/2)*time.Millisecond).UnixNano()))
	}
	if err := s.Import([]*store.Customer{imp}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	c := mustCustomer(t, s, "c")
	if len(c.Contacts) != store.MaxContacts*3/4 || c.Contacts[0].Action.String() != "new" {
		t.Errorf("imported: %d contacts, first %+v", len(c.Contacts), c.Contacts[0])
	}
	if _, k := countKeys(t, s, "c"); k != len(c.Contacts) {
		t.Errorf("keys: %d; want %d", k, len(c.Contacts))
	}
	if len(imp.Contacts) != store.MaxContacts+10 {
		t.Error("Import modified its input")
	}
}

// TestRecordCap: a history beyond MaxContacts is cut on disk too.
func TestRecordCap(t *testing.T) {
	if testing.Short() {
		t.Skip("records many contacts")
	}
	dir := t.TempDir()
	s := openTest(t, dir)
	now := time.Now()
	batch := make([]store.Contact, 1000)
	for i := range store.MaxContacts/len(batch) + 1 {
		for j := range batch {
			batch[j] = served("a", now.Add(-time.Hour+time.Duration(i*len(batch)+j)*time.Millisecond).UnixNano())
		}
		if err := s.Record("c", batch, nil); err != nil {
			t.Fatal(err)
		}
	}
	n := len(mustCustomer(t, s, "c").Contacts)
	if n > store.MaxContacts {
		t.Errorf("%d contacts kept", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	if got := len(mustCustomer(t, s, "c").Contacts); got != n {
		t.Errorf("after reopen: %d contacts; want %d", got, n)
	}
	if _, k := countKeys(t, s, "c"); k != n {
		t.Errorf("keys: %d; want %d", k, n)
	}
}

// TestRecordReaders: readers holding a customer never see later records,
// events or prunes change it (run with -race).
func TestRecordReaders(t *testing.T) {
	s := openTest(t, t.TempDir())
	s.SetRetention(time.Hour)
	start := time.Now()
	var clock sync.Mutex
	now := start
	s.now = func() time.Time { clock.Lock(); defer clock.Unlock(); return now }
	var wg sync.WaitGroup
	const writes = 2000
	wg.Go(func() {
		for i := range writes {
			clock.Lock()
			now = now.Add(time.Second) // prunes from time to time
			at := now.UnixNano()
			clock.Unlock()
			if err := s.Record("c", []store.Contact{served(fmt.Sprint(i), at)}, nil); err != nil {
				t.Error(err)
				return
			}
			if i%100 == 0 {
				if err := s.AddEvents([]store.Event{{CustomerID: "c", Type: "view", At: at}}); err != nil {
					t.Error(err)
					return
				}
			}
		}
	})
	for range 2 {
		wg.Go(func() {
			for {
				c := mustCustomer(t, s, "c")
				if c == nil {
					continue
				}
				snapshot := actions(c.Contacts)
				time.Sleep(10 * time.Microsecond)
				if actions(c.Contacts) != snapshot {
					t.Error("a customer changed under its reader")
					return
				}
				if len(c.Contacts) > 0 && c.Contacts[len(c.Contacts)-1].Action.String() == fmt.Sprint(writes-1) {
					return
				}
			}
		})
	}
	wg.Wait()
}

func actions(cs []store.Contact) string {
	s := ""
	for i, k := range cs {
		if i > 0 {
			s += " "
		}
		s += k.Action.String()
	}
	return s
}
