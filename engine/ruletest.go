package engine

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/store"
)

// TestResult is the outcome of one rule test.
type TestResult struct {
	Test *rules.Test
	// Got holds the decided action ids per expected placement.
	Got map[string][]string
	Err error
}

// Passed reports whether every expectation held.
func (r *TestResult) Passed() bool {
	if r.Err != nil {
		return false
	}
	for _, e := range r.Test.Expect {
		if !slices.Equal(e.Actions, r.Got[e.Placement]) {
			return false
		}
	}
	return true
}

// Report describes the failures, one line per wrong placement.
func (r *TestResult) Report() string {
	if r.Err != nil {
		return fmt.Sprintf("    error: %v\n", r.Err)
	}
	var b strings.Builder
	for _, e := range r.Test.Expect {
		got := r.Got[e.Placement]
		if !slices.Equal(e.Actions, got) {
			fmt.Fprintf(&b, "    %s: expected %s, got %s\n", e.Placement, idList(e.Actions), idList(got))
		}
	}
	return b.String()
}

func idList(ids []string) string {
	return "[" + strings.Join(ids, ", ") + "]"
}

// RunTests runs the ruleset's tests. A test without now runs at now. The
// world of a test is its customer: budgets and propensities count only
// that customer's contacts, and the random seed derives from the test's
// name, so results are reproducible.
func RunTests(rs *rules.Ruleset, now time.Time) []TestResult {
	e := New(Options{})
	out := make([]TestResult, 0, len(rs.Tests))
	var d Decision
	for _, t := range rs.Tests {
		c := CustomerFromTest(t.Customer)
		at := t.Now
		if at.IsZero() {
			at = now
		}
		h := fnv.New64a()
		h.Write([]byte(t.Name))
		req := &Request{
			CustomerID: c.ID,
			Placements: t.Request.Placements,
			Channel:    t.Request.Channel,
			Context:    t.Request.Context,
			Now:        at,
			Seed:       h.Sum64(),
			Customer:   c,
		}
		r := TestResult{Test: t, Got: map[string][]string{}}
		if err := e.Decide(rs, OneCustomer(c), req, &d); err != nil {
			r.Err = err
		} else {
			for _, p := range d.Placements {
				ids := []string{}
				for _, it := range p.Items {
					ids = append(ids, it.Action.ID)
				}
				r.Got[p.Name] = ids
			}
		}
		out = append(out, r)
	}
	return out
}

// CustomerFromTest builds a customer context from a rule test's customer.
func CustomerFromTest(tc rules.TestCustomer) *store.Customer {
	c := &store.Customer{ID: tc.ID, Attributes: tc.Attributes}
	for _, e := range tc.Events {
		c.AddEvent(e.Type, e.Time.UnixNano(), e.Value)
	}
	for _, k := range tc.Contacts {
		c.AddContact(store.Contact{Action: store.Intern(k.Action), Outcome: store.Outcome(k.Outcome), Channel: store.Intern(k.Channel), At: k.Time.UnixNano()})
	}
	return c
}

// OneCustomer is a Source whose whole world is one customer: counters
// come from that customer's contacts. Rule tests and simulations with an
// inline customer use it.
func OneCustomer(c *store.Customer) Source { return oneCustomer{c} }

type oneCustomer struct{ c *store.Customer }

func (o oneCustomer) Customer(string) (*store.Customer, error) { return o.c, nil }

func (o oneCustomer) ServedSince(action string, since int64) int64 {
	var n int64
	for _, k := range o.c.Contacts {
		if k.Action.String() == action && k.Outcome == store.Served && k.At >= since {
			n++
		}
	}
	return n
}

func (o oneCustomer) ActionStats(action string) (served, convert int64) {
	for _, k := range o.c.Contacts {
		if k.Action.String() != action {
			continue
		}
		switch k.Outcome {
		case store.Served:
			served++
		case store.Convert:
			convert++
		}
	}
	return served, convert
}
