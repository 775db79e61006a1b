package rules

import (
	"time"

	"github.com/expr-lang/expr/ast"
)

// A fast expression is a Go closure compiled from the common shapes of
// rule expressions: constants, customer.X and context.X, segment(),
// count() and sum() with literal arguments, days_since(), and, or, not,
// ??, numeric comparisons and arithmetic, a ternary between numbers,
// int() of a number, == and != on strings, and in over a constant list.
// It answers without the VM's fixed cost per run. A boolean (a condition,
// and, or, not, a comparison) is a program of tests (cond.go), in a
// closure where an expression needs one.
//
// It never decides anything the VM would decide differently: whenever a
// value is not of the kind it handles (a missing attribute compared with
// a number, a string where a number is expected, a division by zero), it
// reports ok=false, and the caller runs the VM program, which gives the
// exact expr result or error. TestFastMatchesVM compares both on random
// customers.
type fastFunc func(e *Env) (v any, ok bool)

// compileFast returns a fast closure for the runtime-compiled tree of an
// expression, or nil when some part of it is not a handled shape.
func compileFast(n ast.Node) fastFunc {
	switch n := n.(type) {
	case *ast.BoolNode:
		v := any(n.Value)
		return func(*Env) (any, bool) { return v, true }
	case *ast.IntegerNode:
		if !exactInt(n.Value) {
			return nil // compared and computed exactly by the VM only
		}
		v := any(n.Value)
		return func(*Env) (any, bool) { return v, true }
	case *ast.FloatNode:
		v := any(n.Value)
		return func(*Env) (any, bool) { return v, true }
	case *ast.StringNode:
		v := any(n.Value)
		return func(*Env) (any, bool) { return v, true }
	case *ast.NilNode:
		return func(*Env) (any, bool) { return nil, true }
	case *ast.ConstantNode:
		if i, ok := n.Value.(int); ok && !exactInt(i) {
			return nil // as an IntegerNode
		}
		switch c := n.Value.(type) {
		case bool, string, float64, int, nil:
			v := c
			return func(*Env) (any, bool) { return v, true }
		}
		return nil
	case *ast.CallNode:
		return fastCall(n)
	case *ast.UnaryNode:
		if n.Operator != "not" && n.Operator != "!" {
			return nil
		}
		return boxedBool(compileBool(n))
	case *ast.BinaryNode:
		return fastBinary(n)
	case *ast.BuiltinNode:
		if n.Name == "int" && len(n.Arguments) == 1 {
			return fastInt(compileFast(n.Arguments[0]))
		}
	}
	return nil
}

// fastInt is int(x) for a number x, as the VM's builtin converts it (a
// float64 truncated toward zero); strings, which it parses, and the
// values it refuses are left to the VM.
func fastInt(x fastFunc) fastFunc {
	if x == nil {
		return nil
	}
	return func(e *Env) (any, bool) {
		v, ok := x(e)
		if !ok {
			return nil, false
		}
		switch v := v.(type) {
		case int:
			return v, true
		case float64:
			return int(v), true
		}
		return nil, false
	}
}

func stringArg(n ast.Node) (string, bool) {
	s, ok := n.(*ast.StringNode)
	if !ok {
		return "", false
	}
	return s.Value, true
}

func fastCall(n *ast.CallNode) fastFunc {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok {
		return nil
	}
	args := n.Arguments
	switch id.Value {
	case getAttrFn:
		slot, key, ok := attrCall(n)
		if !ok {
			return nil
		}
		return func(e *Env) (any, bool) { return e.attr(slot, key), true }
	case getContextFn:
		if len(args) != 1 {
			return nil
		}
		key, ok := stringArg(args[0])
		if !ok {
			return nil
		}
		return func(e *Env) (any, bool) { return e.ctx[key], true }
	case nowGetFn:
		if len(args) != 1 {
			return nil
		}
		name, ok := stringArg(args[0])
		if call := nowCalls[name]; ok && call != nil {
			return func(e *Env) (any, bool) { return call(e.now), true }
		}
		return nil
	case segmentAtFn:
		return boxedBool(segmentCall(n))
	case fnCount:
		f := numeric(n)
		if f == nil {
			return nil
		}
		return func(e *Env) (any, bool) {
			v, _ := f(e)
			return int(v), true // an int, as the VM answers
		}
	case fnSum, fnDaysSince:
		return boxed(numeric(n))
	}
	return nil
}

