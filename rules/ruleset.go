package rules

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr/vm"
)

// Ruleset is a compiled rules directory. It is immutable once Load returns
// it (only the per-expression runtime error counters change), so one value
// is shared by every decision and swapped atomically on reload.
type Ruleset struct {
	Version    string   // hash of the files' relative paths and contents
	Files      []string // relative, slash-separated, sorted
	Attributes []*Attribute
	Segments   []*Segment
	// SegmentConds holds the condition of each of Segments (same
	// index), in one array: a decision evaluates a segment without a
	// read of the Segment or of its Expr (Cond).
	SegmentConds []Cond
	// SegmentAttrOnly reports, for each of Segments, whether the segment
	// reads nothing but the customer's attributes, itself and
	// through the segments it uses: its value changes only when they do
	// (see attronly.go).
	SegmentAttrOnly []bool
	// Guards holds the distinct guards of the actions (Gate.Guard).
	Guards     []Guard
	Actions    []*Action
	Policies   []*Policy
	Channels   []*Channel // in file order
	Placements map[string]*Placement
	Tests      []*Test
	Warnings   ErrorList
	// MaxWindow is the longest window any rule uses (caps, budgets, stop
	// rules count as MaxWindow): how long contact history must be kept.
	MaxWindow time.Duration

	segIndex map[string]int
	actIndex map[string]int
	serial   uint64
}

// Action returns the action with the id, or nil.
func (rs *Ruleset) Action(id string) *Action {
	if i, ok := rs.actIndex[id]; ok {
		return rs.Actions[i]
	}
	return nil
}

// SegmentIndex returns the index in Segments of the named segment.
func (rs *Ruleset) SegmentIndex(name string) (int, bool) {
	i, ok := rs.segIndex[name]
	return i, ok
}

// Expressions calls f for every compiled expression, for metrics.
func (rs *Ruleset) Expressions(f func(*Expr)) {
	for _, s := range rs.Segments {
		f(s.When)
	}
	for _, a := range rs.Actions {
		for _, e := range []*Expr{a.When, a.Score} {
			if e != nil {
				f(e)
			}
		}
		a.Content.exprs(f)
		if a.Experiment != nil {
			for _, v := range a.Experiment.Variants {
				v.Content.exprs(f)
			}
		}
	}
	for _, p := range rs.Policies {
		if p.When != nil {
			f(p.When)
		}
	}
	for _, c := range rs.Channels {
		for _, e := range []*Expr{c.When, c.Score} {
			if e != nil {
				f(e)
			}
		}
	}
}

// Expr is one compiled expression.
type Expr struct {
	Source string
	// Rule names the expression for metrics and logs, like
	// "action:winback-20:when" or "segment:vip".
	Rule    string
	File    string
	Line    int
	program *vm.Program
	kind    exprKind
	// constant holds the value when the expression folds to a constant
	// (score: 0.5, when: true): no VM run needed.
	constant   any
	isConstant bool
	fast       fastFunc
	// num is the fast closure of a score that is always a number
	// (a literal, arithmetic, count(), sum(), days_since()): FastNumber.
	num numFunc
	// cond is the fast program of a condition (cond.go): FastBool.
	cond   []instr
	errors atomic.Uint64
}

// Constant returns the expression's value when it is a constant.
func (e *Expr) Constant() (any, bool) { return e.constant, e.isConstant }

// Program returns the compiled program; run it against an *Env.
func (e *Expr) Program() *vm.Program { return e.program }

// CountError records one runtime error of the expression.
func (e *Expr) CountError() { e.errors.Add(1) }

// Errors returns how many runtime errors the expression had.
func (e *Expr) Errors() uint64 { return e.errors.Load() }

// AttrType is the declared type of an attribute.
type AttrType uint8

// Attribute types of the schema (SPEC 4.2).
const (
	AttrString AttrType = iota
	AttrNumber
	AttrBool
	AttrObject
	AttrList
)

var attrTypeNames = [...]string{"string", "number", "bool", "object", "list"}

func (t AttrType) String() string { return attrTypeNames[t] }

// Attribute is one declared customer attribute.
type Attribute struct {
	Name       string
	Type       AttrType
	Default    any // nil when there is none
	HasDefault bool
}

// Segment is a named boolean expression over the customer.
type Segment struct {
	Name  string
	Index int
	When  *Expr
}

// Kind is an action's kind.
type Kind uint8

// Action kinds.
const (
	Offer Kind = iota
	Message
)

func (k Kind) String() string {
	if k == Message {
		return "message"
	}
	return "offer"
}

