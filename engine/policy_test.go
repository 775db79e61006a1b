package engine_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/store"
	"github.com/nudge-engine/nudge/store/memstore"
)

// policyContacts takes two shortcuts, the Outcomes summary and channels
// compared as names. On random histories, with and without a summary, it
// counts what the definition counts: the contacts in the cap's window up
// to now with its outcome, on one of its channels, of an action its filter
// selects, up to its max.
func TestPolicyContactsDefinition(t *testing.T) {
	rs := compileFiles(t, map[string]string{
		"placements.yaml": "placements:\n  hero: {limit: 1}\n",
		"actions.yaml": `actions:
  - {id: o1, kind: offer, placements: [hero]}
  - {id: o2, kind: offer, tags: [sale], placements: [hero]}
  - {id: m1, kind: message, placements: [hero]}
  - {id: m2, kind: message, tags: [sale], placements: [hero]}
`,
		"policies.yaml": `policies:
  - {id: email, cap: {max: 3, window: 7d, channels: [email]}}
  - {id: web-push, cap: {max: 50, window: 2d, channels: [web, push]}}
  - {id: dismissed-offers, cap: {max: 2, window: 7d, outcome: dismiss, kinds: [offer]}}
  - {id: clicked-sale, cap: {max: 100, window: 30d, outcome: click, tags: [sale]}}
  - {id: accepted, cap: {max: 4, window: 1d, outcome: accept, actions: [m1, o1]}}
  - {id: served, cap: {max: 1000, window: 1d}}
  - {id: never-used, cap: {max: 1, window: 7d, channels: [policy-test-unused-channel]}}
`,
	})
	actions := []string{"o1", "o2", "m1", "m2"}
	channels := []string{"web", "email", "push", ""}
	outcomes := []store.Outcome{store.Served, store.Served, store.Served, store.Click, store.Accept, store.Dismiss, store.Convert}
	now := benchNow.UnixNano()
	rng := rand.New(rand.NewPCG(1, 2))
	checked, nonzero := 0, 0
	for round := range 400 {
		c := &store.Customer{ID: "c"}
		n := rng.IntN(300)
		if round%10 == 0 {
			n = 0
		}
		// Outcomes are rare in some customers, so that the summary rules
		// caps out, and common in others.
		rare := round%2 == 0
		for range n {
			o := store.Served
			if !rare || rng.IntN(50) == 0 {
				o = outcomes[rng.IntN(len(outcomes))]
			}
			c.AddContact(store.Contact{
				Action:  store.Intern(actions[rng.IntN(len(actions))]),
				Channel: store.Intern(channels[rng.IntN(len(channels))]),
				Outcome: o,
				At:      now - rng.Int64N(int64(40*24*time.Hour)) + int64(time.Hour), // some after now
			})
		}
		if round%3 != 0 {
			c.Summarize()
		}
		for _, p := range rs.Policies {
			pc := p.Cap
			var want int64
			for i := range c.Contacts {
				k := &c.Contacts[i]
				if k.At >= now-int64(pc.Window) && k.At <= now && uint8(k.Outcome) == pc.Outcome &&
					pc.CountsChannel(k.Channel.String()) && pc.CountsAction(k.Action.String()) {
					want++
				}
			}
			want = min(want, pc.Max)
			if got := engine.PolicyContacts(c, pc, now); got != want {
				t.Fatalf("round %d, policy %s, %d contacts (summary %v): counted %d, want %d",
					round, p.ID, len(c.Contacts), c.Outcomes != nil, got, want)
			}
			checked++
			if want > 0 {
				nonzero++
			}
		}
	}
	if nonzero < checked/4 {
		t.Fatalf("only %d of %d counts are above zero: the histories do not exercise the caps", nonzero, checked)
	}
}

// One engine deciding with two rulesets in turn counts each candidate's
// contacts under its own id, though the actions' order, and so their
// indices, differ between the rulesets.
func TestCapsAcrossRulesets(t *testing.T) {
	actions := func(first, second string) string {
		return "actions:\n" +
			"  - {id: " + first + ", kind: offer, placements: [hero], priority: 1, caps: [{max: 1, window: 7d}]}\n" +
			"  - {id: " + second + ", kind: offer, placements: [hero], caps: [{max: 1, window: 7d}]}\n"
	}
	placements := "placements:\n  hero: {limit: 1}\n"
	xy := compileFiles(t, map[string]string{"placements.yaml": placements, "actions.yaml": actions("capped-x", "free-y")})
	yx := compileFiles(t, map[string]string{"placements.yaml": placements, "actions.yaml": actions("free-y", "capped-x")})
	src := memstore.New()
	c := &store.Customer{ID: "c"}
	c.AddContact(store.Contact{Action: store.Intern("capped-x"), At: benchNow.Add(-time.Hour).UnixNano()})
	c.Summarize()
	src.Put(c)
	eng := engine.New(engine.Options{})
	var d engine.Decision
	for i, rs := range []*rules.Ruleset{xy, yx, xy, yx} {
		req := &engine.Request{CustomerID: "c", Placements: []string{"hero"}, Now: benchNow}
		if err := eng.Decide(rs, src, req, &d); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, it := range d.Placements[0].Items {
			got = append(got, it.Action.ID)
		}
		if len(got) != 1 || got[0] != "free-y" {
			t.Fatalf("decision %d: %v; want free-y (capped-x is at its cap)", i, got)
		}
	}
}
