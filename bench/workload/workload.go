// Package workload generates deterministic synthetic workloads for
// benchmarks: rulesets of a given shape and customers with attributes,
// event histories and contact histories.
package workload

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/store"
)

// RulesetSpec is the shape of a synthetic ruleset.
type RulesetSpec struct {
	Actions     int     // default 1000
	Segments    int     // default 100
	Placements  int     // default 20
	CappedShare float64 // share of actions with a cap; default 1/3
	Seed        uint64
}

func (s *RulesetSpec) ensureDefaults() {
	if s.Actions == 0 {
		s.Actions = 1000
	}
	if s.Segments == 0 {
		s.Segments = 100
	}
	if s.Placements == 0 {
		s.Placements = 20
	}
	if s.CappedShare == 0 {
		s.CappedShare = 1.0 / 3
	}
}

// PlacementName returns the name of generated placement i.
func PlacementName(i int) string { return fmt.Sprintf("p%02d", i) }

// ActionID returns the id of generated action i.
func ActionID(i int) string { return fmt.Sprintf("a%04d", i) }

// Ruleset generates rule files of the given shape: a schema, segments
// over attributes, events and other segments, and actions spread over the
// placements with conditions, scores, tags and (for a share) caps.
func Ruleset(spec RulesetSpec) []rules.File {
	spec.ensureDefaults()
	rng := rand.New(rand.NewPCG(spec.Seed, 1))
	var schema strings.Builder
	schema.WriteString(`attributes:
  tier: {type: string, default: bronze}
  ltv: {type: number, default: 0}
  churn_risk: {type: number, default: 0}
  first_name: {type: string}
  country: {type: string}
  consent: {type: object}
`)
	for i := range 10 {
		fmt.Fprintf(&schema, "  a%d: {type: number, default: 0}\n", i)
	}

	var segs strings.Builder
	segs.WriteString("segments:\n")
	for i := range spec.Segments {
		var cond string
		switch i % 5 {
		case 0:
			cond = fmt.Sprintf("customer.ltv > %d", rng.IntN(2000))
		case 1:
			cond = fmt.Sprintf(`count("view", "7d") > %d`, rng.IntN(10))
		case 2:
			cond = fmt.Sprintf(`customer.tier == %q or customer.a%d > %.2f`, []string{"gold", "silver", "bronze"}[rng.IntN(3)], rng.IntN(10), rng.Float64())
		case 3:
			cond = fmt.Sprintf(`days_since("purchase") < %d and sum("purchase", "90d") > %d`, 10+rng.IntN(80), rng.IntN(300))
		default:
			cond = fmt.Sprintf(`customer.a%d > %.2f and segment("s%03d")`, rng.IntN(10), rng.Float64(), rng.IntN(i))
		}
		fmt.Fprintf(&segs, "  s%03d: %s\n", i, cond)
	}

	var acts strings.Builder
	acts.WriteString("actions:\n")
	for i := range spec.Actions {
		fmt.Fprintf(&acts, "  - id: %s\n", ActionID(i))
		fmt.Fprintf(&acts, "    kind: %s\n", []string{"offer", "message"}[i%2])
		fmt.Fprintf(&acts, "    placements: [%s]\n", PlacementName(i%spec.Placements))
		fmt.Fprintf(&acts, "    priority: %d\n", rng.IntN(4))
		switch rng.IntN(3) {
		case 0:
			fmt.Fprintf(&acts, "    when: segment(\"s%03d\") and customer.a%d > %.2f\n", rng.IntN(spec.Segments), rng.IntN(10), rng.Float64()/2)
		case 1:
			fmt.Fprintf(&acts, "    when: segment(\"s%03d\") or count(\"cart\", \"30d\") > %d\n", rng.IntN(spec.Segments), rng.IntN(3))
		default:
			fmt.Fprintf(&acts, "    when: not segment(\"s%03d\")\n", rng.IntN(spec.Segments))
		}
		if rng.IntN(2) == 0 {
			fmt.Fprintf(&acts, "    score: customer.churn_risk * %.2f + customer.a%d\n", rng.Float64(), rng.IntN(10))
		} else {
			fmt.Fprintf(&acts, "    score: %.3f\n", rng.Float64())
		}
		fmt.Fprintf(&acts, "    tags: [t%d]\n", rng.IntN(10))
		fmt.Fprintf(&acts, "    content: {title: \"Offer %d for {{ customer.first_name ?? 'you' }}\", code: C%04d}\n", i, i)
		if rng.Float64() < spec.CappedShare {
			fmt.Fprintf(&acts, "    caps: [{max: %d, window: 7d}]\n", 1+rng.IntN(3))
		}
	}

	var pol strings.Builder
	pol.WriteString(`policies:
  - id: unhappy
    when: customer.a9 > 0.97
    suppress: {kinds: [offer]}
  - id: weekly
    cap: {max: 20, window: 7d}
placements:
`)
	for i := range spec.Placements {
		fmt.Fprintf(&pol, "  %s: {limit: %d}\n", PlacementName(i), 1+i%3)
	}
	return []rules.File{
		{Name: "schema.yaml", Data: []byte(schema.String())},
		{Name: "segments.yaml", Data: []byte(segs.String())},
		{Name: "actions.yaml", Data: []byte(acts.String())},
		{Name: "policies.yaml", Data: []byte(pol.String())},
	}
}

