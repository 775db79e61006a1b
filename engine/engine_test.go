package engine_test

import (
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/bench/workload"
	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/store"
	"github.com/nudge-engine/nudge/store/memstore"
)

var benchNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func experiment(t *testing.T, weights ...float64) *rules.Experiment {
	t.Helper()
	src := "actions:\n  - id: x\n    placements: [p]\n    experiment:\n      variants:\n"
	for i, w := range weights {
		src += fmt.Sprintf("        v%d: {weight: %v}\n", i, w)
	}
	rs := compileFiles(t, map[string]string{"x.yaml": src})
	return rs.Action("x").Experiment
}

func TestAssignSharesFollowWeights(t *testing.T) {
	f := func(weights ...float64) {
		t.Helper()
		x := experiment(t, weights...)
		const n = 10000
		counts := map[string]int{}
		for i := range n {
			id := fmt.Sprintf("customer-%d", i)
			v := engine.Assign(x, id)
			counts[v.Name]++
			if again := engine.Assign(x, id); again != v {
				t.Fatalf("customer %s got %s, then %s", id, v.Name, again.Name)
			}
		}
		for i, w := range weights {
			name := fmt.Sprintf("v%d", i)
			share := float64(counts[name]) / n * 100
			want := w / x.Total * 100
			if math.Abs(share-want) > 2 {
				t.Errorf("weights %v: variant %s has %.2f%% of customers; want %.2f%% ± 2", weights, name, share, want)
			}
		}
	}
	f(45, 45, 10)
	f(50, 50)
	f(1, 1, 1, 1)
	f(90, 10)
	f(0, 3, 1)
}

func TestAssignDependsOnExperimentID(t *testing.T) {
	a := experiment(t, 50, 50)
	b := *a
	b.ID = "another"
	same := 0
	for i := range 1000 {
		id := fmt.Sprintf("c%d", i)
		if engine.Assign(a, id).Name == engine.Assign(&b, id).Name {
			same++
		}
	}
	// Independent 50/50 splits agree about half the time.
	if same < 400 || same > 600 {
		t.Errorf("two experiments agree on %d of 1000 customers; want about 500", same)
	}
}

// A new action has no outcomes: Thompson sampling must still rank it
// first sometimes, and not always.
func TestPropensityExploresNewActions(t *testing.T) {
	rs := compileFiles(t, map[string]string{"r.yaml": `
actions:
  - {id: known, placements: [p], adaptive: true, score: propensity()}
  - {id: new, placements: [p], adaptive: true, score: propensity()}
`})
	src := memstore.New()
	src.SetStats("known", 1000, 300) // converts about 30%
	eng := engine.New(engine.Options{})
	wins := map[string]int{}
	var d engine.Decision
	for seed := range uint64(400) {
		req := &engine.Request{CustomerID: "c", Placements: []string{"p"}, Channel: "web", Now: benchNow, Seed: seed}
		if err := eng.Decide(rs, src, req, &d); err != nil {
			t.Fatal(err)
		}
		wins[d.Placements[0].Items[0].Action.ID]++
	}
	// The uniform prior beats 0.3 about 70% of the time.
	if wins["new"] < 200 || wins["known"] < 60 {
		t.Errorf("wins %v: want the new action explored (about 280 of 400) and the known one kept (about 120)", wins)
	}
}

// The engine itself allocates nothing per candidate action: a ruleset of
// four times the actions costs no more allocations per decision once
// every segment is evaluated either way (segments are memoized: their
// cost is per decision, not per candidate). (Scores
// here are constants, so expr does not box intermediate numbers.)
func TestNoAllocationPerCandidate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector; make test runs this test without it")
	}
	for _, deadline := range []bool{false, true} {
		t.Run(fmt.Sprintf("deadline=%v", deadline), func(t *testing.T) { testNoAllocationPerCandidate(t, deadline) })
	}
}

