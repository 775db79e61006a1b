package engine

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/store"
)

// Source is what Decide reads beyond the request and the ruleset: the
// customer's context and the counters shared by all customers. The store
// implements it; tests use an in-memory one.
type Source interface {
	// Customer returns the customer's context. An unknown customer is nil
	// (or empty) with no error: it still gets decisions.
	Customer(id string) (*store.Customer, error)
	Counters
}

// Counters are the per-action counters across all customers.
type Counters interface {
	// ServedSince returns how often the action was served to anyone at or
	// after since (Unix nanoseconds): budgets.
	ServedSince(action string, since int64) int64
	// ActionStats returns the action's lifetime served and convert counts:
	// propensity().
	ActionStats(action string) (served, convert int64)
}

// Options configure an Engine.
type Options struct {
	// OnRuleError, when set, is called for every runtime error of an
	// expression (after it was counted on the expression). It must be
	// cheap and safe for concurrent use. Default: nil.
	OnRuleError func(rule string, err error)
}

// Engine decides. It holds no ruleset: each call names the one to use, so
// a reload swaps rulesets without touching the engine. Safe for concurrent
// use.
type Engine struct {
	opts  Options
	pool  sync.Pool // *state
	names atomic.Pointer[actionNames]
}

// actionNames are the store.Names of a ruleset's actions, by Action.Index:
// the caps and stop_after of every candidate count its contacts, and the
// Name saves a lookup of its id in the table of names each time.
type actionNames struct {
	rs *rules.Ruleset
	of []store.Name
}

// actionNames returns the Names of rs's actions, kept for the last
// ruleset asked for (the active one, but for simulations and tests).
func (e *Engine) actionNames(rs *rules.Ruleset) []store.Name {
	if n := e.names.Load(); n != nil && n.rs == rs {
		return n.of
	}
	n := &actionNames{rs: rs, of: make([]store.Name, len(rs.Actions))}
	for i, a := range rs.Actions {
		n.of[i] = store.Intern(a.ID)
	}
	e.names.Store(n)
	return n.of
}

// New returns an engine.
func New(opts Options) *Engine {
	e := &Engine{opts: opts}
	e.pool.New = func() any { return newState() }
	return e
}

// Request is one decision request. Now and Seed are inputs so tests and
// simulations can fix them.
type Request struct {
	CustomerID string
	Placements []string
	// Channel is a channel id, "auto" (nudge picks, SPEC 4.6) or "" (no
	// channel filter; an item goes on the action's first listed channel).
	Channel string
	Context map[string]any
	Now     time.Time
	// Seed drives propensity() sampling.
	Seed uint64
	// Explain asks for one Explain entry per candidate per placement.
	// Explaining evaluates every candidate, so it is slower.
	Explain bool
	// Customer, when set, is used instead of Source.Customer (simulate,
	// rule tests, and the server, which loads the customer itself so that
	// Deadline covers the evaluation only).
	Customer *store.Customer
	// Deadline, when not zero, is the latency budget of the evaluation:
	// Decide compares the clock with it before each placement and every
	// 16 candidates, and once it has passed stops and answers the
	// placements' fallbacks with Decision.Degraded set. One expression is
	// never interrupted, so a decision may overrun the deadline by the
	// cost of 16 candidates. Zero: no deadline.
	Deadline time.Time
}

// Decision is the answer to a Request. Reuse one across calls to save
// allocations: Decide resets it, and reuses its items and the maps of
// their rendered content, so whatever a caller keeps of a decision must be
// copied before the next Decide into it.
type Decision struct {
	Placements []PlacementResult // in request order
	Explain    []Explain
	// Holdouts lists the actions a customer was held out of by an
	// experiment (counted as holdout in stats).
	Holdouts []Holdout
	// Degraded reports that Request.Deadline passed during the
	// evaluation: every placement holds only its fallback (if any), and
	// Explain and Holdouts are empty.
	Degraded bool

	maps []map[string]any // rendered content maps, maps[:used] in use
	used int
}

// PlacementResult holds the items decided for one placement.
type PlacementResult struct {
	Name  string
	Items []Item
}

// Item is one decided action.
type Item struct {
	Action     *rules.Action
	Name       store.Name // Action.ID's, as store.Intern gives it
	Channel    string
	Score      float64
	Content    any // map[string]any, shared when static: do not modify
	Experiment string
	Variant    string
	Fallback   bool
}

