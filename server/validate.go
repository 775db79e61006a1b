package server

import (
	"time"

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
