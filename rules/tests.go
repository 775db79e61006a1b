package rules

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Test is one rule test from a *_test.yaml file (SPEC 5).
type Test struct {
	Name     string
	File     string
	Line     int
	Now      time.Time // zero: the time the test runs
	Customer TestCustomer
	Request  TestRequest
	Expect   []Expectation // in file order
}

// TestCustomer is the customer a test decides for.
type TestCustomer struct {
	ID         string
	Attributes map[string]any
	Events     []TestEvent
	Contacts   []TestContact
}

// TestEvent is one event of a test customer.
type TestEvent struct {
	Type       string
	Time       time.Time
	Value      float64
	Properties map[string]any
}

// TestContact is one contact-history entry of a test customer.
type TestContact struct {
	Action  string
	Outcome uint8
	Time    time.Time
	Channel string
}

// TestRequest is the decide request of a test.
type TestRequest struct {
	Placements []string
	Channel    string
	Context    map[string]any
}

// Expectation is the exact, ordered list of action ids wanted for a
// placement.
type Expectation struct {
	Placement string
	Actions   []string
}

var eventTypeRe = regexp.MustCompile(`^[a-z0-9_.-]{1,64}$`)

func (l *loader) buildTests() {
	names := map[string]*def{}
	for _, d := range l.testDefs {
		f := d.f
		m, ok := l.fields(f, d.val, "a test", "name", "now", "customer", "request", "expect")
		if !ok {
			continue
		}
		t := &Test{File: f.name, Line: d.val.line, Customer: TestCustomer{ID: "test-customer"}}
		if n := m["name"]; n != nil {
			t.Name, _ = l.str(f, n, "name")
		}
		if t.Name == "" {
			l.errorf(f, d.val, "a test needs a name")
		} else if prev, ok := names[t.Name]; ok {
			l.errorf(f, m["name"], "test %q is already defined at %s:%d", t.Name, prev.f.name, prev.val.line)
		}
		names[t.Name] = d
		if n := m["now"]; n != nil {
			if tm, ok := n.asTime(); ok {
				t.Now = tm
			} else {
				l.errorf(f, n, "now must be an RFC 3339 time, not %s", n.describe())
			}
		}
		if n := m["customer"]; n != nil {
			l.testCustomer(f, n, &t.Customer)
		}
		if n := m["request"]; n == nil {
			l.errorf(f, d.val, "test %q needs a request", t.Name)
		} else {
			l.testRequest(f, n, &t.Request)
		}
		if n := m["expect"]; n == nil {
			l.errorf(f, d.val, "test %q needs expect: placement names with the wanted action ids", t.Name)
		} else if n.kind != mapNode {
			l.errorf(f, n, "expect must be a mapping of placement names to lists of action ids, not a %s", n.describe())
		} else {
			for i, k := range n.keys {
				ids, _ := l.strList(f, n.vals[i], "expected actions")
				if n.vals[i].kind == nullNode {
					ids = nil
				}
				for _, id := range ids {
					if !l.actionIDs[id] {
						l.errorf(f, n.vals[i], "unknown action %q%s", id, didYouMean(id, l.actionIDList()))
					}
				}
				if !containsStr(t.Request.Placements, k.text) {
					l.errorf(f, k, "expect names placement %q that the request does not ask for", k.text)
				}
				t.Expect = append(t.Expect, Expectation{Placement: k.text, Actions: ids})
			}
		}
		l.rs.Tests = append(l.rs.Tests, t)
	}
}

