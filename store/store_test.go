package store_test

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/store"
)

const day = 24 * time.Hour

// base is midnight UTC, the start of a day, so tests can place events at
// known hours of known days.
var base = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

// at returns Unix nanoseconds d days and h hours after base.
func at(d int, h time.Duration) int64 {
	return base.Add(time.Duration(d)*day + h).UnixNano()
}

func TestEventStatsExactRecent(t *testing.T) {
	var s store.EventStats
	// 10 events, one every 2 hours on day 0, value i.
	for i := range 10 {
		s.Add(at(0, time.Duration(2*i)*time.Hour), float64(i))
	}
	now := at(0, 18*time.Hour) // the last event
	f := func(window time.Duration, wantN int64, wantSum float64) {
		t.Helper()
		n, sum := s.Window(now, window)
		if n != wantN || sum != wantSum {
			t.Errorf("Window(%v): got %d, %v; want %d, %v", window, n, sum, wantN, wantSum)
		}
	}
	f(30*time.Minute, 1, 9)               // 18:00 only
	f(2*time.Hour, 2, 17)                 // 16:00 (exactly at the cutoff) and 18:00
	f(2*time.Hour-time.Nanosecond, 1, 9)  // the cutoff just after 16:00
	f(5*time.Hour, 3, 7+8+9)              // 14:00..18:00
	f(18*time.Hour, 10, 45)               // all of them, the first at the cutoff
	f(17*time.Hour+59*time.Minute, 9, 45) // not the one at 00:00 (value 0)
	f(7*day, 10, 45)                      // more than there is
	f(store.All, 10, 45)                  //
	if got := s.DaysSince(now + int64(36*time.Hour)); got != 1.5 {
		t.Errorf("DaysSince: got %v; want 1.5", got)
	}

	// Events after now are not in [now-window, now].
	n, _ := s.Window(at(0, 9*time.Hour), 3*time.Hour)
	if n != 2 { // 06:00 and 08:00
		t.Errorf("Window at 09:00 of 3h: got %d; want 2", n)
	}
}

func TestEventStatsKeepsLatestExactly(t *testing.T) {
	var s store.EventStats
	// 40 events, one per hour from day 0 00:00.
	for i := range 40 {
		s.Add(at(0, time.Duration(i)*time.Hour), 1)
	}
	if len(s.Recent) != store.RecentMax {
		t.Fatalf("got %d recent events; want %d", len(s.Recent), store.RecentMax)
	}
	if got, want := s.Recent[0].At, at(0, 24*time.Hour); got != want {
		t.Errorf("oldest recent event at %v; want %v", time.Unix(0, got).UTC(), time.Unix(0, want).UTC())
	}
	now := at(0, 39*time.Hour) // day 1, 15:00, the latest event
	// Inside the 16 latest (from day 1 00:00): exact, although day 1
	// holds more events than the window.
	f := func(window time.Duration, want int64) {
		t.Helper()
		if n, _ := s.Window(now, window); n != want {
			t.Errorf("Window(%v): got %d; want %d", window, n, want)
		}
	}
	f(90*time.Minute, 2)
	f(10*time.Hour, 11)
	f(15*time.Hour-time.Minute, 15)
	if s.Count != 40 || s.Sum != 40 {
		t.Errorf("got count %d, sum %v; want 40, 40", s.Count, s.Sum)
	}
	if s.First != at(0, 0) || s.Last != now {
		t.Errorf("got first %d, last %d; want %d, %d", s.First, s.Last, at(0, 0), now)
	}
}

