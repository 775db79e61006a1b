package store

import "time"

// Event is one behavioural signal of a customer.
type Event struct {
	CustomerID string
	Type       string
	At         int64 // Unix nanoseconds
	Value      float64
	Properties map[string]any // accepted and validated, not aggregated
}

// StatDelta is one increment of the per-action statistics: an outcome
// (Served, Click, Accept, Dismiss, Convert or Holdout) of an action,
// within an experiment variant when Variant is set, with a feedback value.
type StatDelta struct {
	Action  string
	Variant string
	Outcome Outcome
	Value   float64
	At      int64 // Unix nanoseconds; budgets count served deltas by time
}

// Counters are the statistics of an action or of one of its variants.
type Counters struct {
	Served, Click, Accept, Dismiss, Convert, Holdout int64
	Value                                            float64
}

// Add counts one delta.
func (c *Counters) Add(o Outcome, value float64) {
	switch o {
	case Served:
		c.Served++
	case Click:
		c.Click++
	case Accept:
		c.Accept++
	case Dismiss:
		c.Dismiss++
	case Convert:
		c.Convert++
	case Holdout:
		c.Holdout++
	}
	c.Value += value
}

// ActionStats are an action's counters and those of its variants.
type ActionStats struct {
	Counters
	Variants map[string]*Counters
}

// Store holds customer contexts and the counters across customers. The
// Pebble implementation is durable; memstore is not. Implementations are
// safe for concurrent use and never lose one of two concurrent writes to
// the same customer.
type Store interface {
	// Customer returns the customer's context, or nil if nothing is stored
	// for the id. The result is shared: callers must not modify it.
	Customer(id string) (*Customer, error)
	// PutAttributes replaces the customer's attributes. Durable on return.
	PutAttributes(id string, attrs map[string]any) error
	// PatchAttributes applies a JSON merge patch (RFC 7386) to the
	// attributes and returns them after the patch. Durable on return.
	PatchAttributes(id string, patch map[string]any) (map[string]any, error)
	// Delete erases everything held about the customer; it reports
	// whether anything was. Durable on return.
	Delete(id string) (bool, error)
	// AddEvents folds the events into their customers' aggregates, all or
	// nothing. Durable on return.
	AddEvents(events []Event) error
	// Record appends contacts to the customer's history (none for an empty
	// id) and counts the stats deltas. It need not be durable on return:
	// it is made durable within a second, and by Close. It keeps neither
	// slice: the caller may reuse them once it returns.
	Record(customerID string, contacts []Contact, stats []StatDelta) error
	// ServedSince returns how often the action was served to anyone at or
	// after since (Unix nanoseconds): budgets.
	ServedSince(action string, since int64) int64
	// ActionStats returns the action's lifetime served and convert counts.
	ActionStats(action string) (served, convert int64)
	// Stats returns a copy of every action's statistics and the time they
	// have been kept since.
	Stats() (since time.Time, stats map[string]*ActionStats)
	// SetRetention sets how long contacts are kept (at most MaxDays days;
	// the longest window the active rules use).
	SetRetention(d time.Duration)
	// Close makes everything durable and releases the store.
	Close() error
}

// MergePatch applies an RFC 7386 JSON merge patch to target and returns
// the result; target is not modified. A null in the patch deletes the
// key; objects merge recursively; anything else replaces.
func MergePatch(target, patch map[string]any) map[string]any {
	out := make(map[string]any, len(target)+len(patch))
	for k, v := range target {
		out[k] = v
	}
	for k, v := range patch {
		if v == nil {
			delete(out, k)
			continue
		}
		if pm, ok := v.(map[string]any); ok {
			tm, _ := out[k].(map[string]any)
			out[k] = MergePatch(tm, pm)
			continue
		}
		out[k] = v
	}
	return out
}

// CountStat adds one delta to the per-action statistics in m.
func CountStat(m map[string]*ActionStats, d StatDelta) {
	st := m[d.Action]
	if st == nil {
		st = &ActionStats{}
		m[d.Action] = st
	}
	st.Add(d.Outcome, d.Value)
	if d.Variant == "" {
		return
	}
	if st.Variants == nil {
		st.Variants = map[string]*Counters{}
	}
	v := st.Variants[d.Variant]
	if v == nil {
		v = &Counters{}
		st.Variants[d.Variant] = v
	}
	v.Add(d.Outcome, d.Value)
}

// Clone returns a deep copy of s.
func (s *ActionStats) Clone() *ActionStats {
	cp := &ActionStats{Counters: s.Counters}
	if s.Variants != nil {
		cp.Variants = make(map[string]*Counters, len(s.Variants))
		for name, c := range s.Variants {
			cc := *c
			cp.Variants[name] = &cc
		}
	}
	return cp
}