// Explain says why a candidate was or was not returned (SPEC 3).
type Explain struct {
	Action    string
	Placement string
	Eligible  bool
	Selected  bool
	Fallback  bool
	Reason    string // "" when selected
	Score     float64
	Scored    bool // false: score not computed (not eligible)
	Rank      int  // 1-based among the eligible; 0 when not eligible
}

// Holdout records an experiment holdout.
type Holdout struct {
	Action     string
	Experiment string
	Variant    string
}

func (d *Decision) reset() {
	for i := range d.Placements {
		d.Placements[i].Items = d.Placements[i].Items[:0]
	}
	d.Placements = d.Placements[:0]
	d.Explain = d.Explain[:0]
	d.Holdouts = d.Holdouts[:0]
	d.Degraded = false
	d.used = 0
}

// newMap returns an empty map for rendered content, one of an earlier
// decision if there is one left.
func (d *Decision) newMap(size int) map[string]any {
	if d.used == len(d.maps) {
		d.maps = append(d.maps, make(map[string]any, size))
	}
	m := d.maps[d.used]
	d.used++
	clear(m)
	return m
}

// ErrCustomer wraps a failure to read the customer's context.
var ErrCustomer = errors.New("cannot read customer")

// Decide decides every placement of req with ruleset rs, reading the
// customer from src (unless req.Customer is set), into d.
func (e *Engine) Decide(rs *rules.Ruleset, src Source, req *Request, d *Decision) error {
	cust := req.Customer
	if cust == nil {
		c, err := src.Customer(req.CustomerID)
		if err != nil {
			return fmt.Errorf("%w %q: %w", ErrCustomer, req.CustomerID, err)
		}
		cust = c
	}
	st := e.pool.Get().(*state)
	st.begin(e, rs, src, req, cust)
	d.reset()
	st.d = d
	for _, name := range req.Placements {
		if st.late() {
			break
		}
		st.decidePlacement(name, d)
	}
	if st.expired {
		st.degrade(d)
	}
	st.end()
	e.pool.Put(st)
	return nil
}

// reason is why a candidate was dropped; formatted only for explain.
type reason struct {
	kind    reasonKind
	id      string // policy or action id for suppressed/cap
	outcome uint8  // stopped
}

type reasonKind uint8

const (
	eligible reasonKind = iota
	rSchedule
	rChannel
	rStopped
	rWhen
	rSuppressed
	rCap
	rBudget
	rHoldout
	rDuplicate
	rLimit
)

func (r reason) String() string {
	switch r.kind {
	case eligible:
		return ""
	case rSchedule:
		return "schedule"
	case rChannel:
		return "channel"
	case rStopped:
		return "stopped:" + rules.OutcomeNames[r.outcome]
	case rWhen:
		return "when"
	case rSuppressed:
		return "suppressed:" + r.id
	case rCap:
		return "cap:" + r.id
	case rBudget:
		return "budget"
	case rHoldout:
		return "holdout"
	case rDuplicate:
		return "duplicate"
	}
	return "limit"
}

// candidate is an eligible action of the placement being decided.
type candidate struct {
	action  *rules.Action
	channel string
	score   float64
	explain int // index into Decision.Explain, or -1
}

// state is the per-decision scratch space, pooled. It implements
// rules.Funcs for the expressions of its decision.
type state struct {
	eng   *Engine
	rs    *rules.Ruleset
	names []store.Name // of rs's actions (Engine.actionNames)
	src   Source
	req   *Request
	d     *Decision // being decided: render takes its maps
	cust  *store.Customer
	id    string // the customer's id
	now   int64

	env   *rules.Env
	vms   []*vm.VM
	depth int

	// stats receives the event aggregates a rule function asks for
	// when the customer keeps them in the store's form (events).
	stats store.EventStats

	segMemo []uint8 // 0 unknown, 1 false, 2 true; | segErred
	// keeper holds what the customer's encoded attributes keep of their
	// decisions (see keptValues), kept what it held when the decision
	// began (nil: nothing under rs), and learnt the values this decision
	// computed that kept lacks (slot<<1 | value).
	keeper     *atomic.Value
	kept       *keptValues
	learnt     []uint32
	errs       uint32  // rule errors in this decision (ruleError), and reads of segErred segments
	policyWhen []uint8 // 0 unknown, 1 false, 2 true
	policyUse  []int64 // policy cap counts, -1 unknown
	channels   []rankedChannel
	chanDone   bool
	chosen     []*rules.Action // taken in earlier placements
	elig       []candidate
	current    *rules.Action // whose score is being computed

	pcg rand.PCG
	rng *rand.Rand

	// The deadline (Request.Deadline): checked before each placement and
	// every deadlineEvery candidates, counted by evals.
	hasDeadline bool
	expired     bool
	evals       uint32
}

