package rules

import (
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
)

// Env is the environment compiled expressions run against: a map from the
// names of SPEC 4.1 to values. The engine keeps one per pooled decision
// state; the functions are bound once, to that state's Funcs, and the
// variables are set per decision. A map environment lets the VM load every
// name with one map lookup and no allocation, and the function signatures
// chosen below let it call them without reflection or argument slices.
type Env struct {
	m    map[string]any
	cust Attributes
	ctx  map[string]any
	now  time.Time
	f    Funcs

	// memo holds the attributes the fast path read for the current
	// customer, by attrSlot: rules read the same few attributes once per
	// candidate, and a map lookup in a customer the CPU's caches do not
	// hold costs more than the comparison it feeds. An entry is current
	// when its memoAt is gen, which SetCustomer, SetRequest and Clear
	// advance.
	memo   []any
	memoAt []uint32
	gen    uint32
	// nums holds, the same way, the attributes the fast path read as
	// numbers (attrNum), unboxed: a number decoded from an encoded record
	// into an any is an allocation. numKind says what the attribute was.
	nums    []float64
	numKind []attrKind
	numAt   []uint32
	// calls holds, the same way, what the fast path's count(), sum() and
	// days_since() answered for the current customer and time, by
	// callSlot: segments and actions ask the same few of them again and
	// again in one decision.
	calls   []float64
	callsAt []uint32
	// whole is the customer's attributes as one map, for programs that
	// use customer as a value (customer·all), when wholeAt is gen.
	whole   map[string]any
	wholeAt uint32
	// scan is cust when it is an AttrScanner: at the first attribute a
	// decision reads, one pass (scanned) notes where the value of each
	// attribute rules read is, pos[slot] current when posAt[slot] is gen,
	// instead of a search of the encoded record per attribute. scanOK
	// is what ScanAttrs answered at generation scanAt; scanFn is scanOne,
	// made once; scanSlots is the slot table the scan reads; layout is
	// the keys the last scans met, at their places, with their slots;
	// scanIdx counts the keys of the scan under way.
	scan      AttrScanner
	scanFn    func(key string, at int)
	scanAt    uint32
	scanOK    bool
	scanSlots *map[string]int
	layout    []keySlot
	scanIdx   int
	pos       []int
	posAt     []uint32
}

// Attributes is a customer's attributes as the rules read them. The store
// keeps a cached customer's attributes encoded, not as a map, and decodes
// the ones a rule asks for (store.Customer implements Attributes).
type Attributes interface {
	// Attr returns attribute key, nil if it is absent.
	Attr(key string) any
	// AttributeMap returns all the attributes, which the caller must not
	// modify.
	AttributeMap() map[string]any
}

// AttrScanner is Attributes that can also step through all of them in one
// pass (store.Customer over a store's encoded record): where finding a key
// means stepping over the keys before it, one pass that notes where each
// value is costs less than a search per attribute.
type AttrScanner interface {
	Attributes
	// ScanAttrs calls fn with the key of each attribute and the position
	// of its value, for AttrAt. It reports false, calling nothing, when
	// a search costs no more (attributes held in a map).
	ScanAttrs(fn func(key string, at int)) bool
	// AttrAt decodes the value at position at, which ScanAttrs gave.
	AttrAt(at int) any
	// NumberAt decodes the value at position at as AttrAt does when it
	// is a number, without boxing it in an any; ok is false when it is
	// not a number.
	NumberAt(at int) (float64, bool)
}

// MapAttributes is Attributes held in a map.
type MapAttributes map[string]any

// Attr implements Attributes.
func (m MapAttributes) Attr(key string) any { return m[key] }

// AttributeMap implements Attributes.
func (m MapAttributes) AttributeMap() map[string]any { return m }

// slots numbers the keys compiled rules use (attribute names, event
// function calls) for Env's memos. Rule files are written by operators
// and name few; a table only grows, by the keys of new rules. Readers
// that must not lock (Env.scanOne) read snapshot, a copy of the table
// replaced at each new key, which happens only when rules compile.
type slots[K comparable] struct {
	mu       sync.Mutex
	m        map[K]int
	snapshot atomic.Pointer[map[K]int]
}