func TestEventStatsDayBuckets(t *testing.T) {
	var s store.EventStats
	// Day -3: 01:00 and 23:00 (value 10 each); day 0: 20 events from
	// 10:00, one a minute (value 1 each).
	s.Add(at(-3, time.Hour), 10)
	s.Add(at(-3, 23*time.Hour), 10)
	for i := range 20 {
		s.Add(at(0, 10*time.Hour+time.Duration(i)*time.Minute), 1)
	}
	now := at(0, 12*time.Hour)
	f := func(window time.Duration, wantN int64, wantSum float64) {
		t.Helper()
		n, sum := s.Window(now, window)
		if n != wantN || sum != wantSum {
			t.Errorf("Window(%v): got %d, %v; want %d, %v", window, n, sum, wantN, wantSum)
		}
	}
	// The 16 latest start at 10:04: a 2h window reaches past them, so it
	// is answered from day buckets, and day 0 counts whole.
	f(2*time.Hour, 20, 20)
	// Cutoff day -3 12:00: the 01:00 event is before it, but its whole
	// UTC day counts (store/doc.go: caps err on the side of caution).
	f(3*day, 22, 40)
	// Cutoff day -2 12:00: day -3 is out entirely.
	f(2*day, 20, 20)
	// Cutoff day -3 23:00 exactly and day -4: still whole days.
	f(3*day-11*time.Hour, 22, 40)
	f(4*day, 22, 40)
	f(store.All, 22, 40)
	// Cutoff 10:05: inside the 16 latest (10:04..10:19), so exact.
	f(115*time.Minute, 15, 15)
	if len(s.Days) != 2 || s.Days[0].Count != 2 || s.Days[1].Count != 20 || s.Days[0].Sum != 20 {
		t.Errorf("got day buckets %+v; want day -3 (2 events, sum 20) and day 0 (20)", s.Days)
	}
	if got, want := s.DaysSince(at(1, 10*time.Hour+19*time.Minute)), 1.0; got != want {
		t.Errorf("DaysSince: got %v; want %v", got, want)
	}
}

func TestEventStatsPrunesOldDays(t *testing.T) {
	var s store.EventStats
	s.Add(at(-100, time.Hour), 5)
	s.Add(at(-91, time.Hour), 4)
	s.Add(at(-89, time.Hour), 3)
	for i := range store.RecentMax {
		s.Add(at(0, time.Duration(i)*time.Minute), 1)
	}
	if len(s.Days) != 2 {
		t.Fatalf("got %d day buckets %+v; want 2 (day -89 and day 0)", len(s.Days), s.Days)
	}
	first := time.Unix(0, at(-89, 0)).UTC()
	if got := time.Unix(int64(s.Days[0].Day)*86400, 0).UTC(); !got.Equal(first) || s.Days[0].Count != 1 || s.Days[0].Sum != 3 {
		t.Errorf("got oldest bucket %+v (%v); want 1 event, sum 3 on %v", s.Days[0], got, first)
	}
	// The lifetime totals keep every event.
	if s.Count != 19 || s.Sum != 28 || s.First != at(-100, time.Hour) {
		t.Errorf("got count %d, sum %v, first %d; want 19, 28, %d", s.Count, s.Sum, s.First, at(-100, time.Hour))
	}
	if n, sum := s.Window(at(0, time.Hour), store.All); n != 19 || sum != 28 {
		t.Errorf("Window(all): got %d, %v; want 19, 28", n, sum)
	}
	// A window that reaches day -89 counts it; nothing older is left.
	if n, sum := s.Window(at(0, time.Hour), 90*day); n != 17 || sum != 19 {
		t.Errorf("Window(90d): got %d, %v; want 17, 19", n, sum)
	}

	// A later event moves the horizon: day -89 falls out.
	s.Add(at(2, 0), 1)
	for _, d := range s.Days {
		if d.Day < int32(at(2-store.MaxDays, 0)/int64(day)) {
			t.Errorf("got bucket %+v older than %d days before the latest event", d, store.MaxDays)
		}
	}
	if len(s.Days) != 2 {
		t.Errorf("got %d buckets %+v; want 2 (day 0 and day 2)", len(s.Days), s.Days)
	}

	// An out-of-order event older than the horizon only counts for life.
	before := len(s.Days)
	s.Add(at(-200, 0), 7)
	if len(s.Days) != before || s.Count != 21 || s.First != at(-200, 0) {
		t.Errorf("got %d buckets, count %d, first %d; want %d, 21, %d", len(s.Days), s.Count, s.First, before, at(-200, 0))
	}
}

// TestEventStatsWindow90dOldestDay: a 90d window starts inside the day 90
// days ago, so (store/doc.go) that partial day must count fully; its
// bucket must still be there when the recent events do not reach back.
func TestEventStatsWindow90dOldestDay(t *testing.T) {
	var s store.EventStats
	now := at(0, 12*time.Hour)
	s.Add(at(-90, 13*time.Hour), 1) // 89d23h before now: inside the window
	for i := range store.RecentMax {
		s.Add(at(0, time.Duration(i)*time.Minute), 1)
	}
	if n, _ := s.Window(now, 90*day); n != store.RecentMax+1 {
		t.Errorf("Window(90d): got %d; want %d", n, store.RecentMax+1)
	}
}

