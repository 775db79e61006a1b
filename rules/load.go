package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Limits of a rules directory.
const (
	maxFileSize = 8 << 20
	maxFiles    = 10000
	maxLimit    = 100 // placement limit
)

var (
	actionIDRe = regexp.MustCompile(`^[a-z0-9_-]{1,128}$`)
	nameRe     = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
)

// LoadDir loads the rules directory dir. See Load.
func LoadDir(dir string) (*Ruleset, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot read rules directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("cannot read rules directory: %s is not a directory", dir)
	}
	return Load(os.DirFS(dir))
}

// Load reads every *.yaml file below the root of fsys (files and folders
// whose names start with a dot are skipped), merges, validates and
// compiles them. On success the ruleset's Warnings hold the warnings. On
// failure the error is an ErrorList with every problem, warnings included,
// sorted; an I/O failure is returned as an ordinary error.
func Load(fsys fs.FS) (*Ruleset, error) {
	var names []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != "." && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.IsDir() && strings.HasSuffix(p, ".yaml") {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list rule files: %w", err)
	}
	if len(names) > maxFiles {
		return nil, fmt.Errorf("cannot load rules: %d files, more than %d", len(names), maxFiles)
	}
	sort.Strings(names)
	files := make([]File, 0, len(names))
	for _, name := range names {
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("cannot read rule file: %w", err)
		}
		files = append(files, File{Name: name, Data: data})
	}
	return Compile(files)
}

// File is one rule file: its slash-separated path relative to the rules
// directory, and its contents.
type File struct {
	Name string
	Data []byte
}

// Version returns the ruleset version of files: a hash of their relative
// paths and contents, independent of where the directory lives.
func Version(files []File) string {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	h := sha256.New()
	for _, f := range sorted {
		fmt.Fprintf(h, "%d:%s\x00%d:", len(f.Name), f.Name, len(f.Data))
		h.Write(f.Data)
	}
	return hex.EncodeToString(h.Sum(nil))[:8]
}

// Compile validates and compiles rule files; see Load.
func Compile(files []File) (*Ruleset, error) {
	l := &loader{
		segDefs:    map[string]*def{},
		segDeps:    map[string][]segRef{},
		actionByID: map[string]*def{},
		rs: &Ruleset{
			Version:    Version(files),
			Placements: map[string]*Placement{},
			segIndex:   map[string]int{},
			actIndex:   map[string]int{},
		},
	}
	l.collect(files)
	l.checkEnv = checkEnvFor(map[string]any{})
	l.buildSchema()
	l.buildSegments()
	l.buildChannels()
	l.buildActions()
	l.buildPolicies()
	l.buildPlacements()
	l.buildTests()
	l.checkCycles()
	l.buildGates()

	l.errs.Sort()
	if l.errs.HasErrors() {
		return nil, l.errs
	}
	rs := l.rs
	rs.Warnings = l.errs
	rs.serial = serials.Add(1)
	rs.MaxWindow = min(l.maxWindow, MaxWindow)
	return rs, nil
}

// srcFile is a rule file being loaded.
type srcFile struct {
	name  string
	lines []string
	test  bool
}

// def is one definition found in a file, before compilation.
type def struct {
	f   *srcFile
	key *node // the key naming it, for maps; nil for list items
	val *node
}

type segRef struct {
	name string
	at   int
}

type loader struct {
	errs ErrorList
	rs   *Ruleset

	attrDefs   []*def
	segDefs    map[string]*def
	segOrder   []string
	actionDefs []*def
	actionByID map[string]*def
	policyDefs []*def
	chanDefs   []*def
	placeDefs  []*def
	testDefs   []*def

	schema    map[string]*Attribute // nil: no schema
	attrNames []string
	checkEnv  map[string]any
	defaults  map[string]any // attribute defaults of the schema
	segNames  []string
	segDeps   map[string][]segRef
	actionIDs map[string]bool
	maxWindow time.Duration
}

func (l *loader) add(f *srcFile, line, col int, warning bool, msg string) {
	line, col = f.clamp(line, col)
	e := &Error{File: f.name, Line: line, Col: col, Msg: msg, Warning: warning}
	if line >= 1 && line <= len(f.lines) {
		e.Source = f.lines[line-1]
	}
	l.errs = append(l.errs, e)
}

func (l *loader) errorf(f *srcFile, n *node, format string, args ...any) {
	l.add(f, n.line, n.col, false, fmt.Sprintf(format, args...))
}

func (l *loader) warnf(f *srcFile, n *node, format string, args ...any) {
	l.add(f, n.line, n.col, true, fmt.Sprintf(format, args...))
}

func (l *loader) errorAt(f *srcFile, n *node, off int, msg string) {
	line, col := f.locate(n, off)
	l.add(f, line, col, false, msg)
}

