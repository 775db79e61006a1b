package rules_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nudge-engine/nudge/rules"
)

// seedDirs hold the rule files the fuzzer starts from. ../testdata/corpus
// holds decision cases, not rule files.
var seedDirs = []string{"../testdata/storefront/rules", "../testdata/check"}

var versionRe = regexp.MustCompile(`^[0-9a-f]{8}$`)

// FuzzLoad compiles arbitrary bytes as one rule file (or, for test=true,
// one test file) and checks that the loader never panics and that what it
// reports is well formed.
func FuzzLoad(f *testing.F) {
	n := 0
	for _, dir := range seedDirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(p, ".yaml") {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			f.Add(data, strings.HasSuffix(p, "_test.yaml"))
			n++
			return nil
		})
		if err != nil {
			f.Fatalf("reading the seed files: %v", err)
		}
	}
	// A glob or path that matches nothing must not pass unnoticed.
	if n < 10 {
		f.Fatalf("got %d seed files under %v; want at least 10", n, seedDirs)
	}

	f.Fuzz(func(t *testing.T, data []byte, test bool) {
		name := "fuzz.yaml"
		if test {
			name = "fuzz_test.yaml"
		}
		files := []rules.File{{Name: name, Data: data}}
		rs, err := rules.Compile(files)
		if err == nil {
			if !versionRe.MatchString(rs.Version) {
				t.Fatalf("got version %q; want 8 hex digits", rs.Version)
			}
			if v := rules.Version(files); rs.Version != v {
				t.Fatalf("got version %s; want rules.Version's %s", rs.Version, v)
			}
			for _, w := range rs.Warnings {
				if !w.Warning {
					t.Fatalf("got %q among the warnings of a loaded ruleset", w)
				}
			}
			checkEntries(t, name, rs.Warnings)
			return
		}
		var list rules.ErrorList
		if !errors.As(err, &list) {
			t.Fatalf("got error %T (%v); want a rules.ErrorList", err, err)
		}
		if !list.HasErrors() {
			t.Fatalf("got a failure with warnings only:\n%s", list.Format())
		}
		checkEntries(t, name, list)
	})
}

// checkEntries checks every entry's position and the order of the list.
func checkEntries(t *testing.T, name string, list rules.ErrorList) {
	t.Helper()
	for i, e := range list {
		if e.File != name {
			t.Fatalf("got file %q in %q; want %q", e.File, e, name)
		}
		if e.Line < 1 || e.Col < 1 {
			t.Fatalf("got %q; want line and column from 1", e)
		}
		if e.Msg == "" {
			t.Fatalf("got an entry at %d:%d with no message", e.Line, e.Col)
		}
		if i > 0 && less(e, list[i-1]) {
			t.Fatalf("not sorted: %q before %q", list[i-1], e)
		}
	}
	_ = list.Format() // must not panic
}

func less(a, b *rules.Error) bool {
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
}
