package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/nudge-engine/nudge/rules"
)

const (
	rulesV1 = `segments:
  new_visitor: count("purchase", "all") == 0
actions:
  - id: welcome
    placements: [home_hero]
`
	// rulesV2 adds an action ranked above welcome.
	rulesV2 = `segments:
  new_visitor: count("purchase", "all") == 0
actions:
  - id: welcome
    placements: [home_hero]
  - id: winback
    placements: [home_hero]
    priority: 10
`
	// rulesBroken has a misspelt key on line 6, column 5.
	rulesBroken = `segments:
  new_visitor: count("purchase", "all") == 0
actions:
  - id: welcome
    placements: [home_hero]
    prority: 10
`
	testsV1 = `tests:
  - name: welcome shown
    request: {placements: [home_hero]}
    expect:
      home_hero: [welcome]
`
	// testsFailing compiles against rulesV1 but expects the wrong result.
	testsFailing = `tests:
  - name: welcome shown
    request: {placements: [home_hero]}
    expect:
      home_hero: []
`
)

var testNow = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// writeFiles writes name/content pairs below dir, creating folders.
func writeFiles(t *testing.T, dir string, kv ...string) {
	t.Helper()
	for i := 0; i < len(kv); i += 2 {
		p := filepath.Join(dir, filepath.FromSlash(kv[i]))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(kv[i+1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// rulesDir makes a valid rules directory with the tests in a subfolder.
func rulesDir(t *testing.T) string {
	dir := t.TempDir()
	writeFiles(t, dir, "rules.yaml", rulesV1, "tests/home_test.yaml", testsV1)
	return dir
}

// dirVersion is the version the directory's current contents compile to.
func dirVersion(t *testing.T, dir string) string {
	t.Helper()
	rs, err := rules.LoadDir(dir)
	if err != nil {
		t.Fatalf("fixture does not load: %v", err)
	}
	return rs.Version
}

type recorder struct {
	mu        sync.Mutex
	reloads   []bool
	activated []string
}

func (rec *recorder) onReload(ok bool) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.reloads = append(rec.reloads, ok)
}

func (rec *recorder) onActivate(rs *rules.Ruleset) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.activated = append(rec.activated, rs.Version)
}

func (rec *recorder) get() ([]bool, []string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.reloads), slices.Clone(rec.activated)
}

func newTestRules(t *testing.T, dir string, rec *recorder) *Rules {
	t.Helper()
	opts := RulesOptions{
		Dir:      dir,
		Logger:   zerolog.New(zerolog.NewTestWriter(t)),
		Debounce: 20 * time.Millisecond,
		Now:      func() time.Time { return testNow },
	}
	if rec != nil {
		opts.OnReload, opts.OnActivate = rec.onReload, rec.onActivate
	}
	r, err := NewRules(opts)
	if err != nil {
		t.Fatalf("NewRules: %v", err)
	}
	return r
}

// watch runs r.Watch until the test ends and checks that it returns nil.
func watch(t *testing.T, r *Rules) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Watch did not return after cancel")
		}
	})
	// Give the watcher a moment to install its watches; tests below do
	// not depend on it (Watch reloads once the watches are in place), it
	// just keeps them from racing the initial catch-up reload.
	time.Sleep(50 * time.Millisecond)
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRulesInitialLoad(t *testing.T) {
	dir := rulesDir(t)
	rec := &recorder{}
	r := newTestRules(t, dir, rec)
	want := dirVersion(t, dir)
	rs := r.Current()
	if rs == nil || rs.Version != want {
		t.Fatalf("Current: got %v; want version %s", rs, want)
	}
	st := r.Status()
	wantSt := RulesStatus{
		Version:  want,
		LoadedAt: testNow,
		Files:    []string{"rules.yaml", "tests/home_test.yaml"},
		Actions:  1,
		Segments: 1,
	}
	if !reflect.DeepEqual(st, wantSt) {
		t.Errorf("Status:\n got %+v\nwant %+v", st, wantSt)
	}
	// Status hands out a copy of the file list.
	st.Files[0] = "changed"
	if got := r.Current().Files[0]; got != "rules.yaml" {
		t.Errorf("Status shares Files with the ruleset: %q", got)
	}
	reloads, activated := rec.get()
	if len(reloads) != 0 || !slices.Equal(activated, []string{want}) {
		t.Errorf("hooks: reloads %v, activated %v; want none and [%s]", reloads, activated, want)
	}
	var src RulesSource = r
	if v, err := src.Reload(); err != nil || v != want {
		t.Errorf("Reload of unchanged rules: %q, %v; want %q, nil", v, err, want)
	}
	if reloads, activated := rec.get(); !slices.Equal(reloads, []bool{true}) || len(activated) != 1 {
		t.Errorf("no-op reload: reloads %v, activated %v; want [true] and no new activation", reloads, activated)
	}
	if r.Current() != rs {
		t.Errorf("no-op reload replaced the ruleset")
	}
}

