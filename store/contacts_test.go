package store_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/store"
)

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

func TestAppendContacts(t *testing.T) {
	const sec = int64(time.Second)
	v1 := &store.Customer{ID: "x", Attributes: map[string]any{"a": 1.0}, Outcomes: map[store.Name]uint8{}}
	v2 := v1.AppendContacts([]store.Contact{{Action: store.Intern("a"), At: 10 * sec}, {Action: store.Intern("b"), At: 20 * sec}})
	v3 := v2.AppendContacts([]store.Contact{{Action: store.Intern("c"), At: 20 * sec}, {Action: store.Intern("d"), At: 30 * sec, Outcome: store.Click}})
	if got := actions(v3.Contacts); got != "a b c d" {
		t.Errorf("v3: got %q", got)
	}
	if len(v1.Contacts) != 0 || actions(v2.Contacts) != "a b" {
		t.Errorf("older versions changed: v1 %q, v2 %q", actions(v1.Contacts), actions(v2.Contacts))
	}
	if v3.Attributes["a"] != 1.0 || v3.ID != "x" {
		t.Errorf("v3 lost the rest of the customer: %+v", v3)
	}
	if len(v2.Outcomes) != 0 || v3.Outcomes[store.Intern("d")] != 1<<store.Click {
		t.Errorf("outcomes: v2 %v, v3 %v", v2.Outcomes, v3.Outcomes)
	}
	// In order with spare capacity: appended in place, same array.
	v3.Contacts = slices.Grow(v3.Contacts, 10)
	v4 := v3.AppendContacts([]store.Contact{{Action: store.Intern("e"), At: 30 * sec}})
	if &v4.Contacts[0] != &v3.Contacts[0] {
		t.Error("an in-order append copied the history")
	}
	// Out of order: a new array, sorted, the older version untouched.
	v5 := v4.AppendContacts([]store.Contact{{Action: store.Intern("m"), At: 15 * sec, Outcome: store.Dismiss}, {Action: store.Intern("n"), At: 20 * sec}})
	if got := actions(v5.Contacts); got != "a m b c n d e" {
		t.Errorf("out of order: got %q", got)
	}
	if &v5.Contacts[0] == &v4.Contacts[0] || actions(v4.Contacts) != "a b c d e" {
		t.Errorf("out-of-order insert shared or changed the history: v4 %q", actions(v4.Contacts))
	}
	if v5.Outcomes[store.Intern("m")] != 1<<store.Dismiss || v4.Outcomes[store.Intern("m")] != 0 {
		t.Errorf("outcomes: v4 %v, v5 %v", v4.Outcomes, v5.Outcomes)
	}
	// Slightly out of order (concurrent decisions): moved forward to the
	// newest time and appended in place.
	v5.Contacts = slices.Grow(v5.Contacts, 10)
	late := []store.Contact{{Action: store.Intern("p"), At: 30*sec - store.OrderSlack}, {Action: store.Intern("q"), At: 30*sec - 1}}
	v6 := v5.AppendContacts(late)
	if got := actions(v6.Contacts); got != "a m b c n d e p q" {
		t.Errorf("slightly late: got %q", got)
	}
	if &v6.Contacts[0] != &v5.Contacts[0] {
		t.Error("a slightly late contact copied the history")
	}
	if v6.Contacts[7].At != 30*sec || v6.Contacts[8].At != 30*sec || late[0].At != 30*sec-store.OrderSlack {
		t.Errorf("times: %d %d (want %d), input changed to %d", v6.Contacts[7].At, v6.Contacts[8].At, 30*sec, late[0].At)
	}
	// Later than the slack: inserted at its own time.
	v7 := v6.AppendContacts([]store.Contact{{Action: store.Intern("r"), At: 30*sec - store.OrderSlack - 1}})
	if got := actions(v7.Contacts); got != "a m b c n r d e p q" {
		t.Errorf("late: got %q", got)
	}
	// Without a summary, none is made up.
	if v := (&store.Customer{}).AppendContacts([]store.Contact{{Action: store.Intern("a"), Outcome: store.Click}}); v.Outcomes != nil {
		t.Errorf("summary made up: %v", v.Outcomes)
	}
}

