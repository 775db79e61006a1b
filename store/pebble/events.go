package pebblestore

import (
	"slices"
	"sort"
	"strings"

	"github.com/nudge-engine/nudge/store"
)

// flatEvents is a customer's event aggregates as the cache keeps them
// (store.EncodedEvents): the day buckets of all its event types in one
// array, their recent events in another, and one fixed-size entry per
// type, none of which holds a pointer. The collector marks the four
// arrays without scanning them, where a map of *EventStats made it scan
// every slot and struct, and a rule's count() reads the arrays as they
// are: Stats decodes nothing. It is never modified; a write of events
// takes a map sharing it but for the types written (MapFor) and makes a
// new one (newFlatEvents).
type flatEvents struct {
	names  string // the types' names, one after the other, in order
	types  []flatType
	days   []store.DayBucket
	recent []store.Stamp
}

// flatType is one event type's entry: where its name, day buckets and
// recent events end in flatEvents' arrays (each starts where the previous
// type's ends), and its totals.
type flatType struct {
	name, days, recent uint32
	count              int64
	sum                float64
	first, last        int64
}

// stats returns the name and aggregates of the i-th type. The aggregates'
// arrays are f's, capped so that an append copies them.
func (f *flatEvents) stats(i int) (string, store.EventStats) {
	var n0, d0, r0 uint32
	if i > 0 {
		p := &f.types[i-1]
		n0, d0, r0 = p.name, p.days, p.recent
	}
	t := &f.types[i]
	s := store.EventStats{Count: t.count, Sum: t.sum, First: t.first, Last: t.last}
	if d0 < t.days {
		s.Days = f.days[d0:t.days:t.days]
	}
	if r0 < t.recent {
		s.Recent = f.recent[r0:t.recent:t.recent]
	}
	return f.names[n0:t.name], s
}

// find returns the index of type typ, or -1.
func (f *flatEvents) find(typ string) int {
	var n0 uint32
	for i := range f.types {
		n1 := f.types[i].name
		if f.names[n0:n1] == typ {
			return i
		}
		n0 = n1
	}
	return -1
}

// Stats implements store.EncodedEvents. s's arrays become views of the
// customer's: they must not be modified.
func (f *flatEvents) Stats(typ string, s *store.EventStats) bool {
	i := f.find(typ)
	if i < 0 {
		return false
	}
	_, *s = f.stats(i)
	return true
}

// Map implements store.EncodedEvents: a copy the caller owns.
func (f *flatEvents) Map() map[string]*store.EventStats { return f.mapCopying(nil, true) }

// MapFor implements store.EncodedEvents: the stats of types are copies,
// the others' arrays are f's, capped so that an append copies them. An
// event for a cached customer thus copies the aggregates of its own type,
// not all of them.
func (f *flatEvents) MapFor(types []string) map[string]*store.EventStats {
	return f.mapCopying(types, false)
}

// mapCopying returns f's aggregates in a new map, with copies of the
// arrays of types (of all types if all).
func (f *flatEvents) mapCopying(types []string, all bool) map[string]*store.EventStats {
	m := make(map[string]*store.EventStats, len(f.types))
	stats := make([]store.EventStats, len(f.types))
	for i := range f.types {
		name, s := f.stats(i)
		if all || slices.Contains(types, name) {
			s.Days = cloneNil(s.Days)
			s.Recent = cloneNil(s.Recent)
		}
		stats[i] = s
		m[name] = &stats[i]
	}
	return m
}

// Len implements store.EncodedEvents.
func (f *flatEvents) Len() int { return len(f.types) }

func cloneNil[T any](a []T) []T {
	if len(a) == 0 {
		return nil
	}
	return append([]T(nil), a...)
}

// flatBuilder fills a flatEvents whose sizes are known: types are added
// in order, each after its day buckets and recent events are appended to
// f.days and f.recent.
type flatBuilder struct {
	f     *flatEvents
	names strings.Builder
	i     int
}

// init readies b for n types whose names take nn bytes, with nd day
// buckets and nr recent events in all.
func (b *flatBuilder) init(n, nn, nd, nr int) {
	b.f = &flatEvents{types: make([]flatType, n)}
	if nd > 0 {
		b.f.days = make([]store.DayBucket, 0, nd)
	}
	if nr > 0 {
		b.f.recent = make([]store.Stamp, 0, nr)
	}
	b.names.Grow(nn)
}

// add ends the next type, name, with the totals of s: its arrays are what
// f.days and f.recent gained since the previous type.
func (b *flatBuilder) add(name string, s *store.EventStats) {
	b.names.WriteString(name)
	b.f.types[b.i] = flatType{name: uint32(b.names.Len()), days: uint32(len(b.f.days)), recent: uint32(len(b.f.recent)),
		count: s.Count, sum: s.Sum, first: s.First, last: s.Last}
	b.i++
}

func (b *flatBuilder) done() *flatEvents {
	b.f.names = b.names.String()
	return b.f
}

// newFlatEvents returns m's aggregates as flatEvents, types in name order
// (nil if m is empty).
func newFlatEvents(m map[string]*store.EventStats) *flatEvents {
	if len(m) == 0 {
		return nil
	}
	names := make([]string, 0, len(m))
	nn, nd, nr := 0, 0, 0
	for t, s := range m {
		names = append(names, t)
		nn, nd, nr = nn+len(t), nd+len(s.Days), nr+len(s.Recent)
	}
	sort.Strings(names)
	var b flatBuilder
	b.init(len(m), nn, nd, nr)
	for _, t := range names {
		s := m[t]
		b.f.days = append(b.f.days, s.Days...)
		b.f.recent = append(b.f.recent, s.Recent...)
		b.add(t, s)
	}
	return b.done()
}

// flatEvents decodes the rest of a main record, its events, into
// flatEvents (nil for none): a first pass checks them and counts what the
// arrays need, a second fills them.
func (d *decoder) flatEvents() *flatEvents {
	start := d.i
	n := d.count(6)
	nn, nd, nr := 0, 0, 0
	for range n {
		nn += len(d.string())
		days, recent := d.skipStats()
		nd, nr = nd+days, nr+recent
	}
	if d.end() != nil || n == 0 {
		return nil
	}
	d.i = start
	d.count(6)
	var b flatBuilder
	b.init(n, nn, nd, nr)
	var s store.EventStats
	for range n {
		name := d.string()
		b.f.days, b.f.recent = d.appendStats(&s, b.f.days, b.f.recent)
		b.add(name, &s)
	}
	return b.done()
}