func (l *loader) warnAt(f *srcFile, n *node, off int, msg string) {
	line, col := f.locate(n, off)
	l.add(f, line, col, true, msg)
}

var (
	ruleFileKeys = []string{"attributes", "segments", "actions", "policies", "channels", "placements"}
	testFileKeys = []string{"tests"}
)

// collect parses every file and gathers the definitions by section.
func (l *loader) collect(files []File) {
	for _, file := range files {
		f := &srcFile{
			name:  file.Name,
			lines: strings.Split(strings.ReplaceAll(string(file.Data), "\r\n", "\n"), "\n"),
			test:  strings.HasSuffix(file.Name, "_test.yaml"),
		}
		if len(file.Data) > maxFileSize {
			l.add(f, 1, 1, false, fmt.Sprintf("file larger than %d MiB", maxFileSize>>20))
			continue
		}
		root, err := parseYAML(file.Data)
		if err != nil {
			ye := err.(*yamlError)
			l.add(f, ye.line, ye.col, false, ye.msg)
			continue
		}
		if root == nil {
			continue
		}
		if root.kind != mapNode {
			l.errorf(f, root, "a rule file is a mapping of sections (%s), not a %s", strings.Join(ruleFileKeys, ", "), root.describe())
			continue
		}
		allowed := ruleFileKeys
		if f.test {
			allowed = testFileKeys
		}
		for i, k := range root.keys {
			v := root.vals[i]
			if !slices.Contains(allowed, k.text) {
				l.unknownKey(f, k, "a "+map[bool]string{false: "rule", true: "test"}[f.test]+" file", allowed)
				continue
			}
			switch k.text {
			case "attributes", "segments", "placements":
				if v.kind == nullNode {
					continue
				}
				if v.kind != mapNode {
					l.errorf(f, v, "%s must be a mapping of names, not a %s", k.text, v.describe())
					continue
				}
				for j, key := range v.keys {
					d := &def{f: f, key: key, val: v.vals[j]}
					switch k.text {
					case "attributes":
						l.attrDefs = append(l.attrDefs, d)
					case "segments":
						if prev, ok := l.segDefs[key.text]; ok {
							l.errorf(f, key, "segment %q is already defined at %s:%d", key.text, prev.f.name, prev.key.line)
							continue
						}
						l.segDefs[key.text] = d
						l.segOrder = append(l.segOrder, key.text)
					case "placements":
						l.placeDefs = append(l.placeDefs, d)
					}
				}
			default: // lists
				if v.kind == nullNode {
					continue
				}
				if v.kind != seqNode {
					l.errorf(f, v, "%s must be a list, not a %s", k.text, v.describe())
					continue
				}
				for _, it := range v.items {
					d := &def{f: f, val: it}
					switch k.text {
					case "actions":
						l.actionDefs = append(l.actionDefs, d)
					case "policies":
						l.policyDefs = append(l.policyDefs, d)
					case "channels":
						l.chanDefs = append(l.chanDefs, d)
					case "tests":
						l.testDefs = append(l.testDefs, d)
					}
				}
			}
		}
		l.rs.Files = append(l.rs.Files, f.name)
	}
	l.segNames = slices.Clone(l.segOrder)
	for i, name := range l.segOrder {
		l.rs.segIndex[name] = i
	}
	l.actionIDs = map[string]bool{}
	for _, d := range l.actionDefs {
		if d.val.kind == mapNode {
			if id := d.val.get("id"); id != nil {
				if s, ok := id.asString(); ok {
					l.actionIDs[s] = true
				}
			}
		}
	}
}

func (l *loader) unknownKey(f *srcFile, k *node, where string, allowed []string) {
	msg := fmt.Sprintf("unknown key %q in %s", k.text, where)
	if s := closest(k.text, allowed); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else {
		msg += " (expected " + strings.Join(allowed, ", ") + ")"
	}
	l.errorf(f, k, "%s", msg)
}

// fields checks that n is a mapping with only allowed keys and returns a
// lookup of the present ones.
func (l *loader) fields(f *srcFile, n *node, where string, allowed ...string) (map[string]*node, bool) {
	if n.kind != mapNode {
		l.errorf(f, n, "%s must be a mapping, not a %s", where, n.describe())
		return nil, false
	}
	m := make(map[string]*node, len(n.keys))
	for i, k := range n.keys {
		if !slices.Contains(allowed, k.text) {
			l.unknownKey(f, k, where, allowed)
			continue
		}
		m[k.text] = n.vals[i]
	}
	return m, true
}

func (l *loader) str(f *srcFile, n *node, what string) (string, bool) {
	s, ok := n.asString()
	if !ok {
		l.errorf(f, n, "%s must be a string, not a %s", what, n.describe())
	}
	return s, ok
}

