package rules

import (
	"strings"
)

// ValueKind tells what a content Value holds.
type ValueKind uint8

// Content value kinds.
const (
	Literal  ValueKind = iota // a plain value without templates
	Template                  // a string with {{ expression }} parts
	Map                       // an object, keys in file order
	List
)

// Value is a piece of action content. Strings may hold templates, which
// are compiled at load and rendered per selected action.
type Value struct {
	Kind    ValueKind
	Literal any            // Literal
	Parts   []TemplatePart // Template
	Keys    []string       // Map
	Values  []*Value       // Map: the values of Keys; List: the items
	// Static is the fully rendered value when nothing below holds a
	// template. It is shared: callers must not modify it.
	Static any
	// SizeHint estimates a rendered template's length in bytes.
	SizeHint int
}

// TemplatePart is a run of text or an expression of a template string.
type TemplatePart struct {
	Text string
	Expr *Expr // nil for text
}

// IsStatic reports whether the value renders the same for everyone.
func (v *Value) IsStatic() bool { return v == nil || v.Static != nil || v.Kind == Literal }

func (v *Value) exprs(f func(*Expr)) {
	if v == nil {
		return
	}
	for _, p := range v.Parts {
		if p.Expr != nil {
			f(p.Expr)
		}
	}
	for _, c := range v.Values {
		c.exprs(f)
	}
}

// finish computes Static for v and everything below it.
func (v *Value) finish() {
	switch v.Kind {
	case Literal:
		v.Static = v.Literal
	case Map:
		m := make(map[string]any, len(v.Keys))
		static := true
		for i, k := range v.Keys {
			c := v.Values[i]
			c.finish()
			if c.Static == nil && c.Kind != Literal {
				static = false
			}
			m[k] = c.Static
		}
		if static {
			v.Static = m
		}
	case List:
		l := make([]any, len(v.Values))
		static := true
		for i, c := range v.Values {
			c.finish()
			if c.Static == nil && c.Kind != Literal {
				static = false
			}
			l[i] = c.Static
		}
		if static {
			v.Static = l
		}
	}
}

// mergeContent returns base with over's keys winning; nested maps merge.
func mergeContent(base, over *Value) *Value {
	if base == nil || base.Kind != Map || over.Kind != Map {
		return over
	}
	out := &Value{Kind: Map}
	idx := map[string]int{}
	for i, k := range base.Keys {
		idx[k] = i
		out.Keys = append(out.Keys, k)
		out.Values = append(out.Values, base.Values[i])
	}
	for i, k := range over.Keys {
		if j, ok := idx[k]; ok {
			out.Values[j] = mergeContent(out.Values[j], over.Values[i])
			continue
		}
		out.Keys = append(out.Keys, k)
		out.Values = append(out.Values, over.Values[i])
	}
	return out
}

// splitTemplate splits s at {{ }} markers. It returns the text runs and
// the expression sources with their byte offsets in s, or ok=false with
// the offset of an unclosed marker.
func splitTemplate(s string) (parts []templateSpan, badAt int, ok bool) {
	for {
		i := strings.Index(s[spanEnd(parts):], "{{")
		if i < 0 {
			break
		}
		start := spanEnd(parts) + i
		j := strings.Index(s[start+2:], "}}")
		if j < 0 {
			return nil, start, false
		}
		parts = append(parts, templateSpan{start: start, end: start + 2 + j + 2})
	}
	return parts, 0, true
}

type templateSpan struct{ start, end int }

func spanEnd(p []templateSpan) int {
	if len(p) == 0 {
		return 0
	}
	return p[len(p)-1].end
}