// slot returns the slot of k, numbering it if it is new.
func (t *slots[K]) slot(k K) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[K]int{}
	}
	n, ok := t.m[k]
	if !ok {
		n = len(t.m)
		t.m[k] = n
		snap := maps.Clone(t.m)
		t.snapshot.Store(&snap)
	}
	return n
}

// numbered returns the table as it is, a map that is never modified,
// through a pointer that changes when the table does (nil: empty).
func (t *slots[K]) numbered() *map[K]int { return t.snapshot.Load() }

// callKey names one event function call with literal arguments.
type callKey struct {
	fn     string
	typ    string
	window time.Duration
}

var (
	attrSlots slots[string]  // for Env.memo
	callSlots slots[callKey] // for Env.calls
)

// attrSlot returns the memo slot of attribute key.
func attrSlot(key string) int { return attrSlots.slot(key) }

// callSlot returns the memo slot of a call of fn (fnCount, fnSum,
// fnDaysSince) on event type typ over window (0 for days_since).
func callSlot(fn, typ string, window time.Duration) int {
	return callSlots.slot(callKey{fn, typ, window})
}

// call returns what the event function call with memo slot slot answers
// for the current customer and time, asking f only the first time.
func (e *Env) call(slot int, f func(e *Env) float64) float64 {
	if slot < len(e.callsAt) && e.callsAt[slot] == e.gen {
		return e.calls[slot]
	}
	v := f(e)
	if slot >= len(e.callsAt) {
		e.calls = append(e.calls, make([]float64, slot+1-len(e.calls))...)
		e.callsAt = append(e.callsAt, make([]uint32, slot+1-len(e.callsAt))...)
	}
	e.calls[slot], e.callsAt[slot] = v, e.gen
	return v
}

// attr returns attribute key of the customer, which has memo slot slot.
func (e *Env) attr(slot int, key string) any {
	if slot < len(e.memoAt) && e.memoAt[slot] == e.gen {
		return e.memo[slot]
	}
	var v any
	if e.scanned() {
		// The scan noted where each value is; a key it did not see is
		// absent.
		if slot < len(e.posAt) && e.posAt[slot] == e.gen {
			v = e.scan.AttrAt(e.pos[slot])
		}
	} else {
		v = e.cust.Attr(key)
	}
	if slot >= len(e.memoAt) {
		e.memo = append(e.memo, make([]any, slot+1-len(e.memo))...)
		e.memoAt = append(e.memoAt, make([]uint32, slot+1-len(e.memoAt))...)
	}
	e.memo[slot], e.memoAt[slot] = v, e.gen
	return v
}

// attrKind is what attrNum found: no attribute (or null), a number, or
// another value.
type attrKind uint8

const (
	kindAbsent attrKind = iota
	kindNumber
	kindOther
)

// attrNum reads attribute key, which has memo slot slot, as a number:
// attr's value when it is a number, decoded without boxing it when the
// customer's record is encoded.
func (e *Env) attrNum(slot int, key string) (float64, attrKind) {
	if slot < len(e.numAt) && e.numAt[slot] == e.gen {
		return e.nums[slot], e.numKind[slot]
	}
	var x float64
	kind := kindAbsent
	if e.scanned() {
		if slot < len(e.posAt) && e.posAt[slot] == e.gen {
			var isNum bool
			if x, isNum = e.scan.NumberAt(e.pos[slot]); isNum {
				kind = kindNumber
			} else {
				x, kind = kindOf(e.attr(slot, key))
			}
		}
	} else {
		x, kind = kindOf(e.attr(slot, key))
	}
	if slot >= len(e.numAt) {
		n := slot + 1
		e.nums = append(e.nums, make([]float64, n-len(e.nums))...)
		e.numKind = append(e.numKind, make([]attrKind, n-len(e.numKind))...)
		e.numAt = append(e.numAt, make([]uint32, n-len(e.numAt))...)
	}
	e.nums[slot], e.numKind[slot], e.numAt[slot] = x, kind, e.gen
	return x, kind
}

// kindOf is what attrNum answers for an attribute's value v.
func kindOf(v any) (float64, attrKind) {
	if v == nil {
		return 0, kindAbsent
	}
	if x, ok := number(v); ok {
		return x, kindNumber
	}
	return 0, kindOther
}