// deadlineEvery is how many candidates are evaluated between two looks at
// the clock: reading it costs tens of nanoseconds, a candidate about as
// much, so the check stays a small fraction of the work.
const deadlineEvery = 16

type rankedChannel struct {
	id    string
	score float64
}

func newState() *state {
	st := &state{}
	st.rng = rand.New(&st.pcg)
	st.env = rules.NewEnv(st)
	return st
}

func (st *state) begin(e *Engine, rs *rules.Ruleset, src Source, req *Request, cust *store.Customer) {
	st.eng, st.rs, st.src, st.req = e, rs, src, req
	st.names = e.actionNames(rs)
	if cust == nil {
		cust = &store.Customer{ID: req.CustomerID}
	}
	st.cust = cust
	st.now = req.Now.UnixNano()
	st.pcg.Seed(req.Seed, req.Seed^0x9e3779b97f4a7c15)

	st.id = req.CustomerID
	if st.id == "" {
		st.id = cust.ID
	}
	st.env.SetCustomer(st.id, cust)
	st.env.SetRequest(req.Context, req.Channel, req.Now)

	st.segMemo = resize(st.segMemo, len(rs.Segments))
	st.keeper, st.kept, st.learnt, st.errs = nil, nil, st.learnt[:0], 0
	if k, ok := cust.Encoded.(derivedKeeper); ok && cust.Attributes == nil {
		st.keeper = k.Derived()
		if kept, _ := st.keeper.Load().(*keptValues); kept != nil && kept.serial == rs.Serial() {
			st.kept = kept
		}
	}
	st.policyWhen = resize(st.policyWhen, len(rs.Policies))
	st.policyUse = slices.Grow(st.policyUse[:0], len(rs.Policies))[:len(rs.Policies)]
	for i := range st.policyUse {
		st.policyUse[i] = -1
	}
	st.chanDone = false
	st.chosen = st.chosen[:0]
	st.hasDeadline, st.expired, st.evals = !req.Deadline.IsZero(), false, 0
}

// late reports, and remembers, whether the deadline has passed.
func (st *state) late() bool {
	if !st.expired && st.hasDeadline && !time.Now().Before(st.req.Deadline) {
		st.expired = true
	}
	return st.expired
}

// degrade replaces what was decided before the deadline passed with the
// placements' fallbacks: a partial decision (some placements evaluated,
// others not, a tier cut in the middle) would not be the ranking the
// rules ask for, while a fallback is what the rules name for "nothing
// better".
func (st *state) degrade(d *Decision) {
	d.reset()
	d.Degraded = true
	clear(st.chosen)
	st.chosen = st.chosen[:0]
	for _, name := range st.req.Placements {
		res := st.placementSlot(name, d)
		if p := st.rs.Placements[name]; p != nil && p.Fallback != nil {
			st.fallback(p, res, d)
		}
	}
	d.Explain = d.Explain[:0] // fallback() adds entries; a degraded decision explains nothing
}

func resize(s []uint8, n int) []uint8 {
	s = slices.Grow(s[:0], n)[:n]
	clear(s)
	return s
}

func (st *state) end() {
	if len(st.learnt) > 0 {
		st.keep()
	}
	// Drop references so the pool does not pin rulesets or customers.
	st.rs, st.src, st.req, st.d, st.cust, st.current = nil, nil, nil, nil, nil, nil
	st.keeper, st.kept = nil, nil
	st.stats = store.EventStats{} // views of the customer's arrays
	st.env.Clear()
	clear(st.chosen)
	clear(st.elig)
	st.elig = st.elig[:0]
}

// run evaluates x on a VM of the current nesting depth (segment() calls
// evaluate other expressions while one runs).
func (st *state) run(x *rules.Expr) (any, error) {
	if v, ok := x.Constant(); ok {
		return v, nil
	}
	if v, ok := x.Fast(st.env); ok {
		return v, nil
	}
	return st.runVM(x)
}

// runTyped is run after x's FastBool or FastNumber did not answer: when x
// is Typed, Fast would not answer either, and is not asked again.
func (st *state) runTyped(x *rules.Expr) (any, error) {
	if x.Typed() {
		return st.runVM(x)
	}
	return st.run(x)
}