func TestHasOutcome(t *testing.T) {
	var hand store.Customer // no summary: scans
	hand.AddContact(store.Contact{Action: store.Intern("a"), At: 1})
	hand.AddContact(store.Contact{Action: store.Intern("a"), Outcome: store.Click, At: 2})
	hand.AddContact(store.Contact{Action: store.Intern("b"), Outcome: store.Convert, At: 3})
	summarized := hand.ShallowCopy()
	summarized.Outcomes = store.SummarizeOutcomes(hand.Contacts)
	for _, c := range []*store.Customer{&hand, summarized} {
		for _, tc := range []struct {
			action string
			o      store.Outcome
			want   bool
		}{
			{"a", store.Served, true}, {"a", store.Click, true}, {"a", store.Convert, false},
			{"b", store.Convert, true}, {"b", store.Served, false}, {"z", store.Click, false},
		} {
			if got := c.HasOutcome(tc.action, tc.o); got != tc.want {
				t.Errorf("summary %v: HasOutcome(%s, %v): got %v", c.Outcomes, tc.action, tc.o, got)
			}
		}
	}
	if want := map[store.Name]uint8{store.Intern("a"): 1 << store.Click, store.Intern("b"): 1 << store.Convert}; fmt.Sprint(summarized.Outcomes) != fmt.Sprint(want) {
		t.Errorf("summary: got %v; want %v", summarized.Outcomes, want)
	}
	// AddContact keeps a summary right, copy-on-write.
	before := summarized.Outcomes
	summarized.Contacts = slices.Clone(summarized.Contacts)
	summarized.AddContact(store.Contact{Action: store.Intern("c"), Outcome: store.Dismiss, At: 4})
	if !summarized.HasOutcome("c", store.Dismiss) || before[store.Intern("c")] != 0 {
		t.Errorf("AddContact: summary %v, before %v", summarized.Outcomes, before)
	}
	var nilCustomer *store.Customer
	if nilCustomer.HasOutcome("a", store.Served) {
		t.Error("nil customer has an outcome")
	}
}

func TestPruned(t *testing.T) {
	c := &store.Customer{Outcomes: map[store.Name]uint8{}}
	c = c.AppendContacts([]store.Contact{{Action: store.Intern("a"), Outcome: store.Click, At: 10}, {Action: store.Intern("b"), At: 20}, {Action: store.Intern("c"), At: 30}})
	if c.NeedsPrune(15, 10) || !c.NeedsPrune(25, 10) || (*store.Customer)(nil).NeedsPrune(0, 0) {
		t.Error("NeedsPrune: wrong")
	}
	p, n := c.Pruned(20)
	if n != 1 || actions(p.Contacts) != "b c" || actions(c.Contacts) != "a b c" || p.HasOutcome("a", store.Click) || !c.HasOutcome("a", store.Click) {
		t.Errorf("Pruned(20): %d dropped, %q (from %q), outcomes %v", n, actions(p.Contacts), actions(c.Contacts), p.Outcomes)
	}
	if same, n := c.Pruned(5); same != c || n != 0 {
		t.Error("Pruned with nothing to drop copied")
	}
	if p, n := c.Pruned(100); n != 3 || len(p.Contacts) != 0 {
		t.Errorf("Pruned(100): %d, %v", n, p.Contacts)
	}

	// The cap drops the oldest down to 3/4 of MaxContacts, never half of
	// a group of contacts at one time.
	big := make([]store.Contact, store.MaxContacts+1)
	for i := range big {
		big[i] = store.Contact{Action: store.Intern("a"), At: int64(i / 10)}
	}
	c = (&store.Customer{}).AppendContacts(big)
	if !c.NeedsPrune(0, 0) {
		t.Fatal("NeedsPrune beyond MaxContacts: false")
	}
	p, n = c.Pruned(0)
	if len(p.Contacts) > store.MaxContacts*3/4 || len(p.Contacts) < store.MaxContacts*3/4-10 || n+len(p.Contacts) != len(big) {
		t.Errorf("cap: kept %d, dropped %d", len(p.Contacts), n)
	}
	if p.Contacts[0].At == c.Contacts[n-1].At {
		t.Error("cap split a group of contacts at one time")
	}
	// The history then grows in place up to the bound.
	if cap(p.Contacts) <= store.MaxContacts {
		t.Errorf("cap: room for %d contacts after the prune, want more than %d", cap(p.Contacts), store.MaxContacts)
	}
}

// TestAppendContactsReaders: readers of older versions never see what is
// appended after them (run with -race: appends go into the shared array).
func TestAppendContactsReaders(t *testing.T) {
	var mu sync.Mutex
	cur := &store.Customer{Outcomes: map[store.Name]uint8{}}
	var wg sync.WaitGroup
	const appends = 3000
	wg.Go(func() {
		for i := range appends {
			mu.Lock()
			next := cur.AppendContacts([]store.Contact{{Action: store.Intern("a"), At: int64(i)}})
			cur = next
			mu.Unlock()
		}
	})
	for range 2 {
		wg.Go(func() {
			for {
				mu.Lock()
				c := cur
				mu.Unlock()
				n := len(c.Contacts)
				for range 3 { // the version stays as it was
					for i, k := range c.Contacts {
						if k.At != int64(i) {
							t.Errorf("contact %d of %d: at %d", i, n, k.At)
							return
						}
					}
				}
				if len(c.Contacts) != n {
					t.Error("length changed")
				}
				if n == appends {
					return
				}
				time.Sleep(time.Microsecond)
			}
		})
	}
	wg.Wait()
}
