package engine_test

import (
	"fmt"
	"testing"

	"github.com/nudge-engine/nudge/bench/workload"
	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/store/memstore"
)

// Explaining a decision does not change it: with explain, every tier of
// every placement is evaluated, where without it the tiers below a filled
// limit are skipped; both return the same items and holdouts.
func TestExplainKeepsDecision(t *testing.T) {
	for _, spec := range []workload.RulesetSpec{
		{Actions: 1000, Seed: 1},
		{Actions: 300, Segments: 20, Placements: 4, CappedShare: 0.9, Seed: 2},
	} {
		rs, err := rules.Compile(workload.Ruleset(spec))
		if err != nil {
			t.Fatal(err)
		}
		src := memstore.New()
		eng := engine.New(engine.Options{})
		items := 0
		for i := range 500 {
			c := workload.Customer(workload.CustomerSpec{Actions: spec.Actions, Contacts: 60, Seed: spec.Seed}, i)
			src.Put(c)
			n := spec.Placements
			if n == 0 {
				n = 20
			}
			req := &engine.Request{
				CustomerID: c.ID,
				Placements: []string{workload.PlacementName(i % n), workload.PlacementName((i + 1) % n), workload.PlacementName((i + 3) % n)},
				Channel:    "web",
				Now:        benchNow,
				Seed:       uint64(i),
			}
			var plain, explained engine.Decision
			if err := eng.Decide(rs, src, req, &plain); err != nil {
				t.Fatal(err)
			}
			ereq := *req
			ereq.Explain = true
			if err := eng.Decide(rs, src, &ereq, &explained); err != nil {
				t.Fatal(err)
			}
			got, want := itemsOf(&plain), itemsOf(&explained)
			if got != want {
				t.Fatalf("%+v, customer %s:\nwithout explain %s\nwith explain    %s", spec, c.ID, got, want)
			}
			items += len(plain.Placements[0].Items) + len(plain.Placements[1].Items) + len(plain.Placements[2].Items)
		}
		if items == 0 {
			t.Fatalf("%+v: no items decided: the comparison compares nothing", spec)
		}
	}
}

// itemsOf lists d's items and holdouts.
func itemsOf(d *engine.Decision) string {
	s := ""
	for _, p := range d.Placements {
		s += p.Name + ":"
		for _, it := range p.Items {
			s += fmt.Sprintf(" %s/%s/%g/%s/%s/%v", it.Action.ID, it.Channel, it.Score, it.Experiment, it.Variant, it.Fallback)
		}
		s += "; "
	}
	return s + fmt.Sprint(d.Holdouts)
}