// attrCall reads customer.X (customer·get("X")): the memo slot and key.
func attrCall(n ast.Node) (slot int, key string, ok bool) {
	c, ok := n.(*ast.CallNode)
	if !ok || len(c.Arguments) != 1 {
		return 0, "", false
	}
	if id, isID := c.Callee.(*ast.IdentifierNode); !isID || id.Value != getAttrFn {
		return 0, "", false
	}
	if key, ok = stringArg(c.Arguments[0]); !ok {
		return 0, "", false
	}
	return attrSlot(key), key, true
}

// attrRead reads customer.X, or customer.X ?? d for a literal d (the
// rewriter's form of an attribute the schema gives a default, or a rule's
// own "customer.favorite ?? \"\""): the memo slot, the key and the
// default (nil without one).
func attrRead(n ast.Node) (slot int, key string, dflt any, ok bool) {
	if b, isBin := n.(*ast.BinaryNode); isBin && b.Operator == "??" {
		if dflt, ok = constantOf(b.Right); !ok || dflt == nil {
			return 0, "", nil, false
		}
		slot, key, ok = attrCall(b.Left)
		return slot, key, dflt, ok
	}
	slot, key, ok = attrCall(n)
	return slot, key, nil, ok
}

// attrNumber reads customer.X (?? d) as a number: the slot and key of
// attrRead, and its default as a float64 (hasD), when the default is
// none or a number the fast path computes with exactly.
func attrNumber(n ast.Node) (slot int, key string, d float64, hasD, ok bool) {
	slot, key, dflt, ok := attrRead(n)
	switch v := dflt.(type) {
	case nil:
		return slot, key, 0, false, ok
	case float64:
		return slot, key, v, true, ok
	case int:
		return slot, key, float64(v), true, ok && exactInt(v)
	}
	return 0, "", 0, false, false
}

// constNum reads a number literal the fast path computes with exactly.
func constNum(n ast.Node) (float64, bool) {
	switch n := n.(type) {
	case *ast.IntegerNode:
		return float64(n.Value), exactInt(n.Value)
	case *ast.FloatNode:
		return n.Value, true
	}
	return 0, false
}

// eventArgs reads the literal arguments of count() and sum(): an event
// type and a window.
func eventArgs(args []ast.Node) (typ string, w time.Duration, ok bool) {
	if len(args) != 2 {
		return "", 0, false
	}
	typ, ok1 := stringArg(args[0])
	ws, ok2 := stringArg(args[1])
	if !ok1 || !ok2 {
		return "", 0, false
	}
	w, err := ParseWindow(ws)
	if err != nil {
		return "", 0, false // the VM reports the error
	}
	return typ, w, true
}

// A numFunc is a fast closure of a number. Arithmetic and comparisons
// pass float64s between numFuncs, so that they allocate nothing: an any
// holding a float64 other than 0 is a heap allocation, one per candidate
// scored by customer.a * 0.5 + customer.b if every step returned an any.
type numFunc func(e *Env) (float64, bool)

// numeric compiles the nodes whose value is always a number: numeric
// literals, count(), sum(), days_since() and arithmetic over numbers. It
// returns nil for any other node, and when some part is not a handled
// shape.
func numeric(n ast.Node) numFunc {
	switch n := n.(type) {
	case *ast.IntegerNode:
		if !exactInt(n.Value) {
			return nil // the VM compares it exactly
		}
		v := float64(n.Value)
		return func(*Env) (float64, bool) { return v, true }
	case *ast.FloatNode:
		v := n.Value
		return func(*Env) (float64, bool) { return v, true }
	case *ast.CallNode:
		if slot, ask, ok := memoCall(n); ok {
			return func(e *Env) (float64, bool) { return e.call(slot, ask), true }
		}
	case *ast.BinaryNode:
		return arithmetic(n)
	case *ast.ConditionalNode:
		return conditional(n)
	}
	return nil
}

