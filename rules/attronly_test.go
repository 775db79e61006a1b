package rules_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nudge-engine/nudge/rules"
)

// A segment or an action's condition is marked as reading attributes alone
// only when it, and every segment it uses, reads nothing else.
func TestAttrOnly(t *testing.T) {
	conds := []struct {
		when string
		want bool
	}{
		{`customer.tier == "gold"`, true},
		{`customer.ltv > 100 or customer.tier in ["gold", "silver"]`, true},
		{`lower(customer.country ?? "") == "fr" and len(customer.first_name ?? "") > 0`, true},
		{`customer.consent.email == true`, true},
		{`"tier" in customer`, true},
		{`segment("s00")`, true}, // itself attributes alone
		{`not segment("s00") and customer.ltv < 5`, true},
		{`segment("s00") and segment("s09")`, false}, // s09 counts events
		{`segment("s07")`, false},                    // s07 uses s09
		{`count("view", "7d") > 1`, false},
		{`days_since("purchase") < 30`, false},
		{`shown("a0", "7d") == 0`, false},
		{`customer.id == "c-1"`, false},
		{`context.page == "/"`, false},
		{`placement == "hero"`, false},
		{`channel == "web"`, false},
		{`now.Hour() > 8`, false},
		// A builtin not known to be pure.
		{`customer.ltv > 100 and duration("1h") > duration("30m")`, false},
	}
	var segs, acts strings.Builder
	segs.WriteString("segments:\n")
	acts.WriteString("actions:\n")
	for i, c := range conds {
		fmt.Fprintf(&segs, "  s%02d: %q\n", i, c.when)
		fmt.Fprintf(&acts, "  - {id: a%d, kind: offer, placements: [hero], when: %q}\n", i, c.when)
	}
	fmt.Fprintf(&acts, "  - {id: always, kind: offer, placements: [hero]}\n")
	rs := mustCompile(t, []rules.File{
		{Name: "schema.yaml", Data: []byte("attributes:\n  tier: {type: string}\n  ltv: {type: number}\n  country: {type: string}\n  first_name: {type: string}\n  consent: {type: object}\n")},
		{Name: "segments.yaml", Data: []byte(segs.String())},
		{Name: "actions.yaml", Data: []byte(acts.String())},
		{Name: "placements.yaml", Data: []byte("placements:\n  hero: {limit: 1}\n")},
	})
	gates := map[string]bool{}
	p := rs.Placements["hero"]
	for i, a := range p.Candidates {
		gates[a.ID] = p.Gates[i].AttrOnly()
	}
	for i, c := range conds {
		if got := rs.SegmentAttrOnly[i]; got != c.want {
			t.Errorf("segment %q: attributes alone %v; want %v", c.when, got, c.want)
		}
		if got := gates[fmt.Sprintf("a%d", i)]; got != c.want {
			t.Errorf("action condition %q: attributes alone %v; want %v", c.when, got, c.want)
		}
	}
	if gates["always"] {
		t.Error("an action without a condition is marked: there is nothing to keep")
	}
}