// attrNumOr is customer.X ?? d as a number (d when hasD and the customer
// has no X); ok is false when it is not one.
func (e *Env) attrNumOr(slot int, key string, d float64, hasD bool) (float64, bool) {
	switch x, kind := e.attrNum(slot, key); kind {
	case kindNumber:
		return x, true
	case kindAbsent:
		return d, hasD
	}
	return 0, false
}

// scanned reports whether the positions of the customer's attributes are
// noted (pos, posAt), scanning them at the first call for the customer.
func (e *Env) scanned() bool {
	if e.scan == nil {
		return false
	}
	if e.scanAt != e.gen {
		e.scanAt = e.gen
		if t := attrSlots.numbered(); t != e.scanSlots {
			e.scanSlots = t
			e.layout = e.layout[:0] // its slots are the old table's
			if n := len(*t); len(e.posAt) < n {
				e.pos = append(e.pos, make([]int, n-len(e.pos))...)
				e.posAt = append(e.posAt, make([]uint32, n-len(e.posAt))...)
			}
		}
		e.scanIdx = 0
		e.scanOK = e.scanSlots != nil && e.scan.ScanAttrs(e.scanFn)
	}
	return e.scanOK
}

// scanOne notes where the value of attribute key is, if rules read it.
// Customers mostly have the same attributes in the same order: the slot
// of the key at the same place in the previous customer's attributes is
// taken without a lookup when the key is the same.
func (e *Env) scanOne(key string, at int) {
	i := e.scanIdx
	e.scanIdx++
	var slot int
	if i < len(e.layout) && e.layout[i].key == key {
		slot = e.layout[i].slot
	} else {
		var ok bool
		if slot, ok = (*e.scanSlots)[key]; !ok {
			slot = -1
		}
		// The key is a slice of the customer's record, which the
		// layout keeps alive until a key replaces it: one record.
		if i < len(e.layout) {
			e.layout[i] = keySlot{key, slot}
		} else {
			e.layout = append(e.layout, keySlot{key, slot})
		}
	}
	if slot >= 0 {
		e.pos[slot], e.posAt[slot] = at, e.gen
	}
}

// keySlot is an attribute key and its slot (-1: no rule reads it).
type keySlot struct {
	key  string
	slot int
}

// Funcs answers the rule functions for one decision. Windows are already
// parsed; WindowAll means "ever".
type Funcs interface {
	Count(eventType string, window time.Duration) int
	Sum(eventType string, window time.Duration) float64
	DaysSince(eventType string) float64
	// Segment evaluates the segment with index i in Ruleset.Segments.
	Segment(i int) bool
	Shown(action string, window time.Duration) int
	Outcomes(action, outcome string, window time.Duration) int
	// Propensity samples the learned conversion probability of the action
	// whose score is being computed.
	Propensity() float64
}

// Names in the environment. customer.X compiles to customer·get("X"),
// with the default of X if the schema gives one, and customer.id to
// customer·id; what is left of customer compiles to customer·all() (see
// wholeCustomer), so the environment's customer is only a placeholder.
const (
	varCustomer  = "customer"
	varContext   = "context"
	varPlacement = "placement"
	varChannel   = "channel"
	varNow       = "now"
	// Names that are no identifiers, so rules cannot reach them directly.
	customerIDVar = "customer·id"
	getAttrFn     = "customer·get"
	allAttrsFn    = "customer·all"
	getContextFn  = "context·get"
	segmentAtFn   = "segment·at"
	nowGetFn      = "now·get"

	fnCount      = "count"
	fnSum        = "sum"
	fnDaysSince  = "days_since"
	fnSegment    = "segment"
	fnShown      = "shown"
	fnOutcomes   = "outcomes"
	fnPropensity = "propensity"
)

var (
	emptyMap   = map[string]any{}
	emptyAttrs = MapAttributes(emptyMap)
)

