package rules

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a rules directory, located in a file.
type Error struct {
	File    string // path relative to the rules directory, slash-separated
	Line    int    // 1-based
	Col     int    // 1-based
	Msg     string
	Warning bool   // a warning does not reject the ruleset
	Source  string // the offending source line, for the snippet; may be empty
}

// Error returns "file:line:col: message" (with "warning: " before the
// message of a warning).
func (e *Error) Error() string {
	if e.Warning {
		return fmt.Sprintf("%s:%d:%d: warning: %s", e.File, e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Snippet returns the source line and a caret under the column, each
// indented by four spaces, or "" when the source line is unknown.
func (e *Error) Snippet() string {
	if e.Source == "" {
		return ""
	}
	var b strings.Builder
	b.WriteString("    ")
	b.WriteString(strings.ReplaceAll(e.Source, "\t", " "))
	b.WriteString("\n    ")
	// Pad by runes so the caret stands under the right character.
	n := 0
	for range e.Source {
		if n >= e.Col-1 {
			break
		}
		b.WriteByte(' ')
		n++
	}
	b.WriteByte('^')
	return b.String()
}

// ErrorList is a sorted list of problems. As an error it reports the
// first one and how many more there are.
type ErrorList []*Error

func (l ErrorList) Error() string {
	switch len(l) {
	case 0:
		return "no errors"
	case 1:
		return l[0].Error()
	}
	return fmt.Sprintf("%s (and %d more)", l[0], len(l)-1)
}

// Sort orders the list by file, line, column and message.
func (l ErrorList) Sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Col != b.Col {
			return a.Col < b.Col
		}
		return a.Msg < b.Msg
	})
}

// HasErrors reports whether any entry is not a warning.
func (l ErrorList) HasErrors() bool {
	for _, e := range l {
		if !e.Warning {
			return true
		}
	}
	return false
}

// Format writes every entry as "file:line:col: message" followed by its
// snippet, one entry after the other.
func (l ErrorList) Format() string {
	var b strings.Builder
	for _, e := range l {
		b.WriteString(e.Error())
		b.WriteByte('\n')
		if s := e.Snippet(); s != "" {
			b.WriteString(s)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