func TestRulesInitialFailure(t *testing.T) {
	newRules := func(dir string) error {
		_, err := NewRules(RulesOptions{Dir: dir, Now: func() time.Time { return testNow }})
		return err
	}

	dir := t.TempDir()
	writeFiles(t, dir, "rules.yaml", rulesBroken)
	err := newRules(dir)
	var rej *RejectedError
	if !errors.As(err, &rej) {
		t.Fatalf("broken rules: got %v; want a *RejectedError", err)
	}
	want := []ErrorDetail{{File: "rules.yaml", Line: 6, Column: 5, Message: `unknown key "prority" in an action (did you mean "priority"?)`}}
	if !reflect.DeepEqual(rej.Details, want) {
		t.Errorf("details:\n got %+v\nwant %+v", rej.Details, want)
	}
	if got, want := err.Error(), `rules rejected: rules.yaml:6:5: unknown key "prority" in an action (did you mean "priority"?)`; got != want {
		t.Errorf("Error: got %q; want %q", got, want)
	}
	var list rules.ErrorList
	if !errors.As(err, &list) || len(list) != 1 {
		t.Errorf("the rules.ErrorList is not reachable through errors.As: %v", err)
	}

	dir = t.TempDir()
	writeFiles(t, dir, "rules.yaml", rulesV1, "home_test.yaml", testsFailing)
	err = newRules(dir)
	if !errors.As(err, &rej) {
		t.Fatalf("failing rule test: got %v; want a *RejectedError", err)
	}
	want = []ErrorDetail{{File: "home_test.yaml", Line: 2, Column: 1, Message: `test "welcome shown" failed: home_hero: expected [], got [welcome]`}}
	if !reflect.DeepEqual(rej.Details, want) {
		t.Errorf("details:\n got %+v\nwant %+v", rej.Details, want)
	}

	if err := newRules(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Errorf("missing directory: got no error")
	}
}

func TestRulesReloadRejects(t *testing.T) {
	dir := rulesDir(t)
	rec := &recorder{}
	r := newTestRules(t, dir, rec)
	v1 := r.Current()

	// A rule file that does not compile.
	writeFiles(t, dir, "rules.yaml", rulesBroken)
	v, err := r.Reload()
	var rej *RejectedError
	if !errors.As(err, &rej) || v != "" {
		t.Fatalf("broken rules: got %q, %v; want a *RejectedError", v, err)
	}
	if r.Current() != v1 {
		t.Errorf("a rejected reload replaced the ruleset")
	}
	st := r.Status()
	if st.Version != v1.Version || st.LastError == nil {
		t.Fatalf("status after rejection: %+v", st)
	}
	want := &RulesError{At: testNow, Details: []ErrorDetail{{File: "rules.yaml", Line: 6, Column: 5, Message: `unknown key "prority" in an action (did you mean "priority"?)`}}}
	if !reflect.DeepEqual(st.LastError, want) {
		t.Errorf("LastError:\n got %+v\nwant %+v", st.LastError, want)
	}

	// Rules that compile but fail their test.
	writeFiles(t, dir, "rules.yaml", rulesV1, "tests/home_test.yaml", testsFailing)
	if _, err := r.Reload(); !errors.As(err, &rej) {
		t.Fatalf("failing rule test: got %v; want a *RejectedError", err)
	}
	if r.Current() != v1 {
		t.Errorf("a ruleset whose test fails was activated")
	}
	st = r.Status()
	if st.LastError == nil || len(st.LastError.Details) != 1 || st.LastError.Details[0].File != "tests/home_test.yaml" ||
		!strings.Contains(st.LastError.Details[0].Message, `test "welcome shown" failed`) {
		t.Errorf("LastError after failing test: %+v", st.LastError)
	}

	// A fix is activated and clears the error.
	writeFiles(t, dir, "rules.yaml", rulesV2, "tests/home_test.yaml", "tests:\n  - name: winback first\n    request: {placements: [home_hero]}\n    expect: {home_hero: [winback]}\n")
	v2 := dirVersion(t, dir)
	if v, err := r.Reload(); err != nil || v != v2 {
		t.Fatalf("fixed rules: got %q, %v; want %q", v, err, v2)
	}
	st = r.Status()
	if st.Version != v2 || st.LastError != nil || st.Actions != 2 {
		t.Errorf("status after fix: %+v", st)
	}

	// Reverting to the active content after a rejection clears the error
	// without activating anything.
	writeFiles(t, dir, "rules.yaml", rulesBroken)
	r.Reload()
	writeFiles(t, dir, "rules.yaml", rulesV2)
	if v, err := r.Reload(); err != nil || v != v2 || r.Status().LastError != nil {
		t.Errorf("revert: got %q, %v, last error %+v", v, err, r.Status().LastError)
	}

	// A directory that cannot be read is rejected too.
	os.RemoveAll(dir)
	if _, err := r.Reload(); err == nil || r.Current().Version != v2 || r.Status().LastError == nil {
		t.Errorf("missing directory: err %v, version %s, last error %+v", err, r.Current().Version, r.Status().LastError)
	}

	reloads, activated := rec.get()
	if !slices.Equal(reloads, []bool{false, false, true, false, true, false}) {
		t.Errorf("OnReload calls: %v", reloads)
	}
	if !slices.Equal(activated, []string{v1.Version, v2}) {
		t.Errorf("OnActivate calls: %v; want [%s %s]", activated, v1.Version, v2)
	}
}