// NewEnv returns an environment whose functions answer from f.
func NewEnv(f Funcs) *Env {
	window := func(v any) time.Duration {
		s, ok := v.(string)
		if !ok {
			panic(fmt.Errorf("a window must be a string, not %T", v))
		}
		w, err := ParseWindow(s)
		if err != nil {
			panic(fmt.Errorf("window %q: %w", s, err))
		}
		return w
	}
	str := func(v any, what string) string {
		s, ok := v.(string)
		if !ok {
			panic(fmt.Errorf("%s must be a string, not %T", what, v))
		}
		return s
	}
	// gen starts at 1: a memo slot the arrays grow to holds generation 0,
	// which must never look current.
	e := &Env{cust: emptyAttrs, ctx: emptyMap, f: f, gen: 1}
	e.scanFn = e.scanOne
	e.m = map[string]any{
		varCustomer:   emptyMap,
		varContext:    emptyMap,
		varPlacement:  "",
		varChannel:    "",
		varNow:        time.Time{},
		customerIDVar: "",
		fnCount: func(typ, w any) any {
			return f.Count(str(typ, "an event type"), window(w))
		},
		fnSum: func(typ, w any) any {
			return f.Sum(str(typ, "an event type"), window(w))
		},
		fnDaysSince: f.DaysSince,
		// segment("name") compiles to segment·at(index).
		segmentAtFn: f.Segment,
		fnShown: func(action, w any) any {
			return f.Shown(str(action, "an action id"), window(w))
		},
		fnOutcomes: func(args ...any) any {
			if len(args) != 3 {
				panic(fmt.Errorf("outcomes takes 3 arguments, not %d", len(args)))
			}
			return f.Outcomes(str(args[0], "an action id"), str(args[1], "an outcome"), window(args[2]))
		},
		fnPropensity: f.Propensity,
		// customer.X and context.X compile to these: a plain map lookup,
		// where expr's generic fetch would allocate through reflection.
		getAttrFn:    func(k any) any { return e.cust.Attr(k.(string)) },
		allAttrsFn:   e.allAttributes,
		getContextFn: func(k any) any { return e.ctx[k.(string)] },
		nowGetFn:     func(m any) any { return nowCalls[m.(string)](e.now) },
	}
	return e
}

// nowCalls are the calls on now that the runtime program makes directly
// (now.Hour() becomes now·get("Hour"), now.Weekday().String()
// now·get("Weekday.String")), where expr would go through reflection and
// allocate at every call.
var nowCalls = map[string]func(time.Time) any{
	"Year":           func(t time.Time) any { return t.Year() },
	"Month":          func(t time.Time) any { return t.Month() },
	"Day":            func(t time.Time) any { return t.Day() },
	"Hour":           func(t time.Time) any { return t.Hour() },
	"Minute":         func(t time.Time) any { return t.Minute() },
	"Second":         func(t time.Time) any { return t.Second() },
	"Weekday":        func(t time.Time) any { return t.Weekday() },
	"YearDay":        func(t time.Time) any { return t.YearDay() },
	"Unix":           func(t time.Time) any { return t.Unix() },
	"Weekday.String": func(t time.Time) any { return t.Weekday().String() },
	"Month.String":   func(t time.Time) any { return t.Month().String() },
}

// Map returns the environment to pass to vm.Run.
func (e *Env) Map() map[string]any { return e.m }

// SetCustomer sets the customer's id and attributes. The attributes are
// read, never modified.
func (e *Env) SetCustomer(id string, attrs Attributes) {
	if attrs == nil {
		attrs = emptyAttrs
	}
	e.cust = attrs
	e.scan, _ = attrs.(AttrScanner)
	e.m[customerIDVar] = id
	e.forget()
}

// allAttributes returns the customer's attributes as one map, for a
// program that uses customer as a value ("tier" in customer), decoding
// them once per customer.
func (e *Env) allAttributes() any {
	if e.wholeAt != e.gen {
		e.whole, e.wholeAt = e.cust.AttributeMap(), e.gen
		if e.whole == nil {
			e.whole = emptyMap
		}
	}
	return e.whole
}

// forget makes every memo entry (attributes and calls) stale.
func (e *Env) forget() {
	e.gen++
	if e.gen == 0 { // wrapped: no entry may look current
		clear(e.memoAt)
		clear(e.callsAt)
		clear(e.posAt)
		e.wholeAt, e.scanAt = 0, 0
		e.gen = 1
	}
}

// SetRequest sets the request's context, channel and time.
func (e *Env) SetRequest(context map[string]any, channel string, now time.Time) {
	if context == nil {
		context = emptyMap
	}
	e.m[varContext] = context
	e.ctx = context
	e.setString(varChannel, channel)
	e.m[varNow] = now
	e.now = now
	e.forget() // the event functions' answers depend on now
}