func (l *loader) strList(f *srcFile, n *node, what string) ([]string, bool) {
	if n.kind == scalarNode {
		s, ok := l.str(f, n, what)
		return []string{s}, ok
	}
	if n.kind != seqNode {
		l.errorf(f, n, "%s must be a list of strings, not a %s", what, n.describe())
		return nil, false
	}
	out := make([]string, 0, len(n.items))
	ok := true
	for _, it := range n.items {
		s, good := l.str(f, it, what+" entry")
		if good {
			out = append(out, s)
		}
		ok = ok && good
	}
	return out, ok
}

func (l *loader) positiveInt(f *srcFile, n *node, what string) (int64, bool) {
	v, ok := n.asInt()
	if !ok || v < 1 {
		l.errorf(f, n, "%s must be a whole number of at least 1, not %s", what, n.describe())
		return 0, false
	}
	return v, true
}

func (l *loader) window(f *srcFile, n *node) (time.Duration, bool) {
	s, ok := n.asString()
	if !ok {
		l.errorf(f, n, "window must be a string like \"7d\", not a %s", n.describe())
		return 0, false
	}
	w, err := ParseWindow(s)
	if err != nil {
		l.errorf(f, n, "bad window %q: %v", s, err)
		return 0, false
	}
	l.maxWindow = max(l.maxWindow, min(w, MaxWindow))
	return w, true
}

func (l *loader) outcome(f *srcFile, n *node) (uint8, bool) {
	s, ok := n.asString()
	c, good := outcomeCode(s)
	if !ok || !good {
		l.errorf(f, n, "unknown outcome %s (one of %s)", n.describe(), strings.Join(OutcomeNames, ", "))
		return 0, false
	}
	return c, true
}

func (l *loader) buildSchema() {
	if len(l.attrDefs) == 0 {
		return
	}
	l.schema = map[string]*Attribute{}
	for _, d := range l.attrDefs {
		f, name := d.f, d.key.text
		if prev, ok := l.schema[name]; ok {
			_ = prev
			l.errorf(f, d.key, "attribute %q is declared twice", name)
			continue
		}
		a := &Attribute{Name: name}
		l.schema[name] = a
		l.attrNames = append(l.attrNames, name)
		l.rs.Attributes = append(l.rs.Attributes, a)
		if name == "id" {
			l.errorf(f, d.key, "attribute \"id\" is reserved: customer.id is the customer's id")
			continue
		}
		m, ok := l.fields(f, d.val, "attribute "+name, "type", "default")
		if !ok {
			continue
		}
		tn := m["type"]
		if tn == nil {
			l.errorf(f, d.key, "attribute %q needs a type (%s)", name, strings.Join(attrTypeNames[:], ", "))
			continue
		}
		ts, _ := tn.asString()
		i := slices.Index(attrTypeNames[:], ts)
		if i < 0 {
			l.errorf(f, tn, "unknown attribute type %s (one of %s)", tn.describe(), strings.Join(attrTypeNames[:], ", "))
			continue
		}
		a.Type = AttrType(i)
		if dn := m["default"]; dn != nil && dn.kind != nullNode {
			v := plain(dn)
			if !attrTypeOK(a.Type, v) {
				l.errorf(f, dn, "default of attribute %q must be a %s, not a %s", name, a.Type, dn.describe())
				continue
			}
			a.Default, a.HasDefault = v, true
		}
	}
	l.checkEnv = checkEnvFor(schemaCustomer(l.rs.Attributes))
	l.defaults = map[string]any{}
	for _, a := range l.rs.Attributes {
		if a.HasDefault {
			l.defaults[a.Name] = a.Default
		}
	}
}

func attrTypeOK(t AttrType, v any) bool {
	switch v.(type) {
	case string:
		return t == AttrString
	case float64:
		return t == AttrNumber
	case bool:
		return t == AttrBool
	case map[string]any:
		return t == AttrObject
	case []any:
		return t == AttrList
	}
	return false
}

func (l *loader) buildSegments() {
	for _, name := range l.segOrder {
		d := l.segDefs[name]
		if !nameRe.MatchString(name) {
			l.errorf(d.f, d.key, "segment name %q must be 1 to 128 letters, digits, '_', '.' or '-'", name)
		}
		s := &Segment{Name: name, Index: len(l.rs.Segments)}
		src, ok := l.str(d.f, d.val, "segment "+name)
		if ok {
			s.When = l.compileExpr(d.f, d.val, src, 0, condExpr, "segment:"+name, exprScope{segment: name})
		}
		l.rs.Segments = append(l.rs.Segments, s)
	}
}

