package rules

import (
	"errors"
	"fmt"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
)

// Env is the environment every compiled expression runs against. The
// engine keeps one per decision (pooled) and fills it; Funcs answers the
// functions of SPEC 4.1 for the customer being decided.
type Env struct {
	Customer  map[string]any `expr:"customer"`
	Context   map[string]any `expr:"context"`
	Placement string         `expr:"placement"`
	Channel   string         `expr:"channel"`
	Now       time.Time      `expr:"now"`
	Funcs     Funcs          `expr:"-"`
}

// Funcs answers the rule functions for one decision. Windows are already
// parsed; WindowAll means "ever".
type Funcs interface {
	Count(eventType string, window time.Duration) int
	Sum(eventType string, window time.Duration) float64
	DaysSince(eventType string) float64
	Segment(name string) bool
	Shown(action string, window time.Duration) int
	Outcomes(action, outcome string, window time.Duration) int
	// Propensity samples the learned conversion probability of the action
	// whose score is being computed.
	Propensity() float64
}

// The function names of SPEC 4.1. Each call is rewritten at compile time
// to take the environment as a hidden first argument ($env), so the
// compiled program can be shared by all decisions while each call reaches
// the Funcs of its own decision.
const (
	fnCount      = "count"
	fnSum        = "sum"
	fnDaysSince  = "days_since"
	fnSegment    = "segment"
	fnShown      = "shown"
	fnOutcomes   = "outcomes"
	fnPropensity = "propensity"
)

var errNoFuncs = errors.New("rule functions are not available here")

func funcsOf(p []any) Funcs {
	if e, ok := p[0].(*Env); ok && e.Funcs != nil {
		return e.Funcs
	}
	panic(errNoFuncs)
}

func windowArg(v any) (time.Duration, error) {
	w, err := ParseWindow(v.(string))
	if err != nil {
		return 0, fmt.Errorf("window %q: %w", v, err)
	}
	return w, nil
}

var ruleFunctions = []expr.Option{
	expr.Function(fnCount, func(p ...any) (any, error) {
		w, err := windowArg(p[2])
		if err != nil {
			return nil, err
		}
		return funcsOf(p).Count(p[1].(string), w), nil
	}, new(func(any, string, string) int)),
	expr.Function(fnSum, func(p ...any) (any, error) {
		w, err := windowArg(p[2])
		if err != nil {
			return nil, err
		}
		return funcsOf(p).Sum(p[1].(string), w), nil
	}, new(func(any, string, string) float64)),
	expr.Function(fnDaysSince, func(p ...any) (any, error) {
		return funcsOf(p).DaysSince(p[1].(string)), nil
	}, new(func(any, string) float64)),
	expr.Function(fnSegment, func(p ...any) (any, error) {
		return funcsOf(p).Segment(p[1].(string)), nil
	}, new(func(any, string) bool)),
	expr.Function(fnShown, func(p ...any) (any, error) {
		w, err := windowArg(p[2])
		if err != nil {
			return nil, err
		}
		return funcsOf(p).Shown(p[1].(string), w), nil
	}, new(func(any, string, string) int)),
	expr.Function(fnOutcomes, func(p ...any) (any, error) {
		w, err := windowArg(p[3])
		if err != nil {
			return nil, err
		}
		return funcsOf(p).Outcomes(p[1].(string), p[2].(string), w), nil
	}, new(func(any, string, string, string) int)),
	expr.Function(fnPropensity, func(p ...any) (any, error) {
		return funcsOf(p).Propensity(), nil
	}, new(func(any) float64)),
	// now() would read the wall clock; rules use the variable now, which
	// the caller fixes.
	expr.DisableBuiltin("now"),
}

func isRuleFunction(name string) bool {
	switch name {
	case fnCount, fnSum, fnDaysSince, fnSegment, fnShown, fnOutcomes, fnPropensity:
		return true
	}
	return false
}

// envInjector passes $env as the first argument of every rule function.
type envInjector struct{}

func (envInjector) Visit(n *ast.Node) {
	call, ok := (*n).(*ast.CallNode)
	if !ok {
		return
	}
	id, ok := call.Callee.(*ast.IdentifierNode)
	if !ok || !isRuleFunction(id.Value) {
		return
	}
	if len(call.Arguments) > 0 {
		if a, ok := call.Arguments[0].(*ast.IdentifierNode); ok && a.Value == "$env" {
			return // already injected
		}
	}
	env := &ast.IdentifierNode{Value: "$env"}
	env.SetLocation(call.Location())
	call.Arguments = append([]ast.Node{env}, call.Arguments...)
}