// SetPlacement sets the placement being decided.
func (e *Env) SetPlacement(p string) { e.setString(varPlacement, p) }

// setString sets variable k to s, keeping the value it holds when that is
// already s: putting a string in the map boxes it, an allocation, and
// successive decisions mostly ask for the same placements and channel.
func (e *Env) setString(k, s string) {
	if cur, ok := e.m[k].(string); ok && cur == s {
		return
	}
	e.m[k] = s
}

// Clear drops the references to one decision's data.
func (e *Env) Clear() {
	e.m[varContext] = emptyMap
	e.cust, e.ctx, e.whole = emptyAttrs, emptyMap, nil
	clear(e.memo)
	e.forget()
}

// checkEnvFor is the environment the type checker sees: the same names,
// with precise function signatures and, when a schema is declared, a
// customer struct with one typed field per attribute, so unknown
// attributes and mismatched comparisons are found at load time.
func checkEnvFor(customer any) map[string]any {
	return map[string]any{
		varCustomer:   customer,
		varContext:    map[string]any{},
		varPlacement:  "",
		varChannel:    "",
		varNow:        time.Time{},
		customerIDVar: "",
		fnCount:       (func(string, string) int)(nil),
		fnSum:         (func(string, string) float64)(nil),
		fnDaysSince:   (func(string) float64)(nil),
		fnSegment:     (func(string) bool)(nil),
		fnShown:       (func(string, string) int)(nil),
		fnOutcomes:    (func(string, string, string) int)(nil),
		fnPropensity:  (func() float64)(nil),
		getAttrFn:     (func(any) any)(nil),
		allAttrsFn:    (func() any)(nil),
		getContextFn:  (func(any) any)(nil),
		segmentAtFn:   (func(int) bool)(nil),
		nowGetFn:      (func(any) any)(nil),
	}
}

// runtimeEnv is a sample of Env's map, for compiling the programs.
var runtimeEnv = NewEnv(noFuncs{}).Map()

// noFuncs answers nothing; it only gives runtimeEnv its function types.
type noFuncs struct{}

func (noFuncs) Count(string, time.Duration) int            { return 0 }
func (noFuncs) Sum(string, time.Duration) float64          { return 0 }
func (noFuncs) DaysSince(string) float64                   { return 0 }
func (noFuncs) Segment(int) bool                           { return false }
func (noFuncs) Shown(string, time.Duration) int            { return 0 }
func (noFuncs) Outcomes(string, string, time.Duration) int { return 0 }
func (noFuncs) Propensity() float64                        { return 0 }

// Options shared by every compile: rules use the variable now, which the
// caller fixes, not the builtin now() that reads the wall clock; count and
// sum are the rule functions, not expr's builtins of those names;
// timezone(name) would make the process read the system time-zone
// database (a file) on a rule's behalf, so it is gone too (and date()
// with a zone name is refused by exprChecker). What remains of expr's
// builtins computes on its arguments only: no files, network, process
// environment or clock.
var commonOptions = []expr.Option{
	expr.DisableBuiltin("now"),
	expr.DisableBuiltin("count"),
	expr.DisableBuiltin("sum"),
	expr.DisableBuiltin("timezone"),
}

func isRuleFunction(name string) bool {
	switch name {
	case fnCount, fnSum, fnDaysSince, fnSegment, fnShown, fnOutcomes, fnPropensity:
		return true
	}
	return false
}

// rewriter turns customer.id into the id variable and gives attributes
// with a default their default: customer.tier becomes
// (customer.tier ?? "bronze"). For the runtime program (lookups true) it
// also turns customer.X and context.X into direct map lookups.
type rewriter struct {
	defaults map[string]any
	lookups  bool
	segments map[string]int // lookups: segment("name") becomes segment·at(i)
}

