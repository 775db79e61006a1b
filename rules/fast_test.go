package rules

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"github.com/goccy/go-yaml"
)

// fakeFuncs answers the rule functions from a seeded random source, the
// same answers for the same arguments within one customer.
type fakeFuncs struct {
	seed uint64
	segs []bool
}

func (f *fakeFuncs) h(s string, w time.Duration) uint64 {
	var h uint64 = f.seed
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h ^ uint64(w)
}
func (f *fakeFuncs) Count(t string, w time.Duration) int   { return int(f.h(t, w) % 5) }
func (f *fakeFuncs) Sum(t string, w time.Duration) float64 { return float64(f.h(t, w)%500) / 2 }
func (f *fakeFuncs) DaysSince(t string) float64 {
	if f.h(t, 0)%4 == 0 {
		return math.Inf(1)
	}
	return float64(f.h(t, 0)%120) / 3
}
func (f *fakeFuncs) Segment(i int) bool                        { return f.segs[i%len(f.segs)] }
func (f *fakeFuncs) Shown(a string, w time.Duration) int       { return int(f.h(a, w) % 3) }
func (f *fakeFuncs) Outcomes(a, o string, w time.Duration) int { return int(f.h(a+o, w) % 2) }
func (f *fakeFuncs) Propensity() float64                       { return 0.25 }

// randomValue returns a value of a random JSON kind (or nothing).
func randomValue(rng *rand.Rand) any {
	switch rng.IntN(8) {
	case 0:
		return nil
	case 1:
		return "gold"
	case 2:
		return []string{"bronze", "silver", "platinum", "x"}[rng.IntN(4)]
	case 3:
		return rng.IntN(2) == 0
	case 4:
		return map[string]any{"email": rng.IntN(2) == 0}
	default:
		return float64(rng.IntN(3000)) / float64(1+rng.IntN(10))
	}
}

