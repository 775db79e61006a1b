package engine_test

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/bench/workload"
	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/store/memstore"
)

// Explaining a decision does not change it: with explain, every tier of
// every placement is evaluated, where without it the tiers below a filled
// limit are skipped; both return the same items and holdouts. The
// generated rulesets have many tiers and caps; the demo storefront has an
// experiment with a holdout, an adaptive action, fallbacks and channel
// "auto".
func TestExplainKeepsDecision(t *testing.T) {
	eng := engine.New(engine.Options{})
	for _, spec := range []workload.RulesetSpec{
		{Actions: 1000, Seed: 1},
		{Actions: 300, Segments: 20, Placements: 4, CappedShare: 0.9, Seed: 2},
	} {
		rs, err := rules.Compile(workload.Ruleset(spec))
		if err != nil {
			t.Fatal(err)
		}
		src := memstore.New()
		n := len(rs.Placements)
		var items int
		for i := range 500 {
			c := workload.Customer(workload.CustomerSpec{Actions: spec.Actions, Contacts: 60, Seed: spec.Seed}, i)
			src.Put(c)
			req := &engine.Request{
				CustomerID: c.ID,
				Placements: []string{workload.PlacementName(i % n), workload.PlacementName((i + 1) % n), workload.PlacementName((i + 3) % n)},
				Channel:    "web",
				Now:        benchNow,
				Seed:       uint64(i),
			}
			it, _ := sameExplained(t, eng, rs, src, req)
			items += it
		}
		if items == 0 {
			t.Fatalf("%+v: no items decided: the comparison compares nothing", spec)
		}
	}

	rs, err := rules.LoadDir("../testdata/storefront/rules")
	if err != nil {
		t.Fatal(err)
	}
	src := memstore.New()
	var placements []string
	for name := range rs.Placements {
		placements = append(placements, name)
	}
	sort.Strings(placements)
	var items, holdouts int
	for i, c := range loadDemoCustomers(t) {
		src.Put(c)
		ctx := map[string]any{"cart_value": []float64{40, 140}[i%2], "category": c.Attributes["favorite_category"],
			"stock": []float64{3, 50}[i%3%2], "device": "mobile"}
		for _, channel := range []string{"web", "auto"} {
			req := &engine.Request{CustomerID: c.ID, Placements: placements, Channel: channel, Context: ctx,
				Now: time.Date(2026, 11, 28, 15, 0, 0, 0, time.UTC), Seed: uint64(i)}
			it, ho := sameExplained(t, eng, rs, src, req)
			items, holdouts = items+it, holdouts+ho
		}
	}
	if items == 0 || holdouts == 0 {
		t.Fatalf("demo: %d items and %d holdouts decided: the comparison misses a part", items, holdouts)
	}
}

// sameExplained decides req without and with explain, fails t when the
// two differ, and returns the items and holdouts decided.
func sameExplained(t *testing.T, eng *engine.Engine, rs *rules.Ruleset, src engine.Source, req *engine.Request) (items, holdouts int) {
	t.Helper()
	var plain, explained engine.Decision
	if err := eng.Decide(rs, src, req, &plain); err != nil {
		t.Fatal(err)
	}
	ereq := *req
	ereq.Explain = true
	if err := eng.Decide(rs, src, &ereq, &explained); err != nil {
		t.Fatal(err)
	}
	if got, want := decided(&plain), decided(&explained); got != want {
		t.Fatalf("customer %s:\nwithout explain %s\nwith explain    %s", req.CustomerID, got, want)
	}
	for _, p := range plain.Placements {
		items += len(p.Items)
	}
	return items, len(plain.Holdouts)
}

// decided lists d's items and holdouts.
func decided(d *engine.Decision) string {
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
