package rules

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// The rule loader works on its own small YAML tree: every node knows its
// file position, mappings keep their key order, and anchors are resolved.
// It is built from go-yaml's AST, which reports positions for syntax errors
// too.

type nodeKind uint8

const (
	nullNode nodeKind = iota
	scalarNode
	mapNode
	seqNode
)

func (k nodeKind) String() string {
	return [...]string{"null", "scalar", "mapping", "list"}[k]
}

type scalarStyle uint8

const (
	plainStyle scalarStyle = iota
	quotedStyle
	blockStyle // | or >
)

type node struct {
	kind      nodeKind
	line, col int // 1-based
	value     any // scalar: string, int64, uint64, float64, bool
	text      string
	style     scalarStyle
	blockLine int  // blockStyle: line of the indicator
	folded    bool // blockStyle: > (line breaks fold) rather than |
	keys      []*node
	vals      []*node
	items     []*node
}

// get returns the value under key in a mapping node, or nil.
func (n *node) get(key string) *node {
	for i, k := range n.keys {
		if k.text == key {
			return n.vals[i]
		}
	}
	return nil
}

// maxYAMLDepth bounds nesting so a hostile file cannot exhaust the stack.
const maxYAMLDepth = 64

type yamlError struct {
	line, col int
	msg       string
}

func (e *yamlError) Error() string { return e.msg }

// parseYAML parses one rule file into a tree. An empty file gives nil.
func parseYAML(src []byte) (*node, error) {
	f, err := parser.ParseBytes(src, 0)
	if err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) && ye.GetToken() != nil {
			p := ye.GetToken().Position
			return nil, &yamlError{line: p.Line, col: max(p.Column, 1), msg: "invalid YAML: " + ye.GetMessage()}
		}
		return nil, &yamlError{line: 1, col: 1, msg: "invalid YAML: " + err.Error()}
	}
	var docs []*ast.DocumentNode
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			docs = append(docs, d)
		}
	}
	if len(docs) == 0 {
		return nil, nil
	}
	c := converter{anchors: map[string]*node{}}
	if len(docs) > 1 {
		line, col := pos(docs[1].Body.GetToken())
		if n, err := c.convert(docs[1].Body, 0); err == nil {
			line, col = n.line, n.col
		}
		return nil, &yamlError{line: line, col: col, msg: "a rule file holds one YAML document"}
	}
	return c.convert(docs[0].Body, 0)
}

type converter struct {
	anchors map[string]*node
}

func pos(tk *token.Token) (int, int) {
	if tk == nil || tk.Position == nil {
		return 1, 1
	}
	return tk.Position.Line, max(tk.Position.Column, 1)
}

func (c *converter) convert(an ast.Node, depth int) (*node, error) {
	line, col := pos(an.GetToken())
	if depth > maxYAMLDepth {
		return nil, &yamlError{line, col, fmt.Sprintf("nesting deeper than %d levels", maxYAMLDepth)}
	}
	n := &node{line: line, col: col}
	switch v := an.(type) {
	case *ast.NullNode:
		n.kind = nullNode
	case *ast.StringNode:
		n.kind, n.value, n.text = scalarNode, v.Value, v.Value
		if t := v.Token.Type; t == token.DoubleQuoteType || t == token.SingleQuoteType {
			n.style = quotedStyle
		}
	case *ast.LiteralNode:
		n.kind, n.value, n.text, n.style = scalarNode, v.Value.Value, v.Value.Value, blockStyle
		n.blockLine = line
		n.folded = v.Start != nil && strings.HasPrefix(v.Start.Value, ">")
	case *ast.IntegerNode:
		n.kind, n.value, n.text = scalarNode, v.Value, v.Token.Value
	case *ast.FloatNode:
		n.kind, n.value, n.text = scalarNode, v.Value, v.Token.Value
	case *ast.BoolNode:
		n.kind, n.value, n.text = scalarNode, v.Value, v.Token.Value
	case *ast.InfinityNode:
		n.kind, n.value, n.text = scalarNode, v.Value, v.Token.Value
	case *ast.NanNode:
		n.kind, n.value, n.text = scalarNode, math.NaN(), v.Token.Value
	case *ast.TagNode:
		inner, err := c.convert(v.Value, depth+1)
		if err != nil {
			return nil, err
		}
		if v.Start != nil && (v.Start.Value == "!!str" || v.Start.Value == "!str") && inner.kind == scalarNode {
			inner.value = inner.text
		}
		return inner, nil
	case *ast.AnchorNode:
		inner, err := c.convert(v.Value, depth+1)
		if err != nil {
			return nil, err
		}
		c.anchors[v.Name.GetToken().Value] = inner
		return inner, nil
	case *ast.AliasNode:
		name := v.Value.GetToken().Value
		target, ok := c.anchors[name]
		if !ok {
			return nil, &yamlError{line, col, fmt.Sprintf("unknown anchor %q", name)}
		}
		return target, nil
	case *ast.MappingNode:
		n.kind = mapNode
		if len(v.Values) > 0 {
			n.line, n.col = pos(v.Values[0].Key.GetToken())
		}
		for _, mv := range v.Values {
			if err := c.addPair(n, mv, depth); err != nil {
				return nil, err
			}
		}
	case *ast.MappingValueNode:
		n.kind = mapNode
		n.line, n.col = pos(v.Key.GetToken())
		if err := c.addPair(n, v, depth); err != nil {
			return nil, err
		}
	case *ast.SequenceNode:
		n.kind = seqNode
		for _, it := range v.Values {
			item, err := c.convert(it, depth+1)
			if err != nil {
				return nil, err
			}
			n.items = append(n.items, item)
		}
	default:
		return nil, &yamlError{line, col, fmt.Sprintf("unsupported YAML construct (%s)", an.Type())}
	}
	return n, nil
}