// TestFastMatchesVM: wherever the fast path answers, the VM gives the
// same value, over the demo rules and every corpus ruleset, for random
// customers and contexts.
func TestFastMatchesVM(t *testing.T) {
	var sets []*Ruleset
	rs, err := LoadDir("../testdata/storefront/rules")
	if err != nil {
		t.Fatal(err)
	}
	sets = append(sets, rs)
	// Every ruleset of the decision corpus, and the valid check case.
	if rs, err := LoadDir("../testdata/check/valid"); err == nil {
		sets = append(sets, rs)
	}
	paths, _ := filepath.Glob("../testdata/corpus/*.yaml")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var cf struct {
			Files map[string]string `yaml:"files"`
		}
		if err := yaml.Unmarshal(data, &cf); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		var files []File
		for name, src := range cf.Files {
			files = append(files, File{Name: name, Data: []byte(src)})
		}
		rs, err := Compile(files)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		sets = append(sets, rs)
	}
	// Arithmetic and comparisons of every operator, over attributes,
	// literals and event functions, which the files above use little.
	arith, err := Compile([]File{{Name: "actions.yaml", Data: []byte(`actions:
  - id: a1
    placements: [p]
    when: customer.risk * 2 > customer.ltv - 100 and customer.ltv / 4 <= 300
    score: customer.risk * 0.45 + customer.a1
  - id: a2
    placements: [p]
    when: sum("purchase", "90d") >= customer.ltv * 0.5 or count("view", "7d") < 3
    score: sum("purchase", "90d") / (1 + count("view", "7d")) - days_since("purchase") * 2
  - id: a3
    placements: [p]
    when: days_since("purchase") * customer.risk >= 10 - count("cart", "30d")
    score: (customer.ltv - customer.a1) * (customer.risk + 1) / customer.a2
  - id: a4
    placements: [p]
    score: days_since("view")
  - id: a5
    placements: [p]
    score: 3 - customer.a1 * customer.a2 + 7 / 2
  - id: a6
    placements: [p]
    when: 300 >= customer.ltv / 4 and 2 < count("view", "7d") or 0.5 <= customer.risk
    score: 100 / customer.a1 - 2 * customer.a2
  - id: a7
    placements: [p]
    when: 1000 > customer.ltv or customer.a2 >= 3 and customer.a1 < customer.a2
    score: customer.ltv / 0 + 1
  - id: big1
    placements: [p]
    when: now.Unix() * 1000000000 + 1 > now.Unix() * 1000000000
    score: count("view", "7d") + 9007199254740993
  - id: big2
    placements: [p]
    when: count("view", "7d") * 4611686018427387904 < 0 or now.Unix() * 10000000000 > 0
    score: count("cart", "30d") * 4611686018427387904
`)}})
	if err != nil {
		t.Fatal(err)
	}
	sets = append(sets, arith)
	// Attributes with defaults (customer.X ?? d) in every test a
	// condition's program has an instruction for, and a rule's own ??.
	defaults, err := Compile([]File{{Name: "schema.yaml", Data: []byte(`attributes:
  ltv: {type: number, default: 0}
  risk: {type: number, default: 0.5}
  big: {type: number, default: 9007199254740993}
  tier: {type: string, default: bronze}
  favorite: {type: string}
  a1: {type: number}
`)}, {Name: "actions.yaml", Data: []byte(`actions:
  - id: d1
    placements: [p]
    when: customer.tier == "gold" or customer.ltv > 1994
    score: customer.risk * 0.45 + customer.ltv
  - id: d2
    placements: [p]
    when: '"silver" != customer.tier and 0.5 < customer.risk'
    score: customer.big + 1
  - id: d3
    placements: [p]
    when: not (customer.tier == "bronze") and customer.big > 1 or customer.a1 >= 300
  - id: d4
    placements: [p]
    when: (customer.favorite ?? "") != "" and (customer.a1 ?? 7) <= 7 and (customer.ltv ?? 5) < 1000
    score: (customer.a1 ?? 2) * customer.ltv
  - id: d5
    placements: [p]
    when: segment("s") and count("view", "7d") > 1 or not segment("s") and 5 <= sum("purchase", "90d")
  - id: d6
    placements: [p]
    when: customer.big > 9007199254740992 or (customer.a1 ?? 9007199254740993) > 9007199254740992
`)}, {Name: "segments.yaml", Data: []byte(`segments:
  s: customer.tier != "platinum" and days_since("purchase") < 30
`)}})
	if err != nil {
		t.Fatal(err)
	}
	sets = append(sets, defaults)
	if len(sets) < 5 {
		t.Fatalf("only %d rulesets to compare on", len(sets))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	fast, numeric, conds, total := 0, 0, 0, 0
	// One environment serves every customer of a ruleset, as a pooled
	// decision state does, so that what it remembers of one customer
	// must not answer for the next.
	var cur struct{ *fakeFuncs }
	for _, rs := range sets {
		env := NewEnv(&cur)
		var exprs []*Expr
		names := map[string]bool{}
		rs.Expressions(func(x *Expr) {
			exprs = append(exprs, x)
			for _, w := range strings.FieldsFunc(x.Source, func(r rune) bool {
				return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
			}) {
				names[w] = true
			}
		})
		for i := range 400 {
			cur.fakeFuncs = &fakeFuncs{seed: uint64(i), segs: []bool{rng.IntN(2) == 0, rng.IntN(2) == 0, rng.IntN(2) == 0}}
			attrs, ctx := map[string]any{}, map[string]any{}
			for n := range names {
				if rng.IntN(3) > 0 {
					attrs[n] = randomValue(rng)
				}
				if rng.IntN(3) == 0 {
					ctx[n] = randomValue(rng)
				}
			}
			// Every other customer's attributes are read through a scan,
			// as the Pebble store's are.
			if i%2 == 0 {
				env.SetCustomer(fmt.Sprintf("c-%d", i), MapAttributes(attrs))
			} else {
				env.SetCustomer(fmt.Sprintf("c-%d", i), newScanAttrs(attrs, true))
			}
			env.SetRequest(ctx, "web", time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
			env.SetPlacement("home_hero")
			var m vm.VM
			for _, x := range exprs {
				total++
				if got, ok := x.FastBool(env); ok {
					conds++
					want, err := m.Run(x.Program(), env.Map())
					if err != nil || want != got {
						t.Fatalf("%s %q: fast condition %v, the VM %v (error %v)\nattrs %v ctx %v", x.Rule, x.Source, got, want, err, attrs, ctx)
					}
				}
				if got, ok := x.FastNumber(env); ok {
					numeric++
					want, err := m.Run(x.Program(), env.Map())
					if err != nil {
						t.Fatalf("%s %q: fast number %v, the VM failed: %v\nattrs %v ctx %v", x.Rule, x.Source, got, err, attrs, ctx)
					}
					if !sameValue(got, want) {
						t.Fatalf("%s %q: fast number %v, the VM %v (%T)\nattrs %v ctx %v", x.Rule, x.Source, got, want, want, attrs, ctx)
					}
				}
				got, ok := x.Fast(env)
				if !ok {
					continue
				}
				fast++
				want, err := m.Run(x.Program(), env.Map())
				if err != nil {
					t.Fatalf("%s %q: fast path gave %v, the VM failed: %v\nattrs %v ctx %v", x.Rule, x.Source, got, err, attrs, ctx)
				}
				if !sameValue(got, want) {
					t.Fatalf("%s %q: fast path gave %v (%T), the VM %v (%T)\nattrs %v ctx %v", x.Rule, x.Source, got, got, want, want, attrs, ctx)
				}
			}
		}
	}
	t.Logf("%d of %d evaluations answered by the fast path, %d as unboxed numbers, %d as unboxed conditions", fast, total, numeric, conds)
	if fast == 0 || numeric == 0 || conds == 0 {
		t.Fatal("the fast path answered nothing, or no number or condition: the test proved nothing")
	}
}

func sameValue(a, b any) bool {
	if x, ok := number(a); ok {
		y, ok := number(b)
		return ok && (x == y || math.IsNaN(x) && math.IsNaN(y))
	}
	return reflect.DeepEqual(a, b)
}

// Setting the placement or channel a pooled environment already holds
// boxes nothing; a new one replaces it.
func TestEnvKeepsSameStrings(t *testing.T) {
	env := NewEnv(&fakeFuncs{})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	env.SetRequest(nil, "web", now)
	hero := strings.Repeat("home_hero", 1) // not a constant: boxing it allocates
	env.SetPlacement(hero)
	if n := testing.AllocsPerRun(100, func() { env.SetPlacement(hero) }); n != 0 {
		t.Errorf("setting the same placement again: %.0f allocations", n)
	}
	env.SetPlacement("cart")
	env.SetRequest(nil, "app", now)
	if p, ch := env.Map()[varPlacement], env.Map()[varChannel]; p != "cart" || ch != "app" {
		t.Errorf("placement %v, channel %v; want cart, app", p, ch)
	}
}

// The runtime program calls now's methods directly (now·get): it answers
// what expr answers through reflection, on the VM and the fast path, and
// without allocating for small results.
func TestNowMethods(t *testing.T) {
	sources := []string{
		"now.Hour()", "now.Minute()", "now.Second()", "now.Day()", "now.Year()", "now.YearDay()", "now.Unix()",
		"now.Month()", "now.Weekday()", "now.Weekday().String()", "now.Month().String()",
		`now.Hour() < 14 and now.Weekday().String() not in ["Saturday", "Sunday"]`,
		"14 - now.Hour()", "now.Day() + now.Hour()",
	}
	src := "segments:\n"
	for i, s := range sources {
		src += fmt.Sprintf("  s%d: %q\n", i, "("+s+") != nil")
	}
	src += "actions:\n  - id: a\n    placements: [p]\n    content:\n"
	for i, s := range sources {
		src += fmt.Sprintf("      k%d: %q\n", i, "{{ "+s+" }}")
	}
	rs, err := Compile([]File{{Name: "now.yaml", Data: []byte(src)}})
	if err != nil {
		t.Fatal(err)
	}
	var exprs []*Expr
	rs.Expressions(func(x *Expr) { exprs = append(exprs, x) })
	patched := 0
	for _, x := range exprs {
		for _, ins := range x.Program().Constants {
			if ins == nowGetFn {
				patched++
				break
			}
		}
	}
	if patched < len(sources) {
		t.Errorf("%d of %d programs call %s", patched, 2*len(sources), nowGetFn)
	}
	for _, now := range []time.Time{
		time.Date(2026, 11, 23, 10, 4, 5, 0, time.UTC),
		time.Date(2026, 11, 29, 23, 59, 59, 0, time.UTC), // a Sunday
		time.Date(2027, 1, 1, 0, 0, 0, 1, time.FixedZone("", -5*3600)),
	} {
		env := NewEnv(&fakeFuncs{})
		env.SetRequest(nil, "web", now)
		var m vm.VM
		for _, x := range exprs {
			inner := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(x.Source, "("), ") != nil"))
			want, err := expr.Eval(inner, map[string]any{"now": now})
			if err != nil {
				t.Fatalf("%q: %v", inner, err)
			}
			got, err := m.Run(x.Program(), env.Map())
			if err != nil {
				t.Fatalf("%q at %v: %v", x.Source, now, err)
			}
			if strings.HasSuffix(x.Source, "!= nil") { // a segment
				want = want != nil
			}
			if got != want {
				t.Errorf("%q at %v: %v (%T), expr says %v (%T)", x.Source, now, got, got, want, want)
			}
			if fast, ok := x.Fast(env); ok && !sameValue(fast, want) {
				t.Errorf("%q at %v: fast path %v (%T), expr says %v (%T)", x.Source, now, fast, fast, want, want)
			}
		}
	}
	env := NewEnv(&fakeFuncs{})
	env.SetRequest(nil, "web", time.Date(2026, 11, 23, 10, 4, 5, 0, time.UTC))
	var m vm.VM
	var hour *Expr
	for _, x := range exprs {
		if strings.TrimSpace(x.Source) == "now.Hour()" {
			hour = x
		}
	}
	if hour == nil {
		t.Fatal("no template of now.Hour()")
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = m.Run(hour.Program(), env.Map()) }); n != 0 {
		t.Errorf("%q: %.0f allocations per run", hour.Source, n)
	}
}