// Outcome codes, in the order of the SPEC vocabulary (the same order as
// the store's outcomes).
const (
	OutcomeServed uint8 = iota
	OutcomeClick
	OutcomeAccept
	OutcomeDismiss
	OutcomeConvert
)

// OutcomeNames lists the outcomes by code.
var OutcomeNames = []string{"served", "click", "accept", "dismiss", "convert"}

func outcomeCode(name string) (uint8, bool) {
	for i, n := range OutcomeNames {
		if n == name {
			return uint8(i), true
		}
	}
	return 0, false
}

// Action is something that can be decided: an offer or a message.
type Action struct {
	ID         string
	Index      int
	Kind       Kind
	Placements []string
	Channels   []string // nil: any channel
	When       *Expr    // nil: always
	Priority   int
	Score      *Expr // nil: 0
	Tags       []string
	Content    *Value // a map; nil when the action has no content
	Schedule   Schedule
	Caps       []Cap
	StopAfter  []uint8 // outcome codes
	Budget     *Budget
	Adaptive   bool
	Experiment *Experiment
	File       string
	Line       int

	// SuppressedBy and CappedBy list the policies (indices into
	// Ruleset.Policies) whose kind/tag/action filters match this action;
	// a cap policy's channel filter is checked per decision.
	SuppressedBy []int
	CappedBy     []int
}

// AllowsChannel reports whether the action may be delivered on ch.
func (a *Action) AllowsChannel(ch string) bool {
	if a.Channels == nil {
		return true
	}
	for _, c := range a.Channels {
		if c == ch {
			return true
		}
	}
	return false
}

// Schedule bounds when an action is live: From inclusive, Until exclusive;
// a zero time is open.
type Schedule struct {
	From, Until time.Time
}

// Contains reports whether t is inside the schedule.
func (s Schedule) Contains(t time.Time) bool {
	if !s.From.IsZero() && t.Before(s.From) {
		return false
	}
	if !s.Until.IsZero() && !t.Before(s.Until) {
		return false
	}
	return true
}

// Cap limits how often this customer gets an action: at Max contacts with
// Outcome inside Window the action is not eligible.
type Cap struct {
	Max     int64
	Window  time.Duration
	Outcome uint8
}

// Budget limits serves of an action across all customers inside Window.
type Budget struct {
	Max    int64
	Window time.Duration
}

// Experiment splits customers over variants.
type Experiment struct {
	ID       string
	Variants []*Variant // in file order
	Total    float64    // sum of the weights
}

// Variant is one arm of an experiment.
type Variant struct {
	Name    string
	Weight  float64
	Holdout bool
	// Content is the action's content with the variant's merged over it,
	// or the action's own when the variant changes nothing.
	Content *Value
}

// Policy is a rule across actions: a suppression or a contact cap.
type Policy struct {
	ID       string
	Index    int
	When     *Expr   // nil: always
	Suppress *Filter // exactly one of Suppress and Cap is set
	Cap      *PolicyCap
}

// Filter selects actions: every non-empty field must match (a field
// matches when any of its entries does); an empty filter selects all.
type Filter struct {
	Kinds    []Kind
	Tags     []string
	Actions  []string
	Channels []string // caps only
}

// PolicyCap is a contact cap across the actions its filter selects.
type PolicyCap struct {
	Filter
	Max     int64
	Window  time.Duration
	Outcome uint8
	// matches holds the ids of the actions the kind/tag/action filter
	// selects; nil when the filter has none of those fields.
	matches map[string]bool
}

// CountsAction reports whether a contact with the action counts toward the
// cap (before the channel filter).
func (c *PolicyCap) CountsAction(id string) bool {
	return c.matches == nil || c.matches[id]
}

// FiltersActions reports whether CountsAction can be false: the filter
// has kinds, tags or actions.
func (c *PolicyCap) FiltersActions() bool { return c.matches != nil }

// CountsChannel reports whether the channel is within the cap's filter.
func (c *PolicyCap) CountsChannel(ch string) bool {
	if len(c.Channels) == 0 {
		return true
	}
	for _, x := range c.Channels {
		if x == ch {
			return true
		}
	}
	return false
}

// Channel is an outbound channel definition, used for channel "auto".
type Channel struct {
	ID    string
	Index int
	When  *Expr // nil: always
	Score *Expr // nil: 0
}

// Placement is a slot that asks for decisions.
type Placement struct {
	Name     string
	Limit    int
	Fallback *Action
	// Candidates lists the actions naming the placement, ordered by
	// priority (desc) then id (asc): the static part of the ranking.
	Candidates []*Action
	// Gates holds, at the index of each candidate, what a decision
	// checks of it first, in one array: on a large ruleset most
	// candidates are ruled out by these alone, without a read of the
	// Action or of its condition's Expr, each a miss of the CPU's caches
	// on a server whose memory is mostly customers.
	Gates []Gate
}

