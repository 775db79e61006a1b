package engine_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/store"
	"github.com/nudge-engine/nudge/store/memstore"
)

// keepRules are rules whose segment and conditions read attributes alone,
// but for the last action's, which counts events too.
func keepRules(t *testing.T, vipTier string) *rules.Ruleset {
	return compileFiles(t, map[string]string{
		"segments.yaml":   "segments:\n  vip: customer.tier == \"" + vipTier + "\"\n  rich: segment(\"vip\") and customer.ltv > 100\n",
		"placements.yaml": "placements:\n  hero: {limit: 3}\n",
		"actions.yaml": `actions:
  - id: for-vip
    kind: offer
    placements: [hero]
    when: segment("rich")
  - id: for-others
    kind: message
    placements: [hero]
    when: not segment("vip") and customer.ltv <= 100
  - id: for-viewers
    kind: message
    placements: [hero]
    when: segment("vip") and count("view", "7d") > 0
`,
	})
}

// decideKept decides hero for customer c (whose attributes are encoded,
// and keep what the engine derives from them) and returns the actions
// taken and how many attribute reads the decision made.
func decideKept(t *testing.T, eng *engine.Engine, rs *rules.Ruleset, c *store.Customer) ([]string, int64) {
	t.Helper()
	src := memstore.New()
	src.Put(c)
	enc := c.Encoded.(*encodedAttrs)
	before := enc.reads.Load()
	var d engine.Decision
	req := &engine.Request{CustomerID: c.ID, Placements: []string{"hero"}, Now: benchNow}
	if err := eng.Decide(rs, src, req, &d); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range d.Placements[0].Items {
		got = append(got, it.Action.ID)
	}
	slices.Sort(got)
	return got, enc.reads.Load() - before
}

// Conditions over attributes alone are evaluated once per customer, its
// attributes and the ruleset: later decisions read their values, new
// attributes or another ruleset evaluate them again.
func TestKeptValues(t *testing.T) {
	eng := engine.New(engine.Options{})
	rs := keepRules(t, "gold")
	gold := func(ltv float64) *store.Customer {
		c := &store.Customer{ID: "c1", Encoded: &encodedAttrs{m: map[string]any{"tier": "gold", "ltv": ltv}}}
		c.AddEvent("view", benchNow.Add(-24*time.Hour).UnixNano(), 0)
		return c
	}
	c := gold(500)
	want := []string{"for-viewers", "for-vip"}
	got, reads := decideKept(t, eng, rs, c)
	if !slices.Equal(got, want) || reads == 0 {
		t.Fatalf("first decision: %v with %d attribute reads; want %v, with reads", got, reads, want)
	}
	// The second decision reads no attribute: every condition that reads
	// them alone is kept, and for-viewers' reads segment vip's kept value.
	got, reads = decideKept(t, eng, rs, c)
	if !slices.Equal(got, want) || reads != 0 {
		t.Fatalf("second decision: %v with %d attribute reads; want %v, with none", got, reads, want)
	}
	// A version of the customer sharing the attributes shares what they
	// keep (store/pebble's versions, after a contact).
	cp := c.ShallowCopy()
	cp.AddContact(store.Contact{Action: store.Intern("for-vip"), At: benchNow.UnixNano()})
	if got, reads = decideKept(t, eng, rs, cp); !slices.Equal(got, want) || reads != 0 {
		t.Fatalf("a newer version: %v with %d attribute reads; want %v, with none", got, reads, want)
	}

	// New attributes are a new encoding, which keeps nothing yet.
	poorer := gold(50)
	if got, _ = decideKept(t, eng, rs, poorer); !slices.Equal(got, []string{"for-viewers"}) {
		t.Fatalf("new attributes: %v; want [for-viewers]", got)
	}

	// Another ruleset does not read values kept under the first, even
	// with the same segments and actions in the same places.
	rs2 := keepRules(t, "silver")
	if rs2.Serial() == rs.Serial() {
		t.Fatalf("two rulesets with serial %d", rs.Serial())
	}
	got, reads = decideKept(t, eng, rs2, c)
	if len(got) != 0 || reads == 0 {
		t.Fatalf("another ruleset: %v with %d attribute reads; want nothing (the customer is no vip there), with reads", got, reads)
	}
	// ...and what it keeps replaces the first ruleset's, which is then
	// evaluated again.
	if got, reads = decideKept(t, eng, rs, c); !slices.Equal(got, want) || reads == 0 {
		t.Fatalf("the first ruleset again: %v with %d attribute reads; want %v, with reads", got, reads, want)
	}

	// Attributes in a map (a customer built by hand, an inline customer
	// of simulate) keep nothing, and decide the same.
	src := memstore.New()
	src.Put(&store.Customer{ID: "c2", Attributes: map[string]any{"tier": "gold", "ltv": 500.0}})
	var d engine.Decision
	if err := eng.Decide(rs, src, &engine.Request{CustomerID: "c2", Placements: []string{"hero"}, Now: benchNow}, &d); err != nil {
		t.Fatal(err)
	}
	if items := d.Placements[0].Items; len(items) != 1 || items[0].Action.ID != "for-vip" {
		t.Fatalf("attributes in a map: %+v; want for-vip", items)
	}
}

