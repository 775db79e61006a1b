package rules

import (
	"math"

	"github.com/expr-lang/expr/ast"
)

// A condition's fast path is a small program rather than a tree of
// closures: and, or and not become jumps between its tests, and the
// commonest tests (segment(); customer.X, with its default, or count(),
// sum(), days_since() compared with a number literal; customer.X == "s")
// are instructions, not closures. A decision on 1,000 actions runs a
// few dozen conditions and segments, each a few tests; as closures each
// test is an indirect call to an object of its own (four for an
// attribute with a default), as instructions the conditions of the
// segments and of a placement's candidates lie in one array, in the
// order decisions run them (loader.buildGates).
//
// Every test either answers a bool or reports ok=false, and a program
// runs its tests in the order, and with the short-circuits, of the
// closures and the VM: a test whose ok is false makes the whole program's
// ok false, and the caller runs the VM.

// testOp is what an instruction tests.
type testOp uint8

const (
	testSegment testOp = iota // segment(arg)
	testAttr                  // customer.X (attribute slot arg, ?? ref.dnum) cmp c
	testString                // customer.X (?? ref.dflt) == ref.str, != if neq
	testCall                  // count(), sum() or days_since() (call slot arg) cmp c
	testFunc                  // any other boolean: ref.fn
)

// Where an instruction goes next: the index of an instruction, or one of
// the two ends.
const (
	endTrue  int16 = -1
	endFalse int16 = -2
)

// instr is one test of a condition's program and where to go on each
// answer. 32 bytes: two to a cache line.
type instr struct {
	op              testOp
	cmp             cmpOp
	dflt            bool // the attribute's default (ref.dnum, ref.dflt) applies when the customer has no X
	neq             bool // testString: !=
	onTrue, onFalse int16
	arg             int32   // segment index, attribute slot or call slot
	c               float64 // the literal of testAttr and testCall
	ref             *testRef
}

// testRef holds what an instruction needs only on a miss of the
// decision's memo (an attribute's key, a call's question) or for a test
// that is a closure; decisions mostly never read it.
type testRef struct {
	key  string
	dflt any     // testString: the attribute's default
	dnum float64 // testAttr: the attribute's default
	str  string  // testString's literal
	ask  func(e *Env) float64
	fn   boolFunc
}

// compileCond compiles n, a condition, into a program; nil when some
// part of it is not a handled shape (the VM decides).
func compileCond(n ast.Node) []instr {
	var b condBuilder
	if _, ok := b.emit(n, endTrue, endFalse); !ok {
		return nil
	}
	// emit appends the tests right to left (a right operand first, so that
	// the left one knows where to jump): reversed, the program starts at 0
	// and mostly runs forward.
	code, last := b.code, int16(len(b.code)-1)
	for i, j := 0, len(code)-1; i < j; i, j = i+1, j-1 {
		code[i], code[j] = code[j], code[i]
	}
	for i := range code {
		if code[i].onTrue >= 0 {
			code[i].onTrue = last - code[i].onTrue
		}
		if code[i].onFalse >= 0 {
			code[i].onFalse = last - code[i].onFalse
		}
	}
	return code
}

type condBuilder struct{ code []instr }

// emit compiles n to continue at t when it holds and at f when not, and
// returns the index of its first test.
func (b *condBuilder) emit(n ast.Node, t, f int16) (int16, bool) {
	switch n := n.(type) {
	case *ast.UnaryNode:
		if n.Operator == "not" || n.Operator == "!" {
			return b.emit(n.Node, f, t)
		}
	case *ast.BinaryNode:
		switch n.Operator {
		case "and", "&&":
			r, ok := b.emit(n.Right, t, f)
			if !ok {
				return 0, false
			}
			return b.emit(n.Left, r, f)
		case "or", "||":
			r, ok := b.emit(n.Right, t, f)
			if !ok {
				return 0, false
			}
			return b.emit(n.Left, t, r)
		}
	}
	in, ok := test(n)
	if !ok || len(b.code) >= math.MaxInt16 {
		return 0, false
	}
	in.onTrue, in.onFalse = t, f
	b.code = append(b.code, in)
	return int16(len(b.code) - 1), true
}

// test compiles n, a boolean that is not and, or or not, into one
// instruction.
func test(n ast.Node) (instr, bool) {
	if idx, ok := segmentIndex(n); ok {
		return instr{op: testSegment, arg: int32(idx)}, true
	}
	if b, isBin := n.(*ast.BinaryNode); isBin {
		if op, isCmp := cmpOps[b.Operator]; isCmp {
			return cmpTest(b, op)
		}
		if in, ok := stringTest(b); ok {
			return in, true
		}
	}
	f := compileFast(n)
	if f == nil {
		return instr{}, false
	}
	fn := func(e *Env) (bool, bool) {
		v, ok := f(e)
		b, isBool := v.(bool)
		return b, ok && isBool
	}
	return instr{op: testFunc, ref: &testRef{fn: fn}}, true
}