// Gate is what a decision checks of a candidate action: its priority,
// its schedule, whether it has channels or stop_after outcomes to check,
// its condition, its score, and its Guard. The gates of a placement are
// one array, so a decision reads no Action of a candidate until it is
// selected (or its channels, stop_after outcomes or budget are checked,
// or the fast path leaves it to the program).
type Gate struct {
	from, until int64 // Schedule in Unix ns: from inclusive, until exclusive
	priority    int
	when        Cond
	score       numFunc // Action.Score's fast closure; nil: see hasScore
	guard       *Guard
	index       int32 // Action.Index
	plain       bool  // no Channels, no StopAfter
	hasScore    bool  // Action.Score is not nil
	attrOnly    bool  // Action.When reads only the customer's attributes
}

func newGate(a *Action, when Cond, g *Guard, attrOnly bool) Gate {
	gt := Gate{from: unixNanos(a.Schedule.From, math.MinInt64), until: unixNanos(a.Schedule.Until, math.MaxInt64),
		priority: a.Priority, when: when, guard: g, index: int32(a.Index),
		plain: a.Channels == nil && len(a.StopAfter) == 0, hasScore: a.Score != nil, attrOnly: attrOnly}
	if a.Score != nil {
		gt.score = a.Score.num
	}
	return gt
}

// Guard is what a decision checks of a candidate once its condition
// holds (SPEC 4.7 step 2, after when): the policies that suppress it, its
// own caps, the cap policies that count it, and whether it has a budget.
// Actions whose guards are equal share one (Ruleset.Guards): a ruleset of
// 1,000 actions has a handful, which stay in the CPU's caches, where each
// Action is a miss.
type Guard struct {
	SuppressedBy []int // as Action.SuppressedBy
	Caps         []Cap // as Action.Caps
	CappedBy     []int // as Action.CappedBy
	Budget       bool  // Action.Budget is not nil
}

// Cond is the fast program of a condition, apart from its Expr, so that
// evaluating it reads no Expr (see Placement.Gates and
// Ruleset.SegmentConds). The programs of a ruleset's segments and
// candidates lie in one array, in the order decisions run them
// (loader.buildGates).
type Cond struct {
	code []instr // nil without a condition, or without a fast program
	has  bool    // there is a condition
}

// Eval evaluates the condition as its Expr's FastBool does (true without
// a condition); ok is false when the caller must run the Expr's program.
func (c *Cond) Eval(e *Env) (v, ok bool) {
	if c.code == nil {
		return !c.has, !c.has
	}
	return runCond(c.code, e)
}

// Times at the ends of what Unix nanoseconds hold.
var (
	minNanos = time.Unix(0, math.MinInt64)
	maxNanos = time.Unix(0, math.MaxInt64)
)

// unixNanos is t in Unix nanoseconds, open for the zero time, clamped to
// int64 for times before 1678 or after 2262.
func unixNanos(t time.Time, open int64) int64 {
	switch {
	case t.IsZero():
		return open
	case !t.After(minNanos):
		return math.MinInt64
	case !t.Before(maxNanos):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// Live reports whether now (Unix ns) is inside the action's schedule, as
// Schedule.Contains does for the time (for any time after the first and
// before the last instant Unix nanoseconds hold, which stand for all
// times beyond).
func (g *Gate) Live(now int64) bool { return now >= g.from && now < g.until }

// Priority is the action's priority.
func (g *Gate) Priority() int { return g.priority }

// Plain reports whether the action has no channels (it allows any) and no
// stop_after outcomes: nothing to check of it before its condition.
func (g *Gate) Plain() bool { return g.plain }

// When evaluates the action's condition: Cond.Eval of Action.When.
func (g *Gate) When(e *Env) (v, ok bool) { return g.when.Eval(e) }

// Score evaluates the action's score as Action.Score's FastNumber does
// (0 without a score); ok is false when the caller must evaluate the
// Expr.
func (g *Gate) Score(e *Env) (float64, bool) {
	if g.score == nil {
		return 0, !g.hasScore
	}
	return g.score(e)
}

// AttrOnly reports whether the action has a condition that reads nothing
// but the customer's attributes, itself and through the segments it uses
// (see attronly.go).
func (g *Gate) AttrOnly() bool { return g.attrOnly }

// Guard is what is checked of the action after its condition.
func (g *Gate) Guard() *Guard { return g.guard }

// Index is the action's Index.
func (g *Gate) Index() int { return int(g.index) }
