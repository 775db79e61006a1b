package rules

import (
	"github.com/expr-lang/expr/ast"
)

// A fast expression is a Go closure compiled from the common shapes of
// rule expressions: constants, customer.X and context.X, segment(),
// count() and sum() with literal arguments, days_since(), and, or, not,
// ??, numeric comparisons and arithmetic, == and != on strings, and in
// over a constant list. It answers without the VM's fixed cost per run.
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
		switch c := n.Value.(type) {
		case bool, string, float64, int, nil:
			v := c
			return func(*Env) (any, bool) { return v, true }
		}
		return nil
	case *ast.CallNode:
		return fastCall(n)
	case *ast.UnaryNode:
		x := compileFast(n.Node)
		if x == nil || (n.Operator != "not" && n.Operator != "!") {
			return nil
		}
		return func(e *Env) (any, bool) {
			v, ok := x(e)
			b, isBool := v.(bool)
			if !ok || !isBool {
				return nil, false
			}
			return !b, true
		}
	case *ast.BinaryNode:
		return fastBinary(n)
	}
	return nil
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
	case getAttrFn, getContextFn:
		if len(args) != 1 {
			return nil
		}
		key, ok := stringArg(args[0])
		if !ok {
			return nil
		}
		if id.Value == getAttrFn {
			slot := attrSlot(key)
			return func(e *Env) (any, bool) { return e.attr(slot, key), true }
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
		if len(args) != 1 {
			return nil
		}
		i, ok := args[0].(*ast.IntegerNode)
		if !ok {
			return nil
		}
		idx := i.Value
		return func(e *Env) (any, bool) { return e.f.Segment(idx), true }
	case fnCount, fnSum:
		if len(args) != 2 {
			return nil
		}
		typ, ok1 := stringArg(args[0])
		ws, ok2 := stringArg(args[1])
		if !ok1 || !ok2 {
			return nil
		}
		w, err := ParseWindow(ws)
		if err != nil {
			return nil // the VM reports the error
		}
		if id.Value == fnCount {
			return func(e *Env) (any, bool) { return e.f.Count(typ, w), true }
		}
		return func(e *Env) (any, bool) { return e.f.Sum(typ, w), true }
	case fnDaysSince:
		if len(args) != 1 {
			return nil
		}
		typ, ok := stringArg(args[0])
		if !ok {
			return nil
		}
		return func(e *Env) (any, bool) { return e.f.DaysSince(typ), true }
	}
	return nil
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
	if n.Operator == "in" {
		return fastIn(n)
	}
	l, r := compileFast(n.Left), compileFast(n.Right)
	if l == nil || r == nil {
		return nil
	}
	switch n.Operator {
	case "and", "&&":
		return func(e *Env) (any, bool) {
			a, ok := l(e)
			ab, isBool := a.(bool)
			if !ok || !isBool {
				return nil, false
			}
			if !ab {
				return false, true
			}
			b, ok := r(e)
			if _, isBool := b.(bool); !ok || !isBool {
				return nil, false
			}
			return b, true
		}
	case "or", "||":
		return func(e *Env) (any, bool) {
			a, ok := l(e)
			ab, isBool := a.(bool)
			if !ok || !isBool {
				return nil, false
			}
			if ab {
				return true, true
			}
			b, ok := r(e)
			if _, isBool := b.(bool); !ok || !isBool {
				return nil, false
			}
			return b, true
		}
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
	case "<", "<=", ">", ">=":
		op := n.Operator
		return func(e *Env) (any, bool) {
			x, y, ok := numbers(e, l, r)
			if !ok {
				return nil, false
			}
			switch op {
			case "<":
				return x < y, true
			case "<=":
				return x <= y, true
			case ">":
				return x > y, true
			}
			return x >= y, true
		}
	case "+", "-", "*", "/":
		op := n.Operator
		return func(e *Env) (any, bool) {
			x, y, ok := numbers(e, l, r)
			if !ok {
				return nil, false
			}
			switch op {
			case "+":
				return x + y, true
			case "-":
				return x - y, true
			case "*":
				return x * y, true
			}
			if y == 0 {
				return nil, false
			}
			return x / y, true
		}
	}
	return nil
}

// numbers evaluates both operands and returns them when both are numbers.
func numbers(e *Env, l, r fastFunc) (float64, float64, bool) {
	a, ok1 := l(e)
	b, ok2 := r(e)
	if !ok1 || !ok2 {
		return 0, 0, false
	}
	x, ok1 := number(a)
	y, ok2 := number(b)
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
