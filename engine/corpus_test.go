package engine_test

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/store"
	"github.com/nudge-engine/nudge/store/memstore"
)

// The decision corpus (testdata/corpus/*.yaml) holds rule files and cases:
// a customer, a request, and the wanted decision and explanation. Each
// case is decided twice, without and with explain, and both must agree.

type corpusFile struct {
	Files map[string]string `yaml:"files"`
	Cases []corpusCase      `yaml:"cases"`
}

type corpusCase struct {
	Name     string `yaml:"name"`
	Now      string `yaml:"now"`
	Seed     uint64 `yaml:"seed"`
	Customer struct {
		ID         string         `yaml:"id"`
		Attributes map[string]any `yaml:"attributes"`
		Events     []struct {
			Type  string  `yaml:"type"`
			Time  string  `yaml:"time"`
			Value float64 `yaml:"value"`
		} `yaml:"events"`
		Contacts []struct {
			Action  string `yaml:"action"`
			Outcome string `yaml:"outcome"`
			Time    string `yaml:"time"`
			Channel string `yaml:"channel"`
		} `yaml:"contacts"`
	} `yaml:"customer"`
	// Served counts serves of an action by all customers an hour before
	// now (budgets); Stats sets lifetime served/convert (propensity).
	Served map[string]int64 `yaml:"served"`
	Stats  map[string]struct {
		Served  int64 `yaml:"served"`
		Convert int64 `yaml:"convert"`
	} `yaml:"stats"`
	Request struct {
		Placements []string       `yaml:"placements"`
		Channel    string         `yaml:"channel"`
		Context    map[string]any `yaml:"context"`
	} `yaml:"request"`
	Want       map[string][]string   `yaml:"want"`
	Items      map[string][]wantItem `yaml:"items"`
	Explain    []wantExplain         `yaml:"explain"`
	Holdouts   []string              `yaml:"holdouts"`
	RuleErrors map[string]uint64     `yaml:"rule_errors"`
	// Deadline is "expired" (a Request.Deadline already past when Decide
	// starts) or a duration from the start ("1h"); empty: none.
	Deadline string `yaml:"deadline"`
	Degraded bool   `yaml:"degraded"`
}

type wantItem struct {
	Action     string         `yaml:"action"`
	Channel    *string        `yaml:"channel"`
	Score      *float64       `yaml:"score"`
	Content    map[string]any `yaml:"content"`
	Experiment *string        `yaml:"experiment"`
	Variant    *string        `yaml:"variant"`
	Fallback   bool           `yaml:"fallback"`
}

type wantExplain struct {
	Placement string   `yaml:"placement"`
	Action    string   `yaml:"action"`
	Eligible  bool     `yaml:"eligible"`
	Selected  bool     `yaml:"selected"`
	Reason    *string  `yaml:"reason"`
	Rank      *int     `yaml:"rank"`
	Score     *float64 `yaml:"score"`
}

func loadCorpus(t *testing.T) map[string]corpusFile {
	t.Helper()
	paths, err := filepath.Glob("../testdata/corpus/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no corpus files in ../testdata/corpus (err %v)", err)
	}
	out := map[string]corpusFile{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var cf corpusFile
		if err := yaml.UnmarshalWithOptions(data, &cf, yaml.Strict()); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(cf.Cases) == 0 || len(cf.Files) == 0 {
			t.Fatalf("%s: a corpus file needs files and cases", p)
		}
		out[filepath.Base(p)] = cf
	}
	return out
}

func compileFiles(t *testing.T, files map[string]string) *rules.Ruleset {
	t.Helper()
	var fs []rules.File
	for name, src := range files {
		fs = append(fs, rules.File{Name: name, Data: []byte(src)})
	}
	rs, err := rules.Compile(fs)
	if err != nil {
		if l, ok := err.(rules.ErrorList); ok {
			t.Fatalf("rules do not compile:\n%s", l.Format())
		}
		t.Fatal(err)
	}
	return rs
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("bad time %q: %v", s, err)
	}
	return tm
}

// jsonish turns YAML numbers into float64, as JSON decoding would.
func jsonish(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = jsonish(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = jsonish(e)
		}
		return l
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	}
	return v
}

func TestCorpus(t *testing.T) {
	for file, cf := range loadCorpus(t) {
		t.Run(strings.TrimSuffix(file, ".yaml"), func(t *testing.T) {
			rs := compileFiles(t, cf.Files)
			names := map[string]bool{}
			for _, c := range cf.Cases {
				if names[c.Name] || c.Name == "" {
					t.Fatalf("case name %q is empty or repeated", c.Name)
				}
				names[c.Name] = true
				t.Run(c.Name, func(t *testing.T) {
					runCase(t, rs, c, false)
					// The same customer as a store's cache keeps it.
					runCase(t, rs, c, true)
				})
			}
		})
	}
}

// encodedAttrs and encodedEvents hold a customer's attributes and events
// behind store.EncodedAttributes and store.EncodedEvents, as the Pebble
// store's cache does, so that the corpus checks the engine's reads through
// them (Stats into the arrays the decision reuses from type to type).
// encodedAttrs also keeps what the engine derives from them, as the
// store's do: a case decides twice, so its second decision reads the
// values of conditions over attributes alone that the first one kept.
// reads counts the attribute reads.
type encodedAttrs struct {
	m       map[string]any
	derived atomic.Value
	reads   atomic.Int64
}