func (r rewriter) Visit(np *ast.Node) {
	if call, ok := (*np).(*ast.CallNode); ok && r.lookups {
		r.segmentCall(np, call)
		nowCall(np, call)
		return
	}
	m, ok := (*np).(*ast.MemberNode)
	if !ok {
		return
	}
	id, ok := m.Node.(*ast.IdentifierNode)
	if !ok || (id.Value != varCustomer && id.Value != varContext) {
		return
	}
	prop, ok := m.Property.(*ast.StringNode)
	if !ok {
		return
	}
	if id.Value == varContext {
		if r.lookups {
			ast.Patch(np, lookup(getContextFn, prop))
		}
		return
	}
	if prop.Value == "id" {
		ast.Patch(np, &ast.IdentifierNode{Value: customerIDVar})
		return
	}
	var get ast.Node = m
	if r.lookups {
		get = lookup(getAttrFn, prop)
	} else {
		member := *m
		get = &member
	}
	get.SetLocation(m.Location())
	if d, ok := r.defaults[prop.Value]; ok {
		def := &ast.ConstantNode{Value: d}
		def.SetLocation(m.Location())
		get = &ast.BinaryNode{Operator: "??", Left: get, Right: def}
	}
	if get != ast.Node(m) {
		ast.Patch(np, get)
	}
}

// nowCall turns now.M() into now·get("M"), and now·get("M").String()
// (made from now.M().String(), as Walk visits the inner call first) into
// now·get("M.String"), for the calls in nowCalls.
func nowCall(np *ast.Node, call *ast.CallNode) {
	m, ok := call.Callee.(*ast.MemberNode)
	if !ok || len(call.Arguments) != 0 || m.Optional {
		return
	}
	prop, ok := m.Property.(*ast.StringNode)
	if !ok {
		return
	}
	name := ""
	switch n := m.Node.(type) {
	case *ast.IdentifierNode:
		if n.Value == varNow {
			name = prop.Value
		}
	case *ast.CallNode:
		fn, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || fn.Value != nowGetFn || len(n.Arguments) != 1 || prop.Value != "String" {
			return
		}
		if inner, ok := n.Arguments[0].(*ast.StringNode); ok {
			name = inner.Value + ".String"
		}
	}
	if nowCalls[name] == nil {
		return
	}
	key := &ast.StringNode{Value: name}
	key.SetLocation(prop.Location())
	get := lookup(nowGetFn, key)
	get.SetLocation(call.Location())
	ast.Patch(np, get)
}

// wholeCustomer turns what is left of customer after rewriter, uses of
// the whole object ("tier" in customer, customer[k], $env.customer,
// get($env, "customer")), into customer·all(): the environment holds no
// attribute map to put in customer (only a key of $env computed at run
// time, $env[k] with k "customer", still finds the empty placeholder). It
// runs after rewriter, which must see customer.X first.
type wholeCustomer struct{}

func (wholeCustomer) Visit(np *ast.Node) {
	switch n := (*np).(type) {
	case *ast.IdentifierNode:
		if n.Value != varCustomer {
			return
		}
	case *ast.MemberNode:
		if !envCustomer(n.Node, n.Property) {
			return
		}
	case *ast.BuiltinNode:
		if n.Name != "get" || len(n.Arguments) != 2 || !envCustomer(n.Arguments[0], n.Arguments[1]) {
			return
		}
	default:
		return
	}
	call := &ast.CallNode{Callee: &ast.IdentifierNode{Value: allAttrsFn}}
	call.SetLocation((*np).Location())
	ast.Patch(np, call)
}

// envCustomer reports whether obj[key] is $env's customer.
func envCustomer(obj, key ast.Node) bool {
	env, ok := obj.(*ast.IdentifierNode)
	name, isStr := key.(*ast.StringNode)
	return ok && env.Value == "$env" && isStr && name.Value == varCustomer
}

func lookup(fn string, key *ast.StringNode) ast.Node {
	arg := &ast.StringNode{Value: key.Value}
	arg.SetLocation(key.Location())
	return &ast.CallNode{Callee: &ast.IdentifierNode{Value: fn}, Arguments: []ast.Node{arg}}
}

func (r rewriter) segmentCall(np *ast.Node, call *ast.CallNode) {
	id, ok := call.Callee.(*ast.IdentifierNode)
	if !ok || id.Value != fnSegment || len(call.Arguments) != 1 {
		return
	}
	name, ok := call.Arguments[0].(*ast.StringNode)
	if !ok {
		return
	}
	i, ok := r.segments[name.Value]
	if !ok {
		return
	}
	arg := &ast.IntegerNode{Value: i}
	arg.SetLocation(name.Location())
	ast.Patch(np, &ast.CallNode{Callee: &ast.IdentifierNode{Value: segmentAtFn}, Arguments: []ast.Node{arg}})
}
