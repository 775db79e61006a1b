package rules_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/rules"
)

// files builds rule files from name, contents pairs.
func files(nameData ...string) []rules.File {
	var fs []rules.File
	for i := 0; i+1 < len(nameData); i += 2 {
		fs = append(fs, rules.File{Name: nameData[i], Data: []byte(nameData[i+1])})
	}
	return fs
}

// compileErrors compiles files that must fail and returns the problems.
func compileErrors(t *testing.T, fs []rules.File) rules.ErrorList {
	t.Helper()
	rs, err := rules.Compile(fs)
	if err == nil {
		t.Fatalf("Compile succeeded (version %s, warnings %q); want an error", rs.Version, rs.Warnings)
	}
	var list rules.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("got error %T (%v); want a rules.ErrorList", err, err)
	}
	if !list.HasErrors() {
		t.Fatalf("got only warnings; want an error:\n%s", list.Format())
	}
	return list
}

// mustCompile compiles files that must load.
func mustCompile(t *testing.T, fs []rules.File) *rules.Ruleset {
	t.Helper()
	rs, err := rules.Compile(fs)
	if err != nil {
		var list rules.ErrorList
		if errors.As(err, &list) {
			t.Fatalf("Compile failed:\n%s", list.Format())
		}
		t.Fatalf("Compile failed: %v", err)
	}
	return rs
}

