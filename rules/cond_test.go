package rules

import (
	"math"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/expr-lang/expr/ast"
)

// TestCondProgram: the commonest tests compile to instructions, not
// closures, a literal on the left to the mirrored comparison, and and, or
// and not to jumps; the programs of the segments and the gates lie in one
// array, in the order decisions run them.
func TestCondProgram(t *testing.T) {
	rs, err := Compile([]File{{Name: "schema.yaml", Data: []byte(`attributes:
  ltv: {type: number, default: 0}
  tier: {type: string, default: bronze}
  favorite: {type: string}
  a1: {type: number}
`)}, {Name: "segments.yaml", Data: []byte(`segments:
  rich: customer.ltv > 1994
  gold: '"gold" == customer.tier or 0.5 <= customer.a1'
`)}, {Name: "actions.yaml", Data: []byte(`actions:
  - id: both
    placements: [p]
    when: segment("rich") and customer.a1 > 0.13
  - id: not
    placements: [p]
    when: not segment("gold")
  - id: either
    placements: [p, q]
    when: segment("gold") or count("cart", "30d") > 0
  - id: grouped
    placements: [q]
    when: (segment("rich") or (customer.favorite ?? "") != "") and not (customer.a1 > customer.ltv)
  - id: open
    placements: [q]
`)}})
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		op              testOp
		cmp             cmpOp
		c               float64
		onTrue, onFalse int16
	}
	seg := func(t, f int16) want { return want{op: testSegment, onTrue: t, onFalse: f} }
	check := func(name string, code []instr, ws ...want) {
		t.Helper()
		got := make([]want, len(code))
		for i, in := range code {
			got[i] = want{in.op, in.cmp, in.c, in.onTrue, in.onFalse}
		}
		if !slices.Equal(got, ws) {
			t.Errorf("%s: program %+v, want %+v", name, got, ws)
		}
	}
	check("rich", rs.SegmentConds[0].code, want{testAttr, opGreater, 1994, endTrue, endFalse})
	check("gold", rs.SegmentConds[1].code,
		want{testString, 0, 0, endTrue, 1},
		want{testAttr, opGreaterEq, 0.5, endTrue, endFalse})
	gate := func(placement, id string) *Gate {
		pl := rs.Placements[placement]
		for i, a := range pl.Candidates {
			if a.ID == id {
				return &pl.Gates[i]
			}
		}
		t.Fatalf("no candidate %s in %s", id, placement)
		return nil
	}
	check("both", gate("p", "both").when.code, seg(1, endFalse), want{testAttr, opGreater, 0.13, endTrue, endFalse})
	check("not", gate("p", "not").when.code, seg(endFalse, endTrue))
	check("either", gate("p", "either").when.code, seg(endTrue, 1), want{testCall, opGreater, 0, endTrue, endFalse})
	check("grouped", gate("q", "grouped").when.code,
		seg(2, 1),
		want{testString, 0, 0, 2, endFalse},
		want{testFunc, 0, 0, endFalse, endTrue})
	if open := gate("q", "open").when; open.code != nil || open.has {
		t.Errorf("open: program %v, has %v; want none, and no condition", open.code, open.has)
	}

	// A customer without the attributes: their defaults, the schema's
	// and the rule's own, answer without the VM.
	env := NewEnv(&fakeFuncs{segs: []bool{false}})
	env.SetRequest(nil, "web", time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	for _, c := range []struct {
		name  string
		cond  *Cond
		attrs map[string]any
		v, ok bool
	}{
		{"rich", &rs.SegmentConds[0], nil, false, true},
		{"rich", &rs.SegmentConds[0], map[string]any{"ltv": 2000.0}, true, true},
		{"gold", &rs.SegmentConds[1], map[string]any{"a1": 0.7}, true, true},
		{"gold", &rs.SegmentConds[1], map[string]any{"tier": "gold"}, true, true},
		{"gold", &rs.SegmentConds[1], nil, false, false}, // a1 has no default: the VM's error
		{"gold", &rs.SegmentConds[1], map[string]any{"tier": 3.0, "a1": 0.7}, false, false},
		{"grouped", &gate("q", "grouped").when, nil, false, true},
		{"grouped", &gate("q", "grouped").when, map[string]any{"favorite": "shoes", "a1": -1.0}, true, true},
	} {
		env.SetCustomer("c", MapAttributes(c.attrs))
		if v, ok := c.cond.Eval(env); v != c.v || ok != c.ok {
			t.Errorf("%s on %v: %v, %v; want %v, %v", c.name, c.attrs, v, ok, c.v, c.ok)
		}
	}

	// One array: the programs of the segments, then those of each
	// placement's gates, each starting where the one before it ends.
	follows := func(prev, next []instr) bool {
		end := uintptr(unsafe.Pointer(&prev[len(prev)-1])) + unsafe.Sizeof(instr{})
		return uintptr(unsafe.Pointer(&next[0])) == end && cap(prev) == len(prev)
	}
	if !follows(rs.SegmentConds[0].code, rs.SegmentConds[1].code) {
		t.Error("the segments' programs are not in one array")
	}
	// Each placement's run of programs, by its first instruction: its
	// last program.
	runs := map[*instr][]instr{}
	for name, pl := range rs.Placements {
		var progs [][]instr
		for _, g := range pl.Gates {
			if g.when.code != nil {
				progs = append(progs, g.when.code)
			}
		}
		for i := 1; i < len(progs); i++ {
			if !follows(progs[i-1], progs[i]) {
				t.Errorf("%s: the program of gate %d does not follow that of gate %d", name, i, i-1)
			}
		}
		runs[&progs[0][0]] = progs[len(progs)-1]
	}
	// The runs follow the segments' programs and one another.
	last := rs.SegmentConds[1].code
	for range rs.Placements {
		next := (*instr)(unsafe.Add(unsafe.Pointer(&last[len(last)-1]), unsafe.Sizeof(instr{})))
		end, ok := runs[next]
		if !ok {
			t.Fatal("the placements' programs do not follow the segments' in one array")
		}
		last = end
	}
}

// A condition of up to 32,767 tests (an int16 jump) has a program; one
// more is left to the VM.
func TestCondProgramSize(t *testing.T) {
	chain := func(n int) ast.Node {
		var x ast.Node = &ast.BoolNode{Value: false}
		for range n - 1 {
			x = &ast.BinaryNode{Operator: "or", Left: x, Right: &ast.BoolNode{Value: false}}
		}
		return x
	}
	code := compileCond(chain(math.MaxInt16))
	if len(code) != math.MaxInt16 {
		t.Fatalf("%d tests: a program of %d", math.MaxInt16, len(code))
	}
	env := NewEnv(&fakeFuncs{segs: []bool{false}})
	if v, ok := runCond(code, env); v || !ok {
		t.Errorf("false or ... or false: %v, %v", v, ok)
	}
	if code := compileCond(chain(math.MaxInt16 + 1)); code != nil {
		t.Errorf("%d tests: a program of %d, want none", math.MaxInt16+1, len(code))
	}
}