// runVM runs x's program.
func (st *state) runVM(x *rules.Expr) (any, error) {
	if st.depth == len(st.vms) {
		st.vms = append(st.vms, new(vm.VM))
	}
	m := st.vms[st.depth]
	st.depth++
	out, err := m.Run(x.Program(), st.env.Map())
	st.depth--
	return out, err
}

var (
	errNotBool   = errors.New("result is not a boolean")
	errNotNumber = errors.New("result is not a finite number")
)

func (st *state) ruleError(x *rules.Expr, err error) {
	st.errs++
	x.CountError()
	if f := st.eng.opts.OnRuleError; f != nil {
		f(x.Rule, err)
	}
}

// cond evaluates a condition; nil is true, an error is false.
func (st *state) cond(x *rules.Expr) bool {
	if x == nil {
		return true
	}
	if v, ok := x.FastBool(st.env); ok {
		return v
	}
	return st.condProgram(x)
}

// condProgram runs the program of condition x, after its fast path did
// not answer; an error is false.
func (st *state) condProgram(x *rules.Expr) bool {
	out, err := st.runTyped(x)
	if err != nil {
		st.ruleError(x, err)
		return false
	}
	b, ok := out.(bool)
	if !ok {
		st.ruleError(x, errNotBool)
		return false
	}
	return b
}

// number evaluates a score; nil is 0, an error is 0.
func (st *state) number(x *rules.Expr) float64 {
	if x == nil {
		return 0
	}
	f, ok := x.FastNumber(st.env)
	if !ok {
		out, err := st.runTyped(x)
		if err != nil {
			st.ruleError(x, err)
			return 0
		}
		ok = true
		switch v := out.(type) {
		case float64:
			f = v
		case int:
			f = float64(v)
		case int64:
			f = float64(v)
		default:
			ok = false
		}
	}
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
		st.ruleError(x, errNotNumber)
		return 0
	}
	return f
}

// placementSlot appends the result of placement name to d, reusing the
// slot (and its Items) of an earlier decision into d.
func (st *state) placementSlot(name string, d *Decision) *PlacementResult {
	if len(d.Placements) < cap(d.Placements) {
		d.Placements = d.Placements[:len(d.Placements)+1]
	} else {
		d.Placements = append(d.Placements, PlacementResult{})
	}
	res := &d.Placements[len(d.Placements)-1]
	res.Name, res.Items = name, res.Items[:0]
	return res
}

func (st *state) decidePlacement(name string, d *Decision) {
	res := st.placementSlot(name, d)
	p := st.rs.Placements[name]
	if p == nil {
		return
	}
	st.env.SetPlacement(name)
	explain := st.req.Explain
	taken, rank := 0, 0
	cands, gates := p.Candidates, p.Gates
	for start := 0; start < len(cands); {
		// One priority tier at a time: a lower tier cannot outrank a
		// higher one, so once the limit is filled the rest is skipped
		// (unless explaining).
		end := start + 1
		for end < len(gates) && gates[end].Priority() == gates[start].Priority() {
			end++
		}
		st.elig = st.elig[:0]
		for i, a := range cands[start:end] {
			if st.hasDeadline {
				if st.evals++; st.evals%deadlineEvery == 0 && st.late() {
					return // Decide degrades the whole decision
				}
			}
			ch, why := st.check(a, &gates[start+i])
			ex := -1
			if explain {
				ex = len(d.Explain)
				d.Explain = append(d.Explain, Explain{Action: a.ID, Placement: name, Reason: why.String()})
			}
			if why.kind != eligible {
				continue
			}
			st.current = a
			score, ok := gates[start+i].Score(st.env)
			if !ok || math.IsNaN(score) || math.IsInf(score, 0) {
				score = st.number(a.Score) // the program, or the error
			}
			st.current = nil
			st.elig = append(st.elig, candidate{action: a, channel: ch, score: score, explain: ex})
		}
		slices.SortFunc(st.elig, func(x, y candidate) int {
			if x.score != y.score {
				if x.score > y.score {
					return -1
				}
				return 1
			}
			return strings.Compare(x.action.ID, y.action.ID)
		})
		for i := range st.elig {
			c := &st.elig[i]
			rank++
			why := reason{}
			var variant *rules.Variant
			switch {
			case slices.Contains(st.chosen, c.action):
				why.kind = rDuplicate
			case taken >= p.Limit:
				why.kind = rLimit
			default:
				variant = st.variant(c.action)
				if variant != nil && variant.Holdout {
					why.kind = rHoldout
					x := c.action.Experiment
					d.Holdouts = append(d.Holdouts, Holdout{Action: c.action.ID, Experiment: x.ID, Variant: variant.Name})
				}
			}
			if c.explain >= 0 {
				ex := &d.Explain[c.explain]
				ex.Eligible, ex.Score, ex.Scored, ex.Rank = true, c.score, true, rank
				ex.Reason = why.String()
				ex.Selected = why.kind == eligible
			}
			if why.kind != eligible {
				continue
			}
			taken++
			st.chosen = append(st.chosen, c.action)
			it := Item{Action: c.action, Name: st.names[c.action.Index], Channel: c.channel, Score: c.score}
			content := c.action.Content
			if variant != nil {
				it.Experiment, it.Variant = c.action.Experiment.ID, variant.Name
				content = variant.Content
			}
			it.Content = st.render(content)
			res.Items = append(res.Items, it)
		}
		if taken >= p.Limit && !explain {
			break
		}
		start = end
	}
	if taken == 0 && p.Fallback != nil {
		st.fallback(p, res, d)
	}
}

