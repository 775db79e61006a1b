package rules_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nudge-engine/nudge/rules"
)

var update = flag.Bool("update", false, "rewrite the want.golden files of ../testdata/check")

const checkDir = "../testdata/check"

// problem is what a check case must report: where, and part of the
// message. tok is the source text that must start at the column, so a
// wrong column is caught even if line and col were copied from a bad run.
type problem struct {
	file      string
	line, col int
	tok       string
	msg       string
}

// checkCases are the directories of ../testdata/check that must fail to
// load, with every problem each must report, in order.
var checkCases = []struct {
	name string
	want []problem
}{
	{"expr-syntax", []problem{
		// when: customer.tier == "gold" and and true (plain scalar)
		{"rules.yaml", 5, 39, "and true", `unexpected token Operator("and")`},
	}},
	{"expr-quoted", []problem{
		// when: "customer.tier == \"gold\" or or true": the escapes count
		// as written, two columns each.
		{"rules.yaml", 6, 41, "or true", `unexpected token Operator("or")`},
	}},
	{"expr-block", []problem{
		// The second line of a | block scalar.
		{"rules.yaml", 7, 39, "> 2", `unexpected token Operator(">")`},
	}},
	{"type-error", []problem{
		{"actions.yaml", 4, 24, `> "x"`, "mismatched types number and string"},
	}},
	{"unknown-attribute", []problem{
		{"actions.yaml", 4, 20, "tierr", `unknown attribute "tierr" (did you mean "tier"?)`},
	}},
	{"duplicate-id", []problem{
		{"promo/spring.yaml", 3, 9, "spring-sale", `action "spring-sale" is already defined at actions.yaml:2`},
	}},
	{"segment-cycle", []problem{
		{"segments.yaml", 5, 16, `"big"`, "segment cycle: big -> loyal -> fan -> big"},
	}},
	{"fallback-missing", []problem{
		{"placements.yaml", 2, 35, "brand-stroy", `fallback names no action: string "brand-stroy" (did you mean "brand-story"?)`},
	}},
	{"malformed-yaml", []problem{
		{"broken.yaml", 4, 11, `"customer.tier`, "invalid YAML"},
	}},
	{"all-at-once", []problem{
		{"actions/broken.yaml", 3, 11, `"customer.tier`, "invalid YAML"},
		{"actions/home.yaml", 4, 39, "and true", `unexpected token Operator("and")`},
		{"actions/home.yaml", 7, 41, "or true", `unexpected token Operator("or")`},
		{"actions/home.yaml", 12, 39, "> 2", `unexpected token Operator(">")`},
		{"actions/home.yaml", 15, 20, "tierr", `unknown attribute "tierr" (did you mean "tier"?)`},
		{"actions/seasonal/spring.yaml", 2, 9, "spring-sale", `action "spring-sale" is already defined at actions/home.yaml:13`},
		{"placements.yaml", 2, 35, "brand-stroy", `fallback names no action: string "brand-stroy"`},
		{"segments.yaml", 2, 21, `> "x"`, "mismatched types number and string"},
		{"segments.yaml", 4, 16, `"loyal"`, "segment cycle: loyal -> fan -> loyal"},
	}},
}