// checkCycles reports every segment that takes part in a cycle, once per
// cycle, at the reference that closes it.
func (l *loader) checkCycles() {
	const (
		unvisited = iota
		active
		done
	)
	state := map[string]int{}
	var stack []string
	var visit func(name string)
	visit = func(name string) {
		state[name] = active
		stack = append(stack, name)
		for _, ref := range l.segDeps[name] {
			switch state[ref.name] {
			case active:
				i := slices.Index(stack, ref.name)
				cycle := append(slices.Clone(stack[i:]), ref.name)
				d := l.segDefs[name]
				l.errorAt(d.f, d.val, ref.at, "segment cycle: "+strings.Join(cycle, " -> "))
			case unvisited:
				visit(ref.name)
			}
		}
		stack = stack[:len(stack)-1]
		state[name] = done
	}
	for _, name := range l.segOrder {
		if state[name] == unvisited {
			visit(name)
		}
	}
}

func (l *loader) buildChannels() {
	seen := map[string]*def{}
	for _, d := range l.chanDefs {
		f := d.f
		m, ok := l.fields(f, d.val, "a channel", "id", "when", "score")
		if !ok {
			continue
		}
		idn := m["id"]
		if idn == nil {
			l.errorf(f, d.val, "a channel needs an id")
			continue
		}
		id, _ := idn.asString()
		if !actionIDRe.MatchString(id) {
			l.errorf(f, idn, "channel id %s must match [a-z0-9_-]+", idn.describe())
			continue
		}
		if prev, ok := seen[id]; ok {
			l.errorf(f, idn, "channel %q is already defined at %s:%d", id, prev.f.name, prev.val.line)
			continue
		}
		seen[id] = d
		c := &Channel{ID: id, Index: len(l.rs.Channels)}
		if n := m["when"]; n != nil {
			if src, ok := l.str(f, n, "when"); ok {
				c.When = l.compileExpr(f, n, src, 0, condExpr, "channel:"+id+":when", exprScope{})
			}
		}
		if n := m["score"]; n != nil {
			if src, ok := n.asString(); ok {
				c.Score = l.compileExpr(f, n, src, 0, scoreExpr, "channel:"+id+":score", exprScope{})
			}
		}
		l.rs.Channels = append(l.rs.Channels, c)
	}
}

var actionKeys = []string{"id", "kind", "placements", "channels", "when", "priority", "score", "tags",
	"content", "schedule", "caps", "stop_after", "budget", "adaptive", "experiment"}

func (l *loader) buildActions() {
	seen := map[string]*def{}
	for _, d := range l.actionDefs {
		f := d.f
		m, ok := l.fields(f, d.val, "an action", actionKeys...)
		if !ok {
			continue
		}
		idn := m["id"]
		if idn == nil {
			l.errorf(f, d.val, "an action needs an id")
			continue
		}
		id, _ := idn.asString()
		if !actionIDRe.MatchString(id) {
			l.errorf(f, idn, "action id %s must be 1 to 128 of a-z, 0-9, '_' and '-'", idn.describe())
			continue
		}
		if prev, ok := seen[id]; ok {
			l.errorf(f, idn, "action %q is already defined at %s:%d", id, prev.f.name, prev.val.line)
			continue
		}
		seen[id] = d
		l.actionByID[id] = d
		a := &Action{ID: id, Index: len(l.rs.Actions), File: f.name, Line: idn.line}
		l.action(f, a, m)
		l.rs.actIndex[id] = a.Index
		l.rs.Actions = append(l.rs.Actions, a)
	}
}