// fallback returns the placement's fallback (SPEC 4.7 step 5): no
// eligibility, no caps; it is only skipped when an earlier placement of
// the same request already returned it, or when channel is auto and no
// channel may carry it.
func (st *state) fallback(p *rules.Placement, res *PlacementResult, d *Decision) {
	a := p.Fallback
	if slices.Contains(st.chosen, a) {
		return
	}
	ch := st.req.Channel
	switch ch {
	case "auto":
		var ok bool
		if ch, ok = st.autoChannel(a); !ok {
			return
		}
	case "":
		if len(a.Channels) > 0 {
			ch = a.Channels[0]
		}
	}
	st.chosen = append(st.chosen, a)
	res.Items = append(res.Items, Item{Action: a, Name: st.names[a.Index], Channel: ch, Content: st.render(a.Content), Fallback: true})
	if !st.req.Explain {
		return
	}
	for i := range d.Explain {
		ex := &d.Explain[i]
		if ex.Placement == p.Name && ex.Action == a.ID {
			ex.Selected, ex.Fallback, ex.Reason = true, true, ""
			return
		}
	}
	d.Explain = append(d.Explain, Explain{Action: a.ID, Placement: p.Name, Selected: true, Fallback: true})
}

// check runs the filters of SPEC 4.7 step 2 in the order of the explain
// reasons and returns the channel the action would go on. It reads a's
// gate g (rules.Placement.Gates) and g's guard, and a itself only for
// channels, stop_after outcomes, a budget, a condition the fast path leaves
// to the program, or a cap's reason: on 1,000 actions each Action read
// is a miss of the CPU's caches, the guards are a few, shared and hot.
func (st *state) check(a *rules.Action, g *rules.Gate) (string, reason) {
	if !g.Live(st.now) {
		return "", reason{kind: rSchedule}
	}
	ch := st.req.Channel
	if !g.Plain() || ch == "auto" {
		switch ch {
		case "auto":
			var ok bool
			if ch, ok = st.autoChannel(a); !ok {
				return "", reason{kind: rChannel}
			}
		case "":
			if len(a.Channels) > 0 {
				ch = a.Channels[0]
			}
		default:
			if !a.AllowsChannel(ch) {
				return "", reason{kind: rChannel}
			}
		}
		for _, o := range a.StopAfter {
			if st.actionContacts(a, o, rules.WindowAll, 1) > 0 {
				return "", reason{kind: rStopped, outcome: o}
			}
		}
	}
	if !st.when(a, g) {
		return "", reason{kind: rWhen}
	}
	// The rest reads the gate's guard, shared by many actions, and reads
	// a only to say which cap ruled it out, or for a budget.
	gd := g.Guard()
	for _, pi := range gd.SuppressedBy {
		if st.policyApplies(pi) {
			return "", reason{kind: rSuppressed, id: st.rs.Policies[pi].ID}
		}
	}
	for _, c := range gd.Caps {
		if st.countContacts(st.names[g.Index()], c.Outcome, c.Window, c.Max) >= c.Max {
			return "", reason{kind: rCap, id: a.ID}
		}
	}
	for _, pi := range gd.CappedBy {
		pc := st.rs.Policies[pi].Cap
		if pc.CountsChannel(ch) && st.policyApplies(pi) && st.policyCount(pi) >= pc.Max {
			return "", reason{kind: rCap, id: st.rs.Policies[pi].ID}
		}
	}
	if gd.Budget && st.src != nil {
		if b := a.Budget; st.src.ServedSince(a.ID, st.now-int64(b.Window)) >= b.Max {
			return "", reason{kind: rBudget}
		}
	}
	return ch, reason{}
}

