package rules

import (
	"math"
	"slices"
	"testing"
	"time"
)

// TestGates: each placement's gates stand for its candidates, in order.
// Live agrees with Schedule.Contains at and around the schedule's ends,
// for schedules beyond what Unix nanoseconds hold too; Plain says whether
// the action has channels or stop_after outcomes to check; When answers
// as FastBool does, and leaves to the program what FastBool leaves; Score
// likewise as FastNumber (0 without a score); Index is the action's; the
// guard holds the action's policies, caps and budget, and actions with
// equal ones share one.
func TestGates(t *testing.T) {
	rs, err := Compile([]File{{Name: "actions.yaml", Data: []byte(`actions:
  - id: season
    kind: offer
    placements: [p, q]
    priority: 2
    channels: [web]
    schedule: {from: 2026-11-01T00:00:00Z, until: 2027-01-01T00:00:00Z}
    when: customer.ltv > 100
    score: customer.ltv * 2
    caps: [{max: 3, window: 7d}]
  - id: forever
    placements: [p]
    schedule: {from: 1500-01-01T00:00:00Z, until: 3000-01-01T00:00:00Z}
    stop_after: [convert]
    score: len(customer.tier ?? "")
    budget: {max: 10, window: 1d}
  - id: open
    kind: offer
    placements: [p]
    when: customer.tier + "x" == "goldx"
    caps: [{max: 3, window: 7d}]
  - id: since
    placements: [q]
    schedule: {from: 2026-12-01T00:00:00Z}
    when: customer.ltv <= 100 and segment("rich")
    score: 0.5
`)}, {Name: "segments.yaml", Data: []byte(`segments:
  rich: customer.ltv > 100
  gold: customer.tier + "x" == "goldx"
`)}, {Name: "policies.yaml", Data: []byte(`policies:
  - id: unhappy
    when: customer.ltv < 0
    suppress: {kinds: [offer]}
  - id: weekly
    cap: {max: 2, window: 7d}
`)}})
	if err != nil {
		t.Fatal(err)
	}
	env := NewEnv(&fakeFuncs{segs: []bool{true}})
	env.SetRequest(nil, "web", time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	env.SetPlacement("p")
	plain := map[string]bool{"season": false, "forever": false, "open": true, "since": true}
	var times []time.Time
	for _, a := range rs.Actions {
		for _, end := range []time.Time{a.Schedule.From, a.Schedule.Until} {
			if !end.IsZero() && end.Year() > 1678 && end.Year() < 2262 {
				times = append(times, end.Add(-time.Nanosecond), end, end.Add(time.Nanosecond))
			}
		}
	}
	// Now is in Unix ns: the first and last instants they hold stand for
	// all times beyond, so the earliest and latest compared are next to them.
	times = append(times, time.Unix(0, math.MinInt64+1), time.Unix(0, math.MaxInt64-1), time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	deferred := 0 // conditions FastBool leaves to the program
	deferredScores := 0
	guards := map[*Guard]bool{}
	for _, p := range rs.Placements {
		if len(p.Gates) != len(p.Candidates) {
			t.Fatalf("placement %s: %d gates for %d candidates", p.Name, len(p.Gates), len(p.Candidates))
		}
		for i, a := range p.Candidates {
			g := &p.Gates[i]
			for _, now := range times {
				if got, want := g.Live(now.UnixNano()), a.Schedule.Contains(now); got != want {
					t.Errorf("%s in %s at %v: Live %v, Schedule.Contains %v", a.ID, p.Name, now, got, want)
				}
			}
			if g.Plain() != plain[a.ID] {
				t.Errorf("%s: Plain %v; want %v", a.ID, g.Plain(), plain[a.ID])
			}
			if g.Index() != a.Index {
				t.Errorf("%s: Index %d; want %d", a.ID, g.Index(), a.Index)
			}
			gd := g.Guard()
			if !slices.Equal(gd.SuppressedBy, a.SuppressedBy) || !slices.Equal(gd.Caps, a.Caps) ||
				!slices.Equal(gd.CappedBy, a.CappedBy) || gd.Budget != (a.Budget != nil) {
				t.Errorf("%s: guard %+v; want the action's %v, %v, %v, budget %v", a.ID, *gd, a.SuppressedBy, a.Caps, a.CappedBy, a.Budget != nil)
			}
			guards[gd] = true
			for _, attrs := range []map[string]any{{"ltv": 50.0, "tier": "gold"}, {"ltv": 500.0}} {
				env.SetCustomer("c", MapAttributes(attrs))
				f, ok := g.Score(env)
				wantF, wantOK := 0.0, true
				if a.Score != nil {
					wantF, wantOK = a.Score.FastNumber(env)
				}
				if ok != wantOK || (ok && f != wantF) {
					t.Errorf("%s with %v: Score %v, %v; FastNumber %v, %v", a.ID, attrs, f, ok, wantF, wantOK)
				}
				if !ok {
					deferredScores++
				}
				v, ok := g.When(env)
				wantV, wantOK := true, true
				if a.When != nil {
					wantV, wantOK = a.When.FastBool(env)
				}
				if ok != wantOK || (ok && v != wantV) {
					t.Errorf("%s with %v: When %v, %v; FastBool %v, %v", a.ID, attrs, v, ok, wantV, wantOK)
				}
				if !ok {
					deferred++
				}
			}
		}
	}
	// season and open: the suppression, the cap of 3, the weekly cap;
	// forever: the weekly cap and a budget; since: the weekly cap.
	if len(guards) != 3 || len(rs.Guards) != 3 {
		t.Errorf("%d guards in the gates, %d in the ruleset; want 3", len(guards), len(rs.Guards))
	}
	if deferredScores != 2 {
		t.Errorf("%d scores left to the program; want 2, forever's for two customers", deferredScores)
	}
	if len(rs.SegmentConds) != len(rs.Segments) {
		t.Fatalf("%d segment conditions for %d segments", len(rs.SegmentConds), len(rs.Segments))
	}
	for i, sg := range rs.Segments {
		for _, attrs := range []map[string]any{{"ltv": 50.0, "tier": "gold"}, {"ltv": 500.0}} {
			env.SetCustomer("c", MapAttributes(attrs))
			v, ok := rs.SegmentConds[i].Eval(env)
			wantV, wantOK := sg.When.FastBool(env)
			if ok != wantOK || (ok && v != wantV) {
				t.Errorf("segment %s with %v: Eval %v, %v; FastBool %v, %v", sg.Name, attrs, v, ok, wantV, wantOK)
			}
			if !ok {
				deferred++
			}
		}
	}
	if deferred != 4 {
		t.Errorf("%d evaluations left to the program; want 4, of open's and gold's conditions for two customers", deferred)
	}
}