// memoCall reads count(), sum() and days_since() with literal
// arguments: the slot of the decision's memo of its answer and the
// function that asks the customer (Env.call).
func memoCall(n *ast.CallNode) (slot int, ask func(e *Env) float64, ok bool) {
	id, isID := n.Callee.(*ast.IdentifierNode)
	if !isID {
		return 0, nil, false
	}
	switch id.Value {
	case fnCount, fnSum:
		typ, w, ok := eventArgs(n.Arguments)
		if !ok {
			return 0, nil, false
		}
		ask = func(e *Env) float64 { return e.f.Sum(typ, w) }
		if id.Value == fnCount {
			ask = func(e *Env) float64 { return float64(e.f.Count(typ, w)) }
		}
		return callSlot(id.Value, typ, w), ask, true
	case fnDaysSince:
		if len(n.Arguments) != 1 {
			return 0, nil, false
		}
		typ, ok := stringArg(n.Arguments[0])
		if !ok {
			return 0, nil, false
		}
		return callSlot(fnDaysSince, typ, 0), func(e *Env) float64 { return e.f.DaysSince(typ) }, true
	}
	return 0, nil, false
}

// conditional compiles cond ? a : b whose branches are numbers (a
// score's "segment(\"vip\") ? 0.3 : 0"); ok is false when cond is not a
// bool, which the VM reports.
func conditional(n *ast.ConditionalNode) numFunc {
	c, a, b := compileBool(n.Cond), numeric(n.Exp1), numeric(n.Exp2)
	if c == nil || a == nil || b == nil {
		return nil
	}
	return func(e *Env) (float64, bool) {
		v, ok := c(e)
		if !ok {
			return 0, false
		}
		if v {
			return a(e)
		}
		return b(e)
	}
}

// compileNum compiles n as an operand that must be a number: numeric
// nodes directly, any other fast closure through number (ok is false
// when its value is not a number).
func compileNum(n ast.Node) numFunc {
	if f := numeric(n); f != nil {
		return f
	}
	// customer.X (?? d), the commonest operand, is read as a number
	// directly, one closure instead of two (four with a default).
	if slot, key, d, hasD, ok := attrNumber(n); ok {
		return func(e *Env) (float64, bool) { return e.attrNumOr(slot, key, d, hasD) }
	}
	f := compileFast(n)
	if f == nil {
		return nil
	}
	return func(e *Env) (float64, bool) {
		v, ok := f(e)
		if !ok {
			return 0, false
		}
		return number(v)
	}
}

// boxed is f as a fastFunc: its number boxed, once, where an any is
// needed.
func boxed(f numFunc) fastFunc {
	if f == nil {
		return nil
	}
	return func(e *Env) (any, bool) {
		x, ok := f(e)
		if !ok {
			return nil, false
		}
		return x, true
	}
}

// maxExact is 2^53: every integer up to it in magnitude is a float64.
const maxExact = 1 << 53

// exact reports whether v, a float64 sum, difference or product of exact
// operands, is below 2^53 in magnitude, where it is the exact result the
// VM's integer arithmetic (exact, wrapping at 2^63) would give. From 2^53
// on the two may differ (2^53 + 1 rounds to 2^53), and the VM decides.
func exact(v float64) bool { return v > -maxExact && v < maxExact }

// exactInt reports whether the integer i is a float64 exactly.
func exactInt(i int) bool { return i >= -maxExact && i <= maxExact }

// arithmetic compiles +, -, * and / over numbers. A sum, difference or
// product beyond 2^53 in magnitude defers to the VM (exact), which
// computes integers (count(), now.Unix(), literals) as integers.
// A quotient is a float64 in the VM too.
func arithmetic(n *ast.BinaryNode) numFunc {
	op, ok := arithOps[n.Operator]
	if !ok {
		return nil
	}
	// A literal operand ("customer.churn_risk * 0.45") is captured, not
	// compiled and called: fewer closures for a decision to call and keep
	// in cache.
	if y, isConst := constNum(n.Right); isConst {
		l := compileNum(n.Left)
		if l == nil {
			return nil
		}
		return func(e *Env) (float64, bool) {
			x, ok := l(e)
			v, valid := op.apply(x, y)
			return v, ok && valid
		}
	}
	if x, isConst := constNum(n.Left); isConst {
		r := compileNum(n.Right)
		if r == nil {
			return nil
		}
		return func(e *Env) (float64, bool) {
			y, ok := r(e)
			v, valid := op.apply(x, y)
			return v, ok && valid
		}
	}
	l, r := compileNum(n.Left), compileNum(n.Right)
	if l == nil || r == nil {
		return nil
	}
	return func(e *Env) (float64, bool) {
		x, y, ok := numbers(e, l, r)
		v, valid := op.apply(x, y)
		return v, ok && valid
	}
}