// findProblem returns the only entry whose message contains msg.
func findProblem(t *testing.T, list rules.ErrorList, msg string) *rules.Error {
	t.Helper()
	var found []*rules.Error
	for _, e := range list {
		if strings.Contains(e.Msg, msg) {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		t.Fatalf("got %d problems containing %q; want 1 in:\n%s", len(found), msg, list.Format())
	}
	return found[0]
}

func TestParseWindow(t *testing.T) {
	f := func(s string, want time.Duration) {
		t.Helper()
		got, err := rules.ParseWindow(s)
		if err != nil {
			t.Errorf("ParseWindow(%q): got error %v; want %v", s, err, want)
			return
		}
		if got != want {
			t.Errorf("ParseWindow(%q): got %v; want %v", s, got, want)
		}
	}
	const day = 24 * time.Hour
	f("30m", 30*time.Minute)
	f("24h", 24*time.Hour)
	f("7d", 7*day)
	f("2w", 14*day)
	f("90d", 90*day)
	f("12w", 84*day)
	f("2160h", 90*day)
	f("1s", time.Second)
	f("007d", 7*day)
	f("all", rules.WindowAll)

	bad := func(s string) {
		t.Helper()
		got, err := rules.ParseWindow(s)
		if err == nil {
			t.Errorf("ParseWindow(%q): got %v; want an error", s, got)
		}
	}
	bad("0d")
	bad("91d")
	bad("13w")
	bad("2161h")
	bad("7x")
	bad("")
	bad("d")
	bad("-1d")
	bad("7D")
	bad(" 7d")
	bad("7d ")
	bad("1.5d")
	bad("ALL")
	bad("99999999999d")
	bad("9999999999999999999d")
}

func TestVersion(t *testing.T) {
	a := files("actions.yaml", "actions:\n  - id: a\n    placements: [p]\n", "segments.yaml", "segments:\n  s: true\n")
	v := rules.Version(a)
	if !regexp.MustCompile(`^[0-9a-f]{8}$`).MatchString(v) {
		t.Fatalf("got version %q; want 8 hex digits", v)
	}
	f := func(what string, fs []rules.File, same bool) {
		t.Helper()
		got := rules.Version(fs)
		if (got == v) != same {
			t.Errorf("%s: got version %s, base %s; want same=%v", what, got, v, same)
		}
	}
	f("same files", files("actions.yaml", "actions:\n  - id: a\n    placements: [p]\n", "segments.yaml", "segments:\n  s: true\n"), true)
	f("other order", []rules.File{a[1], a[0]}, true)
	f("one byte changed", files("actions.yaml", "actions:\n  - id: b\n    placements: [p]\n", "segments.yaml", "segments:\n  s: true\n"), false)
	f("byte appended", files("actions.yaml", "actions:\n  - id: a\n    placements: [p]\n\n", "segments.yaml", "segments:\n  s: true\n"), false)
	f("path changed", files("actions/a.yaml", "actions:\n  - id: a\n    placements: [p]\n", "segments.yaml", "segments:\n  s: true\n"), false)
	f("file dropped", a[:1], false)
	// Name and contents must not run together.
	if x, y := rules.Version(files("a.yaml", "xb")), rules.Version(files("a.yamlx", "b")); x == y {
		t.Errorf("got the same version %s for a.yaml=xb and a.yamlx=b; want different", x)
	}

	// The ruleset carries the version, and Compile's is Version's.
	rs := mustCompile(t, a)
	if rs.Version != v {
		t.Errorf("got Compile version %s; want Version's %s", rs.Version, v)
	}

	// The same files in two directories, written in a different order,
	// load with the same version; a changed byte changes it.
	write := func(dir string, fs []rules.File) {
		t.Helper()
		for _, file := range fs {
			p := filepath.Join(dir, filepath.FromSlash(file.Name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, file.Data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	nested := files("x/actions.yaml", "actions:\n  - id: a\n    placements: [p]\n", "segments.yaml", "segments:\n  s: true\n")
	d1 := filepath.Join(t.TempDir(), "one")
	d2 := filepath.Join(t.TempDir(), "deeper", "two")
	write(d1, nested)
	write(d2, []rules.File{nested[1], nested[0]})
	load := func(dir string) string {
		t.Helper()
		rs, err := rules.LoadDir(dir)
		if err != nil {
			t.Fatalf("LoadDir(%s): %v", dir, err)
		}
		return rs.Version
	}
	v1, v2 := load(d1), load(d2)
	if v1 != v2 {
		t.Errorf("got versions %s and %s for the same files in two directories; want equal", v1, v2)
	}
	if want := rules.Version(nested); v1 != want {
		t.Errorf("got LoadDir version %s; want Version of the relative files %s", v1, want)
	}
	write(d2, files("segments.yaml", "segments:\n  s: false\n"))
	if v3 := load(d2); v3 == v1 {
		t.Errorf("got version %s after changing a file; want a new one", v3)
	}
}

func TestWarnings(t *testing.T) {
	rs := mustCompile(t, files("rules.yaml", `actions:
  - id: orphan
    when: shown("nothing-here", "7d") == 0
  - id: fallback-only
  - id: listed
    placements: [home]
placements:
  home: {fallback: fallback-only}
`))
	f := func(i int, want string) {
		t.Helper()
		if i >= len(rs.Warnings) {
			t.Errorf("warning %d missing; want %q", i, want)
			return
		}
		if got := rs.Warnings[i].Error(); got != want {
			t.Errorf("got warning %q; want %q", got, want)
		}
		if !rs.Warnings[i].Warning {
			t.Errorf("got %q with Warning false; want true", rs.Warnings[i])
		}
	}
	f(0, `rules.yaml:2:9: warning: action "orphan" lists no placements and is no placement's fallback: it is never decided`)
	f(1, `rules.yaml:3:17: warning: shown() names no action "nothing-here"`)
	if len(rs.Warnings) != 2 {
		t.Errorf("got %d warnings; want 2:\n%s", len(rs.Warnings), rs.Warnings.Format())
	}
	if rs.Warnings.HasErrors() {
		t.Errorf("got HasErrors true for warnings only")
	}
	if got := rs.Warnings.Format(); !strings.Contains(got, "      - id: orphan\n            ^\n") {
		t.Errorf("got Format\n%s; want a snippet with the caret under the id", got)
	}

	// With an error too, the warnings come back in the ErrorList.
	list := compileErrors(t, files("rules.yaml", "actions:\n  - id: orphan\n  - id: bad\n    placements: [p]\n    priority: high\n"))
	w := findProblem(t, list, "is never decided")
	if !w.Warning {
		t.Errorf("got %q as an error; want a warning", w)
	}
	e := findProblem(t, list, "priority must be a whole number")
	if e.Warning || e.Line != 5 || e.Col != 15 {
		t.Errorf("got %q (warning %v); want an error at 5:15", e, e.Warning)
	}
}

func TestUnknownKeys(t *testing.T) {
	f := func(src, want string) {
		t.Helper()
		list := compileErrors(t, files("rules.yaml", src))
		if len(list) != 1 {
			t.Errorf("got %d problems; want 1:\n%s", len(list), list.Format())
			return
		}
		if got := list[0].Error(); got != want {
			t.Errorf("got %q; want %q", got, want)
		}
	}
	f("segmnets:\n  s: true\n", `rules.yaml:1:1: unknown key "segmnets" in a rule file (did you mean "segments"?)`)
	f("actions:\n  - id: a\n    placement: [home]\n    placements: [home]\n",
		`rules.yaml:3:5: unknown key "placement" in an action (did you mean "placements"?)`)
	f("actions:\n  - id: a\n    placements: [home]\n    colour: red\n",
		`rules.yaml:4:5: unknown key "colour" in an action (expected id, kind, placements, channels, when, priority, score, tags, content, schedule, caps, stop_after, budget, adaptive, experiment)`)
	f("placements:\n  home: {limt: 2}\n", `rules.yaml:2:10: unknown key "limt" in placement home (did you mean "limit"?)`)
	f("actions:\n  - id: a\n    placements: [home]\n    caps: [{max: 1, window: 7d, outcom: click}]\n",
		`rules.yaml:4:33: unknown key "outcom" in a cap (did you mean "outcome"?)`)
	f("tests:\n  - name: x\n", `rules.yaml:1:1: unknown key "tests" in a rule file (expected attributes, segments, actions, policies, channels, placements)`)
}

func TestSchemaDefaults(t *testing.T) {
	f := func(attr, want string) {
		t.Helper()
		list := compileErrors(t, files("attributes.yaml", "attributes:\n  "+attr+"\n"))
		if len(list) != 1 {
			t.Errorf("%s: got %d problems; want 1:\n%s", attr, len(list), list.Format())
			return
		}
		if got := list[0].Error(); got != want {
			t.Errorf("got %q; want %q", got, want)
		}
	}
	f(`ltv: {type: number, default: "zero"}`, `attributes.yaml:2:32: default of attribute "ltv" must be a number, not a string "zero"`)
	f(`tier: {type: string, default: 3}`, `attributes.yaml:2:33: default of attribute "tier" must be a string, not a number 3`)
	f(`vip: {type: bool, default: yes}`, `attributes.yaml:2:30: default of attribute "vip" must be a bool, not a string "yes"`)
	f(`consent: {type: object, default: [email]}`, `attributes.yaml:2:36: default of attribute "consent" must be a object, not a list`)
	f(`ltv: {type: integer}`, `attributes.yaml:2:15: unknown attribute type string "integer" (one of string, number, bool, object, list)`)

	// Matching defaults load and are kept as JSON would decode them.
	rs := mustCompile(t, files("attributes.yaml", "attributes:\n  ltv: {type: number, default: 3}\n  tier: {type: string, default: bronze}\n  tags: {type: list, default: []}\n  consent: {type: object}\n"))
	want := []rules.Attribute{
		{Name: "ltv", Type: rules.AttrNumber, Default: 3.0, HasDefault: true},
		{Name: "tier", Type: rules.AttrString, Default: "bronze", HasDefault: true},
		{Name: "tags", Type: rules.AttrList, Default: []any{}, HasDefault: true},
		{Name: "consent", Type: rules.AttrObject},
	}
	if len(rs.Attributes) != len(want) {
		t.Fatalf("got %d attributes; want %d", len(rs.Attributes), len(want))
	}
	for i, a := range rs.Attributes {
		if !reflect.DeepEqual(*a, want[i]) {
			t.Errorf("got attribute %+v; want %+v", *a, want[i])
		}
	}
}

func TestTestFileKeys(t *testing.T) {
	list := compileErrors(t, files("home_test.yaml", "actions:\n  - id: a\n    placements: [home]\n"))
	if len(list) != 1 {
		t.Fatalf("got %d problems; want 1:\n%s", len(list), list.Format())
	}
	if got, want := list[0].Error(), `home_test.yaml:1:1: unknown key "actions" in a test file (expected tests)`; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	// The same contents in a rule file load.
	mustCompile(t, files("home.yaml", "actions:\n  - id: a\n    placements: [home]\n"))
}

func TestRuleTests(t *testing.T) {
	rs := mustCompile(t, files(
		"rules.yaml", `actions:
  - id: winback-20
    placements: [home_hero, email_weekly]
  - id: welcome
    placements: [home_hero]
`,
		"tests/home_test.yaml", `tests:
  - name: lapsed customer sees the winback offer
    now: 2026-11-23T10:00:00Z
    customer:
      id: t1
      attributes: {tier: silver, churn_risk: 0.8, first_name: Ana}
      events:
        - {type: purchase, time: 2026-08-01T00:00:00Z, value: 50}
        - {type: page.view, time: 2026-11-20, properties: {path: /sale}}
      contacts:
        - {action: winback-20, outcome: served, time: 2026-11-22T08:00:00Z, channel: web}
        - {action: welcome, outcome: dismiss, time: 2026-11-22T09:30:00+01:00}
    request: {placements: [home_hero, email_weekly], channel: web, context: {device: mobile}}
    expect:
      home_hero: [winback-20]
      email_weekly: []
  - name: defaults
    request: {placement: home_hero}
    expect:
      home_hero: [welcome, winback-20]
`))
	if len(rs.Tests) != 2 {
		t.Fatalf("got %d tests; want 2", len(rs.Tests))
	}
	tt := rs.Tests[0]
	f := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v; want %#v", what, got, want)
		}
	}
	f("name", tt.Name, "lapsed customer sees the winback offer")
	f("file", tt.File, "tests/home_test.yaml")
	f("line", tt.Line, 2)
	f("string", tt.String(), "tests/home_test.yaml:2: lapsed customer sees the winback offer")
	f("now", tt.Now, time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	f("customer id", tt.Customer.ID, "t1")
	f("attributes", tt.Customer.Attributes, map[string]any{"tier": "silver", "churn_risk": 0.8, "first_name": "Ana"})
	f("events", tt.Customer.Events, []rules.TestEvent{
		{Type: "purchase", Time: time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC), Value: 50},
		{Type: "page.view", Time: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC), Properties: map[string]any{"path": "/sale"}},
	})
	if len(tt.Customer.Contacts) != 2 {
		t.Fatalf("got %d contacts; want 2", len(tt.Customer.Contacts))
	}
	c0, c1 := tt.Customer.Contacts[0], tt.Customer.Contacts[1]
	f("contact 0", c0, rules.TestContact{Action: "winback-20", Outcome: rules.OutcomeServed, Time: time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC), Channel: "web"})
	f("contact 1 action", c1.Action, "welcome")
	f("contact 1 outcome", c1.Outcome, rules.OutcomeDismiss)
	if want := time.Date(2026, 11, 22, 8, 30, 0, 0, time.UTC); !c1.Time.Equal(want) {
		t.Errorf("contact 1 time: got %v; want %v", c1.Time, want)
	}
	f("request", tt.Request, rules.TestRequest{
		Placements: []string{"home_hero", "email_weekly"},
		Channel:    "web",
		Context:    map[string]any{"device": "mobile"},
	})
	if len(tt.Expect) != 2 {
		t.Fatalf("got %d expectations; want 2", len(tt.Expect))
	}
	f("expect 0", tt.Expect[0], rules.Expectation{Placement: "home_hero", Actions: []string{"winback-20"}})
	f("expect 1 placement", tt.Expect[1].Placement, "email_weekly")
	f("expect 1 actions", len(tt.Expect[1].Actions), 0)

	d := rs.Tests[1]
	f("default now", d.Now, time.Time{})
	f("default customer", d.Customer.ID, "test-customer")
	f("placement shorthand", d.Request.Placements, []string{"home_hero"})
	f("ordered expectation", d.Expect, []rules.Expectation{{Placement: "home_hero", Actions: []string{"welcome", "winback-20"}}})

	// Mistakes in a test are located.
	bad := func(test, want string) {
		t.Helper()
		list := compileErrors(t, files("rules.yaml", "actions:\n  - id: welcome\n    placements: [home_hero]\n", "x_test.yaml", "tests:\n  - name: t\n"+test))
		e := findProblem(t, list, want)
		if e.File != "x_test.yaml" {
			t.Errorf("got %q in %s; want x_test.yaml", e, e.File)
		}
	}
	bad("    request: {placements: [home_hero]}\n    expect: {home_hero: [welcom]}\n", `unknown action "welcom" (did you mean "welcome"?)`)
	bad("    request: {placements: [home_hero]}\n    expect: {cart: []}\n", `expect names placement "cart" that the request does not ask for`)
	bad("    now: yesterday\n    request: {placements: [home_hero]}\n    expect: {home_hero: []}\n", `now must be an RFC 3339 time, not string "yesterday"`)
	bad("    customer: {contacts: [{action: welcome, outcome: ignored, time: 2026-01-01}]}\n    request: {placements: [home_hero]}\n    expect: {home_hero: []}\n", `unknown outcome string "ignored"`)
	bad("    expect: {home_hero: []}\n", `test "t" needs a request`)
}

func TestExperimentWeights(t *testing.T) {
	f := func(variants, want string) {
		t.Helper()
		src := "actions:\n  - id: a\n    placements: [home]\n    experiment:\n      variants:\n" + variants
		list := compileErrors(t, files("rules.yaml", src))
		e := findProblem(t, list, want)
		if e.File != "rules.yaml" || e.Line < 5 {
			t.Errorf("got %q; want it inside the variants, from line 5", e)
		}
	}
	f("        a: {weight: 0}\n        b: {weight: 0, holdout: true}\n", "the variants' weights add up to 0")
	f("        a: {weight: 0}\n", "the variants' weights add up to 0")
	f("        a: {weight: -5}\n        b: {weight: 5}\n", "weight must be a number of at least 0, not number -5")
	f("        a: {weight: .nan}\n        b: {weight: 5}\n", "weight must be a number of at least 0")
	f("        a: {holdout: true}\n        b: {weight: 5}\n", `variant "a" needs a weight`)

	rs := mustCompile(t, files("rules.yaml", "actions:\n  - id: a\n    placements: [home]\n    experiment:\n      id: copy-test\n      variants:\n        a: {weight: 45}\n        b: {weight: 45, content: {title: B}}\n        control: {weight: 10, holdout: true}\n"))
	x := rs.Actions[0].Experiment
	if x == nil {
		t.Fatal("got no experiment")
	}
	if x.ID != "copy-test" || x.Total != 100 || len(x.Variants) != 3 {
		t.Errorf("got experiment %s total %v with %d variants; want copy-test total 100 with 3", x.ID, x.Total, len(x.Variants))
	}
	if v := x.Variants[2]; v.Name != "control" || !v.Holdout || v.Weight != 10 {
		t.Errorf("got variant %+v; want control, weight 10, holdout", *v)
	}
}

func TestPolicySuppressAndCap(t *testing.T) {
	list := compileErrors(t, files("policies.yaml", `policies:
  - id: both
    suppress: {kinds: [offer]}
    cap: {max: 2, window: 7d}
`))
	if len(list) != 1 {
		t.Fatalf("got %d problems; want 1:\n%s", len(list), list.Format())
	}
	// At the cap (its key or its value).
	if e := list[0]; e.Line != 4 || e.Col < 5 || e.Msg != "a policy has either suppress or cap, not both" {
		t.Errorf("got %q; want policies.yaml:4: a policy has either suppress or cap, not both", e)
	}
	list = compileErrors(t, files("policies.yaml", "policies:\n  - id: neither\n    when: true\n"))
	if got, want := list[0].Error(), `policies.yaml:2:9: policy "neither" needs suppress or cap`; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	rs := mustCompile(t, files("policies.yaml", "policies:\n  - id: s\n    suppress: {kinds: [offer]}\n  - id: c\n    cap: {max: 2, window: 7d, channels: [email]}\n"))
	if len(rs.Policies) != 2 || rs.Policies[0].Suppress == nil || rs.Policies[0].Cap != nil || rs.Policies[1].Cap == nil || rs.Policies[1].Suppress != nil {
		t.Errorf("got policies %+v; want one suppress, then one cap", rs.Policies)
	}
}

func TestPropensityScope(t *testing.T) {
	f := func(action string, wantErr bool) {
		t.Helper()
		src := "actions:\n  - id: a\n    placements: [home]\n" + action
		rs, err := rules.Compile(files("rules.yaml", src))
		if !wantErr {
			if err != nil {
				t.Errorf("%q: got error %v; want none", action, err)
			}
			return
		}
		if err == nil {
			t.Errorf("%q: got version %s; want an error", action, rs.Version)
			return
		}
		var list rules.ErrorList
		if !errors.As(err, &list) {
			t.Fatalf("got %T; want a rules.ErrorList", err)
		}
		e := findProblem(t, list, "propensity() can only be used in the score of an action with adaptive: true")
		// The position is the call, inside the expression.
		line := strings.Split(src, "\n")[e.Line-1]
		if r := []rune(line); e.Col < 1 || e.Col > len(r) || !strings.HasPrefix(string(r[e.Col-1:]), "propensity()") {
			t.Errorf("got %s pointing into %q; want the propensity() call", e, line)
		}
	}
	f("    adaptive: true\n    score: propensity()\n", false)
	f("    score: 0.5 * propensity()\n    adaptive: true\n", false)
	f("    score: 0.5 * propensity()\n", true)
	f("    adaptive: false\n    score: propensity()\n", true)
	f("    adaptive: true\n    when: propensity() > 0.5\n", true)
	f("    adaptive: true\n    score: 1\n    content: {p: \"{{ propensity() }}\"}\n", true)

	list := compileErrors(t, files("rules.yaml", "segments:\n  likely: propensity() > 0.5\n"))
	if e := findProblem(t, list, "propensity()"); e.Line != 2 || e.Col != 11 {
		t.Errorf("got %s; want 2:11", e)
	}
	list = compileErrors(t, files("rules.yaml", "channels:\n  - id: email\n    score: propensity()\n"))
	if e := findProblem(t, list, "propensity()"); e.Line != 3 || e.Col != 12 {
		t.Errorf("got %s; want 3:12", e)
	}
}

// TestExprPositions checks the columns of expression errors in the YAML
// scalar styles: every case marks the wanted position with the token that
// must start there.
func TestExprPositions(t *testing.T) {
	f := func(src string, line int, tok string) {
		t.Helper()
		wantExprError(t, src, line, tok)
	}
	f("segments:\n  s: true and and x\n", 2, "and x")
	f("segments:\n  s: \"true and and x\"\n", 2, "and x")
	f("segments:\n  s: 'customer.x == ''it'' and and x'\n", 2, "and x")
	f("segments:\n  s: "+`"customer.x == \"\u00e9\t\" and and x"`+"\n", 2, "and x")
	f("segments:\n  s: \"é == 'x' and and x\"\n", 2, "and x")
	f("segments:\n  s: é == 'x' and and x\n", 2, "and x")
	f("segments:\n  s: true and\n    and x\n", 3, "and x")
	f("segments:\n  s: \"true and\n    and x\"\n", 3, "and x")
	f("segments:\n  s: |\n    true\n    and and x\n", 4, "and x")
	f("segments:\n  s: |-\n      true\n        and and x\n", 4, "and x")
	f("segments:\n  s: >\n    true and\n    and x\n", 4, "and x")
	f("segments:\n  s:\n    true and and x\n", 3, "and x")
	f("segments:\n  s: &anchor true and and x\n", 2, "and x")
	f("segments:\n  s: true and and x # comment\n", 2, "and x")
	f("actions:\n  - {id: a, placements: [p], when: \"true and and x\"}\n", 2, "and x")
	f("actions:\n  - id: a\n    placements: [p]\n    content: {title: \"Hi {{ 1 + * 2 }} and {{ bad( }}\"}\n", 4, "* 2")
	f("actions:\n  - id: a\n    placements: [p]\n    content:\n      body: |\n        line one\n        Hi {{ nope(1 ,, 2) }}\n", 7, ", 2)")
	f("actions:\n  - id: a\n    placements: [p]\n    content:\n      body: \"Hi {{ customer.x\"\n", 5, "{{ customer")
	f("segments:\n  s: count(\"purchase\", \"8x\") > 1\n", 2, `"8x"`)
	f("segments:\n  s: segment(\"nope\")\n", 2, `"nope"`)
	f("segments:\n  s: outcomes(\"a\", \"liked\", \"7d\") > 1\n", 2, `"liked"`)
}

// TestExprPositionsFolding covers the scalars where YAML folds a line
// break and blank lines into one character, and a tagged scalar.
func TestExprPositionsFolding(t *testing.T) {
	f := func(src string, line int, tok string) {
		t.Helper()
		wantExprError(t, src, line, tok)
	}
	f("segments:\n  s: >\n    true and\n\n    and x\n", 5, "and x") // got 4:1
	f("segments:\n  s: true and\n\n    and x\n", 4, "and x")        // got 3:1
	f("segments:\n  s: \"true and\n\n    and x\"\n", 4, "and x")    // got 3:1
	f("segments:\n  s: !!str true and and x\n", 2, "and x")         // got 2:11
}

// wantExprError compiles src as one rule file and checks that its first
// error is on line and its column at the start of tok.
func wantExprError(t *testing.T, src string, line int, tok string) {
	t.Helper()
	list := compileErrors(t, files("r.yaml", src))
	var e *rules.Error
	for _, x := range list {
		if !x.Warning {
			e = x
			break
		}
	}
	lines := strings.Split(src, "\n")
	if e.Line != line {
		t.Errorf("%q: got %s; want line %d", src, e, line)
		return
	}
	at := ""
	if r := []rune(lines[line-1]); e.Col >= 1 && e.Col <= len(r) {
		at = string(r[e.Col-1:])
	}
	if !strings.HasPrefix(at, tok) {
		t.Errorf("%q: got %s pointing at %q; want %q", src, e, at, tok)
	}
}

// Every reported position is inside the file: on an existing line, at
// most one column past its end.
func TestPositionsStayInFile(t *testing.T) {
	f := func(src string, line, col int) {
		t.Helper()
		list := compileErrors(t, files("r.yaml", src))
		e := list[0]
		if e.Line != line || e.Col != col {
			t.Errorf("%q: got %s; want %d:%d", src, e, line, col)
		}
	}
	f("a: 1\n---\nb: 2\n", 3, 1)
	f("segments:\n 00: >", 2, 6)
	f("segments:\n 0:", 2, 4)
}