func (l *loader) action(f *srcFile, a *Action, m map[string]*node) {
	rule := "action:" + a.ID
	if n := m["kind"]; n != nil {
		switch s, _ := n.asString(); s {
		case "offer":
			a.Kind = Offer
		case "message":
			a.Kind = Message
		default:
			l.errorf(f, n, "kind must be offer or message, not %s", n.describe())
		}
	}
	if n := m["placements"]; n != nil {
		a.Placements, _ = l.strList(f, n, "placements")
		for i, p := range a.Placements {
			if slices.Contains(a.Placements[:i], p) {
				l.errorf(f, n, "placement %q is listed twice", p)
			}
		}
	}
	if n := m["channels"]; n != nil {
		a.Channels, _ = l.strList(f, n, "channels")
		if a.Channels == nil {
			a.Channels = []string{}
		}
	}
	if n := m["when"]; n != nil {
		if src, ok := l.str(f, n, "when"); ok {
			a.When = l.compileExpr(f, n, src, 0, condExpr, rule+":when", exprScope{})
		}
	}
	if n := m["adaptive"]; n != nil {
		b, ok := n.asBool()
		if !ok {
			l.errorf(f, n, "adaptive must be true or false, not %s", n.describe())
		}
		a.Adaptive = b
	}
	if n := m["priority"]; n != nil {
		v, ok := n.asInt()
		if !ok || v < math.MinInt32 || v > math.MaxInt32 {
			l.errorf(f, n, "priority must be a whole number, not %s", n.describe())
		}
		a.Priority = int(v)
	}
	if n := m["score"]; n != nil {
		if src, ok := n.asString(); ok && n.kind == scalarNode {
			a.Score = l.compileExpr(f, n, src, 0, scoreExpr, rule+":score", exprScope{propensity: a.Adaptive})
		} else {
			l.errorf(f, n, "score must be a number or an expression, not a %s", n.describe())
		}
	}
	if n := m["tags"]; n != nil {
		a.Tags, _ = l.strList(f, n, "tags")
	}
	if n := m["content"]; n != nil {
		if n.kind != mapNode {
			l.errorf(f, n, "content must be a mapping, not a %s", n.describe())
		} else {
			a.Content = l.content(f, n, rule+":content", 0)
		}
	}
	if n := m["schedule"]; n != nil {
		if sm, ok := l.fields(f, n, "schedule", "from", "until"); ok {
			for _, k := range []string{"from", "until"} {
				tn := sm[k]
				if tn == nil {
					continue
				}
				t, ok := tn.asTime()
				if !ok {
					l.errorf(f, tn, "schedule %s must be an RFC 3339 time like 2026-11-01T00:00:00Z, not %s", k, tn.describe())
					continue
				}
				if k == "from" {
					a.Schedule.From = t
				} else {
					a.Schedule.Until = t
				}
			}
			if s := a.Schedule; !s.From.IsZero() && !s.Until.IsZero() && !s.Until.After(s.From) {
				l.errorf(f, n, "schedule until must be after from")
			}
		}
	}
	if n := m["caps"]; n != nil {
		if n.kind != seqNode {
			l.errorf(f, n, "caps must be a list, not a %s", n.describe())
		} else {
			for _, cn := range n.items {
				cm, ok := l.fields(f, cn, "a cap", "max", "window", "outcome")
				if !ok {
					continue
				}
				c, ok := l.capFields(f, cn, cm)
				if ok {
					a.Caps = append(a.Caps, c)
				}
			}
		}
	}
	if n := m["stop_after"]; n != nil {
		names, _ := l.strList(f, n, "stop_after")
		for _, s := range names {
			if c, ok := outcomeCode(s); ok && c != OutcomeServed {
				a.StopAfter = append(a.StopAfter, c)
			} else {
				l.errorf(f, n, "stop_after outcome %q must be one of click, accept, dismiss, convert", s)
			}
		}
		if len(a.StopAfter) > 0 {
			l.maxWindow = MaxWindow
		}
	}
	if n := m["budget"]; n != nil {
		if bm, ok := l.fields(f, n, "budget", "max", "window"); ok {
			c, ok := l.capFields(f, n, bm)
			if ok {
				a.Budget = &Budget{Max: c.Max, Window: c.Window}
			}
		}
	}
	if n := m["experiment"]; n != nil {
		a.Experiment = l.experiment(f, a, n)
	}
}

// capFields reads max, window and (when present) outcome.
func (l *loader) capFields(f *srcFile, n *node, m map[string]*node) (Cap, bool) {
	var c Cap
	ok := true
	if mn := m["max"]; mn == nil {
		l.errorf(f, n, "max is required")
		ok = false
	} else if c.Max, ok = l.positiveInt(f, mn, "max"); !ok {
		ok = false
	}
	if wn := m["window"]; wn == nil {
		l.errorf(f, n, "window is required")
		ok = false
	} else if w, good := l.window(f, wn); good {
		c.Window = w
	} else {
		ok = false
	}
	if on := m["outcome"]; on != nil {
		o, good := l.outcome(f, on)
		c.Outcome = o
		ok = ok && good
	}
	return c, ok
}