func TestRulesWatchWrite(t *testing.T) {
	dir := rulesDir(t)
	r := newTestRules(t, dir, nil)
	watch(t, r)

	writeFiles(t, dir, "rules.yaml", rulesV2, "tests/home_test.yaml", strings.ReplaceAll(testsV1, "[welcome]", "[winback]"))
	want := dirVersion(t, dir)
	eventually(t, "the edit to be live", func() bool { return r.Current().Version == want })
	if n := len(r.Current().Actions); n != 2 {
		t.Errorf("got %d actions; want 2", n)
	}

	// An edit inside the existing subfolder alone.
	writeFiles(t, dir, "tests/home_test.yaml", strings.ReplaceAll(testsV1, "[welcome]", "[winback]")+"  - name: second\n    request: {placements: [home_hero]}\n    expect: {home_hero: [winback]}\n")
	want = dirVersion(t, dir)
	eventually(t, "the edit in a subfolder to be live", func() bool { return r.Current().Version == want })
}

func TestRulesWatchEditorSave(t *testing.T) {
	dir := rulesDir(t)
	r := newTestRules(t, dir, nil)
	watch(t, r)

	// Write a temporary file next to the original, then rename it over.
	tmp := filepath.Join(dir, ".rules.yaml.swp")
	writeFiles(t, dir, ".rules.yaml.swp", rulesV2, "tests/home_test.yaml", strings.ReplaceAll(testsV1, "[welcome]", "[winback]"))
	if err := os.Rename(tmp, filepath.Join(dir, "rules.yaml")); err != nil {
		t.Fatal(err)
	}
	want := dirVersion(t, dir)
	eventually(t, "the renamed file to be live", func() bool { return r.Current().Version == want })

	// And once more, now that the original file is a different inode.
	writeFiles(t, dir, "rules.yaml~", rulesV1, "tests/home_test.yaml", testsV1)
	if err := os.Rename(filepath.Join(dir, "rules.yaml~"), filepath.Join(dir, "rules.yaml")); err != nil {
		t.Fatal(err)
	}
	want = dirVersion(t, dir)
	eventually(t, "the second renamed file to be live", func() bool { return r.Current().Version == want })
}

func TestRulesWatchNewSubdir(t *testing.T) {
	dir := rulesDir(t)
	r := newTestRules(t, dir, nil)
	watch(t, r)

	more := "actions:\n  - id: extra\n    placements: [cart]\n"
	writeFiles(t, dir, "more/deeper/extra.yaml", more)
	want := dirVersion(t, dir)
	eventually(t, "the new subfolder's file to be live", func() bool { return r.Current().Version == want })

	// Only a watch on the new folder sees this edit.
	writeFiles(t, dir, "more/deeper/extra.yaml", strings.ReplaceAll(more, "extra", "extra2"))
	want = dirVersion(t, dir)
	eventually(t, "the edit in the new subfolder to be live", func() bool { return r.Current().Version == want })
	if r.Current().Action("extra2") == nil {
		t.Errorf("action extra2 missing")
	}
}

