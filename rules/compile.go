package rules

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
)

// exprKind says what an expression must produce.
type exprKind uint8

const (
	condExpr  exprKind = iota // boolean
	scoreExpr                 // number
	valueExpr                 // anything (templates)
)

// maxExprLen bounds one expression's source.
const maxExprLen = 16 << 10

// exprScope is what an expression may use beyond the common environment.
type exprScope struct {
	propensity bool   // inside the score of an adaptive action
	segment    string // inside this segment: its segment() calls are dependencies
}

// compileExpr compiles the expression held by scalar node n (or the part
// of it starting at rune offset base, for templates). Problems are added
// to the loader's list with positions inside the file.
func (l *loader) compileExpr(f *srcFile, n *node, src string, base int, kind exprKind, rule string, scope exprScope) *Expr {
	if strings.TrimSpace(src) == "" {
		l.errorAt(f, n, base, "empty expression")
		return nil
	}
	if len(src) > maxExprLen {
		l.errorAt(f, n, base, fmt.Sprintf("expression longer than %d bytes", maxExprLen))
		return nil
	}
	var kindOpt []expr.Option
	switch kind {
	case condExpr:
		kindOpt = append(kindOpt, expr.AsBool())
	case scoreExpr:
		kindOpt = append(kindOpt, expr.AsFloat64())
	}

	// First compile against the checking environment: precise function
	// signatures and, with a schema, typed attributes.
	chk := &exprChecker{l: l, scope: scope}
	opts := append(slices.Clone(commonOptions), expr.Env(l.checkEnv), expr.Patch(chk), expr.Patch(rewriter{defaults: l.defaults}))
	_, err := expr.Compile(src, append(opts, kindOpt...)...)
	// The checker's own findings (unknown attributes, bad windows, unknown
	// segments) explain type errors better than the type errors do.
	failed := false
	for _, p := range chk.problems {
		if p.warning {
			l.warnAt(f, n, base+p.at, p.msg)
			continue
		}
		l.errorAt(f, n, base+p.at, p.msg)
		failed = true
	}
	if failed {
		return nil
	}
	if err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			l.errorAt(f, n, base+fe.From, exprMessage(fe.Message))
		} else {
			l.errorAt(f, n, base, exprMessage(err.Error()))
		}
		return nil
	}
	// Then compile the program that runs on Env. Scores get no cast to
	// float64, which would box every result: the engine converts.
	opts = append(slices.Clone(commonOptions), expr.Env(runtimeEnv), expr.Patch(rewriter{defaults: l.defaults, lookups: true, segments: l.rs.segIndex}), expr.Patch(wholeCustomer{}))
	if kind == condExpr {
		opts = append(opts, expr.AsBool())
	}
	program, err := expr.Compile(src, opts...)
	if err != nil {
		l.errorAt(f, n, base, exprMessage(err.Error()))
		return nil
	}
	x := &Expr{Source: src, Rule: rule, File: f.name, Line: n.line, program: program, kind: kind}
	// Its fast closures are compiled last, with the others (buildGates).
	x.constant, x.isConstant = constantOf(program.Node())
	return x
}

// compileClosures compiles the expression's fast closures (fast.go) from
// its runtime program.
func (x *Expr) compileClosures() {
	n := x.program.Node()
	if x.isConstant {
		// Run answers a constant; a literal score is a number the
		// gates read without the Expr, as every other number.
		if x.kind == scoreExpr {
			x.num = numeric(n)
		}
		return
	}
	switch x.kind {
	case condExpr:
		// A condition that is not a boolean is the VM's error:
		// compileBool defers it.
		x.cond = compileCond(n)
		x.fast = boxedBool(condFunc(x.cond))
	case scoreExpr:
		x.num = numeric(n)
		x.fast = compileFast(n)
	default:
		x.fast = compileFast(n)
	}
}

// exprMessage cleans an expr message for people who never saw Go types.
func exprMessage(m string) string {
	m = strings.ReplaceAll(m, "interface {}", "any")
	m = strings.ReplaceAll(m, "float64", "number")
	m = strings.ReplaceAll(m, "map[string]any", "object")
	m = strings.ReplaceAll(m, "[]any", "list")
	if i := strings.Index(m, " (1:"); i > 0 {
		m = m[:i]
	}
	return strings.TrimSpace(m)
}

type problem struct {
	at      int // rune offset in the expression
	msg     string
	warning bool
}

// exprChecker validates what the type checker cannot: attributes against
// the schema, literal windows, segment and outcome names, and where
// propensity() may appear. It runs as a patcher, before type checking.
type exprChecker struct {
	l        *loader
	scope    exprScope
	problems []problem
}