func (a *encodedAttrs) Attr(key string) any    { a.reads.Add(1); return a.m[key] }
func (a *encodedAttrs) Map() map[string]any    { a.reads.Add(1); return maps.Clone(a.m) }
func (a *encodedAttrs) Len() int               { return len(a.m) }
func (a *encodedAttrs) Derived() *atomic.Value { return &a.derived }

// Scan gives each key's index in key order as its position.
func (a *encodedAttrs) Scan(fn func(key string, at int)) {
	a.reads.Add(1)
	for i, k := range slices.Sorted(maps.Keys(a.m)) {
		fn(k, i)
	}
}

func (a *encodedAttrs) ValueAt(at int) any {
	a.reads.Add(1)
	return a.m[slices.Sorted(maps.Keys(a.m))[at]]
}

func (a *encodedAttrs) NumberAt(at int) (float64, bool) {
	f, ok := a.ValueAt(at).(float64)
	return f, ok
}

func (e encodedEvents) Len() int                          { return len(e) }
func (e encodedEvents) Map() map[string]*store.EventStats { return maps.Clone(e) }
func (e encodedEvents) MapFor([]string) map[string]*store.EventStats {
	return maps.Clone(e) // the engine writes no event
}

type encodedEvents map[string]*store.EventStats

func (e encodedEvents) Stats(typ string, s *store.EventStats) bool {
	src := e[typ]
	if src == nil {
		return false
	}
	days, recent := append(s.Days[:0], src.Days...), append(s.Recent[:0], src.Recent...)
	*s = *src
	s.Days, s.Recent = days, recent
	return true
}

// encodedCopy returns c with its attributes and events encoded.
func encodedCopy(c *store.Customer) *store.Customer {
	cp := *c
	if c.Attributes != nil {
		cp.Attributes, cp.Encoded = nil, &encodedAttrs{m: c.Attributes}
	}
	if c.Events != nil {
		cp.Events, cp.EncodedEvents = nil, encodedEvents(c.Events)
	}
	return &cp
}

func runCase(t *testing.T, rs *rules.Ruleset, c corpusCase, encoded bool) {
	now := mustTime(t, c.Now)
	cust := &store.Customer{ID: c.Customer.ID}
	if cust.ID == "" {
		cust.ID = "c-1"
	}
	if c.Customer.Attributes != nil {
		cust.Attributes = jsonish(c.Customer.Attributes).(map[string]any)
	}
	for _, e := range c.Customer.Events {
		cust.AddEvent(e.Type, mustTime(t, e.Time).UnixNano(), e.Value)
	}
	for _, k := range c.Customer.Contacts {
		o := store.Served
		if k.Outcome != "" {
			var ok bool
			if o, ok = store.ParseOutcome(k.Outcome); !ok {
				t.Fatalf("bad outcome %q", k.Outcome)
			}
		}
		cust.AddContact(store.Contact{Action: store.Intern(k.Action), Outcome: o, Channel: store.Intern(k.Channel), At: mustTime(t, k.Time).UnixNano()})
	}
	if encoded {
		cust = encodedCopy(cust)
	}
	src := memstore.New()
	src.Put(cust)
	for a, n := range c.Served {
		for range n {
			src.RecordServed(a, now.Add(-time.Hour).UnixNano())
		}
	}
	for a, s := range c.Stats {
		src.SetStats(a, s.Served, s.Convert)
	}
	errsBefore := map[string]uint64{}
	rs.Expressions(func(x *rules.Expr) { errsBefore[x.Rule] += x.Errors() })

	var ctx map[string]any
	if c.Request.Context != nil {
		ctx = jsonish(c.Request.Context).(map[string]any)
	}
	eng := engine.New(engine.Options{})
	for _, explain := range []bool{false, true} {
		req := &engine.Request{
			CustomerID: cust.ID,
			Placements: c.Request.Placements,
			Channel:    c.Request.Channel,
			Context:    ctx,
			Now:        now,
			Seed:       c.Seed,
			Explain:    explain,
		}
		switch c.Deadline {
		case "":
		case "expired":
			req.Deadline = time.Now().Add(-time.Millisecond)
		default:
			d, err := time.ParseDuration(c.Deadline)
			if err != nil {
				t.Fatalf("bad deadline %q: %v", c.Deadline, err)
			}
			req.Deadline = time.Now().Add(d)
		}
		var d engine.Decision
		if err := eng.Decide(rs, src, req, &d); err != nil {
			t.Fatal(err)
		}
		checkDecision(t, c, &d, explain)
		if explain {
			checkExplain(t, c, &d)
		}
	}
	if c.RuleErrors != nil {
		got := map[string]uint64{}
		rs.Expressions(func(x *rules.Expr) { got[x.Rule] += x.Errors() })
		for rule, want := range c.RuleErrors {
			// Decided twice: once without, once with explain.
			if n := got[rule] - errsBefore[rule]; n != 2*want {
				t.Errorf("rule %s: %d runtime errors over two decisions; want %d each", rule, n, want)
			}
		}
	}
}

