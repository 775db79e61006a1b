package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/rules"
)

// The RulesSource interface and the RulesStatus, RulesError, ErrorDetail
// and Detailer types that Rules implements and returns are declared in
// api.go, next to the transport that consumes them.

// detailString returns "file:line:col: message", leaving out what is
// unknown.
func detailString(p ErrorDetail) string {
	switch {
	case p.File == "":
		return p.Message
	case p.Line == 0:
		return p.File + ": " + p.Message
	case p.Column == 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message)
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Column, p.Message)
}

// RejectedError is returned by Reload (and NewRules) when the rules do not
// compile or their tests fail. Details are the errors, not the warnings;
// File is relative to the rules directory, Line and Column are 1-based.
type RejectedError struct {
	Details []ErrorDetail
	// cause is the rules.ErrorList of a compile failure (nil when tests
	// failed), so that callers can errors.As it for a formatted report.
	cause error
}

// Error summarizes: the first problem and how many more there are.
func (e *RejectedError) Error() string {
	switch len(e.Details) {
	case 0:
		return "rules rejected"
	case 1:
		return "rules rejected: " + detailString(e.Details[0])
	}
	return fmt.Sprintf("rules rejected: %s (and %d more)", detailString(e.Details[0]), len(e.Details)-1)
}

// ErrorDetails returns the details; it makes RejectedError a Detailer.
func (e *RejectedError) ErrorDetails() []ErrorDetail { return e.Details }

// Unwrap returns the rules.ErrorList of a compile failure, or nil.
func (e *RejectedError) Unwrap() error { return e.cause }

// RulesOptions configures NewRules.
type RulesOptions struct {
	Dir    string // the rules directory
	Logger zerolog.Logger
	// Debounce is how long the rules directory must stay quiet after a
	// change before Watch reloads; 200ms when zero.
	Debounce time.Duration
	Now      func() time.Time // time.Now when nil; the "now" of rule tests
	// OnReload, when set, is called after every reload attempt (not the
	// initial load) with whether it succeeded; for metrics.
	OnReload func(ok bool)
	// OnActivate, when set, is called with every ruleset that becomes
	// active, the initial one included (e.g. to set store retention to
	// its MaxWindow). Calls are serialized.
	OnActivate func(*rules.Ruleset)
}

// Rules is the active ruleset of a rules directory: loaded, tested, and
// swapped atomically on reload. It implements RulesSource.
type Rules struct {
	dir        string
	log        zerolog.Logger
	debounce   time.Duration
	now        func() time.Time
	onReload   func(bool)
	onActivate func(*rules.Ruleset)

	mu    sync.Mutex // serializes reloads
	state atomic.Pointer[rulesState]
}

// rulesState is an immutable snapshot: the active ruleset and the status
// around it. Replaced as a whole, so Current and Status never see a mix.
type rulesState struct {
	rs       *rules.Ruleset
	loadedAt time.Time
	lastErr  *RulesError
}

var (
	_ RulesSource = (*Rules)(nil)
	_ Detailer    = (*RejectedError)(nil)
)

