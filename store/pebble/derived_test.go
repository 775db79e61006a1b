package pebblestore

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/store"
)

// derivedOf returns what c's encoded attributes keep for the engine (see
// encodedAttrs); it fails when they keep nothing.
func derivedOf(t *testing.T, c *store.Customer) *atomic.Value {
	t.Helper()
	k, ok := c.Encoded.(interface{ Derived() *atomic.Value })
	if !ok {
		t.Fatalf("the attributes of %s (%T) keep nothing derived", c.ID, c.Encoded)
	}
	return k.Derived()
}

// What the engine derives from a cached customer's attributes is shared by
// its newer versions while they have the same attributes (a contact, an
// event), and gone with new attributes.
func TestDerivedFollowsAttributes(t *testing.T) {
	s := openTest(t, t.TempDir())
	if err := s.PutAttributes("c1", map[string]any{"tier": "gold"}); err != nil {
		t.Fatal(err)
	}
	mark := new(int)
	derivedOf(t, mustCustomer(t, s, "c1")).Store(mark)

	now := time.Now().UnixNano()
	if err := s.Record("c1", []store.Contact{{Action: store.Intern("a"), Outcome: store.Served, At: now}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddEvents([]store.Event{{CustomerID: "c1", Type: "view", At: now}}); err != nil {
		t.Fatal(err)
	}
	c := mustCustomer(t, s, "c1")
	if len(c.Contacts) != 1 || c.EventMap()["view"] == nil {
		t.Fatalf("after a contact and an event: %+v", c)
	}
	if got := derivedOf(t, c).Load(); got != mark {
		t.Fatalf("after a contact and an event the attributes keep %v; want the mark", got)
	}

	if _, err := s.PatchAttributes("c1", map[string]any{"tier": "silver"}); err != nil {
		t.Fatal(err)
	}
	c = mustCustomer(t, s, "c1")
	if c.Attr("tier") != "silver" {
		t.Fatalf("after the patch, tier %v", c.Attr("tier"))
	}
	if got := derivedOf(t, c).Load(); got != nil {
		t.Fatalf("new attributes keep %v; want nothing", got)
	}
}