func (l *loader) experiment(f *srcFile, a *Action, n *node) *Experiment {
	m, ok := l.fields(f, n, "experiment", "id", "variants")
	if !ok {
		return nil
	}
	x := &Experiment{ID: a.ID}
	if idn := m["id"]; idn != nil {
		s, _ := idn.asString()
		if !nameRe.MatchString(s) {
			l.errorf(f, idn, "experiment id %s must be 1 to 128 letters, digits, '_', '.' or '-'", idn.describe())
		}
		x.ID = s
	}
	vn := m["variants"]
	if vn == nil || vn.kind != mapNode || len(vn.keys) == 0 {
		l.errorf(f, n, "an experiment needs variants: a mapping of names to {weight, content, holdout}")
		return nil
	}
	for i, k := range vn.keys {
		vm, ok := l.fields(f, vn.vals[i], "variant "+k.text, "weight", "content", "holdout")
		if !ok {
			continue
		}
		v := &Variant{Name: k.text, Content: a.Content}
		if wn := vm["weight"]; wn == nil {
			l.errorf(f, k, "variant %q needs a weight", k.text)
		} else if w, ok := wn.asFloat(); !ok || w < 0 || math.IsInf(w, 0) || math.IsNaN(w) {
			l.errorf(f, wn, "weight must be a number of at least 0, not %s", wn.describe())
		} else {
			v.Weight = w
		}
		if hn := vm["holdout"]; hn != nil {
			b, ok := hn.asBool()
			if !ok {
				l.errorf(f, hn, "holdout must be true or false, not %s", hn.describe())
			}
			v.Holdout = b
		}
		if cn := vm["content"]; cn != nil {
			if cn.kind != mapNode {
				l.errorf(f, cn, "content must be a mapping, not a %s", cn.describe())
			} else if over := l.content(f, cn, "action:"+a.ID+":variant:"+k.text, 0); over != nil {
				v.Content = mergeContent(a.Content, over)
				v.Content.finish()
			}
		}
		x.Total += v.Weight
		x.Variants = append(x.Variants, v)
	}
	if x.Total <= 0 {
		l.errorf(f, vn, "the variants' weights add up to 0")
	}
	return x
}

// content compiles a content tree; strings may hold {{ expr }} templates.
func (l *loader) content(f *srcFile, n *node, rule string, depth int) *Value {
	switch n.kind {
	case mapNode:
		v := &Value{Kind: Map}
		for i, k := range n.keys {
			v.Keys = append(v.Keys, k.text)
			v.Values = append(v.Values, l.content(f, n.vals[i], rule, depth+1))
		}
		if depth == 0 {
			v.finish()
		}
		return v
	case seqNode:
		v := &Value{Kind: List}
		for _, it := range n.items {
			v.Values = append(v.Values, l.content(f, it, rule, depth+1))
		}
		return v
	}
	s, isString := n.value.(string)
	if !isString || !strings.Contains(s, "{{") {
		return &Value{Kind: Literal, Literal: plain(n)}
	}
	spans, badAt, ok := splitTemplate(s)
	if !ok {
		l.errorAt(f, n, utf8RuneOffset(s, badAt), "unclosed {{ in template")
		return &Value{Kind: Literal, Literal: s}
	}
	v := &Value{Kind: Template}
	prev := 0
	for _, sp := range spans {
		if sp.start > prev {
			v.Parts = append(v.Parts, TemplatePart{Text: s[prev:sp.start]})
		}
		src := s[sp.start+2 : sp.end-2]
		e := l.compileExpr(f, n, src, utf8RuneOffset(s, sp.start+2), valueExpr, rule, exprScope{})
		if e != nil {
			v.Parts = append(v.Parts, TemplatePart{Expr: e})
		}
		prev = sp.end
	}
	if prev < len(s) {
		v.Parts = append(v.Parts, TemplatePart{Text: s[prev:]})
	}
	for _, p := range v.Parts {
		v.SizeHint += len(p.Text)
		if p.Expr != nil {
			v.SizeHint += 16
		}
	}
	return v
}

func utf8RuneOffset(s string, byteOff int) int {
	return len([]rune(s[:byteOff]))
}

var policyKeys = []string{"id", "when", "suppress", "cap"}

func (l *loader) buildPolicies() {
	seen := map[string]*def{}
	for _, d := range l.policyDefs {
		f := d.f
		m, ok := l.fields(f, d.val, "a policy", policyKeys...)
		if !ok {
			continue
		}
		idn := m["id"]
		if idn == nil {
			l.errorf(f, d.val, "a policy needs an id")
			continue
		}
		id, _ := idn.asString()
		if !actionIDRe.MatchString(id) {
			l.errorf(f, idn, "policy id %s must be 1 to 128 of a-z, 0-9, '_' and '-'", idn.describe())
			continue
		}
		if prev, ok := seen[id]; ok {
			l.errorf(f, idn, "policy %q is already defined at %s:%d", id, prev.f.name, prev.val.line)
			continue
		}
		seen[id] = d
		p := &Policy{ID: id, Index: len(l.rs.Policies)}
		if n := m["when"]; n != nil {
			if src, ok := l.str(f, n, "when"); ok {
				p.When = l.compileExpr(f, n, src, 0, condExpr, "policy:"+id+":when", exprScope{})
			}
		}
		sn, cn := m["suppress"], m["cap"]
		switch {
		case sn != nil && cn != nil:
			l.errorf(f, cn, "a policy has either suppress or cap, not both")
			continue
		case sn == nil && cn == nil:
			l.errorf(f, idn, "policy %q needs suppress or cap", id)
			continue
		case sn != nil:
			if sm, ok := l.fields(f, sn, "suppress", "kinds", "tags", "actions"); ok {
				p.Suppress = &Filter{}
				l.filter(f, sm, p.Suppress)
			}
		default:
			if cm, ok := l.fields(f, cn, "cap", "max", "window", "outcome", "channels", "kinds", "tags", "actions"); ok {
				c, ok := l.capFields(f, cn, cm)
				if !ok {
					continue
				}
				pc := &PolicyCap{Max: c.Max, Window: c.Window, Outcome: c.Outcome}
				l.filter(f, cm, &pc.Filter)
				p.Cap = pc
			}
		}
		l.rs.Policies = append(l.rs.Policies, p)
	}
	// Which actions each policy's static filter selects.
	for _, p := range l.rs.Policies {
		var flt *Filter
		if p.Suppress != nil {
			flt = p.Suppress
		} else if p.Cap != nil {
			flt = &p.Cap.Filter
			if len(flt.Kinds)+len(flt.Tags)+len(flt.Actions) > 0 {
				p.Cap.matches = map[string]bool{}
			}
		} else {
			continue
		}
		for _, a := range l.rs.Actions {
			if !flt.matchesAction(a) {
				continue
			}
			if p.Suppress != nil {
				a.SuppressedBy = append(a.SuppressedBy, p.Index)
			} else {
				a.CappedBy = append(a.CappedBy, p.Index)
				if p.Cap.matches != nil {
					p.Cap.matches[a.ID] = true
				}
			}
		}
	}
}