// NewRules loads, validates and tests the rules directory. It fails when
// the directory cannot be read, does not compile, or its tests fail (the
// error is then a *RejectedError): the server must not start without a
// valid ruleset.
func NewRules(opts RulesOptions) (*Rules, error) {
	if opts.Dir == "" {
		return nil, errors.New("no rules directory")
	}
	r := &Rules{
		dir:        opts.Dir,
		log:        opts.Logger,
		debounce:   opts.Debounce,
		now:        opts.Now,
		onReload:   opts.OnReload,
		onActivate: opts.OnActivate,
	}
	if r.debounce <= 0 {
		r.debounce = 200 * time.Millisecond
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rs, err := r.load()
	if err != nil {
		return nil, err
	}
	r.activate(rs, nil)
	return r, nil
}

// Current returns the active ruleset. It never blocks, and the ruleset it
// returns is complete and immutable: a request that calls it once sees
// exactly one ruleset.
func (r *Rules) Current() *rules.Ruleset { return r.state.Load().rs }

// Status describes the active ruleset and the latest rejected attempt.
func (r *Rules) Status() RulesStatus {
	s := r.state.Load()
	return RulesStatus{
		Version:   s.rs.Version,
		LoadedAt:  s.loadedAt,
		Files:     slices.Clone(s.rs.Files),
		Actions:   len(s.rs.Actions),
		Segments:  len(s.rs.Segments),
		LastError: s.lastErr,
	}
}

// Reload loads, validates and tests the rules directory and activates it,
// returning its version. Reloading unchanged rules is a successful no-op.
// On failure the active ruleset stays, Status reports the attempt, and the
// error is a *RejectedError (does not compile, tests fail) or an I/O error.
func (r *Rules) Reload() (string, error) { return r.reload(true) }

// reload is Reload; when noopCounts is false an unchanged ruleset is not
// reported to OnReload (Watch's catch-up reload at start).
func (r *Rules) reload(noopCounts bool) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs, err := r.load()
	if err != nil {
		var rej *RejectedError
		if !errors.As(err, &rej) {
			rej = &RejectedError{Details: []ErrorDetail{{Message: err.Error()}}}
		}
		cur := r.state.Load()
		r.state.Store(&rulesState{rs: cur.rs, loadedAt: cur.loadedAt, lastErr: &RulesError{At: r.now(), Details: rej.Details}})
		r.logRejected(cur.rs.Version, rej.Details)
		r.reloaded(false)
		return "", err
	}
	cur := r.state.Load()
	if rs.Version == cur.rs.Version {
		if cur.lastErr != nil {
			r.state.Store(&rulesState{rs: cur.rs, loadedAt: cur.loadedAt})
			r.log.Info().Str("version", cur.rs.Version).Msg("rules unchanged; last error cleared")
		}
		if noopCounts {
			r.reloaded(true)
		}
		return rs.Version, nil
	}
	r.activate(rs, cur.rs)
	r.reloaded(true)
	return rs.Version, nil
}

// load reads, compiles and tests the directory. Call with r.mu held.
func (r *Rules) load() (*rules.Ruleset, error) {
	rs, err := rules.LoadDir(r.dir)
	if err != nil {
		var list rules.ErrorList
		if errors.As(err, &list) {
			return nil, &RejectedError{Details: problems(list), cause: err}
		}
		return nil, err
	}
	cur := r.state.Load()
	if cur != nil && cur.rs.Version == rs.Version {
		return rs, nil // already tested when it was activated
	}
	var failed []ErrorDetail
	for _, res := range engine.RunTests(rs, r.now()) {
		if res.Passed() {
			continue
		}
		failed = append(failed, ErrorDetail{
			File:    res.Test.File,
			Line:    res.Test.Line,
			Column:  1,
			Message: fmt.Sprintf("test %q failed: %s", res.Test.Name, reportLine(res.Report())),
		})
	}
	if len(failed) > 0 {
		return nil, &RejectedError{Details: failed}
	}
	return rs, nil
}

// reportLine turns engine.TestResult.Report's indented lines into one.
func reportLine(report string) string {
	var parts []string
	for line := range strings.SplitSeq(report, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			parts = append(parts, line)
		}
	}
	if len(parts) == 0 {
		return "unexpected result"
	}
	return strings.Join(parts, "; ")
}

// problems converts the errors of a list (not its warnings).
func problems(list rules.ErrorList) []ErrorDetail {
	out := make([]ErrorDetail, 0, len(list))
	for _, e := range list {
		if e.Warning {
			continue
		}
		out = append(out, ErrorDetail{File: e.File, Line: e.Line, Column: e.Col, Message: e.Msg})
	}
	return out
}

