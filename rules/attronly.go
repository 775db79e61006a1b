package rules

import (
	"sync/atomic"

	"github.com/expr-lang/expr/ast"
)

// A segment that reads nothing but the customer's attributes
// ("customer.tier == 'gold' or customer.ltv > 1000") has the same value in
// every decision until the attributes change, and so has an action's
// condition that reads nothing else; a ruleset marks those segments
// (Ruleset.SegmentAttrOnly) and conditions (Gate.AttrOnly) so that the
// engine can keep their values with the customer's attributes across
// decisions. Events, contacts, the time, the request's context, placement
// and channel, the customer's id, and anything the analysis does not know
// to be pure make a condition depend on more.

// pureBuiltins are expr's builtins whose result depends on their arguments
// alone (not now(), date(), ...).
var pureBuiltins = map[string]bool{
	"len": true, "abs": true, "ceil": true, "floor": true, "round": true,
	"int": true, "float": true, "string": true,
	"trim": true, "trimPrefix": true, "trimSuffix": true, "upper": true, "lower": true,
	"hasPrefix": true, "hasSuffix": true, "indexOf": true, "lastIndexOf": true,
	"split": true, "replace": true, "repeat": true, "max": true, "min": true,
}

// attrOnlyVisitor walks a runtime program's tree (after rewriter: customer.X
// is customer·get("X"), segment("s") is segment·at(i)) and clears ok at
// the first node that may read more than the attributes; segs collects the
// segments it calls.
type attrOnlyVisitor struct {
	ok   bool
	segs []int
}

func (v *attrOnlyVisitor) Visit(np *ast.Node) {
	switch n := (*np).(type) {
	case *ast.NilNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.StringNode,
		*ast.BytesNode, *ast.ConstantNode, *ast.UnaryNode, *ast.BinaryNode, *ast.ChainNode,
		*ast.MemberNode, *ast.SliceNode, *ast.ConditionalNode, *ast.ArrayNode, *ast.MapNode,
		*ast.PairNode:
	case *ast.IdentifierNode:
		switch n.Value {
		case getAttrFn, allAttrsFn, segmentAtFn:
		default:
			v.ok = false
		}
	case *ast.CallNode:
		if i, ok := segmentIndex(n); ok {
			v.segs = append(v.segs, i)
		}
	case *ast.BuiltinNode:
		if !pureBuiltins[n.Name] {
			v.ok = false
		}
	default:
		v.ok = false
	}
}

// markAttrOnly sets Ruleset.SegmentAttrOnly. Segment cycles are load
// errors (and not followed here).
func (rs *Ruleset) markAttrOnly() {
	n := len(rs.Segments)
	rs.SegmentAttrOnly = make([]bool, n)
	const (
		unknown = iota
		visiting
		done
	)
	state := make([]uint8, n)
	var mark func(i int) bool
	mark = func(i int) bool {
		switch state[i] {
		case done:
			return rs.SegmentAttrOnly[i]
		case visiting:
			return false
		}
		state[i] = visiting
		ok := rs.attrOnly(rs.Segments[i].When, mark)
		state[i] = done
		rs.SegmentAttrOnly[i] = ok
		return ok
	}
	for i := range n {
		mark(i)
	}
}

// attrOnly reports whether x reads nothing but the customer's attributes,
// seg telling whether a segment it uses does.
func (rs *Ruleset) attrOnly(x *Expr, seg func(i int) bool) bool {
	if x == nil || x.program == nil {
		return false
	}
	v := attrOnlyVisitor{ok: true}
	node := x.program.Node()
	ast.Walk(&node, &v)
	for _, j := range v.segs {
		if j < 0 || j >= len(rs.Segments) || !seg(j) {
			return false
		}
	}
	return v.ok
}

// serials numbers the rulesets compiled by this process (Ruleset.Serial).
var serials atomic.Uint64

// Serial is a number no other ruleset compiled by this process has: what
// is kept of a decision under one ruleset (the values of SegmentAttrOnly
// segments) names it by its serial, which, unlike a pointer, does not
// keep a replaced ruleset in memory.
func (rs *Ruleset) Serial() uint64 { return rs.serial }