func (c *exprChecker) add(n ast.Node, format string, args ...any) {
	c.problems = append(c.problems, problem{at: n.Location().From, msg: fmt.Sprintf(format, args...)})
}

func (c *exprChecker) warn(n ast.Node, format string, args ...any) {
	c.problems = append(c.problems, problem{at: n.Location().From, msg: fmt.Sprintf(format, args...), warning: true})
}

func (c *exprChecker) Visit(np *ast.Node) {
	switch n := (*np).(type) {
	case *ast.MemberNode:
		id, ok := n.Node.(*ast.IdentifierNode)
		if !ok || id.Value != "customer" || c.l.schema == nil {
			return
		}
		prop, ok := n.Property.(*ast.StringNode)
		if !ok || prop.Value == "id" {
			return
		}
		if _, ok := c.l.schema[prop.Value]; !ok {
			msg := fmt.Sprintf("unknown attribute %q: declare it under attributes", prop.Value)
			if s := closest(prop.Value, c.l.attrNames); s != "" {
				msg = fmt.Sprintf("unknown attribute %q (did you mean %q?)", prop.Value, s)
			}
			c.add(prop, "%s", msg)
		}
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || !isRuleFunction(id.Value) {
			return
		}
		c.checkCall(n, id.Value, n.Arguments)
	case *ast.BuiltinNode:
		// date(s, layout, zone) loads the zone from the system time-zone
		// database: a file read on a rule's behalf (see commonOptions).
		if n.Name == "date" && len(n.Arguments) == 3 {
			c.add(n, "date() with a time zone name is not available: write the time with its offset (2026-11-27T09:00:00+01:00)")
		}
	}
}

func (c *exprChecker) checkCall(call *ast.CallNode, name string, args []ast.Node) {
	lit := func(i int) (*ast.StringNode, bool) {
		if i >= len(args) {
			return nil, false
		}
		s, ok := args[i].(*ast.StringNode)
		return s, ok
	}
	window := func(i int) {
		if s, ok := lit(i); ok {
			w, err := ParseWindow(s.Value)
			if err != nil {
				c.add(s, "bad window %q: %v", s.Value, err)
				return
			}
			if w != WindowAll && w > c.l.maxWindow {
				c.l.maxWindow = w
			}
		}
	}
	switch name {
	case fnCount, fnSum:
		window(1)
	case fnSegment:
		s, ok := lit(0)
		if !ok {
			if len(args) > 0 {
				c.add(args[0], "segment() takes a segment name in quotes")
			}
			return
		}
		if _, ok := c.l.segDefs[s.Value]; !ok {
			msg := fmt.Sprintf("unknown segment %q", s.Value)
			if m := closest(s.Value, c.l.segNames); m != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", m)
			}
			c.add(s, "%s", msg)
			return
		}
		if c.scope.segment != "" {
			c.l.segDeps[c.scope.segment] = append(c.l.segDeps[c.scope.segment], segRef{name: s.Value, at: s.Location().From})
		}
	case fnShown, fnOutcomes:
		if s, ok := lit(0); ok && !c.l.actionIDs[s.Value] {
			c.warn(s, "%s() names no action %q", name, s.Value)
		}
		if name == fnShown {
			window(1)
			return
		}
		if s, ok := lit(1); ok {
			if _, ok := outcomeCode(s.Value); !ok {
				c.add(s, "unknown outcome %q (one of %s)", s.Value, strings.Join(OutcomeNames, ", "))
			}
		}
		window(2)
	case fnPropensity:
		if !c.scope.propensity {
			c.add(call, "propensity() can only be used in the score of an action with adaptive: true")
		}
	}
}

// schemaCustomer builds the customer the type checker sees when a schema
// is declared: a struct with one typed field per attribute.
func schemaCustomer(attrs []*Attribute) any {
	fields := []reflect.StructField{{Name: "ID", Type: reflect.TypeFor[string](), Tag: `expr:"id"`}}
	for i, a := range attrs {
		if a.Name == "id" {
			continue
		}
		var t reflect.Type
		switch a.Type {
		case AttrString:
			t = reflect.TypeFor[string]()
		case AttrNumber:
			t = reflect.TypeFor[float64]()
		case AttrBool:
			t = reflect.TypeFor[bool]()
		case AttrObject:
			t = reflect.TypeFor[map[string]any]()
		default:
			t = reflect.TypeFor[[]any]()
		}
		fields = append(fields, reflect.StructField{
			Name: fmt.Sprintf("A%d", i),
			Type: t,
			Tag:  reflect.StructTag(fmt.Sprintf("expr:%q", a.Name)),
		})
	}
	return reflect.New(reflect.StructOf(fields)).Interface()
}