func (flt *Filter) matchesAction(a *Action) bool {
	if len(flt.Kinds) > 0 && !slices.Contains(flt.Kinds, a.Kind) {
		return false
	}
	if len(flt.Tags) > 0 && !slices.ContainsFunc(flt.Tags, func(t string) bool { return slices.Contains(a.Tags, t) }) {
		return false
	}
	if len(flt.Actions) > 0 && !slices.Contains(flt.Actions, a.ID) {
		return false
	}
	return true
}

func (l *loader) filter(f *srcFile, m map[string]*node, flt *Filter) {
	if n := m["kinds"]; n != nil {
		kinds, _ := l.strList(f, n, "kinds")
		for _, k := range kinds {
			switch k {
			case "offer":
				flt.Kinds = append(flt.Kinds, Offer)
			case "message":
				flt.Kinds = append(flt.Kinds, Message)
			default:
				l.errorf(f, n, "kind %q must be offer or message", k)
			}
		}
	}
	if n := m["tags"]; n != nil {
		flt.Tags, _ = l.strList(f, n, "tags")
	}
	if n := m["actions"]; n != nil {
		flt.Actions, _ = l.strList(f, n, "actions")
		for _, id := range flt.Actions {
			if !l.actionIDs[id] {
				l.errorf(f, n, "unknown action %q%s", id, didYouMean(id, l.actionIDList()))
			}
		}
	}
	if n := m["channels"]; n != nil {
		flt.Channels, _ = l.strList(f, n, "channels")
	}
}

func didYouMean(s string, candidates []string) string {
	if c := closest(s, candidates); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}