// policyApplies evaluates a policy's when once per decision.
func (st *state) policyApplies(pi int) bool {
	if st.policyWhen[pi] == 0 {
		st.policyWhen[pi] = 1
		if st.cond(st.rs.Policies[pi].When) {
			st.policyWhen[pi] = 2
		}
	}
	return st.policyWhen[pi] == 2
}

// policyCount counts, once per decision, the customer's contacts that a
// cap policy counts.
func (st *state) policyCount(pi int) int64 {
	if n := st.policyUse[pi]; n >= 0 {
		return n
	}
	n := policyContacts(st.cust, st.rs.Policies[pi].Cap, st.now)
	st.policyUse[pi] = n
	return n
}

// policyContacts counts c's contacts in the window of pc ending at now
// that pc counts, up to pc.Max. A hot customer's window holds thousands
// of contacts, so it first asks the Outcomes summary whether any can
// count (a cap on dismissals of offers, say, for a customer who never
// dismissed one), and compares channels as store.Names, not strings.
func policyContacts(c *store.Customer, pc *rules.PolicyCap, now int64) int64 {
	o := store.Outcome(pc.Outcome)
	if !c.MayHaveOutcome(o, pc.CountsAction) {
		return 0
	}
	var buf [4]store.Name
	chans := buf[:0]
	for _, ch := range pc.Channels {
		if n, ok := store.LookupName(ch); ok {
			chans = append(chans, n)
		}
	}
	if len(pc.Channels) > 0 && len(chans) == 0 {
		return 0 // no contact was ever on one of its channels
	}
	// The action filter is a lookup by id; successive contacts mostly
	// repeat an action, so the last answer is kept.
	filtered := pc.FiltersActions()
	lastAction, lastCounts := store.Name(0), pc.CountsAction("")
	cutoff := now - int64(pc.Window)
	var n int64
	cs := c.Contacts
	for i := len(cs) - 1; i >= 0 && cs[i].At >= cutoff && n < pc.Max; i-- {
		k := &cs[i]
		if k.At > now || k.Outcome != o || (len(chans) > 0 && !slices.Contains(chans, k.Channel)) {
			continue
		}
		if filtered && k.Action != lastAction {
			lastAction, lastCounts = k.Action, pc.CountsAction(k.Action.String())
		}
		if !filtered || lastCounts {
			n++
		}
	}
	return n
}

// contacts counts the customer's contacts with action and outcome inside
// the window ending now, for the rule functions, whose action ids come
// from the expression.
func (st *state) contacts(action string, outcome uint8, window time.Duration) int64 {
	name, ok := store.LookupName(action)
	if !ok {
		return 0 // no contact has it
	}
	return st.countContacts(name, outcome, window, math.MaxInt64)
}

// actionContacts counts the contacts of a candidate of the ruleset, by its
// Name, stopping at limit: a cap needs to know whether it is reached, not
// by how much.
func (st *state) actionContacts(a *rules.Action, outcome uint8, window time.Duration, limit int64) int64 {
	return st.countContacts(st.names[a.Index], outcome, window, limit)
}

func (st *state) countContacts(action store.Name, outcome uint8, window time.Duration, limit int64) int64 {
	from := int64(math.MinInt64)
	if window != rules.WindowAll {
		from = st.now - int64(window)
	}
	return st.cust.CountContactsOf(action, store.Outcome(outcome), from, st.now, limit)
}

// autoChannel picks the highest-scoring defined channel whose when holds
// and that the action lists (SPEC 4.6).
func (st *state) autoChannel(a *rules.Action) (string, bool) {
	if !st.chanDone {
		st.rankChannels()
	}
	for _, c := range st.channels {
		if a.AllowsChannel(c.id) {
			return c.id, true
		}
	}
	return "", false
}

// rankChannels evaluates the channel definitions once per decision: they
// depend on the customer and the moment, not on the action.
func (st *state) rankChannels() {
	st.chanDone = true
	st.channels = st.channels[:0]
	for _, c := range st.rs.Channels {
		if st.cond(c.When) {
			st.channels = append(st.channels, rankedChannel{id: c.ID, score: st.number(c.Score)})
		}
	}
	slices.SortFunc(st.channels, func(x, y rankedChannel) int {
		if x.score != y.score {
			if x.score > y.score {
				return -1
			}
			return 1
		}
		return strings.Compare(x.id, y.id)
	})
}