func checkDecision(t *testing.T, c corpusCase, d *engine.Decision, explain bool) {
	t.Helper()
	mode := map[bool]string{false: "", true: " (explain)"}[explain]
	if d.Degraded != c.Degraded {
		t.Errorf("degraded%s: got %v; want %v", mode, d.Degraded, c.Degraded)
	}
	if d.Degraded && len(d.Explain) != 0 {
		t.Errorf("a degraded decision explains %d candidates; want none", len(d.Explain))
	}
	if len(d.Placements) != len(c.Request.Placements) {
		t.Fatalf("%d placements decided; want %d", len(d.Placements), len(c.Request.Placements))
	}
	for i, p := range d.Placements {
		if p.Name != c.Request.Placements[i] {
			t.Errorf("placement %d is %q; want %q (request order)", i, p.Name, c.Request.Placements[i])
		}
		want, ok := c.Want[p.Name]
		if !ok {
			t.Fatalf("case has no want for placement %q", p.Name)
		}
		got := []string{}
		for _, it := range p.Items {
			got = append(got, it.Action.ID)
		}
		if want == nil {
			want = []string{}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s%s: got %v; want %v", p.Name, mode, got, want)
			continue
		}
		for j, wi := range c.Items[p.Name] {
			if j >= len(p.Items) {
				t.Errorf("%s: no item %d", p.Name, j)
				break
			}
			checkItem(t, p.Name, p.Items[j], wi)
		}
	}
	var holdouts []string
	for _, h := range d.Holdouts {
		holdouts = append(holdouts, h.Action)
	}
	if !slices.Equal(holdouts, c.Holdouts) {
		t.Errorf("holdouts%s: got %v; want %v", mode, holdouts, c.Holdouts)
	}
}

func checkItem(t *testing.T, placement string, it engine.Item, w wantItem) {
	t.Helper()
	where := placement + "/" + it.Action.ID
	if w.Action != it.Action.ID {
		t.Errorf("%s: item is %s; want %s", where, it.Action.ID, w.Action)
	}
	if w.Channel != nil && *w.Channel != it.Channel {
		t.Errorf("%s: channel %q; want %q", where, it.Channel, *w.Channel)
	}
	if w.Score != nil && *w.Score != it.Score {
		t.Errorf("%s: score %v; want %v", where, it.Score, *w.Score)
	}
	if w.Experiment != nil && *w.Experiment != it.Experiment {
		t.Errorf("%s: experiment %q; want %q", where, it.Experiment, *w.Experiment)
	}
	if w.Variant != nil && *w.Variant != it.Variant {
		t.Errorf("%s: variant %q; want %q", where, it.Variant, *w.Variant)
	}
	if w.Fallback != it.Fallback {
		t.Errorf("%s: fallback %v; want %v", where, it.Fallback, w.Fallback)
	}
	if w.Content != nil {
		want := jsonish(w.Content)
		if !reflect.DeepEqual(it.Content, want) {
			t.Errorf("%s: content %v; want %v", where, it.Content, want)
		}
	}
}

func checkExplain(t *testing.T, c corpusCase, d *engine.Decision) {
	t.Helper()
	if c.Explain == nil {
		return
	}
	format := func(e engine.Explain) string {
		reason, rank := "null", "null"
		if e.Reason != "" {
			reason = e.Reason
		}
		if e.Rank > 0 {
			rank = fmt.Sprint(e.Rank)
		}
		return fmt.Sprintf("%s/%s eligible=%v selected=%v reason=%s rank=%s", e.Placement, e.Action, e.Eligible, e.Selected, reason, rank)
	}
	var got, want []string
	for _, e := range d.Explain {
		got = append(got, format(e))
	}
	for i, w := range c.Explain {
		e := engine.Explain{Placement: w.Placement, Action: w.Action, Eligible: w.Eligible, Selected: w.Selected}
		if w.Reason != nil {
			e.Reason = *w.Reason
		}
		if w.Rank != nil {
			e.Rank = *w.Rank
		}
		want = append(want, format(e))
		if w.Score != nil && i < len(d.Explain) && d.Explain[i].Score != *w.Score {
			t.Errorf("explain %d: score %v; want %v", i, d.Explain[i].Score, *w.Score)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("explain:\ngot:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestCorpusCoversReasons fails when the corpus no longer shows every
// explain reason of SPEC 3.
func TestCorpusCoversReasons(t *testing.T) {
	seen := map[string]bool{}
	for _, cf := range loadCorpus(t) {
		for _, c := range cf.Cases {
			for _, e := range c.Explain {
				if e.Reason != nil {
					r, _, _ := strings.Cut(*e.Reason, ":")
					seen[r] = true
				}
			}
		}
	}
	for _, r := range []string{"schedule", "channel", "stopped", "when", "suppressed", "cap", "budget", "holdout", "duplicate", "limit"} {
		if !seen[r] {
			t.Errorf("no corpus case explains reason %q", r)
		}
	}
}