// arithOp is an arithmetic operator of the fast path.
type arithOp uint8

const (
	opAdd arithOp = iota
	opSub
	opMul
	opDiv
)

var arithOps = map[string]arithOp{"+": opAdd, "-": opSub, "*": opMul, "/": opDiv}

// apply computes x op y as the closures of arithmetic do; valid is false
// where the VM must decide (beyond 2^53, a division by zero).
func (op arithOp) apply(x, y float64) (v float64, valid bool) {
	switch op {
	case opAdd:
		v = x + y
	case opSub:
		v = x - y
	case opMul:
		v = x * y
	default:
		if y == 0 {
			return 0, false
		}
		return x / y, true
	}
	return v, exact(v)
}

// number returns v as a float64 when it is a number.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	return 0, false
}

func fastBinary(n *ast.BinaryNode) fastFunc {
	switch n.Operator {
	case "in":
		return fastIn(n)
	case "+", "-", "*", "/":
		return boxed(arithmetic(n))
	case "<", "<=", ">", ">=", "and", "&&", "or", "||":
		return boxedBool(compileBool(n))
	}
	l, r := compileFast(n.Left), compileFast(n.Right)
	if l == nil || r == nil {
		return nil
	}
	switch n.Operator {
	case "??":
		return func(e *Env) (any, bool) {
			a, ok := l(e)
			if !ok {
				return nil, false
			}
			if a != nil {
				return a, true
			}
			return r(e)
		}
	case "==", "!=":
		eq := n.Operator == "=="
		return func(e *Env) (any, bool) {
			a, ok1 := l(e)
			b, ok2 := r(e)
			if !ok1 || !ok2 {
				return nil, false
			}
			if x, ok := number(a); ok {
				y, ok := number(b)
				if !ok {
					return nil, false
				}
				return (x == y) == eq, true
			}
			if x, ok := a.(string); ok {
				y, ok := b.(string)
				if !ok {
					return nil, false
				}
				return (x == y) == eq, true
			}
			if x, ok := a.(bool); ok {
				y, ok := b.(bool)
				if !ok {
					return nil, false
				}
				return (x == y) == eq, true
			}
			return nil, false
		}
	}
	return nil
}

// A boolFunc is a fast closure of a boolean (a condition, a segment):
// and, or and not pass bools between boolFuncs instead of asserting the
// type of an any at every step.
type boolFunc func(e *Env) (v, ok bool)

// compileBool compiles n as an operand that must be a boolean: its
// program (cond.go) in a closure, whose ok is false when its value is not
// a bool.
func compileBool(n ast.Node) boolFunc { return condFunc(compileCond(n)) }

// condFunc is a condition's program as a closure; nil without one.
func condFunc(code []instr) boolFunc {
	if code == nil {
		return nil
	}
	return func(e *Env) (bool, bool) { return runCond(code, e) }
}

// segmentCall compiles segment() of a segment index (the rewriter's
// segmentAtFn call); nil for any other call.
func segmentCall(n *ast.CallNode) boolFunc {
	idx, ok := segmentIndex(n)
	if !ok {
		return nil
	}
	return func(e *Env) (bool, bool) { return e.f.Segment(idx), true }
}

// segmentIndex reads segment() of a segment index: the index.
func segmentIndex(n ast.Node) (int, bool) {
	c, ok := n.(*ast.CallNode)
	if !ok || len(c.Arguments) != 1 {
		return 0, false
	}
	if id, isID := c.Callee.(*ast.IdentifierNode); !isID || id.Value != segmentAtFn {
		return 0, false
	}
	i, ok := c.Arguments[0].(*ast.IntegerNode)
	if !ok {
		return 0, false
	}
	return i.Value, true
}

// boxedBool is f as a fastFunc (a bool in an any does not allocate).
func boxedBool(f boolFunc) fastFunc {
	if f == nil {
		return nil
	}
	return func(e *Env) (any, bool) {
		v, ok := f(e)
		if !ok {
			return nil, false
		}
		return v, true
	}
}