// activate makes rs the active ruleset. Call with r.mu held; prev is the
// ruleset it replaces, nil for the first one.
func (r *Rules) activate(rs, prev *rules.Ruleset) {
	r.state.Store(&rulesState{rs: rs, loadedAt: r.now()})
	ev := r.log.Info().Str("version", rs.Version).Int("actions", len(rs.Actions)).
		Int("segments", len(rs.Segments)).Int("files", len(rs.Files)).Int("tests", len(rs.Tests))
	if prev != nil {
		ev = ev.Str("previous", prev.Version)
	}
	ev.Msg("rules activated")
	for _, w := range rs.Warnings {
		if w.Warning {
			r.log.Warn().Str("version", rs.Version).Str("problem", w.Error()).Msg("rules warning")
		}
	}
	if r.onActivate != nil {
		r.onActivate(rs)
	}
}

// maxLoggedProblems bounds the problems a rejection logs.
const maxLoggedProblems = 20

func (r *Rules) logRejected(active string, details []ErrorDetail) {
	list := make([]string, 0, min(len(details), maxLoggedProblems))
	for i, p := range details {
		if i == maxLoggedProblems {
			break
		}
		list = append(list, detailString(p))
	}
	r.log.Warn().Str("active_version", active).Int("count", len(details)).Strs("problems", list).
		Msg("rules rejected; keeping the active ruleset")
}

func (r *Rules) reloaded(ok bool) {
	if r.onReload != nil {
		r.onReload(ok)
	}
}

// Watch reloads the rules whenever something changes below the rules
// directory, until ctx is done (it then returns nil). It watches the
// directory and every subdirectory, new ones included (directories whose
// names start with a dot are skipped, like the loader skips them), and
// reloads once a burst of changes has been quiet for the debounce
// interval, or at the latest one second (or one debounce interval, if
// longer) after the burst began, so a valid edit is live within 2 s even
// while files keep changing. Editors that save by writing a temporary file
// and renaming it over the original are seen through the directory watch.
// It returns an error only when the watch cannot be set up.
func (r *Rules) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("cannot watch rules directory: %w", err)
	}
	defer w.Close()
	if err := w.Add(r.dir); err != nil {
		return fmt.Errorf("cannot watch rules directory: %w", err)
	}
	r.watchTree(w, r.dir)
	// Catch up with changes made before the watches were in place.
	r.reload(false)

	maxWait := max(time.Second, r.debounce)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var pending bool
	var first time.Time
	schedule := func() {
		now := time.Now()
		if !pending {
			pending, first = true, now
		}
		d := min(r.debounce, max(0, first.Add(maxWait).Sub(now)))
		timer.Reset(d)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Has(fsnotify.Create) && ev.Name != r.dir && !strings.HasPrefix(filepath.Base(ev.Name), ".") {
				if st, err := os.Lstat(ev.Name); err == nil && st.IsDir() {
					r.watchTree(w, ev.Name)
				}
			}
			schedule()
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			r.log.Warn().Err(err).Str("dir", r.dir).Msg("rules watch error")
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: new directories may be unwatched.
				r.watchTree(w, r.dir)
				schedule()
			}
		case <-timer.C:
			pending = false
			r.Reload() // logs, records and reports the outcome itself
		}
	}
}

// watchTree adds a watch on root and every directory below it, skipping
// hidden ones. Adding an already watched directory is a no-op. Failures
// below root are logged, not fatal: the directory may already be gone.
func (r *Rules) watchTree(w *fsnotify.Watcher, root string) {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				r.log.Warn().Err(err).Str("path", p).Msg("cannot watch rules subdirectory")
			}
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		if p != root && strings.HasPrefix(d.Name(), ".") {
			return fs.SkipDir
		}
		if p == r.dir {
			return nil // added by Watch, which reports its failure
		}
		if err := w.Add(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn().Err(err).Str("path", p).Msg("cannot watch rules subdirectory")
		}
		return nil
	})
}