// cmpTest compiles the comparison of customer.X, count(), sum() or
// days_since() with a number literal, the commonest test ("customer.ltv >
// 1994", "count(\"view\", \"7d\") > 1"), into an instruction; any other
// comparison is a closure.
func cmpTest(n *ast.BinaryNode, op cmpOp) (instr, bool) {
	// A literal on the left compares as its mirror: c < x is x > c, for
	// NaN too.
	x, xop := n.Left, op
	c, isLit := constNum(n.Right)
	if !isLit {
		if c, isLit = constNum(n.Left); isLit {
			x, xop = n.Right, op.mirror()
		}
	}
	if isLit {
		if slot, key, d, hasD, ok := attrNumber(x); ok {
			return instr{op: testAttr, cmp: xop, dflt: hasD, arg: int32(slot), c: c,
				ref: &testRef{key: key, dnum: d}}, true
		}
		if call, isCall := x.(*ast.CallNode); isCall {
			if slot, ask, ok := memoCall(call); ok {
				return instr{op: testCall, cmp: xop, arg: int32(slot), c: c, ref: &testRef{ask: ask}}, true
			}
		}
	}
	if fn := comparison(n, op); fn != nil {
		return instr{op: testFunc, ref: &testRef{fn: fn}}, true
	}
	return instr{}, false
}

// stringTest compiles customer.X == "s" and != (with X's default, and
// the literal on either side) into an instruction. It answers only when
// the attribute is a string; the VM decides the rest.
func stringTest(n *ast.BinaryNode) (instr, bool) {
	if n.Operator != "==" && n.Operator != "!=" {
		return instr{}, false
	}
	x, lit := n.Left, n.Right
	if _, isStr := lit.(*ast.StringNode); !isStr {
		x, lit = lit, x
	}
	s, isStr := lit.(*ast.StringNode)
	if !isStr {
		return instr{}, false
	}
	slot, key, dflt, ok := attrRead(x)
	if !ok {
		return instr{}, false
	}
	return instr{op: testString, neq: n.Operator == "!=", dflt: dflt != nil, arg: int32(slot),
		ref: &testRef{key: key, dflt: dflt, str: s.Value}}, true
}

// runCond runs a condition's program.
func runCond(code []instr, e *Env) (v, ok bool) {
	for i := 0; ; {
		in := &code[i]
		switch in.op {
		case testSegment:
			v, ok = e.f.Segment(int(in.arg)), true
		case testAttr:
			switch x, kind := e.attrNumOf(in); kind {
			case kindNumber:
				v, ok = in.cmp.apply(x, in.c), true
			case kindAbsent:
				v, ok = in.cmp.apply(in.ref.dnum, in.c), in.dflt
			default:
				ok = false
			}
		case testString:
			var s string
			s, ok = e.attrOf(in).(string)
			v = (s == in.ref.str) != in.neq
		case testCall:
			v, ok = in.cmp.apply(e.callOf(int(in.arg), in.ref), in.c), true
		default:
			v, ok = in.ref.fn(e)
		}
		if !ok {
			return false, false
		}
		next := in.onFalse
		if v {
			next = in.onTrue
		}
		if next < 0 {
			return next == endTrue, true
		}
		i = int(next)
	}
}

// attrOf is the attribute a testString reads, or its default, reading
// the instruction's key only on a miss of the memo and its default only
// when the customer has no value.
func (e *Env) attrOf(in *instr) any {
	var v any
	if slot := int(in.arg); slot < len(e.memoAt) && e.memoAt[slot] == e.gen {
		v = e.memo[slot]
	} else {
		v = e.attr(slot, in.ref.key)
	}
	if v == nil && in.dflt {
		return in.ref.dflt
	}
	return v
}

// callOf is call, reading the instruction's question only on a miss of
// the memo.
func (e *Env) callOf(slot int, ref *testRef) float64 {
	if slot < len(e.callsAt) && e.callsAt[slot] == e.gen {
		return e.calls[slot]
	}
	return e.call(slot, ref.ask)
}

// attrNumOf is attrNum of a testAttr, reading its key only on a miss of
// the memo.
func (e *Env) attrNumOf(in *instr) (float64, attrKind) {
	if slot := int(in.arg); slot < len(e.numAt) && e.numAt[slot] == e.gen {
		return e.nums[slot], e.numKind[slot]
	}
	return e.attrNum(int(in.arg), in.ref.key)
}