// locate maps a rune offset inside scalar n's value to a 1-based file
// line and column, following YAML's quoting, escapes and line folding: in
// a literal block (|) each line break of the value is one in the file;
// elsewhere a space may stand for a line break and a line break for a
// line break plus blank lines.
func (f *srcFile) locate(n *node, off int) (int, int) {
	line, col := n.line, n.col
	indent := -1 // block scalars: the content's indentation
	switch n.style {
	case quotedStyle:
		col++
	case blockStyle:
		if n.blockLine >= len(f.lines) || strings.TrimSpace(n.text) == "" {
			return f.clamp(n.line, n.col) // empty: point at the indicator
		}
		line = n.blockLine + 1
		indent = f.blockIndent(line)
		col = indent + 1
	}
	if line < 1 || line > len(f.lines) {
		return f.clamp(line, col)
	}
	src := []rune(f.lines[line-1])
	p := col - 1
	if n.style != blockStyle {
		// A tag or anchor may stand before the value: find where it starts.
		if i := runeIndex(src, p, n.text, n.style); i >= 0 {
			p = i
		}
	}
	literal := n.style == blockStyle && !n.folded
	nextLine := func() bool {
		if line >= len(f.lines) {
			return false
		}
		line++
		src = []rune(f.lines[line-1])
		p = 0
		for p < len(src) && (src[p] == ' ' || src[p] == '\t') && (indent < 0 || p < indent) {
			p++
		}
		return true
	}
	blank := func() bool { return strings.TrimSpace(string(src)) == "" }
	i := 0
	for _, c := range n.text {
		if i >= off {
			break
		}
		i++
		if p >= len(src) {
			if c != ' ' && c != '\n' || !nextLine() {
				break
			}
			if c == '\n' && !literal {
				// A line break of the value: the file's line break plus
				// at least one blank line.
				for blank() && nextLine() {
				}
			}
			continue
		}
		switch s := src[p]; {
		case n.style == quotedStyle && s == '\\':
			p += escapeLen(src[p:])
		case n.style == quotedStyle && s == '\'' && p+1 < len(src) && src[p+1] == '\'':
			p += 2
		case s == c:
			p++
		default:
			return line, p + 1 // lost track: the best guess
		}
	}
	return line, p + 1
}

// runeIndex finds where a scalar's text starts on its first line, at or
// after rune p: past a tag (!!str) or anchor (&a) the parser put the node's
// position on.
func runeIndex(src []rune, p int, text string, style scalarStyle) int {
	first, _, _ := strings.Cut(text, "\n")
	if first == "" || p >= len(src) {
		return -1
	}
	if style == quotedStyle {
		p-- // the opening quote
	}
	if strings.HasPrefix(string(src[max(p, 0):]), first) {
		return -1 // already there
	}
	for q := p; q < len(src); q++ {
		if src[q] != ' ' && (q == 0 || src[q-1] != ' ') {
			continue
		}
		at := q
		if src[q] == ' ' {
			at = q + 1
		}
		if at < len(src) && style == quotedStyle && (src[at] == '"' || src[at] == '\'') {
			at++
		}
		if strings.HasPrefix(string(src[at:]), first) {
			return at
		}
	}
	return -1
}

// clamp keeps a position inside the file: on an existing line, at most
// one column past its end.
func (f *srcFile) clamp(line, col int) (int, int) {
	line = max(1, min(line, len(f.lines)))
	if len(f.lines) > 0 {
		col = min(col, len([]rune(f.lines[line-1]))+1)
	}
	return line, max(col, 1)
}

func escapeLen(s []rune) int {
	if len(s) < 2 {
		return 1
	}
	switch s[1] {
	case 'x':
		return min(4, len(s))
	case 'u':
		return min(6, len(s))
	case 'U':
		return min(10, len(s))
	}
	return 2
}

func (f *srcFile) blockIndent(line int) int {
	for ; line <= len(f.lines); line++ {
		s := f.lines[line-1]
		t := strings.TrimLeft(s, " ")
		if t != "" {
			return len(s) - len(t)
		}
	}
	return 0
}

// closest returns the candidate nearest to s by edit distance, if near.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	if utf8.RuneCountInString(s) <= 3 {
		bestD = 2
	}
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// constantOf returns the value of a node that expr's optimizer folded to a
// literal.
func constantOf(n ast.Node) (any, bool) {
	switch c := n.(type) {
	case *ast.IntegerNode:
		return c.Value, true
	case *ast.FloatNode:
		return c.Value, true
	case *ast.BoolNode:
		return c.Value, true
	case *ast.StringNode:
		return c.Value, true
	case *ast.ConstantNode:
		return c.Value, true
	}
	return nil, false
}