// CustomerSpec is the shape of synthetic customers.
type CustomerSpec struct {
	Actions  int       // action ids contacts refer to; default 1000
	Events   int       // events per customer on average; default 40
	Contacts int       // contacts per customer on average; default 20
	Now      time.Time // histories end here; default 2026-11-23T12:00:00Z
	Seed     uint64
}

func (s *CustomerSpec) ensureDefaults() {
	if s.Actions == 0 {
		s.Actions = 1000
	}
	if s.Events == 0 {
		s.Events = 40
	}
	if s.Contacts == 0 {
		s.Contacts = 20
	}
	if s.Now.IsZero() {
		s.Now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	}
}

var firstNames = []string{"Ana", "Ben", "Chloé", "Dario", "Emma", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kenji", "Lena"}

// Customer generates customer i of the spec: the same i gives the same
// customer.
func Customer(spec CustomerSpec, i int) *store.Customer {
	spec.ensureDefaults()
	rng := rand.New(rand.NewPCG(spec.Seed, uint64(i)))
	c := &store.Customer{
		ID: fmt.Sprintf("c-%07d", i),
		Attributes: map[string]any{
			"tier":       []string{"bronze", "bronze", "silver", "gold"}[rng.IntN(4)],
			"ltv":        float64(rng.IntN(3000)),
			"churn_risk": rng.Float64(),
			"first_name": firstNames[rng.IntN(len(firstNames))],
			"country":    []string{"DE", "FR", "IT", "ES", "NL"}[rng.IntN(5)],
			"consent":    map[string]any{"email": rng.IntN(2) == 0, "sms": rng.IntN(4) == 0, "push": rng.IntN(3) == 0},
		},
	}
	for k := range 10 {
		c.Attributes[fmt.Sprintf("a%d", k)] = rng.Float64()
	}
	now := spec.Now.UnixNano()
	types := []string{"view", "view", "view", "cart", "purchase"}
	for range rng.IntN(2*spec.Events + 1) {
		at := now - rng.Int64N(int64(120*24*time.Hour))
		c.AddEvent(types[rng.IntN(len(types))], at, float64(rng.IntN(200)))
	}
	for range rng.IntN(2*spec.Contacts + 1) {
		at := now - rng.Int64N(int64(30*24*time.Hour))
		o := store.Served
		if rng.IntN(5) == 0 {
			o = store.Outcome(1 + rng.IntN(4))
		}
		c.AddContact(store.Contact{Action: store.Intern(ActionID(rng.IntN(spec.Actions))), Outcome: o, Channel: store.Intern("web"), At: at})
	}
	return c
}