// variant returns the experiment variant of the customer, or nil.
func (st *state) variant(a *rules.Action) *rules.Variant {
	x := a.Experiment
	if x == nil || x.Total <= 0 {
		return nil
	}
	return Assign(x, st.id)
}

// Assign returns the variant of experiment x for the customer: a hash of
// (experiment id, customer id) placed over the weights in file order. The
// same customer always gets the same variant.
func Assign(x *rules.Experiment, customerID string) *rules.Variant {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(x.ID); i++ {
		h = (h ^ uint64(x.ID[i])) * prime
	}
	h = (h ^ 0xff) * prime // separator: no id holds byte 0xff
	for i := 0; i < len(customerID); i++ {
		h = (h ^ uint64(customerID[i])) * prime
	}
	// FNV's low bits mix poorly; finish with a murmur3 avalanche.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	u := float64(h>>11) / (1 << 53) * x.Total
	var cum float64
	for _, v := range x.Variants {
		cum += v.Weight
		if u < cum {
			return v
		}
	}
	for i := len(x.Variants) - 1; i >= 0; i-- {
		if x.Variants[i].Weight > 0 {
			return x.Variants[i]
		}
	}
	return nil
}

// render produces an item's content; static content is shared.
func (st *state) render(v *rules.Value) any {
	if v == nil {
		return nil
	}
	if v.Static != nil || v.Kind == rules.Literal {
		return v.Static
	}
	switch v.Kind {
	case rules.Map:
		m := st.d.newMap(len(v.Keys))
		for i, k := range v.Keys {
			m[k] = st.render(v.Values[i])
		}
		return m
	case rules.List:
		l := make([]any, len(v.Values))
		for i, c := range v.Values {
			l[i] = st.render(c)
		}
		return l
	}
	var b strings.Builder
	b.Grow(v.SizeHint)
	for _, p := range v.Parts {
		if p.Expr == nil {
			b.WriteString(p.Text)
			continue
		}
		out, err := st.run(p.Expr)
		if err != nil {
			st.ruleError(p.Expr, err)
			continue
		}
		writeValue(&b, out)
	}
	return b.String()
}

func writeValue(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
	case string:
		b.WriteString(x)
	case float64:
		b.WriteString(strconv.FormatFloat(x, 'f', -1, 64))
	case int:
		b.WriteString(strconv.Itoa(x))
	case bool:
		b.WriteString(strconv.FormatBool(x))
	default:
		b.WriteString(fmt.Sprint(x)) // not Fprint(b): b would escape
	}
}

// The rules.Funcs of the decision.

// events returns the customer's aggregates of event type typ (nil: none),
// valid until the next call.
func (st *state) events(typ string) *store.EventStats {
	return st.cust.EventStats(typ, &st.stats)
}

func (st *state) Count(typ string, window time.Duration) int {
	n, _ := st.events(typ).Window(st.now, window)
	return int(n)
}

func (st *state) Sum(typ string, window time.Duration) float64 {
	_, s := st.events(typ).Window(st.now, window)
	return s
}

func (st *state) DaysSince(typ string) float64 {
	return st.events(typ).DaysSince(st.now)
}

func (st *state) Segment(i int) bool {
	if i < 0 || i >= len(st.segMemo) {
		return false
	}
	m := st.segMemo[i]
	if m == 0 {
		st.segMemo[i] = 1
		m = 1
		v, ok := st.kept.value(i)
		if !ok {
			errs := st.errs
			// As in check: the Segment is read only when the fast path
			// defers.
			if v, ok = st.rs.SegmentConds[i].Eval(st.env); !ok {
				v = st.condProgram(st.rs.Segments[i].When)
			}
			if st.errs != errs {
				m |= segErred
			} else if st.rs.SegmentAttrOnly[i] {
				st.learn(i, v, errs)
			}
		}
		if v {
			m++
		}
		st.segMemo[i] = m
		return v
	}
	if m&segErred != 0 {
		// A condition that reads it now must not be kept either: its
		// next evaluation would evaluate this segment, and count the
		// error, again.
		st.errs++
	}
	return m&^segErred == 2
}

// segErred marks, in state.segMemo, a segment whose evaluation in this
// decision was a rule error (in itself or in a segment it uses).
const segErred = 4