// countingFuncs answers count() with how many times it was asked.
type countingFuncs struct {
	noFuncs
	asked int
}

func (f *countingFuncs) Count(string, time.Duration) int { f.asked++; return f.asked }

// The fast path asks each event function call once per customer and
// time, and again after either changes.
func TestEventCallsRemembered(t *testing.T) {
	rs, err := Compile([]File{{Name: "actions.yaml", Data: []byte(`actions:
  - id: a
    placements: [p]
    when: count("view", "7d") > 0 and count("view", "7d") < 100
    score: count("view", "7d") * 2 + count("cart", "7d")
`)}})
	if err != nil {
		t.Fatal(err)
	}
	a := rs.Actions[0]
	f := &countingFuncs{}
	env := NewEnv(f)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	env.SetRequest(nil, "web", now)
	env.SetCustomer("c1", nil)
	eval := func() float64 {
		t.Helper()
		if v, ok := a.When.FastBool(env); !ok || !v {
			t.Fatalf("when: %v, %v; want true from the fast path", v, ok)
		}
		v, ok := a.Score.FastNumber(env)
		if !ok {
			t.Fatal("the score was not answered by the fast path")
		}
		return v
	}
	// view is asked first (1), cart second (2): 1*2 + 2.
	if got := eval(); got != 4 || f.asked != 2 {
		t.Fatalf("score %v after %d calls; want 4 after 2", got, f.asked)
	}
	if got := eval(); got != 4 || f.asked != 2 {
		t.Fatalf("again: score %v after %d calls; want 4 after 2", got, f.asked)
	}
	env.SetRequest(nil, "web", now.Add(time.Hour))
	if got := eval(); got != 3*2+4 || f.asked != 4 {
		t.Fatalf("at a new time: score %v after %d calls; want 10 after 4", got, f.asked)
	}
	env.SetCustomer("c2", nil)
	if got := eval(); got != 5*2+6 || f.asked != 6 {
		t.Fatalf("for a new customer: score %v after %d calls; want 16 after 6", got, f.asked)
	}
}