// A condition whose evaluation is a rule error is not kept: each decision
// evaluates it, and counts the error.
func TestKeptValuesNotOnRuleError(t *testing.T) {
	var errs int
	eng := engine.New(engine.Options{OnRuleError: func(string, error) { errs++ }})
	rs := compileFiles(t, map[string]string{
		"placements.yaml": "placements:\n  hero: {limit: 1}\n",
		"actions.yaml": `actions:
  - id: odd
    kind: offer
    placements: [hero]
    when: customer.tier > 3
`,
	})
	c := &store.Customer{ID: "c1", Encoded: &encodedAttrs{m: map[string]any{"tier": "gold"}}}
	for i := 1; i <= 3; i++ {
		got, reads := decideKept(t, eng, rs, c)
		if len(got) != 0 || reads == 0 || errs != i {
			t.Fatalf("decision %d: %v, %d attribute reads, %d rule errors so far; want nothing, reads, %d", i, got, reads, errs, i)
		}
	}
}

// Decisions of one customer at once share what its attributes keep, each
// storing what it learnt: every one decides as the first did.
func TestKeptValuesConcurrent(t *testing.T) {
	eng := engine.New(engine.Options{})
	rs := keepRules(t, "gold")
	c := &store.Customer{ID: "c1", Encoded: &encodedAttrs{m: map[string]any{"tier": "gold", "ltv": 500.0}}}
	src := memstore.New()
	src.Put(c)
	var wg sync.WaitGroup
	errs := make(chan string, 8*50)
	for range 8 {
		wg.Go(func() {
			var d engine.Decision
			for range 50 {
				req := &engine.Request{CustomerID: "c1", Placements: []string{"hero"}, Now: benchNow}
				if err := eng.Decide(rs, src, req, &d); err != nil {
					errs <- err.Error()
					return
				}
				if items := d.Placements[0].Items; len(items) != 1 || items[0].Action.ID != "for-vip" {
					errs <- fmt.Sprintf("%+v", items)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("a concurrent decision: %s; want for-vip alone", e)
	}
}

// A condition that reads a segment whose evaluation was a rule error
// earlier in the same decision is not kept either: each decision that
// needs the segment evaluates it, and counts the error, as without keeping.
func TestKeptValuesNotOnNestedRuleError(t *testing.T) {
	rs := compileFiles(t, map[string]string{
		"segments.yaml":   "segments:\n  odd: int(customer.code) > 5\n",
		"placements.yaml": "placements:\n  p1: {limit: 1}\n  p2: {limit: 1}\n",
		"actions.yaml": `actions:
  - id: a1
    kind: offer
    placements: [p1]
    when: segment("odd")
  - id: a2
    kind: offer
    placements: [p2]
    when: segment("odd") or customer.vip == true
`,
	})
	attrs := map[string]any{"code": "abc", "vip": true}
	for _, c := range []*store.Customer{
		{ID: "c1", Attributes: attrs},
		{ID: "c1", Encoded: &encodedAttrs{m: attrs}},
	} {
		var errs int
		eng := engine.New(engine.Options{OnRuleError: func(string, error) { errs++ }})
		src := memstore.New()
		src.Put(c)
		for i, ps := range [][]string{{"p1", "p2"}, {"p2"}, {"p2"}} {
			errs = 0
			var d engine.Decision
			if err := eng.Decide(rs, src, &engine.Request{CustomerID: "c1", Placements: ps, Now: benchNow}, &d); err != nil {
				t.Fatal(err)
			}
			if errs != 1 {
				t.Errorf("attributes %T, decision %d of %v: %d rule errors; want 1 (segment odd)", c.Encoded, i+1, ps, errs)
			}
			if got := d.Placements[len(ps)-1].Items; len(got) != 1 || got[0].Action.ID != "a2" {
				t.Errorf("attributes %T, decision %d: %s got %+v; want a2", c.Encoded, i+1, ps[len(ps)-1], got)
			}
		}
	}
}

// Keeping changes no decision: a decision that reads what an earlier one,
// of other inputs (time, context, channel, placements, customer id), kept
// explains every candidate as a decision over the same attributes in a map
// (which keep nothing). The conditions mix what rules.Ruleset marks as
// reading attributes alone with what must not be marked, as action
// conditions and through segments.
func TestKeptValuesDecideAsUnkept(t *testing.T) {
	conds := []string{
		`customer.tier == "gold" and $env.placement == "p1"`,
		`customer["tier"] == "gold"`,
		`"tier" in customer`,
		`$env.customer.tier == "gold"`,
		`get($env, "customer").tier == "gold"`,
		`let t = customer.tier; t == "gold"`,
		`customer.tier == "gold" && now.Hour() > 11`,
		`customer?.tier == "gold"`,
		`customer.tags[0] == "a"`,
		`customer.tier in ["gold"] ? placement == "p1" : false`,
		`customer["i" + "d"] == "c1"`,
		`customer.id == "c1"`,
		`{"a": customer.tier}.a == "gold"`,
		`customer.tier == context.tier`,
		`max(customer.ltv, 10) > 20`,
		`customer.tier == channel`,
		`customer.tags | any(# == placement)`,
		`segment("s0") and placement == "p1"`,
		`customer.ltv > 100 and (customer.tier ?? "x") == "gold"`,
	}
	var segs, acts strings.Builder
	segs.WriteString("segments:\n  s0: customer.tier == \"gold\"\n")
	acts.WriteString("actions:\n")
	for i, c := range conds {
		fmt.Fprintf(&segs, "  q%02d: %q\n", i, c)
		fmt.Fprintf(&acts, "  - {id: a%02d, kind: offer, placements: [p1, p2], when: %q}\n", i, c)
		fmt.Fprintf(&acts, "  - {id: b%02d, kind: offer, placements: [p1, p2], when: 'segment(\"q%02d\")'}\n", i, i)
	}
	rs := compileFiles(t, map[string]string{
		"segments.yaml":   segs.String(),
		"placements.yaml": "placements:\n  p1: {limit: 100}\n  p2: {limit: 100}\n",
		"actions.yaml":    acts.String(),
	})
	marked := 0
	for i := range rs.Placements["p1"].Gates {
		if rs.Placements["p1"].Gates[i].AttrOnly() {
			marked++
		}
	}
	if marked == 0 || marked == len(rs.Placements["p1"].Gates) {
		t.Fatalf("%d of %d conditions marked as reading attributes alone: the test needs both kinds", marked, len(rs.Placements["p1"].Gates))
	}

	attrs := map[string]any{"tier": "gold", "ltv": 500.0, "tags": []any{"a"}}
	inputs := []engine.Request{
		{CustomerID: "c1", Now: benchNow, Context: map[string]any{"tier": "gold"}, Channel: "gold", Placements: []string{"p1"}},
		{CustomerID: "c2", Now: benchNow.Add(-6 * time.Hour), Context: map[string]any{"tier": "x"}, Channel: "web", Placements: []string{"p2"}},
		{CustomerID: "c1", Now: benchNow.Add(-6 * time.Hour), Channel: "", Placements: []string{"p2", "p1"}},
	}
	eng := engine.New(engine.Options{})
	explain := func(c *store.Customer, in engine.Request) []string {
		t.Helper()
		c = c.ShallowCopy()
		c.ID = in.CustomerID
		in.Customer, in.Explain = c, true
		var d engine.Decision
		if err := eng.Decide(rs, memstore.New(), &in, &d); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range d.Explain {
			out = append(out, fmt.Sprintf("%s/%s eligible %v reason %q", e.Placement, e.Action, e.Eligible, e.Reason))
		}
		return out
	}
	for i, first := range inputs {
		for j, second := range inputs {
			enc := &store.Customer{ID: "c1", Encoded: &encodedAttrs{m: attrs}}
			explain(enc, first)
			got := explain(enc, second)
			want := explain(&store.Customer{ID: "c1", Attributes: attrs}, second)
			if len(got) != len(want) {
				t.Fatalf("inputs %d after %d: %d candidates explained; want %d", j, i, len(got), len(want))
			}
			for k := range want {
				if got[k] != want[k] {
					t.Errorf("inputs %d after %d: %s; want %s", j, i, got[k], want[k])
				}
			}
		}
	}
}