func (l *loader) actionIDList() []string {
	ids := make([]string, 0, len(l.actionIDs))
	for id := range l.actionIDs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (l *loader) buildPlacements() {
	seen := map[string]*def{}
	for _, d := range l.placeDefs {
		f, name := d.f, d.key.text
		if !nameRe.MatchString(name) {
			l.errorf(f, d.key, "placement name %q must be 1 to 128 letters, digits, '_', '.' or '-'", name)
			continue
		}
		if prev, ok := seen[name]; ok {
			l.errorf(f, d.key, "placement %q is already defined at %s:%d", name, prev.f.name, prev.key.line)
			continue
		}
		seen[name] = d
		p := &Placement{Name: name, Limit: 1}
		l.rs.Placements[name] = p
		if d.val.kind == nullNode {
			continue
		}
		m, ok := l.fields(f, d.val, "placement "+name, "limit", "fallback")
		if !ok {
			continue
		}
		if n := m["limit"]; n != nil {
			v, ok := n.asInt()
			if !ok || v < 1 || v > maxLimit {
				l.errorf(f, n, "limit must be a whole number from 1 to %d, not %s", maxLimit, n.describe())
			} else {
				p.Limit = int(v)
			}
		}
		if n := m["fallback"]; n != nil {
			id, _ := n.asString()
			if a := l.rs.Action(id); a != nil {
				p.Fallback = a
			} else {
				l.errorf(f, n, "fallback names no action: %s%s", n.describe(), didYouMean(id, l.actionIDList()))
			}
		}
	}
	fallbacks := map[string]bool{}
	for _, p := range l.rs.Placements {
		if p.Fallback != nil {
			fallbacks[p.Fallback.ID] = true
		}
	}
	for _, a := range l.rs.Actions {
		for _, name := range a.Placements {
			p := l.rs.Placements[name]
			if p == nil {
				p = &Placement{Name: name, Limit: 1}
				l.rs.Placements[name] = p
			}
			p.Candidates = append(p.Candidates, a)
		}
		if len(a.Placements) == 0 && !fallbacks[a.ID] {
			d := l.actionByID[a.ID]
			l.warnf(d.f, d.val.get("id"), "action %q lists no placements and is no placement's fallback: it is never decided", a.ID)
		}
	}
	for _, p := range l.rs.Placements {
		sort.Slice(p.Candidates, func(i, j int) bool {
			a, b := p.Candidates[i], p.Candidates[j]
			if a.Priority != b.Priority {
				return a.Priority > b.Priority
			}
			return a.ID < b.ID
		})
	}
}

// buildGates compiles, once every expression is compiled, their fast
// closures, and lays out what decisions read of segments and candidate
// actions first: Ruleset.SegmentConds and Placement.Gates.
//
// The closures are compiled in the order decisions run them (segments,
// each placement's candidates' conditions and scores, then the rest) with
// nothing else allocated in between, so that those of neighbouring
// candidates share cache lines instead of lying among the parser's
// garbage; the conditions' programs are then copied, in the same order,
// into one array. In the server, where the load generator and the network
// evict the rules from the CPU's caches between requests, a decision on
// 1,000 actions reads its candidates' closures and programs from memory.
// It also marks the segments and conditions that read attributes alone
// (Ruleset.SegmentAttrOnly, Gate.AttrOnly; attronly.go).
func (l *loader) buildGates() {
	seen := map[*Expr]bool{}
	closures := func(x *Expr) {
		if x != nil && !seen[x] {
			seen[x] = true
			x.compileClosures()
		}
	}
	for _, s := range l.rs.Segments {
		closures(s.When)
	}
	for _, p := range l.rs.Placements {
		for _, a := range p.Candidates {
			closures(a.When)
			closures(a.Score)
		}
	}
	l.rs.Expressions(closures)
	// The conditions' programs, copied into one array in the same order.
	size := 0
	for _, s := range l.rs.Segments {
		size += s.When.condSize()
	}
	for _, p := range l.rs.Placements {
		for _, a := range p.Candidates {
			size += a.When.condSize()
		}
	}
	l.rs.markAttrOnly()
	conds := condArena(make([]instr, 0, size))
	for _, s := range l.rs.Segments {
		l.rs.SegmentConds = append(l.rs.SegmentConds, conds.cond(s.When))
	}
	guards := l.guards()
	// An action in several placements has a gate in each: its condition
	// is analysed once.
	segAttrOnly := func(j int) bool { return l.rs.SegmentAttrOnly[j] }
	attrOnly := make([]bool, len(l.rs.Actions))
	for i, a := range l.rs.Actions {
		attrOnly[i] = l.rs.attrOnly(a.When, segAttrOnly)
	}
	for _, p := range l.rs.Placements {
		p.Gates = make([]Gate, len(p.Candidates))
		for i, a := range p.Candidates {
			p.Gates[i] = newGate(a, conds.cond(a.When), guards[a.Index], attrOnly[a.Index])
		}
	}
}

// condArena is the array of the programs of Ruleset.SegmentConds and the
// gates' conditions; it is made with room for all of them, so that
// appending never moves the programs copied before.
type condArena []instr

// cond copies x's program to the arena and returns it as a Cond.
func (a *condArena) cond(x *Expr) Cond {
	if x == nil {
		return Cond{}
	}
	if x.cond == nil {
		return Cond{has: true}
	}
	start := len(*a)
	*a = append(*a, x.cond...)
	return Cond{code: (*a)[start:len(*a):len(*a)], has: true}
}

// condSize is the length of x's program, if x is a condition with one.
func (x *Expr) condSize() int {
	if x == nil {
		return 0
	}
	return len(x.cond)
}

// guards fills Ruleset.Guards with the distinct guards of the actions and
// returns each action's (by Action.Index). Equal guards share their
// slices too: the engine reads those of the few distinct ones only.
func (l *loader) guards() []*Guard {
	key := func(a *Action) string {
		return fmt.Sprint(a.SuppressedBy, a.Caps, a.CappedBy, a.Budget != nil)
	}
	index := map[string]int{}
	of := make([]int, len(l.rs.Actions))
	for i, a := range l.rs.Actions {
		k := key(a)
		j, ok := index[k]
		if !ok {
			j = len(l.rs.Guards)
			index[k] = j
			l.rs.Guards = append(l.rs.Guards, Guard{SuppressedBy: a.SuppressedBy, Caps: a.Caps,
				CappedBy: a.CappedBy, Budget: a.Budget != nil})
		}
		of[i] = j
	}
	out := make([]*Guard, len(of))
	for i, j := range of {
		out[i] = &l.rs.Guards[j]
	}
	return out
}
