package server

import (
	"errors"
	"time"

	"github.com/nudge-engine/nudge/rules"
)

// RulesSource holds the active ruleset and reloads it. Implementations are
// safe for concurrent use; Current is on the hot path and must be cheap
// (an atomic load).
type RulesSource interface {
	// Current returns the active ruleset, or nil when none is active yet.
	Current() *rules.Ruleset
	// Status describes the active ruleset and the latest rejected attempt.
	Status() RulesStatus
	// Reload loads, validates and tests the rules and activates them. On
	// rejection the previous ruleset stays active and the error carries
	// the problems (see ErrorDetails).
	Reload() (version string, err error)
}

// RulesStatus describes the active ruleset (GET /v1/rules).
type RulesStatus struct {
	Version  string    // "" when no ruleset is active
	LoadedAt time.Time // when the active ruleset was activated
	Files    []string  // relative, slash-separated
	Actions  int
	Segments int
	// LastError is the latest rejected attempt, nil unless it is newer than
	// the active ruleset.
	LastError *RulesError
}

// RulesError is a rejected load of the rules.
type RulesError struct {
	At      time.Time
	Details []ErrorDetail
}

// ErrorDetail is one located problem of rejected rules.
type ErrorDetail struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

// Detailer is implemented by reload errors that are not a rules.ErrorList
// but still have located problems, like failed rule tests.
type Detailer interface {
	ErrorDetails() []ErrorDetail
}

// ErrorDetails returns the located problems of a rejected reload: the
// errors (not the warnings) of a rules.ErrorList that err wraps, or the
// details of a Detailer it wraps. Any other error, like an unreadable
// directory, becomes one detail without a location, so a rejection always
// has at least one. A nil err has none.
func ErrorDetails(err error) []ErrorDetail {
	if err == nil {
		return nil
	}
	var list rules.ErrorList
	if errors.As(err, &list) {
		out := make([]ErrorDetail, 0, len(list))
		for _, e := range list {
			if !e.Warning {
				out = append(out, ErrorDetail{File: e.File, Line: e.Line, Column: e.Col, Message: e.Msg})
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	var d Detailer
	if errors.As(err, &d) {
		if out := d.ErrorDetails(); len(out) > 0 {
			return out
		}
	}
	return []ErrorDetail{{Message: err.Error()}}
}

// CacheStatser is implemented by stores with a customer cache; the server
// exports the counts as metrics.
type CacheStatser interface {
	CacheStats() (hits, misses uint64)
}

// EngineStatser is implemented by stores with a storage engine of their
// own to report on (Pebble's block cache, memtables and compactions); the
// server exports each figure f is called with as nudge_<name>, a counter
// or a gauge. The names must be the same at every call.
type EngineStatser interface {
	EngineStats(f func(name, help string, counter bool, value float64))
}

// Readier is implemented by stores that can tell whether they can serve
// (GET /readyz). A store without it counts as ready until Shutdown.
type Readier interface {
	Ready() error
}
