package store

import (
	"fmt"
	"maps"
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
//
// A customer returned by a Store is shared with other readers and with
// the store, and must not be modified. Stores write copy-on-write: a write
// publishes a new *Customer and leaves the old one as it was. To keep
// recording a contact independent of the length of the history, versions
// of a customer share what a write does not change:
//
//   - Attributes and Events, or their store forms Encoded and
//     EncodedEvents (never modified), are shared until a write of
//     attributes or events replaces them (CopySharingContacts copies the
//     maps; an event write shares the attributes and copies the
//     aggregates, CopyForEvents: from a map only those of the types it
//     adds to, from EncodedEvents all).
//   - Contacts are shared too, including the backing array: recording a
//     contact appends to the newest version's slice (AppendContacts). When
//     the array has spare capacity the new elements go there, in place.
//     That is safe because every older version's slice header ends before
//     them, so no reader of an older version can see them, and because
//     only the newest version is ever appended to, by its single writer
//     (the store, under its lock for the customer). Nothing ever modifies
//     an element within a published version's length; pruning and
//     out-of-order inserts build a new array.
//   - Outcomes is never modified in place, only replaced.
//
// A customer built by hand (tests, simulations) is owned by its builder,
// who may use AddContact, AddEvent and PruneContacts on it freely.
type Customer struct {
	ID string
	// Attributes holds the attributes as a map; when it is nil they are
	// in Encoded, or there are none. Read them with Attr and
	// AttributeMap, which look in both; replace them with SetAttributes.
	Attributes map[string]any
	// Encoded holds the attributes in a store's own encoding, when
	// Attributes is nil: a cached customer keeps them so, because a map
	// of boxed values is what the garbage collector scans most in a full
	// cache (see EncodedAttributes). Encoded values are never modified.
	Encoded EncodedAttributes
	// Events holds the event aggregates by event type; when it is nil
	// they are in EncodedEvents, or there are none. Read them with
	// EventMap, or through EncodedEvents.Stats.
	Events map[string]*EventStats
	// EncodedEvents holds the event aggregates in a store's own form,
	// when Events is nil, for the same reason as Encoded. They are never
	// modified; AddEvent first copies them into Events.
	EncodedEvents EncodedEvents
	Contacts      []Contact // oldest first
	// Outcomes summarizes Contacts so that "did the customer ever give
	// outcome O for action A" needs no scan (HasOutcome): for each action
	// with a contact whose outcome is not Served, the bitmask of those
	// outcomes (bit 1<<O). Actions only served are absent. Nil means no
	// summary is kept (a customer built by hand): HasOutcome then scans
	// Contacts. The stores rebuild it when they load or prune a customer
	// and update it when they append a contact with a new outcome; it is
	// never modified in place, only replaced, so versions share it.
	Outcomes map[Name]uint8

	// index speeds up counting one action's contacts (CountContacts) in
	// a long history; nil means scan. See index.go for how versions share
	// it. Summarize builds it; AppendContacts and Pruned keep it.
	index *contactIndex
}

// EncodedAttributes is an attribute object in a store's own encoding,
// which holds no pointer to each key and value as a map[string]any does:
// the garbage collector marks it in one step instead of scanning every
// slot and box. Lookups decode what they return.
type EncodedAttributes interface {
	// Attr returns attribute key (nil if it is absent): a JSON value as
	// encoding/json decodes one into an any.
	Attr(key string) any
	// Map returns all the attributes in a new map.
	Map() map[string]any
	// Len returns how many attributes there are.
	Len() int
	// Scan calls fn with the key of each attribute, in the encoding's
	// order, and the position of its value, which ValueAt decodes.
	Scan(fn func(key string, at int))
	// ValueAt returns the value at position at, which Scan gave.
	ValueAt(at int) any
	// NumberAt returns the value at position at as ValueAt would when it
	// is a number, without boxing it in an any; ok is false when it is
	// not a number.
	NumberAt(at int) (float64, bool)
}

// EncodedEvents is a customer's event aggregates in a store's own form,
// which holds no pointer per type, day bucket array or map slot.
type EncodedEvents interface {
	// Stats sets s to the aggregates of event type typ and reports
	// whether the customer has any. s's arrays may then be the store's
	// own, which must not be modified.
	Stats(typ string, s *EventStats) bool
	// Map returns all the aggregates, decoded into a new map.
	Map() map[string]*EventStats
	// MapFor returns all the aggregates in a new map, for a change of
	// those of types: their stats are copies the caller may change; the
	// other types' share the store's arrays, which must not be modified.
	MapFor(types []string) map[string]*EventStats
	// Len returns how many event types there are.
	Len() int
}

// EventMap returns c's event aggregates as a map, decoding EncodedEvents
// into a new one if that is where they are. The map must not be modified.
func (c *Customer) EventMap() map[string]*EventStats {
	if c.Events == nil && c.EncodedEvents != nil {
		return c.EncodedEvents.Map()
	}
	return c.Events
}

// EventStats returns c's aggregates of event type typ (nil: none), from
// Events or, through into, from EncodedEvents; what it returns must not be
// modified.
func (c *Customer) EventStats(typ string, into *EventStats) *EventStats {
	if c.Events != nil || c.EncodedEvents == nil {
		return c.Events[typ]
	}
	if !c.EncodedEvents.Stats(typ, into) {
		return nil
	}
	return into
}

// eventCount is the number of c's event types.
func (c *Customer) eventCount() int {
	if c.Events == nil && c.EncodedEvents != nil {
		return c.EncodedEvents.Len()
	}
	return len(c.Events)
}

// Attr returns attribute key of c (nil if it is absent), from Attributes or
// Encoded.
func (c *Customer) Attr(key string) any {
	if c.Attributes == nil && c.Encoded != nil {
		return c.Encoded.Attr(key)
	}
	return c.Attributes[key]
}

// ScanAttrs calls fn with the key of each attribute and the position of
// its value for AttrAt, when the attributes are encoded (a search for one
// of them steps over the ones before it); it reports false, calling
// nothing, when they are a map or absent. It implements
// rules.AttrScanner.
func (c *Customer) ScanAttrs(fn func(key string, at int)) bool {
	if c.Attributes != nil || c.Encoded == nil {
		return false
	}
	c.Encoded.Scan(fn)
	return true
}

// AttrAt returns the value of the encoded attribute at position at, which
// ScanAttrs gave.
func (c *Customer) AttrAt(at int) any { return c.Encoded.ValueAt(at) }

// NumberAt returns the encoded attribute at position at when it is a
// number, without boxing it.
func (c *Customer) NumberAt(at int) (float64, bool) { return c.Encoded.NumberAt(at) }

// AttributeMap returns c's attributes as a map, decoding Encoded into a new
// one if that is where they are. The map must not be modified.
func (c *Customer) AttributeMap() map[string]any {
	if c.Attributes == nil && c.Encoded != nil {
		return c.Encoded.Map()
	}
	return c.Attributes
}

// SetAttributes replaces c's attributes with m.
func (c *Customer) SetAttributes(m map[string]any) {
	c.Attributes, c.Encoded = m, nil
}

// attrCount is the number of c's attributes.
func (c *Customer) attrCount() int {
	if c.Attributes == nil && c.Encoded != nil {
		return c.Encoded.Len()
	}
	return len(c.Attributes)
}

// Empty reports whether nothing is stored for the customer.
func (c *Customer) Empty() bool {
	return c == nil || (c.attrCount() == 0 && c.eventCount() == 0 && len(c.Contacts) == 0)
}

// Contact is one entry of the contact history. It holds no pointer (see
// Name), so neither does a history.
type Contact struct {
	Action  Name
	Outcome Outcome
	Channel Name
	At      int64 // Unix nanoseconds
}

// HasOutcome reports whether the customer ever gave outcome o for action
// (HadOutcome at any time): the Outcomes summary rules out most actions
// without a scan, the contact index (or a scan) finds the others.
func (c *Customer) HasOutcome(action string, o Outcome) bool {
	return c.HadOutcome(action, o, math.MaxInt64)
}

// SummarizeOutcomes returns the Outcomes summary of contacts (never nil).
func SummarizeOutcomes(contacts []Contact) map[Name]uint8 {
	m := make(map[Name]uint8)
	for i := range contacts {
		if k := &contacts[i]; k.Outcome != Served && k.Outcome < 8 {
			m[k.Action] |= 1 << k.Outcome
		}
	}
	return m
}

// withOutcome returns the summary m (nil: none kept) with contact k
// counted: m itself when it already holds it, else an updated copy.
func withOutcome(m map[Name]uint8, k *Contact) map[Name]uint8 {
	if m == nil || k.Outcome == Served || k.Outcome >= 8 || m[k.Action]&(1<<k.Outcome) != 0 {
		return m
	}
	out := make(map[Name]uint8, len(m)+1)
	for a, bits := range m {
		out[a] = bits
	}
	out[k.Action] |= 1 << k.Outcome
	return out
}

// AddContact inserts c keeping Contacts ordered by time, after any
// contact at the same time. It modifies the customer in place: use it
// only on a customer the caller owns.
func (c *Customer) AddContact(ct Contact) {
	i := len(c.Contacts)
	for i > 0 && c.Contacts[i-1].At > ct.At {
		i--
	}
	c.Contacts = append(c.Contacts, Contact{})
	copy(c.Contacts[i+1:], c.Contacts[i:])
	c.Contacts[i] = ct
	c.Outcomes = withOutcome(c.Outcomes, &ct)
	c.index = nil // positions moved: scan
}

// PruneContacts drops contacts older than cutoff (Unix nanoseconds). It
// modifies the customer in place: use it only on a customer the caller
// owns.
func (c *Customer) PruneContacts(cutoff int64) {
	i := sort.Search(len(c.Contacts), func(i int) bool { return c.Contacts[i].At >= cutoff })
	if i > 0 {
		c.Contacts = append(c.Contacts[:0], c.Contacts[i:]...)
		if c.Outcomes != nil {
			c.Outcomes = SummarizeOutcomes(c.Contacts)
		}
		c.index = nil // positions moved: scan
	}
}

// MaxContacts is the most contacts a store keeps per customer, whatever
// the retention. Beyond it the oldest are dropped, down to three quarters
// of it, so that the copy this takes is rare. Windows that reach back past
// the oldest contact kept then count too few contacts (a frequency cap
// errs toward contacting the customer) and outcomes given before it are
// forgotten. That takes over 700 contacts a day for a 7-day window, 160 a
// day for a 30-day one: a runaway client, a bot or an id shared by many
// visitors. The bound keeps such a customer from costing every cache miss
// a read of an unbounded history and the cache the memory of it (5,000
// contacts are about 150 KB decoded and a few hundred microseconds to
// read; the benchmark's Zipf-distributed ids make its hottest customers
// reach the bound within seconds).
const MaxContacts = 5000

// pruneTo is how many contacts a prune for MaxContacts keeps.
const pruneTo = MaxContacts * 3 / 4

// PruneSlack is how much older than the retention cutoff the oldest
// contact may get before a store prunes the customer's contacts: pruning
// copies the history, so it is done when the excess is worth it, not at
// every write. Contacts thus stay visible up to PruneSlack beyond the
// retention (windows are still counted by time; only windows and "ever"
// conditions longer than the retention can see them).
func PruneSlack(retention time.Duration) time.Duration {
	return max(time.Hour, retention/20)
}

// NeedsPrune reports whether c's contacts should be pruned for the
// retention cutoff (Unix nanoseconds) with the given slack: the oldest is
// older than cutoff-slack, or there are more than MaxContacts.
func (c *Customer) NeedsPrune(cutoff int64, slack time.Duration) bool {
	return c != nil && len(c.Contacts) > 0 &&
		(c.Contacts[0].At < cutoff-int64(slack) || len(c.Contacts) > MaxContacts)
}

// Pruned returns a new version of c without the contacts older than
// cutoff, and with at most MaxContacts (down to pruneTo: the oldest are
// dropped, never part of a group of contacts at the same time), in a new
// array with room to grow; it summarizes their outcomes. It returns how
// many contacts were dropped, from the front; with none, it returns c
// itself. c is not modified.
func (c *Customer) Pruned(cutoff int64) (*Customer, int) {
	cs := c.Contacts
	i := sort.Search(len(cs), func(i int) bool { return cs[i].At >= cutoff })
	capped := len(cs)-i > MaxContacts
	if capped {
		i = len(cs) - pruneTo
		for i < len(cs) && cs[i].At == cs[i-1].At {
			i++
		}
	}
	if i == 0 {
		return c, 0
	}
	out := c.ShallowCopy()
	n := len(cs) - i
	out.Contacts = nil
	if n > 0 {
		// Room to grow; after a prune for MaxContacts, room up to the
		// bound (and a batch past it), so that the history grows in
		// place until the next prune instead of being copied twice more
		// on the way.
		room := n + n/4 + 8
		if capped {
			room = max(room, MaxContacts+8)
		}
		out.Contacts = make([]Contact, n, room)
		copy(out.Contacts, cs[i:])
	}
	out.Summarize()
	return out, i
}

// ShallowCopy returns a new *Customer that shares everything with c:
// Attributes, Events, Contacts (the slice header, so the backing array
// too) and Outcomes. Its fields may be replaced, never modified in place
// (see Customer for the sharing rules).
func (c *Customer) ShallowCopy() *Customer {
	cp := *c
	return &cp
}

// AppendContacts returns a new version of c with cts added in time order,
// sharing Attributes and Events with c; c is unchanged. It must only be
// called on the newest version of a customer, by its one writer (see
// Customer): contacts at or after the last one are appended to c's slice,
// into its spare capacity when there is some (amortized O(1) per contact,
// whatever the length of the history); one older than the last one is
// inserted into a new copy of the history. The Outcomes summary, if c
// keeps one, is updated copy-on-write. Times are first put in order with
// InOrder.
func (c *Customer) AppendContacts(cts []Contact) *Customer {
	cts = InOrder(c.Contacts, cts)
	out := c.ShallowCopy()
	newArray := false // the index of c no longer fits
	for _, ct := range cts {
		n := len(out.Contacts)
		if n == 0 || out.Contacts[n-1].At <= ct.At {
			out.Contacts = append(out.Contacts, ct)
			if out.index != nil && !newArray {
				if out.index = out.index.with(ct.Action, int32(n), int32(cap(out.Contacts))); out.index == nil {
					newArray = true // stale: rebuild
				}
			}
		} else {
			newArray = true
			// Out of order: never shift elements of a shared array.
			i := sort.Search(n, func(i int) bool { return out.Contacts[i].At > ct.At })
			cs := make([]Contact, n+1, n+1+n/4+8)
			copy(cs, out.Contacts[:i])
			cs[i] = ct
			copy(cs[i+1:], out.Contacts[i:])
			out.Contacts = cs
		}
		out.Outcomes = withOutcome(out.Outcomes, &ct)
	}
	if newArray || (out.index == nil && len(out.Contacts) >= indexMin) {
		out.index = buildIndex(out.Contacts)
	}
	return out
}

// OrderSlack is how much earlier than a customer's newest contact a new
// contact may be and still be recorded after it, at the newest's time.
// Concurrent decisions for one customer take their time before they record
// their contacts, so they reach the store slightly out of order; moving
// such a contact forward by at most this much keeps the history appended
// to in place instead of copied (see AppendContacts). Caps and windows do
// not notice a shift this small. Older contacts (a decision that took
// over a second to record) are inserted at their own time.
const OrderSlack = int64(time.Second)

// InOrder returns cts with the time of each contact raised to the newest
// before it (in cur, then in cts) when it is at most OrderSlack earlier.
// cts is not modified: a copy is returned when a time changes.
func InOrder(cur, cts []Contact) []Contact {
	var newest int64 = math.MinInt64
	if len(cur) > 0 {
		newest = cur[len(cur)-1].At
	}
	copied := false
	for i := range cts {
		at := cts[i].At
		if at < newest && newest-at <= OrderSlack {
			if !copied {
				cts = slices.Clone(cts)
				copied = true
			}
			cts[i].At = newest
			at = newest
		}
		newest = max(newest, at)
	}
	return cts
}

// AddEvent folds one event into the customer's aggregates, decoding
// EncodedEvents into Events first if they are there.
func (c *Customer) AddEvent(typ string, at int64, value float64) {
	if c.Events == nil && c.EncodedEvents != nil {
		c.Events, c.EncodedEvents = c.EncodedEvents.Map(), nil
	}
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
	out := c.CopySharingContacts()
	out.Contacts = slices.Clone(c.Contacts)
	out.index = nil // a new array: scan
	return out
}

// CopyForEvents returns a copy of c for AddEvent calls of the given types:
// it shares c's attributes (an event does not change them), contacts and
// the aggregates of the other event types, and copies the aggregates of
// types so that AddEvent can change them. It costs O(event types + the
// aggregates of types).
func (c *Customer) CopyForEvents(types []string) *Customer {
	if c == nil {
		return nil
	}
	out := &Customer{ID: c.ID, Attributes: c.Attributes, Encoded: c.Encoded, Contacts: c.Contacts, Outcomes: c.Outcomes, index: c.index}
	if c.Events == nil && c.EncodedEvents != nil {
		out.Events = c.EncodedEvents.MapFor(types) // AddEvent may change types'
		return out
	}
	if c.Events != nil {
		out.Events = maps.Clone(c.Events)
		for _, typ := range types {
			if s := c.Events[typ]; s != nil {
				cp := *s
				cp.Days = slices.Clone(s.Days)
				cp.Recent = slices.Clone(s.Recent)
				out.Events[typ] = &cp
			}
		}
	}
	return out
}

// CopySharingContacts returns a copy of c whose attributes map and events
// can be changed without touching c, but that shares c's Contacts (the
// slice header and its array), Outcomes and Encoded attributes (which are
// never modified, only replaced): it costs O(attributes + events), not
// O(contacts). The contacts may be appended to only under the rules of
// AppendContacts, when the copy becomes the newest version.
func (c *Customer) CopySharingContacts() *Customer {
	if c == nil {
		return nil
	}
	out := &Customer{ID: c.ID, Encoded: c.Encoded, EncodedEvents: c.EncodedEvents, Contacts: c.Contacts, Outcomes: c.Outcomes, index: c.index}
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
