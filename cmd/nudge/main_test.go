package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const testdata = "../../testdata"

// runCmd runs the command line and returns its exit code and output.
func runCmd(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestRulesCheckValid(t *testing.T) {
	code, stdout, stderr := runCmd("rules", "check", filepath.Join(testdata, "check", "valid"))
	if code != 0 {
		t.Errorf("got exit code %d; want 0 (stdout %q, stderr %q)", code, stdout, stderr)
	}
	if stdout != "" || stderr != "" {
		t.Errorf("got stdout %q, stderr %q; want no output", stdout, stderr)
	}
}

func TestRulesCheckStorefront(t *testing.T) {
	code, stdout, stderr := runCmd("rules", "check", filepath.Join(testdata, "storefront", "rules"))
	if code != 0 || stderr != "" {
		t.Errorf("got exit code %d, stderr %q; want 0 and none\n%s", code, stderr, stdout)
	}
}

var problemLine = regexp.MustCompile(`^([^ :][^:]*\.yaml):(\d+):(\d+): (.+)$`)

func TestRulesCheckErrors(t *testing.T) {
	dir := filepath.Join(testdata, "check", "all-at-once")
	code, stdout, stderr := runCmd("rules", "check", dir)
	if code != 1 {
		t.Errorf("got exit code %d; want 1", code)
	}
	if stderr != "" {
		t.Errorf("got stderr %q; want none", stderr)
	}
	type pos struct {
		file      string
		line, col int
	}
	var got []pos
	for _, l := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		if strings.HasPrefix(l, "    ") {
			continue // the snippet
		}
		m := problemLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("got line %q; want file:line:col: message or a snippet", l)
			continue
		}
		line, _ := strconv.Atoi(m[2])
		col, _ := strconv.Atoi(m[3])
		got = append(got, pos{m[1], line, col})
	}
	want := []pos{
		{"actions/broken.yaml", 3, 11},
		{"actions/home.yaml", 4, 39},
		{"actions/home.yaml", 7, 41},
		{"actions/home.yaml", 12, 39},
		{"actions/home.yaml", 15, 20},
		{"actions/seasonal/spring.yaml", 2, 9},
		{"placements.yaml", 2, 35},
		{"segments.yaml", 2, 21},
		{"segments.yaml", 4, 16},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d problems; want %d:\n%s", len(got), len(want), stdout)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("problem %d at %v; want %v", i, got[i], want[i])
		}
	}
	// The whole output is what rules.ErrorList.Format gives (the rules
	// package's golden file).
	golden, err := os.ReadFile(filepath.Join(dir, "want.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if stdout != string(golden) {
		t.Errorf("got output\n%s\nwant want.golden\n%s", stdout, golden)
	}
}

var summaryRe = regexp.MustCompile(`^(\d+) passed, (\d+) failed$`)

// summary returns the counts of the last line of rules test's output.
func summary(t *testing.T, stdout string) (int, int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	m := summaryRe.FindStringSubmatch(lines[len(lines)-1])
	if m == nil || !strings.HasSuffix(stdout, "\n") {
		t.Fatalf("got last line %q; want \"N passed, M failed\" and a newline", lines[len(lines)-1])
	}
	passed, _ := strconv.Atoi(m[1])
	failed, _ := strconv.Atoi(m[2])
	return passed, failed
}

func TestRulesTestStorefront(t *testing.T) {
	code, stdout, stderr := runCmd("rules", "test", filepath.Join(testdata, "storefront", "rules"))
	if code != 0 {
		t.Errorf("got exit code %d; want 0\n%s%s", code, stdout, stderr)
	}
	passed, failed := summary(t, stdout)
	if passed < 25 || failed != 0 {
		t.Errorf("got %d passed, %d failed; want at least 25 passed, 0 failed", passed, failed)
	}
	if strings.Contains(stdout, "FAIL") {
		t.Errorf("got failures:\n%s", stdout)
	}
}

func TestRulesTestFailure(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("rules.yaml", `actions:
  - id: always
    placements: [home]
  - id: never
    placements: [home]
    when: "false"
`)
	write("home_test.yaml", `tests:
  - name: wants never
    request: {placements: [home]}
    expect:
      home: [never]
  - name: gets always
    request: {placements: [home]}
    expect:
      home: [always]
`)
	code, stdout, stderr := runCmd("rules", "test", dir)
	if code != 1 {
		t.Errorf("got exit code %d; want 1", code)
	}
	if stderr != "" {
		t.Errorf("got stderr %q; want none", stderr)
	}
	for _, want := range []string{"FAIL home_test.yaml:2: wants never\n", "home: expected [never], got [always]\n", "expected [", "got ["} {
		if !strings.Contains(stdout, want) {
			t.Errorf("got output\n%s\nwant it to contain %q", stdout, want)
		}
	}
	if strings.Contains(stdout, "gets always") {
		t.Errorf("got the passing test reported:\n%s", stdout)
	}
	if passed, failed := summary(t, stdout); passed != 1 || failed != 1 {
		t.Errorf("got %d passed, %d failed; want 1, 1", passed, failed)
	}
}

func TestRulesTestLoadError(t *testing.T) {
	// A directory that does not compile is no test run: exit 1 with the
	// problems.
	code, stdout, _ := runCmd("rules", "test", filepath.Join(testdata, "check", "type-error"))
	if code != 1 {
		t.Errorf("got exit code %d; want 1", code)
	}
	if !strings.HasPrefix(stdout, "actions.yaml:4:24: ") || strings.Contains(stdout, "passed") {
		t.Errorf("got output\n%s\nwant the type error and no test summary", stdout)
	}
}

func TestUsageErrors(t *testing.T) {
	f := func(wantCode int, wantStderr string, args ...string) {
		t.Helper()
		code, stdout, stderr := runCmd(args...)
		if code != wantCode {
			t.Errorf("%q: got exit code %d; want %d", args, code, wantCode)
		}
		if !strings.Contains(stderr, wantStderr) {
			t.Errorf("%q: got stderr %q; want it to contain %q", args, stderr, wantStderr)
		}
		if stdout != "" {
			t.Errorf("%q: got stdout %q; want none", args, stdout)
		}
	}
	f(2, `nudge: unknown command "frobnicate"`, "frobnicate")
	f(2, "Usage:", "frobnicate")
	f(2, "Usage:")
	f(2, "nudge rules check DIR", "rules")
	f(2, "nudge rules check DIR", "rules", "lint", ".")
	f(2, "nudge rules check DIR", "rules", "check")
	f(2, "nudge rules check DIR", "rules", "check", "a", "b")
	f(1, "nudge: cannot read rules directory", "rules", "check", filepath.Join(t.TempDir(), "missing"))

	code, stdout, stderr := runCmd("help")
	if code != 0 || !strings.Contains(stdout, "nudge rules test DIR") || stderr != "" {
		t.Errorf("help: got exit code %d, stdout %q, stderr %q; want 0 and the usage on stdout", code, stdout, stderr)
	}
}