func testNoAllocationPerCandidate(t *testing.T, deadline bool) {
	allocs := func(actions int) float64 {
		files := workload.Ruleset(workload.RulesetSpec{Actions: actions, Segments: 50, Placements: 2, Seed: 3})
		rs, err := rules.Compile(files)
		if err != nil {
			t.Fatal(err)
		}
		src := memstore.New()
		c := workload.Customer(workload.CustomerSpec{Actions: actions, Seed: 3}, 1)
		src.Put(c)
		eng := engine.New(engine.Options{})
		req := &engine.Request{CustomerID: c.ID, Placements: []string{"p00", "p01"}, Channel: "web", Now: benchNow}
		if deadline {
			// Checked, never reached: the check itself must not allocate.
			req.Deadline = time.Now().Add(time.Hour)
		}
		var d engine.Decision
		return testing.AllocsPerRun(200, func() {
			if err := eng.Decide(rs, src, req, &d); err != nil {
				t.Fatal(err)
			}
			if d.Degraded {
				t.Fatal("degraded decision")
			}
		})
	}
	small, large := allocs(1000), allocs(4000)
	t.Logf("allocations per decision: %.0f with 1000 actions, %.0f with 4000", small, large)
	if large > small+2 {
		t.Errorf("%.0f allocations per decision with 4000 actions, %.0f with 1000: the engine allocates per candidate", large, small)
	}
}

// A deadline that passes in the middle of the evaluation stops it: the
// decision is degraded and answered long before a full evaluation would
// have been. The candidates are deliberately slow (a loop in every
// condition), so the times compared are large against the clock checks.
func TestDeadlineStopsEvaluation(t *testing.T) {
	src := "actions:\n"
	for i := range 128 {
		src += fmt.Sprintf("  - {id: a%03d, placements: [p], when: 'all(1..int(context.n), # > 0) and context.never == true'}\n", i)
	}
	src += "  - {id: fb, kind: message}\nplacements:\n  p: {fallback: fb}\n"
	rs := compileFiles(t, map[string]string{"r.yaml": src})
	eng := engine.New(engine.Options{})
	mem := memstore.New()
	decide := func(deadline time.Duration) (time.Duration, *engine.Decision) {
		req := &engine.Request{CustomerID: "c", Placements: []string{"p"}, Channel: "web", Now: benchNow, Context: map[string]any{"n": 3000.0}}
		start := time.Now()
		if deadline > 0 {
			req.Deadline = start.Add(deadline)
		}
		var d engine.Decision
		if err := eng.Decide(rs, mem, req, &d); err != nil {
			t.Fatal(err)
		}
		return time.Since(start), &d
	}
	full, d := decide(0)
	if d.Degraded || len(d.Placements[0].Items) != 1 || !d.Placements[0].Items[0].Fallback {
		t.Fatalf("without a deadline: degraded %v, items %+v; want the fallback, not degraded", d.Degraded, d.Placements[0].Items)
	}
	// 16 candidates are an eighth of the placement: a deadline at a
	// sixteenth of the full time must stop well before the end.
	took, d := decide(full / 16)
	t.Logf("full evaluation %v; with a deadline of %v: %v", full, full/16, took)
	if !d.Degraded {
		t.Fatalf("deadline %v passed (evaluation took %v) but the decision is not degraded", full/16, took)
	}
	if it := d.Placements[0].Items; len(it) != 1 || it[0].Action.ID != "fb" || !it[0].Fallback {
		t.Errorf("degraded items %+v; want the fallback fb", it)
	}
	if took > full/2 {
		t.Errorf("a deadline of %v took %v, the full evaluation %v: the evaluation did not stop", full/16, took, full)
	}
}

var sink int

func benchDecide(b *testing.B, rs *rules.Ruleset, src engine.Source, reqs []*engine.Request) {
	b.Helper()
	eng := engine.New(engine.Options{})
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var d engine.Decision
		i := 0
		for pb.Next() {
			if err := eng.Decide(rs, src, reqs[i%len(reqs)], &d); err != nil {
				b.Fatal(err)
			}
			sink += len(d.Placements)
			i++
		}
	})
}