// when evaluates candidate a's condition, reading its gate g.
func (st *state) when(a *rules.Action, g *rules.Gate) bool {
	slot := -1
	if st.keeper != nil && g.AttrOnly() {
		slot = len(st.segMemo) + g.Index()
		if v, ok := st.kept.value(slot); ok {
			return v
		}
	}
	errs := st.errs
	// Not st.cond(a.When): that reads the action (and its Expr) for
	// every candidate; a.When is read only when the fast path defers.
	v, ok := g.When(st.env)
	if !ok {
		v = st.condProgram(a.When)
	}
	if slot >= 0 {
		st.learn(slot, v, errs)
	}
	return v
}

// A segment or an action's condition that reads only the customer's
// attributes (rules.Ruleset.SegmentAttrOnly, rules.Gate.AttrOnly) has the
// same value in every decision until they change. The customer's encoded
// attributes keep such values (a derivedKeeper, store/pebble's), so that
// its next decisions under the same ruleset read them instead of
// evaluating the conditions: new attributes are a new encoding that keeps
// nothing yet, and values of another ruleset (by its serial) are not
// read.

// derivedKeeper is implemented by encoded attributes that keep a value a
// reader derived from them alone, for as long as they live.
type derivedKeeper interface {
	Derived() *atomic.Value
}

// keptValues is what a customer's attributes keep: two bits per slot
// (known, then true), slot i at bits 2i and 2i+1; the ruleset's segments
// have the first slots, its actions' conditions the next ones, by
// Action.Index. It is never modified once stored: a decision that learnt
// more stores a new one, and of two decisions of the customer storing at
// once one's values are lost, to be learnt again.
type keptValues struct {
	serial uint64 // rules.Ruleset.Serial
	bits   []uint64
}

// value returns the kept value of slot i; ok is false when there is none
// (k may be nil).
func (k *keptValues) value(i int) (v, ok bool) {
	if k == nil || i/32 >= len(k.bits) {
		return false, false
	}
	w := k.bits[i/32] >> (uint(i%32) * 2)
	return w&2 != 0, w&1 != 0
}

// learn notes value v of slot i, computed with the decision's rule error
// count at errs before, to be kept. A value that cost a rule error is not
// kept: the next decision counts the error again, as it would without
// keeping.
func (st *state) learn(i int, v bool, errs uint32) {
	if st.keeper == nil || errs != st.errs {
		return
	}
	b := uint32(i) << 1
	if v {
		b |= 1
	}
	st.learnt = append(st.learnt, b)
}

// keep stores what the customer kept with what this decision learnt.
func (st *state) keep() {
	slots := len(st.segMemo) + len(st.rs.Actions)
	k := &keptValues{serial: st.rs.Serial(), bits: make([]uint64, (slots+31)/32)}
	if st.kept != nil {
		copy(k.bits, st.kept.bits)
	}
	for _, b := range st.learnt {
		i := b >> 1
		k.bits[i/32] |= uint64(1|(b&1)<<1) << ((i % 32) * 2)
	}
	st.keeper.Store(k)
}

func (st *state) Shown(action string, window time.Duration) int {
	return int(st.contacts(action, rules.OutcomeServed, window))
}

func (st *state) Outcomes(action, outcome string, window time.Duration) int {
	for i, n := range rules.OutcomeNames {
		if n == outcome {
			return int(st.contacts(action, uint8(i), window))
		}
	}
	return 0
}

// Propensity draws from the Beta(1+convert, 1+served-convert) posterior
// of the action being scored (Thompson sampling): a new action is drawn
// from the uniform prior, so it gets explored.
func (st *state) Propensity() float64 {
	if st.current == nil || st.src == nil {
		return 0.5
	}
	served, conv := st.src.ActionStats(st.current.ID)
	conv = max(conv, 0)
	fails := max(served-conv, 0)
	return st.beta(1+float64(conv), 1+float64(fails))
}

func (st *state) beta(a, b float64) float64 {
	x := st.gamma(a)
	y := st.gamma(b)
	if x+y == 0 {
		return 0.5
	}
	return x / (x + y)
}

// gamma samples Gamma(shape, 1) for shape >= 1 (Marsaglia and Tsang).
func (st *state) gamma(shape float64) float64 {
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		var x, v float64
		for v <= 0 {
			x = st.rng.NormFloat64()
			v = 1 + c*x
		}
		v = v * v * v
		u := st.rng.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}