// comparison compiles, as a closure, a comparison of numbers that is not
// one of cmpTest's instructions ("customer.a > customer.b",
// "customer.a * 2 > 1"). A literal side is captured, as in arithmetic.
func comparison(n *ast.BinaryNode, op cmpOp) boolFunc {
	if c, isConst := constNum(n.Right); isConst {
		return cmpLiteral(compileNum(n.Left), op, c)
	}
	if c, isConst := constNum(n.Left); isConst {
		return cmpLiteral(compileNum(n.Right), op.mirror(), c)
	}
	l, r := compileNum(n.Left), compileNum(n.Right)
	if l == nil || r == nil {
		return nil
	}
	return func(e *Env) (bool, bool) {
		x, y, ok := numbers(e, l, r)
		return op.apply(x, y), ok
	}
}

// cmpLiteral is f(e) op c.
func cmpLiteral(f numFunc, op cmpOp, c float64) boolFunc {
	if f == nil {
		return nil
	}
	return func(e *Env) (bool, bool) {
		x, ok := f(e)
		return op.apply(x, c), ok
	}
}

// cmpOp is a comparison operator of the fast path.
type cmpOp uint8

const (
	opLess cmpOp = iota
	opLessEq
	opGreater
	opGreaterEq
)

var cmpOps = map[string]cmpOp{"<": opLess, "<=": opLessEq, ">": opGreater, ">=": opGreaterEq}

// mirror is the operator that compares y with x as op compares x with y:
// x < y is y > x (false both ways for NaN).
func (op cmpOp) mirror() cmpOp {
	switch op {
	case opLess:
		return opGreater
	case opLessEq:
		return opGreaterEq
	case opGreater:
		return opLess
	}
	return opLessEq
}

func (op cmpOp) apply(x, y float64) bool {
	switch op {
	case opLess:
		return x < y
	case opLessEq:
		return x <= y
	case opGreater:
		return x > y
	}
	return x >= y
}

// numbers evaluates both operands; ok is false unless both are numbers.
func numbers(e *Env, l, r numFunc) (x, y float64, ok bool) {
	x, ok1 := l(e)
	y, ok2 := r(e)
	return x, y, ok1 && ok2
}

// fastIn handles x in [constants] (strings or numbers).
func fastIn(n *ast.BinaryNode) fastFunc {
	l := compileFast(n.Left)
	if l == nil {
		return nil
	}
	strs := map[string]bool{}
	nums := map[float64]bool{}
	switch r := n.Right.(type) {
	case *ast.ConstantNode:
		m, ok := r.Value.(map[string]struct{})
		if !ok {
			return nil
		}
		for k := range m {
			strs[k] = true
		}
	case *ast.ArrayNode:
		for _, it := range r.Nodes {
			switch c := it.(type) {
			case *ast.StringNode:
				strs[c.Value] = true
			case *ast.IntegerNode:
				nums[float64(c.Value)] = true
			case *ast.FloatNode:
				nums[c.Value] = true
			default:
				return nil
			}
		}
	default:
		return nil
	}
	if len(strs) > 0 && len(nums) > 0 {
		return nil
	}
	// Only a value of the list's kind is answered here: the VM decides
	// (or fails) for anything else.
	if len(nums) > 0 {
		return func(e *Env) (any, bool) {
			a, ok := l(e)
			x, isNum := number(a)
			if !ok || !isNum {
				return nil, false
			}
			return nums[x], true
		}
	}
	return func(e *Env) (any, bool) {
		a, ok := l(e)
		s, isStr := a.(string)
		if !ok || !isStr {
			return nil, false
		}
		return strs[s], true
	}
}

// Fast evaluates the expression without the VM when it can; ok is false
// when the caller must run the program.
func (x *Expr) Fast(e *Env) (any, bool) {
	if x.fast == nil {
		return nil, false
	}
	return x.fast(e)
}

// Typed reports whether FastBool (a condition) or FastNumber (a score)
// answers exactly when Fast does: a caller whose typed call did not
// answer can go straight to the program.
func (x *Expr) Typed() bool { return x.cond != nil || x.num != nil }

// FastBool evaluates a condition without the VM when it can; ok is false
// when the caller must run the program.
func (x *Expr) FastBool(e *Env) (v, ok bool) {
	if x.cond == nil {
		return false, false
	}
	return runCond(x.cond, e)
}

// FastNumber evaluates a score that is always a number (arithmetic,
// count(), sum(), days_since()) without the VM and without boxing its
// result; ok is false when the caller must use Fast or run the program.
func (x *Expr) FastNumber(e *Env) (float64, bool) {
	if x.num == nil {
		return 0, false
	}
	return x.num(e)
}
