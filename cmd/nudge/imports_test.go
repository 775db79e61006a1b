package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/nudge-engine/nudge"

// The layers of STYLE.md: imports point down this list and never up.
var layers = []string{"cmd", "bench", "server", "engine", "rules", "store"}

// Third-party packages a layer must not import: the engine and the rules
// are pure libraries; only the store implementation and the transport
// touch storage and HTTP.
var forbidden = map[string][]string{
	"engine": {"github.com/valyala/fasthttp", "github.com/cockroachdb/pebble", "github.com/dgraph-io/ristretto", "github.com/rs/zerolog"},
	"rules":  {"github.com/valyala/fasthttp", "github.com/cockroachdb/pebble", "github.com/dgraph-io/ristretto", "github.com/rs/zerolog"},
}

func layerOf(pkg string) (string, int) {
	rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
	top, _, _ := strings.Cut(rel, "/")
	for i, l := range layers {
		if l == top {
			return l, i
		}
	}
	return top, -1
}

// TestImportDirection enforces the import rules of STYLE.md on every
// non-test Go file of the module.
func TestImportDirection(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		pkg := path.Join(module, filepath.ToSlash(filepath.Dir(rel)))
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		from, fromRank := layerOf(pkg)
		for _, spec := range f.Imports {
			imp, _ := strconv.Unquote(spec.Path.Value)
			for _, bad := range forbidden[from] {
				if strings.HasPrefix(imp, bad) {
					t.Errorf("%s: package %s must not import %s", rel, from, imp)
				}
			}
			if !strings.HasPrefix(imp, module) {
				if from == "store" && pkg == module+"/store" && strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
					t.Errorf("%s: the store interface package imports only the standard library, not %s", rel, imp)
				}
				continue
			}
			to, toRank := layerOf(imp)
			switch {
			case from == "rules":
				t.Errorf("%s: rules imports no project package, not %s", rel, imp)
			case pkg == module+"/store":
				t.Errorf("%s: the store interface package imports no project package, not %s", rel, imp)
			case to == "cmd":
				t.Errorf("%s: nothing imports cmd, not even %s", rel, from)
			case fromRank >= 0 && toRank >= 0 && toRank < fromRank:
				t.Errorf("%s: %s imports %s, an upper layer (%s)", rel, from, imp, to)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 10 {
		t.Fatalf("checked only %d files: is the module root right?", checked)
	}
}