func TestEventStatsOutOfOrder(t *testing.T) {
	// The same 30 events in order and shuffled give the same aggregates.
	var times []int64
	for i := range 30 {
		times = append(times, at(-i/3, time.Duration(i)*time.Hour))
	}
	sorted := slices.Clone(times)
	slices.Sort(sorted)
	var inOrder store.EventStats
	for _, ts := range sorted {
		inOrder.Add(ts, 1)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 5 {
		r.Shuffle(len(times), func(i, j int) { times[i], times[j] = times[j], times[i] })
		var s store.EventStats
		for _, ts := range times {
			s.Add(ts, 1)
		}
		if s.Count != inOrder.Count || s.First != inOrder.First || s.Last != inOrder.Last {
			t.Errorf("round %d: got count %d first %d last %d; want %d %d %d", round, s.Count, s.First, s.Last, inOrder.Count, inOrder.First, inOrder.Last)
		}
		if len(s.Recent) != store.RecentMax {
			t.Fatalf("round %d: got %d recent; want %d", round, len(s.Recent), store.RecentMax)
		}
		for i := range s.Recent {
			if s.Recent[i] != inOrder.Recent[i] {
				t.Errorf("round %d: recent[%d] = %+v; want %+v", round, i, s.Recent[i], inOrder.Recent[i])
			}
		}
		if len(s.Days) != len(inOrder.Days) {
			t.Errorf("round %d: got %d buckets; want %d", round, len(s.Days), len(inOrder.Days))
		}
		for i := range s.Days {
			if i < len(inOrder.Days) && s.Days[i] != inOrder.Days[i] {
				t.Errorf("round %d: bucket %d = %+v; want %+v", round, i, s.Days[i], inOrder.Days[i])
			}
			if i > 0 && s.Days[i-1].Day >= s.Days[i].Day {
				t.Errorf("round %d: buckets not ascending: %+v", round, s.Days)
			}
		}
		for _, w := range []time.Duration{time.Hour, 6 * time.Hour, day, 3 * day, 30 * day, store.All} {
			now := inOrder.Last
			n1, _ := s.Window(now, w)
			n2, _ := inOrder.Window(now, w)
			if n1 != n2 {
				t.Errorf("round %d: Window(%v) got %d; want %d as in order", round, w, n1, n2)
			}
		}
	}
	// Recent is ascending and holds the 16 latest.
	for i := 1; i < len(inOrder.Recent); i++ {
		if inOrder.Recent[i-1].At > inOrder.Recent[i].At {
			t.Fatalf("recent not ascending: %+v", inOrder.Recent)
		}
	}
	if got, want := inOrder.Recent[0].At, sorted[len(sorted)-store.RecentMax]; got != want {
		t.Errorf("oldest recent %d; want %d", got, want)
	}
}

func TestEventStatsEmpty(t *testing.T) {
	var nilStats *store.EventStats
	if n, sum := nilStats.Window(at(0, 0), store.All); n != 0 || sum != 0 {
		t.Errorf("nil Window: got %d, %v; want 0, 0", n, sum)
	}
	if got := nilStats.DaysSince(at(0, 0)); !math.IsInf(got, 1) {
		t.Errorf("nil DaysSince: got %v; want +Inf", got)
	}
	var s store.EventStats
	if got := s.DaysSince(at(0, 0)); !math.IsInf(got, 1) {
		t.Errorf("empty DaysSince: got %v; want +Inf", got)
	}
	// An event with value 0 still counts, and sets First and Last.
	s.Add(at(0, 0), 0)
	if n, _ := s.Window(at(0, time.Hour), time.Hour); n != 1 || s.First != at(0, 0) || s.Last != at(0, 0) {
		t.Errorf("got %d, first %d, last %d; want 1, %d, %d", n, s.First, s.Last, at(0, 0), at(0, 0))
	}
	if got := s.DaysSince(at(0, 0)); got != 0 {
		t.Errorf("DaysSince at the event: got %v; want 0", got)
	}
}

func TestCustomerAddEvent(t *testing.T) {
	var c store.Customer
	if !c.Empty() {
		t.Errorf("got Empty false for a new customer")
	}
	c.AddEvent("purchase", at(0, 0), 50)
	c.AddEvent("purchase", at(1, 0), 20)
	c.AddEvent("view", at(1, 0), 0)
	if c.Empty() {
		t.Errorf("got Empty true with events")
	}
	if len(c.Events) != 2 || c.Events["purchase"].Count != 2 || c.Events["purchase"].Sum != 70 || c.Events["view"].Count != 1 {
		t.Errorf("got events %+v; want purchase 2 (sum 70), view 1", c.Events)
	}
}

// TestCopyForEvents: events added to the copy for their types leave the
// original as it was, and the copy shares what they do not change.
func TestCopyForEvents(t *testing.T) {
	orig := &store.Customer{ID: "c", Attributes: map[string]any{"tier": "gold"}}
	for d := range 20 {
		orig.AddEvent("purchase", at(d, 0), 10)
		orig.AddEvent("view", at(d, time.Hour), 0)
	}
	want := orig.Copy()
	cp := orig.CopyForEvents([]string{"purchase", "signup"})
	cp.AddEvent("purchase", at(19, 2*time.Hour), 5) // today's bucket and the recent list
	cp.AddEvent("purchase", at(20, 0), 5)           // a new day
	cp.AddEvent("signup", at(20, 0), 0)             // a new type
	if !reflect.DeepEqual(orig, want) {
		t.Errorf("the original changed:\ngot  %+v\nwant %+v", orig.Events["purchase"], want.Events["purchase"])
	}
	if got := cp.Events["purchase"]; got.Count != 22 || got.Sum != 210 || len(got.Days) != 21 {
		t.Errorf("copy: purchase %+v", got)
	}
	if cp.Events["signup"] == nil || orig.Events["signup"] != nil {
		t.Errorf("signup: copy %v, original %v", cp.Events["signup"], orig.Events["signup"])
	}
	if cp.Events["view"] != orig.Events["view"] {
		t.Error("the view aggregates were copied; want them shared")
	}
	cp.Attributes["probe"] = true
	if orig.Attributes["probe"] != true {
		t.Error("the attributes were copied; want them shared")
	}
	if (*store.Customer)(nil).CopyForEvents(nil) != nil {
		t.Error("CopyForEvents of nil: want nil")
	}
}

func TestCustomerAddContact(t *testing.T) {
	var c store.Customer
	add := func(action string, t int64) { c.AddContact(store.Contact{Action: store.Intern(action), At: t}) }
	add("c", at(0, 3*time.Hour))
	add("a", at(0, time.Hour))
	add("d", at(0, 4*time.Hour))
	add("b", at(0, 2*time.Hour))
	add("b2", at(0, 2*time.Hour)) // same time: after the one already there
	add("z", at(-1, 0))
	want := "z a b b2 c d"
	got := ""
	for i, ct := range c.Contacts {
		if i > 0 {
			got += " "
			if c.Contacts[i-1].At > ct.At {
				t.Errorf("contacts not ordered at %d", i)
			}
		}
		got += ct.Action.String()
	}
	if got != want {
		t.Errorf("got contacts %q; want %q", got, want)
	}

	f := func(cutoff int64, want string) {
		t.Helper()
		c.PruneContacts(cutoff)
		got := ""
		for i, ct := range c.Contacts {
			if i > 0 {
				got += " "
			}
			got += ct.Action.String()
		}
		if got != want {
			t.Errorf("PruneContacts(%v): got %q; want %q", time.Unix(0, cutoff).UTC(), got, want)
		}
	}
	f(at(-2, 0), "z a b b2 c d")      // nothing older
	f(at(0, time.Hour), "a b b2 c d") // a is at the cutoff: kept
	f(at(0, 2*time.Hour+1), "c d")    // both b dropped
	f(at(0, 2*time.Hour), "c d")      // idempotent
	f(at(1, 0), "")                   // all gone
}

func TestOutcomes(t *testing.T) {
	f := func(name string, want store.Outcome, wantOK bool) {
		t.Helper()
		got, ok := store.ParseOutcome(name)
		if got != want || ok != wantOK {
			t.Errorf("ParseOutcome(%q): got %v, %v; want %v, %v", name, got, ok, want, wantOK)
		}
		if ok && got.String() != name {
			t.Errorf("%v.String(): got %q; want %q", got, got.String(), name)
		}
	}
	f("served", store.Served, true)
	f("click", store.Click, true)
	f("accept", store.Accept, true)
	f("dismiss", store.Dismiss, true)
	f("convert", store.Convert, true)
	f("holdout", 0, false)
	f("Served", 0, false)
	if got := store.Holdout.String(); got != "holdout" {
		t.Errorf("got %q; want holdout", got)
	}
	if got := store.Outcome(42).String(); got != "outcome(42)" {
		t.Errorf("got %q; want outcome(42)", got)
	}
}