func (c *converter) addPair(m *node, mv *ast.MappingValueNode, depth int) error {
	if _, ok := mv.Key.(*ast.MergeKeyNode); ok {
		line, col := pos(mv.Key.GetToken())
		return &yamlError{line, col, "merge keys (<<) are not supported"}
	}
	k, err := c.convert(mv.Key, depth+1)
	if err != nil {
		return err
	}
	if k.kind != scalarNode {
		return &yamlError{k.line, k.col, "a mapping key must be a plain value"}
	}
	for _, prev := range m.keys {
		if prev.text == k.text {
			return &yamlError{k.line, k.col, fmt.Sprintf("key %q repeats the one at line %d", k.text, prev.line)}
		}
	}
	var v *node
	if mv.Value == nil {
		v = &node{kind: nullNode, line: k.line, col: k.col}
	} else if v, err = c.convert(mv.Value, depth+1); err != nil {
		return err
	}
	m.keys = append(m.keys, k)
	m.vals = append(m.vals, v)
	return nil
}

// plain converts a node into plain Go values as JSON would give them:
// numbers are float64, mappings map[string]any, lists []any.
func plain(n *node) any {
	switch n.kind {
	case nullNode:
		return nil
	case mapNode:
		m := make(map[string]any, len(n.keys))
		for i, k := range n.keys {
			m[k.text] = plain(n.vals[i])
		}
		return m
	case seqNode:
		l := make([]any, len(n.items))
		for i, it := range n.items {
			l[i] = plain(it)
		}
		return l
	}
	switch v := n.value.(type) {
	case int64:
		return float64(v)
	case uint64:
		return float64(v)
	case int:
		return float64(v)
	}
	return n.value
}

// asString returns a scalar's text; numbers and booleans keep their
// source spelling.
func (n *node) asString() (string, bool) {
	if n.kind != scalarNode {
		return "", false
	}
	if s, ok := n.value.(string); ok {
		return s, true
	}
	return n.text, true
}

func (n *node) asInt() (int64, bool) {
	if n.kind != scalarNode {
		return 0, false
	}
	switch v := n.value.(type) {
	case int64:
		return v, true
	case uint64:
		if v <= math.MaxInt64 {
			return int64(v), true
		}
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return int64(v), true
		}
	}
	return 0, false
}

func (n *node) asFloat() (float64, bool) {
	if n.kind != scalarNode {
		return 0, false
	}
	switch v := n.value.(type) {
	case int64:
		return float64(v), true
	case uint64:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

func (n *node) asBool() (bool, bool) {
	if n.kind != scalarNode {
		return false, false
	}
	b, ok := n.value.(bool)
	return b, ok
}

// asTime parses an RFC 3339 time or a date (midnight UTC).
func (n *node) asTime() (time.Time, bool) {
	s, ok := n.asString()
	if !ok {
		return time.Time{}, false
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// describe names a node's kind for error messages.
func (n *node) describe() string {
	if n.kind != scalarNode {
		return n.kind.String()
	}
	switch n.value.(type) {
	case string:
		return "string " + strconv.Quote(truncate(n.text, 40))
	case bool:
		return "boolean"
	case int64, uint64, float64:
		return "number " + n.text
	}
	return "value"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return strings.TrimRight(s, " ") + "…"
}