func TestRulesWatchBrokenEdit(t *testing.T) {
	dir := rulesDir(t)
	rec := &recorder{}
	r := newTestRules(t, dir, rec)
	v1 := r.Current()
	watch(t, r)

	writeFiles(t, dir, "rules.yaml", rulesBroken)
	eventually(t, "the broken edit to be rejected", func() bool { return r.Status().LastError != nil })
	if r.Current() != v1 {
		t.Errorf("the broken edit replaced the ruleset")
	}
	le := r.Status().LastError
	if len(le.Details) != 1 || le.Details[0].File != "rules.yaml" || le.Details[0].Line != 6 || le.Details[0].Column != 5 {
		t.Errorf("LastError: %+v", le)
	}

	writeFiles(t, dir, "rules.yaml", rulesV2, "tests/home_test.yaml", strings.ReplaceAll(testsV1, "[welcome]", "[winback]"))
	want := dirVersion(t, dir)
	eventually(t, "the fix to be live", func() bool {
		st := r.Status()
		return st.Version == want && st.LastError == nil
	})
	// OnReload is called after the status is updated: wait for it.
	eventually(t, "OnReload(true) after the fix", func() bool {
		reloads, _ := rec.get()
		return len(reloads) > 0 && reloads[len(reloads)-1]
	})
	reloads, _ := rec.get()
	if !slices.Contains(reloads, false) {
		t.Errorf("OnReload calls: %v; want a false for the broken edit", reloads)
	}
}

func TestRulesWatchFailingTest(t *testing.T) {
	dir := rulesDir(t)
	r := newTestRules(t, dir, nil)
	v1 := r.Current()
	watch(t, r)

	// rulesV2 ranks winback first, so the unchanged test fails.
	writeFiles(t, dir, "rules.yaml", rulesV2)
	eventually(t, "the edit to be rejected", func() bool { return r.Status().LastError != nil })
	if r.Current() != v1 {
		t.Errorf("a ruleset whose test fails was activated")
	}
	got := r.Status().LastError.Details
	want := []ErrorDetail{{File: "tests/home_test.yaml", Line: 2, Column: 1, Message: `test "welcome shown" failed: home_hero: expected [welcome], got [winback]`}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("details:\n got %+v\nwant %+v", got, want)
	}
}

// TestRulesConcurrentCurrent checks under -race that readers always get a
// complete ruleset while reloads swap it.
func TestRulesConcurrentCurrent(t *testing.T) {
	dir := rulesDir(t)
	r := newTestRules(t, dir, nil)
	testsV2 := strings.ReplaceAll(testsV1, "[welcome]", "[winback]")
	v1 := dirVersion(t, dir)
	writeFiles(t, dir, "rules.yaml", rulesV2, "tests/home_test.yaml", testsV2)
	v2 := dirVersion(t, dir)
	actions := map[string][]string{v1: {"welcome"}, v2: {"welcome", "winback"}}

	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				rs := r.Current()
				ids, ok := actions[rs.Version]
				if !ok || len(rs.Actions) != len(ids) {
					errs <- "unexpected ruleset " + rs.Version
					return
				}
				for _, id := range ids {
					if rs.Action(id) == nil {
						errs <- "ruleset " + rs.Version + " lacks " + id
						return
					}
				}
				st := r.Status()
				if ids, ok := actions[st.Version]; !ok || st.Actions != len(ids) || len(st.Files) != 2 {
					errs <- "inconsistent status"
					return
				}
			}
		})
	}
	for i := range 40 {
		if i%2 == 0 {
			writeFiles(t, dir, "rules.yaml", rulesV2, "tests/home_test.yaml", testsV2)
		} else {
			writeFiles(t, dir, "rules.yaml", rulesV1, "tests/home_test.yaml", testsV1)
		}
		if _, err := r.Reload(); err != nil {
			t.Errorf("reload %d: %v", i, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := r.Current().Version; got != v1 {
		t.Errorf("final version %s; want %s", got, v1)
	}
}