func containsStr(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (l *loader) testCustomer(f *srcFile, n *node, c *TestCustomer) {
	m, ok := l.fields(f, n, "customer", "id", "attributes", "events", "contacts")
	if !ok {
		return
	}
	if idn := m["id"]; idn != nil {
		c.ID, _ = l.str(f, idn, "id")
	}
	if an := m["attributes"]; an != nil && an.kind != nullNode {
		if an.kind != mapNode {
			l.errorf(f, an, "attributes must be a mapping, not a %s", an.describe())
		} else {
			c.Attributes = plain(an).(map[string]any)
			for i, k := range an.keys {
				if a, ok := l.schema[k.text]; ok && an.vals[i].kind != nullNode && !attrTypeOK(a.Type, plain(an.vals[i])) {
					l.errorf(f, an.vals[i], "attribute %q is declared %s, not a %s", k.text, a.Type, an.vals[i].describe())
				}
			}
		}
	}
	if en := m["events"]; en != nil && en.kind != nullNode {
		if en.kind != seqNode {
			l.errorf(f, en, "events must be a list, not a %s", en.describe())
		}
		for _, it := range en.items {
			em, ok := l.fields(f, it, "an event", "type", "time", "value", "properties")
			if !ok {
				continue
			}
			var e TestEvent
			if tn := em["type"]; tn == nil {
				l.errorf(f, it, "an event needs a type")
				continue
			} else if e.Type, _ = tn.asString(); !eventTypeRe.MatchString(e.Type) {
				l.errorf(f, tn, "event type %s must match [a-z0-9_.-]{1,64}", tn.describe())
				continue
			}
			if tn := em["time"]; tn == nil {
				l.errorf(f, it, "an event in a test needs a time")
				continue
			} else if e.Time, ok = tn.asTime(); !ok {
				l.errorf(f, tn, "time must be an RFC 3339 time, not %s", tn.describe())
				continue
			}
			if vn := em["value"]; vn != nil {
				if e.Value, ok = vn.asFloat(); !ok {
					l.errorf(f, vn, "value must be a number, not %s", vn.describe())
				}
			}
			if pn := em["properties"]; pn != nil && pn.kind == mapNode {
				e.Properties = plain(pn).(map[string]any)
			}
			c.Events = append(c.Events, e)
		}
	}
	if cn := m["contacts"]; cn != nil && cn.kind != nullNode {
		if cn.kind != seqNode {
			l.errorf(f, cn, "contacts must be a list, not a %s", cn.describe())
		}
		for _, it := range cn.items {
			km, ok := l.fields(f, it, "a contact", "action", "outcome", "time", "channel")
			if !ok {
				continue
			}
			var k TestContact
			if an := km["action"]; an == nil {
				l.errorf(f, it, "a contact needs an action")
				continue
			} else {
				k.Action, _ = an.asString()
			}
			if on := km["outcome"]; on != nil {
				if k.Outcome, ok = l.outcome(f, on); !ok {
					continue
				}
			}
			if tn := km["time"]; tn == nil {
				l.errorf(f, it, "a contact in a test needs a time")
				continue
			} else if k.Time, ok = tn.asTime(); !ok {
				l.errorf(f, tn, "time must be an RFC 3339 time, not %s", tn.describe())
				continue
			}
			if chn := km["channel"]; chn != nil {
				k.Channel, _ = chn.asString()
			}
			c.Contacts = append(c.Contacts, k)
		}
	}
}

func (l *loader) testRequest(f *srcFile, n *node, r *TestRequest) {
	m, ok := l.fields(f, n, "request", "placements", "placement", "channel", "context")
	if !ok {
		return
	}
	if pn := m["placements"]; pn != nil {
		r.Placements, _ = l.strList(f, pn, "placements")
	}
	if pn := m["placement"]; pn != nil {
		if s, ok := l.str(f, pn, "placement"); ok {
			r.Placements = append(r.Placements, s)
		}
	}
	if len(r.Placements) == 0 {
		l.errorf(f, n, "a request needs placements")
	}
	if cn := m["channel"]; cn != nil {
		r.Channel, _ = l.str(f, cn, "channel")
	}
	if cn := m["context"]; cn != nil && cn.kind != nullNode {
		if cn.kind != mapNode {
			l.errorf(f, cn, "context must be a mapping, not a %s", cn.describe())
		} else {
			r.Context = plain(cn).(map[string]any)
		}
	}
}

// String describes a test for reports: "file:line: name".
func (t *Test) String() string {
	return fmt.Sprintf("%s:%d: %s", t.File, t.Line, strings.TrimSpace(t.Name))
}