func TestCheck(t *testing.T) {
	for _, tc := range checkCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(checkDir, tc.name)
			rs, err := rules.LoadDir(dir)
			if err == nil {
				t.Fatalf("LoadDir(%s) succeeded (version %s); want an error", dir, rs.Version)
			}
			var list rules.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("LoadDir(%s) error is %T (%v); want a rules.ErrorList", dir, err, err)
			}
			checkList(t, dir, list)
			if len(list) != len(tc.want) {
				t.Errorf("got %d problems; want %d:\n%s", len(list), len(tc.want), list.Format())
			}
			for i, w := range tc.want {
				if i >= len(list) {
					t.Errorf("missing problem %s:%d:%d: %s", w.file, w.line, w.col, w.msg)
					continue
				}
				e := list[i]
				if e.File != w.file || e.Line != w.line || e.Col != w.col {
					t.Errorf("problem %d at %s:%d:%d; want %s:%d:%d (%s)", i, e.File, e.Line, e.Col, w.file, w.line, w.col, e.Msg)
				}
				if !strings.Contains(e.Msg, w.msg) {
					t.Errorf("problem %d message %q; want it to contain %q", i, e.Msg, w.msg)
				}
				if e.Warning {
					t.Errorf("problem %d (%s) is a warning; want an error", i, e)
				}
				if at := textAt(t, dir, w.file, w.line, w.col); !strings.HasPrefix(at, w.tok) {
					t.Errorf("the source at %s:%d:%d is %q; want it to start with %q (bad expectation)", w.file, w.line, w.col, at, w.tok)
				}
			}
			compareGolden(t, dir, list.Format())
		})
	}
	t.Run("valid", func(t *testing.T) {
		dir := filepath.Join(checkDir, "valid")
		rs, err := rules.LoadDir(dir)
		if err != nil {
			t.Fatalf("LoadDir(%s): %v", dir, err)
		}
		if len(rs.Warnings) != 0 {
			t.Errorf("got warnings:\n%s", rs.Warnings.Format())
		}
		if got := len(rs.Actions); got != 3 {
			t.Errorf("got %d actions; want 3", got)
		}
		if got := len(rs.Segments); got != 3 {
			t.Errorf("got %d segments; want 3", got)
		}
		if got := len(rs.Tests); got != 2 {
			t.Errorf("got %d tests; want 2", got)
		}
		wantFiles := []string{"actions/home.yaml", "attributes.yaml", "placements.yaml", "segments.yaml", "tests/home_test.yaml"}
		if strings.Join(rs.Files, " ") != strings.Join(wantFiles, " ") {
			t.Errorf("got files %q; want %q", rs.Files, wantFiles)
		}
		p := rs.Placements["home_hero"]
		if p == nil || p.Fallback == nil || p.Fallback.ID != "brand-story" {
			t.Errorf("home_hero placement %+v; want fallback brand-story", p)
		}
		compareGolden(t, dir, rs.Warnings.Format())
	})
}

// checkList asserts what holds for every list: sorted by file, line and
// column; positions 1-based and inside the file; the snippet's source is
// the file's line.
func checkList(t *testing.T, dir string, list rules.ErrorList) {
	t.Helper()
	for i, e := range list {
		if e.Line < 1 || e.Col < 1 {
			t.Errorf("%s: position not 1-based", e)
		}
		src := fileLine(t, dir, e.File, e.Line)
		if e.Source != src {
			t.Errorf("%s: snippet source %q; want line %d of the file, %q", e, e.Source, e.Line, src)
		}
		if n := utf8.RuneCountInString(src); e.Col > n+1 {
			t.Errorf("%s: column past the end of the line (%d runes)", e, n)
		}
		if i == 0 {
			continue
		}
		p := list[i-1]
		if p.File > e.File || p.File == e.File && (p.Line > e.Line || p.Line == e.Line && p.Col > e.Col) {
			t.Errorf("not sorted: %s before %s", p, e)
		}
	}
	// One "file:line:col:" line per problem, each followed by a snippet.
	lines := strings.Split(strings.TrimSuffix(list.Format(), "\n"), "\n")
	if len(lines) != 3*len(list) {
		t.Errorf("Format gave %d lines; want %d (a header and 2 snippet lines per problem)", len(lines), 3*len(list))
	}
	for i, e := range list {
		if 3*i < len(lines) && lines[3*i] != e.Error() {
			t.Errorf("Format line %d is %q; want %q", 3*i+1, lines[3*i], e.Error())
		}
	}
}

func fileLine(t *testing.T, dir, file string, line int) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(file)))
	if err != nil {
		t.Fatalf("the problem names a file that cannot be read: %v", err)
	}
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) {
		t.Fatalf("%s has no line %d", file, line)
	}
	return lines[line-1]
}

// textAt returns the rest of the line from a 1-based rune column.
func textAt(t *testing.T, dir, file string, line, col int) string {
	t.Helper()
	r := []rune(fileLine(t, dir, file, line))
	if col-1 > len(r) {
		return ""
	}
	return string(r[col-1:])
}

// compareGolden compares got with dir/want.golden, or rewrites the file
// with -update.
func compareGolden(t *testing.T, dir, got string) {
	t.Helper()
	path := filepath.Join(dir, "want.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// TestCheckCasesCovered makes sure every case directory is tested, so a
// new case cannot be added and silently skipped.
func TestCheckCasesCovered(t *testing.T) {
	entries, err := os.ReadDir(checkDir)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"valid": true}
	for _, tc := range checkCases {
		known[tc.name] = true
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		n++
		if !known[e.Name()] {
			t.Errorf("%s/%s has no entry in checkCases", checkDir, e.Name())
		}
	}
	if n != len(known) {
		t.Errorf("got %d case directories; want %d", n, len(known))
	}
}
