package store

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// Outcome is what happened with an action for a customer.
type Outcome uint8

// Outcomes. Served is recorded by nudge itself; the others come from
// feedback. Holdout is only a statistics counter: a customer held out of an
// experiment was not contacted.
const (
	Served Outcome = iota
	Click
	Accept
	Dismiss
	Convert
	Holdout
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"served", "click", "accept", "dismiss", "convert", "holdout"}

// String returns the outcome's name as used in the API and rule files.
func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", o)
}

// ParseOutcome returns the outcome called name. Holdout is not a contact
// outcome and is not accepted.
func ParseOutcome(name string) (Outcome, bool) {
	for i, n := range outcomeNames[:Holdout] {
		if n == name {
			return Outcome(i), true
		}
	}
	return 0, false
}

// OutcomeNames lists the contact outcomes in order.
func OutcomeNames() []string { return append([]string(nil), outcomeNames[:Holdout]...) }

// Customer is everything held about one customer.
type Customer struct {
	ID         string
	Attributes map[string]any
	Events     map[string]*EventStats // by event type
	Contacts   []Contact              // oldest first
}

// Empty reports whether nothing is stored for the customer.
func (c *Customer) Empty() bool {
	return c == nil || (len(c.Attributes) == 0 && len(c.Events) == 0 && len(c.Contacts) == 0)
}

// Contact is one entry of the contact history.
type Contact struct {
	Action  string
	Outcome Outcome
	Channel string
	At      int64 // Unix nanoseconds
}

// AddContact inserts c keeping Contacts ordered by time.
func (c *Customer) AddContact(ct Contact) {
	i := len(c.Contacts)
	for i > 0 && c.Contacts[i-1].At > ct.At {
		i--
	}
	c.Contacts = append(c.Contacts, Contact{})
	copy(c.Contacts[i+1:], c.Contacts[i:])
	c.Contacts[i] = ct
}

// PruneContacts drops contacts older than cutoff (Unix nanoseconds).
func (c *Customer) PruneContacts(cutoff int64) {
	i := sort.Search(len(c.Contacts), func(i int) bool { return c.Contacts[i].At >= cutoff })
	if i > 0 {
		c.Contacts = append(c.Contacts[:0], c.Contacts[i:]...)
	}
}

// AddEvent folds one event into the customer's aggregates.
func (c *Customer) AddEvent(typ string, at int64, value float64) {
	if c.Events == nil {
		c.Events = make(map[string]*EventStats)
	}
	s := c.Events[typ]
	if s == nil {
		s = new(EventStats)
		c.Events[typ] = s
	}
	s.Add(at, value)
}

// Limits of the event aggregates.
const (
	// MaxDays is how many days of per-day buckets are kept: windows up to
	// this long are answered.
	MaxDays = 90
	// RecentMax is how many of the latest events of a type are kept exactly.
	RecentMax = 16
)

const (
	nsPerDay = int64(24 * time.Hour)
	// All is the window that means "ever".
	All time.Duration = math.MaxInt64
)

// DayBucket aggregates the events of one UTC day.
type DayBucket struct {
	Day   int32 // days since the Unix epoch
	Count uint32
	Sum   float64
}

// Stamp is one recent event.
type Stamp struct {
	At    int64
	Value float64
}

// EventStats aggregates the events of one type for one customer.
type EventStats struct {
	Count  int64
	Sum    float64
	First  int64       // Unix nanoseconds of the earliest event
	Last   int64       // Unix nanoseconds of the latest event
	Days   []DayBucket // ascending by Day, at most MaxDays days before the latest
	Recent []Stamp     // the RecentMax latest events, ascending by time
}

func dayOf(ns int64) int32 {
	d := ns / nsPerDay
	if ns < 0 && ns%nsPerDay != 0 {
		d--
	}
	return int32(d)
}