// BenchmarkDecideDemo decides the demo storefront's test requests for
// their customers, as the tests give them (history=test) and with 5,000
// more contacts each, served on the web over the 3.5 days before the
// decision: the history of the benchmark's hottest customers, which reach
// store.MaxContacts.
func BenchmarkDecideDemo(b *testing.B) {
	rs, err := rules.LoadDir("../testdata/storefront/rules")
	if err != nil {
		b.Fatal(err)
	}
	for _, extra := range []int{0, store.MaxContacts} {
		name := "history=test"
		if extra > 0 {
			name = fmt.Sprintf("history=%d", extra)
		}
		b.Run(name, func(b *testing.B) {
			src := memstore.New()
			var reqs []*engine.Request
			for i, t := range rs.Tests {
				c := engine.CustomerFromTest(t.Customer)
				c.ID = fmt.Sprintf("%s-%d", c.ID, i)
				now := t.Now
				if now.IsZero() {
					now = benchNow
				}
				for k := range extra {
					a := rs.Actions[k%len(rs.Actions)]
					c.AddContact(store.Contact{Action: store.Intern(a.ID), Channel: store.Intern("web"),
						At: now.Add(-time.Duration(extra-k) * time.Minute).UnixNano()})
				}
				c.Summarize()
				src.Put(c)
				reqs = append(reqs, &engine.Request{CustomerID: c.ID, Placements: t.Request.Placements,
					Channel: t.Request.Channel, Context: t.Request.Context, Now: now, Seed: uint64(i)})
			}
			benchDecide(b, rs, src, reqs)
		})
	}
}

// BenchmarkDecideGenerated decides two placements of a generated ruleset
// (1,000 actions over 20 placements, 100 segments, a third capped) for
// 1,000 generated customers.
func BenchmarkDecideGenerated(b *testing.B) {
	for _, n := range []int{100, 1000, 4000} {
		b.Run(fmt.Sprintf("actions=%d", n), func(b *testing.B) {
			rs, err := rules.Compile(workload.Ruleset(workload.RulesetSpec{Actions: n, Seed: 1}))
			if err != nil {
				b.Fatal(err)
			}
			src := memstore.New()
			var reqs []*engine.Request
			for i := range 1000 {
				c := workload.Customer(workload.CustomerSpec{Actions: n, Seed: 1}, i)
				src.Put(c)
				reqs = append(reqs, &engine.Request{
					CustomerID: c.ID,
					Placements: []string{workload.PlacementName(i % 20), workload.PlacementName((i + 7) % 20)},
					Channel:    "web",
					Context:    map[string]any{"page": "/", "device": "mobile"},
					Now:        benchNow,
					Seed:       uint64(i),
				})
			}
			benchDecide(b, rs, src, reqs)
		})
	}
}

// A Decision reused across calls renders into the maps of the previous
// decision's content: the second decision's content is its own, in the
// first one's map.
func TestDecisionReusesContentMaps(t *testing.T) {
	rs := compileFiles(t, map[string]string{
		"placements.yaml": "placements:\n  hero: {limit: 1}\n",
		"actions.yaml": `actions:
  - id: hello
    kind: message
    placements: [hero]
    content:
      title: "Hello {{ context.name }}"
      fixed: "same for all"
`,
	})
	eng := engine.New(engine.Options{})
	src := memstore.New()
	var d engine.Decision
	decide := func(name string) map[string]any {
		t.Helper()
		req := &engine.Request{CustomerID: "c1", Placements: []string{"hero"}, Context: map[string]any{"name": name}, Now: benchNow}
		if err := eng.Decide(rs, src, req, &d); err != nil {
			t.Fatal(err)
		}
		if len(d.Placements) != 1 || len(d.Placements[0].Items) != 1 {
			t.Fatalf("decision %+v: want one item", d.Placements)
		}
		return d.Placements[0].Items[0].Content.(map[string]any)
	}
	first := decide("Ada")
	if first["title"] != "Hello Ada" {
		t.Fatalf("first content %v", first)
	}
	firstMap := reflect.ValueOf(first).UnsafePointer()
	second := decide("Grace")
	want := map[string]any{"title": "Hello Grace", "fixed": "same for all"}
	if !reflect.DeepEqual(second, want) {
		t.Errorf("second content %v, want %v", second, want)
	}
	if reflect.ValueOf(second).UnsafePointer() != firstMap {
		t.Error("the second decision rendered into a new map")
	}
	// A fresh Decision gets its own map.
	var other engine.Decision
	req := &engine.Request{CustomerID: "c1", Placements: []string{"hero"}, Context: map[string]any{"name": "Lin"}, Now: benchNow}
	if err := eng.Decide(rs, src, req, &other); err != nil {
		t.Fatal(err)
	}
	if got := other.Placements[0].Items[0].Content.(map[string]any); got["title"] != "Hello Lin" || second["title"] != "Hello Grace" {
		t.Errorf("two decisions share content: %v and %v", got, second)
	}
}
