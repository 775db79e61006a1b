package server

import (
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
// active ruleset uses it.
func (s *Server) name(field, v string) (store.Name, *apiError) {
	n, err := s.newName(v)
	if err != nil {
		return 0, badRequest(codeTooMany, field, "%s %q: %v (%d); use the ids of the ruleset's actions and channels", field, v, err, store.MaxNames)
	}
	return n, nil
}

// newName is store.NewName, which every name the active ruleset uses
// passes: when the table refuses one, the ruleset's names are interned
// (once per ruleset) and v is looked up again. A refusal is counted.
func (s *Server) newName(v string) (store.Name, error) {
	n, err := store.NewName(v)
	if err == nil {
		return n, nil
	}
	if rs := s.src.Current(); rs != nil {
		s.namedMu.Lock()
		if s.named != rs {
			internNames(rs)
			s.named = rs
		}
		s.namedMu.Unlock()
		if n, ok := store.LookupName(v); ok {
			return n, nil
		}
	}
	s.m.namesRefused.Inc()
	return 0, err
}

// internNames interns the action and channel names rs uses: its actions,
// its channels, the channels its actions list and those and the actions
// its policies filter on.
func internNames(rs *rules.Ruleset) {
	for _, a := range rs.Actions {
		store.Intern(a.ID)
		for _, ch := range a.Channels {
			store.Intern(ch)
		}
	}
	for _, c := range rs.Channels {
		store.Intern(c.ID)
	}
	for _, p := range rs.Policies {
		f := p.Suppress // exactly one of Suppress and Cap is set
		if p.Cap != nil {
			f = &p.Cap.Filter
		}
		for _, v := range f.Actions {
			store.Intern(v)
		}
		for _, v := range f.Channels {
			store.Intern(v)
		}
	}
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