// Add folds one event at time at (Unix nanoseconds) with value v.
func (s *EventStats) Add(at int64, v float64) {
	if s.Count == 0 || at < s.First {
		s.First = at
	}
	if s.Count == 0 || at > s.Last {
		s.Last = at
	}
	s.Count++
	s.Sum += v

	s.addRecent(at, v)

	day := dayOf(at)
	// Keep MaxDays days before the latest event's day as well: a window
	// of MaxDays starts inside that day, which counts fully.
	oldest := dayOf(s.Last) - MaxDays
	if day < oldest {
		return // only the lifetime totals remember it
	}
	j := sort.Search(len(s.Days), func(j int) bool { return s.Days[j].Day >= day })
	if j < len(s.Days) && s.Days[j].Day == day {
		s.Days[j].Count++
		s.Days[j].Sum += v
	} else {
		s.Days = append(s.Days, DayBucket{})
		copy(s.Days[j+1:], s.Days[j:])
		s.Days[j] = DayBucket{Day: day, Count: 1, Sum: v}
	}
	k := 0
	for k < len(s.Days) && s.Days[k].Day < oldest {
		k++
	}
	if k > 0 {
		s.Days = append(s.Days[:0], s.Days[k:]...)
	}
}

// addRecent inserts the event in order and keeps the latest RecentMax.
func (s *EventStats) addRecent(at int64, v float64) {
	i := len(s.Recent)
	for i > 0 && s.Recent[i-1].At > at {
		i--
	}
	if len(s.Recent) < RecentMax {
		s.Recent = append(s.Recent, Stamp{})
		copy(s.Recent[i+1:], s.Recent[i:])
		s.Recent[i] = Stamp{at, v}
		return
	}
	if i == 0 {
		return // older than every event kept
	}
	copy(s.Recent[:i-1], s.Recent[1:i])
	s.Recent[i-1] = Stamp{at, v}
}

// Window returns the count and sum of the events in [now-window, now].
// Window All means every event ever.
func (s *EventStats) Window(now int64, window time.Duration) (int64, float64) {
	if s == nil || s.Count == 0 {
		return 0, 0
	}
	if window == All {
		return s.Count, s.Sum
	}
	cutoff := now - int64(window)
	// Exact when the recent events reach back past the cutoff, or are all
	// the events there are.
	if len(s.Recent) > 0 && (s.Recent[0].At < cutoff || int64(len(s.Recent)) == s.Count) {
		var n int64
		var sum float64
		for _, r := range s.Recent {
			if r.At >= cutoff && r.At <= now {
				n++
				sum += r.Value
			}
		}
		return n, sum
	}
	from, to := dayOf(cutoff), dayOf(now)
	var n int64
	var sum float64
	for _, d := range s.Days {
		if d.Day >= from && d.Day <= to {
			n += int64(d.Count)
			sum += d.Sum
		}
	}
	return n, sum
}

// DaysSince returns the days from the latest event to now, or +Inf if
// there was none.
func (s *EventStats) DaysSince(now int64) float64 {
	if s == nil || s.Count == 0 {
		return math.Inf(1)
	}
	return float64(now-s.Last) / float64(nsPerDay)
}

// Copy returns a copy of c whose events and contacts can be changed
// without touching c. Attribute values are shared: they are never
// modified in place (MergePatch builds new maps).
func (c *Customer) Copy() *Customer {
	if c == nil {
		return nil
	}
	out := &Customer{ID: c.ID, Contacts: slices.Clone(c.Contacts)}
	if c.Attributes != nil {
		out.Attributes = make(map[string]any, len(c.Attributes))
		for k, v := range c.Attributes {
			out.Attributes[k] = v
		}
	}
	if c.Events != nil {
		out.Events = make(map[string]*EventStats, len(c.Events))
		for k, s := range c.Events {
			cp := *s
			cp.Days = slices.Clone(s.Days)
			cp.Recent = slices.Clone(s.Recent)
			out.Events[k] = &cp
		}
	}
	return out
}