// A fresh environment remembers nothing: memo slots that exist before
// the first customer is set must not look current.
func TestFreshEnvRemembersNothing(t *testing.T) {
	rs, err := Compile([]File{{Name: "actions.yaml", Data: []byte(`actions:
  - id: first
    placements: [p]
    score: count("fresh-env-1", "7d") + 0
  - id: second
    placements: [p]
    score: count("fresh-env-2", "7d") + 0
`)}})
	if err != nil {
		t.Fatal(err)
	}
	f := &countingFuncs{}
	env := NewEnv(f)
	// The second call's slot is numbered after the first's: asking it
	// first grows the memo over the first's slot.
	for _, a := range []int{1, 0} {
		v, ok := rs.Actions[a].Score.FastNumber(env)
		if !ok || v == 0 {
			t.Fatalf("%s: %v, %v after %d calls; want an answer from count()", rs.Actions[a].ID, v, ok, f.asked)
		}
	}
	if f.asked != 2 {
		t.Errorf("count() asked %d times; want 2", f.asked)
	}
}

// Programs that use customer as a whole object read it through
// customer·all(), the environment holding no attribute map, and get each
// customer's own attributes.
func TestWholeCustomer(t *testing.T) {
	conds := []string{
		`"tier" in customer`,
		`customer["tier"] == "gold"`,
		`customer[context.key] == "gold"`,
		`len(customer) == 2`,
		`"tier" in keys(customer)`,
		`$env.customer.tier == "gold"`,
		`$env["customer"].n == 2`,
		`get($env, "customer").tier == "gold"`,
	}
	var b strings.Builder
	b.WriteString("actions:\n")
	for i, c := range conds {
		fmt.Fprintf(&b, "  - id: a%d\n    placements: [p]\n    when: '%s'\n", i, c)
	}
	rs, err := Compile([]File{{Name: "actions.yaml", Data: []byte(b.String())}})
	if err != nil {
		t.Fatal(err)
	}
	env := NewEnv(&countingFuncs{})
	var m vm.VM
	for _, c := range []struct {
		attrs Attributes
		want  bool
	}{
		{MapAttributes{"tier": "gold", "n": 2.0}, true},
		{MapAttributes{"n": 1.0}, false},
		{nil, false},
		{MapAttributes{"n": 2.0, "tier": "gold"}, true},
	} {
		env.SetCustomer("c", c.attrs)
		env.SetRequest(map[string]any{"key": "tier"}, "web", time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
		for i, a := range rs.Actions {
			got, err := m.Run(a.When.Program(), env.Map())
			if err != nil || got != c.want {
				t.Errorf("%s for %v: %v (error %v); want %v", conds[i], c.attrs, got, err, c.want)
			}
		}
	}
}

// TestFastIntAndConditional: int() of a number and a ternary between
// numbers are answered without the VM, with the VM's values; int() of a
// string and a ternary on a non-bool are left to it.
func TestFastIntAndConditional(t *testing.T) {
	rs, err := Compile([]File{{Name: "actions.yaml", Data: []byte(`actions:
  - id: a
    placements: [p]
    when: int(customer.ltv) > 3
    score: '(customer.risk > 1 ? 0.5 : 2) + (count("view", "7d") >= 2 ? 1 : -1.5)'
    content: {n: "{{ int(customer.ltv / 3) }} of {{ int(customer.a1) }}"}
`)}})
	if err != nil {
		t.Fatal(err)
	}
	var exprs []*Expr
	rs.Expressions(func(x *Expr) { exprs = append(exprs, x) })
	if len(exprs) != 4 {
		t.Fatalf("%d expressions; want when, score and two template parts", len(exprs))
	}
	env := NewEnv(&fakeFuncs{seed: 3, segs: []bool{true}})
	env.SetRequest(nil, "web", time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	for _, tc := range []struct {
		attrs map[string]any
		fast  bool // every expression answered without the VM
	}{
		{map[string]any{"ltv": 1250.7, "risk": 0.4, "a1": -7.9}, true},
		{map[string]any{"ltv": 2.0, "risk": 3.0, "a1": 41.0}, true},
		{map[string]any{"ltv": "12", "risk": "high", "a1": "x"}, false},
	} {
		env.SetCustomer("c", MapAttributes(tc.attrs))
		for _, x := range exprs {
			got, ok := x.Fast(env)
			if ok != tc.fast {
				t.Errorf("%s %q with %v: fast path answered %v; want %v", x.Rule, x.Source, tc.attrs, ok, tc.fast)
				continue
			}
			if !ok {
				continue
			}
			var m vm.VM
			want, err := m.Run(x.Program(), env.Map())
			if err != nil || !sameValue(got, want) {
				t.Errorf("%s %q with %v: fast %v (%T), the VM %v (%T, error %v)", x.Rule, x.Source, tc.attrs, got, got, want, want, err)
			}
			if n, ok := x.FastNumber(env); x.Rule == "action:a:score" && (!ok || !sameValue(n, want)) {
				t.Errorf("score as a number: %v, %v; the VM %v", n, ok, want)
			}
		}
	}
}

// scanAttrs holds attributes behind AttrScanner, in key order, as the
// Pebble store's customers do, and counts the environment's scans and
// searches. With scan false, ScanAttrs declines, as a map's does.
type scanAttrs struct {
	keys            []string
	vals            []any
	scan            bool
	scans, searches int
	values, numbers int // AttrAt and NumberAt calls
}

func newScanAttrs(m map[string]any, scan bool) *scanAttrs {
	a := &scanAttrs{keys: slices.Sorted(maps.Keys(m)), scan: scan}
	for _, k := range a.keys {
		a.vals = append(a.vals, m[k])
	}
	return a
}

func (a *scanAttrs) Attr(key string) any {
	a.searches++
	if i := slices.Index(a.keys, key); i >= 0 {
		return a.vals[i]
	}
	return nil
}

func (a *scanAttrs) AttributeMap() map[string]any {
	m := map[string]any{}
	for i, k := range a.keys {
		m[k] = a.vals[i]
	}
	return m
}

func (a *scanAttrs) ScanAttrs(fn func(key string, at int)) bool {
	if !a.scan {
		return false
	}
	a.scans++
	for i, k := range a.keys {
		fn(k, i)
	}
	return true
}

func (a *scanAttrs) AttrAt(at int) any {
	a.values++
	return a.vals[at]
}

func (a *scanAttrs) NumberAt(at int) (float64, bool) {
	a.numbers++
	f, ok := a.vals[at].(float64)
	return f, ok
}

// TestEnvScansAttributes: attributes behind an AttrScanner are read in one
// scan per customer, with no search; an attribute the scan did not see is
// absent even when the previous customer had it; a scanner that declines
// is searched.
func TestEnvScansAttributes(t *testing.T) {
	rs, err := Compile([]File{{Name: "actions.yaml", Data: []byte(`actions:
  - id: a1
    placements: [p]
    when: customer.scan_n > 1 and customer.scan_tier == "gold"
  - id: a2
    placements: [p]
    score: (customer.scan_gone ?? 5) + customer.scan_n
`)}})
	if err != nil {
		t.Fatal(err)
	}
	env := NewEnv(&countingFuncs{})
	eval := func(a Attributes) (bool, float64) {
		t.Helper()
		env.SetCustomer("c", a)
		when, ok := rs.Actions[0].When.FastBool(env)
		if !ok {
			t.Fatal("a1's condition left to the VM")
		}
		score, ok := rs.Actions[1].Score.FastNumber(env)
		if !ok {
			t.Fatal("a2's score left to the VM")
		}
		return when, score
	}
	first := newScanAttrs(map[string]any{"scan_n": 2.0, "scan_tier": "gold", "scan_gone": 1.0, "scan_later": true}, true)
	if when, score := eval(first); !when || score != 3 {
		t.Errorf("first customer: when %v, score %v; want true, 3", when, score)
	}
	if first.scans != 1 || first.searches != 0 {
		t.Errorf("first customer: %d scans, %d searches; want 1 scan, no search", first.scans, first.searches)
	}
	// The numbers, scan_n (read twice) and scan_gone, are decoded as
	// numbers, unboxed, once each; scan_tier as a value.
	if first.numbers != 2 || first.values != 1 {
		t.Errorf("first customer: %d numbers, %d values decoded; want 2, 1", first.numbers, first.values)
	}
	// scan_gone is absent: the default applies, not the first customer's 1.
	second := newScanAttrs(map[string]any{"scan_n": 4.0, "scan_tier": "silver"}, true)
	if when, score := eval(second); when || score != 9 {
		t.Errorf("second customer: when %v, score %v; want false, 9", when, score)
	}
	if second.scans != 1 || second.searches != 0 {
		t.Errorf("second customer: %d scans, %d searches; want 1 scan, no search", second.scans, second.searches)
	}
	// The first customer's keys in the same order: their slots are
	// remembered from its scan, their values are this customer's.
	third := newScanAttrs(map[string]any{"scan_n": 3.0, "scan_tier": "gold", "scan_gone": 2.0, "scan_later": false}, true)
	if when, score := eval(third); !when || score != 5 {
		t.Errorf("third customer: when %v, score %v; want true, 5", when, score)
	}
	// A rule compiled later reads an attribute the scans met without a
	// slot: the environment forgets the slots it remembered.
	later, err := Compile([]File{{Name: "actions.yaml", Data: []byte(`actions:
  - id: a3
    placements: [p]
    when: customer.scan_later == true
`)}})
	if err != nil {
		t.Fatal(err)
	}
	env.SetCustomer("c", newScanAttrs(map[string]any{"scan_n": 3.0, "scan_tier": "gold", "scan_gone": 2.0, "scan_later": true}, true))
	if v, ok := later.Actions[0].When.FastBool(env); !ok || !v {
		t.Errorf("customer.scan_later == true: %v, %v; want true from the fast path", v, ok)
	}
	declines := newScanAttrs(map[string]any{"scan_n": 2.0, "scan_tier": "gold"}, false)
	if when, score := eval(declines); !when || score != 7 {
		t.Errorf("declining customer: when %v, score %v; want true, 7", when, score)
	}
	if declines.searches != 3 {
		t.Errorf("declining customer: %d searches; want 3, one per attribute", declines.searches)
	}
}
