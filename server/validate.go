package server

import (
	"slices"
	"time"

	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/store"
)

// checkID validates an id (customer, action, placement, channel,
// decision) with store.ValidateID.
func checkID(field, id string) *apiError {
	if id == "" {
		return missing(field)
	}
	if err := store.ValidateID(id); err != nil {
		return invalid(field, "%s %v", field, err)
	}
	return nil
}

// name returns the name (store.Name) of an action or channel a request
// brings, which checkID has validated. The table of names is bounded
// (store.MaxNames): once it is full, a name never seen before is refused,
// so that a client naming ever new actions cannot grow it, unless the
// active ruleset defines it.
func (s *Server) name(field, v string) (store.Name, *apiError) {
	n, err := s.newName(v)
	if err != nil {
		return 0, badRequest(codeTooMany, field, "%s %q: %v (%d); use the ids of the ruleset's actions and channels", field, v, err, store.MaxNames)
	}
	return n, nil
}

// newName is store.NewName, which the names of the active ruleset always
// pass; a refusal is counted.
func (s *Server) newName(v string) (store.Name, error) {
	n, err := store.NewName(v)
	if err == nil {
		return n, nil
	}
	if definedBy(s.src.Current(), v) {
		return store.Intern(v), nil
	}
	s.m.namesRefused.Inc()
	return 0, err
}

// definedBy reports whether the ruleset rs (nil: none) has an action or a
// channel called v.
func definedBy(rs *rules.Ruleset, v string) bool {
	if rs == nil {
		return false
	}
	if rs.Action(v) != nil {
		return true
	}
	for _, c := range rs.Channels {
		if c.ID == v {
			return true
		}
	}
	for _, a := range rs.Actions {
		if slices.Contains(a.Channels, v) {
			return true
		}
	}
	return false
}

// checkEventType validates an event type with store.ValidateEventType.
func checkEventType(field, typ string) *apiError {
	if typ == "" {
		return missing(field)
	}
	if err := store.ValidateEventType(typ); err != nil {
		return invalid(field, "%s %v", field, err)
	}
	return nil
}

// parseTime parses an RFC 3339 time (fractional seconds allowed); an
// absent time is def.
func parseTime(field string, s *string, def time.Time) (time.Time, *apiError) {
	if s == nil {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return time.Time{}, invalid(field, "%s must be an RFC 3339 time like 2026-11-23T10:00:00Z", field)
	}
	if !time.Unix(0, t.UnixNano()).Equal(t) {
		return time.Time{}, invalid(field, "%s must be between the years 1678 and 2262", field)
	}
	return t, nil
}
