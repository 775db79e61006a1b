// Package memstore is an in-memory store.Store for tests, benchmarks and
// examples. It is not durable.
package memstore

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nudge-engine/nudge/store"
)

// Store holds customers and counters in memory. Safe for concurrent use.
// Customers are copied on write, so a customer returned by Customer stays
// valid and unchanged; recording contacts appends to the newest version's
// history under the rules of store.Customer.AppendContacts, so it costs
// the same whatever the history's length.
type Store struct {
	mu        sync.RWMutex
	customers map[string]*store.Customer
	// owned holds the ids whose current version the store built: its
	// contacts may be appended to in place. A customer given to Put is the
	// caller's: its history is copied before the first append.
	owned     map[string]bool
	served    map[string][]int64 // action -> serve times, ascending
	stats     map[string]*store.ActionStats
	since     time.Time
	retention time.Duration
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		customers: map[string]*store.Customer{},
		owned:     map[string]bool{},
		served:    map[string][]int64{},
		stats:     map[string]*store.ActionStats{},
		since:     time.Now().UTC(),
		retention: store.MaxDays * 24 * time.Hour,
	}
}

// Put stores c, replacing any customer with its id.
func (s *Store) Put(c *store.Customer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.customers[c.ID] = c
	delete(s.owned, c.ID)
}

// Customer implements store.Store.
func (s *Store) Customer(id string) (*store.Customer, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.customers[id], nil
}

// update applies f to a copy of the customer (a new one when unknown) that
// shares its contacts, and stores the copy.
func (s *Store) update(id string, f func(c *store.Customer)) *store.Customer {
	c := s.customers[id].CopySharingContacts()
	if c == nil {
		c = &store.Customer{ID: id, Outcomes: map[store.Name]uint8{}}
		s.owned[id] = true
	}
	f(c)
	s.customers[id] = c
	return c
}

// PutAttributes implements store.Store.
func (s *Store) PutAttributes(id string, attrs map[string]any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.update(id, func(c *store.Customer) { c.SetAttributes(attrs) })
	return nil
}

// PatchAttributes implements store.Store.
func (s *Store) PatchAttributes(id string, patch map[string]any) (map[string]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.update(id, func(c *store.Customer) { c.SetAttributes(store.MergePatch(c.AttributeMap(), patch)) })
	return c.AttributeMap(), nil
}

// Delete implements store.Store.
func (s *Store) Delete(id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.customers[id]
	delete(s.customers, id)
	delete(s.owned, id)
	return ok, nil
}

// AddEvents implements store.Store.
func (s *Store) AddEvents(events []store.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range events {
		s.update(e.CustomerID, func(c *store.Customer) { c.AddEvent(e.Type, e.At, e.Value) })
	}
	return nil
}

// Record implements store.Store.
func (s *Store) Record(id string, contacts []store.Contact, stats []store.StatDelta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id != "" && len(contacts) > 0 {
		s.record(id, contacts)
	}
	for _, d := range stats {
		store.CountStat(s.stats, d)
		if d.Outcome == store.Served {
			s.addServed(d.Action, d.At)
		}
	}
	return nil
}

// record appends contacts as pebblestore does: those older than the
// retention are dropped, the rest appended, and the history pruned when
// store.Customer.NeedsPrune says so.
func (s *Store) record(id string, contacts []store.Contact) {
	cutoff := time.Now().Add(-s.retention).UnixNano()
	kept := make([]store.Contact, 0, len(contacts))
	for _, k := range contacts {
		if k.At >= cutoff {
			kept = append(kept, k)
		}
	}
	if len(kept) == 0 {
		return
	}
	c := s.customers[id]
	switch {
	case c == nil:
		c = &store.Customer{ID: id, Outcomes: map[store.Name]uint8{}}
	case !s.owned[id]:
		c = c.ShallowCopy()
		c.Contacts = slices.Clone(c.Contacts)
		c.Summarize()
	}
	c = c.AppendContacts(kept)
	if c.NeedsPrune(cutoff, store.PruneSlack(s.retention)) {
		c, _ = c.Pruned(cutoff)
	}
	s.customers[id] = c
	s.owned[id] = true
}

func (s *Store) addServed(action string, at int64) {
	t := s.served[action]
	i := sort.Search(len(t), func(i int) bool { return t[i] > at })
	t = append(t, 0)
	copy(t[i+1:], t[i:])
	t[i] = at
	s.served[action] = t
}

// RecordServed counts one serve of action at time at (Unix nanoseconds)
// toward budgets and stats.
func (s *Store) RecordServed(action string, at int64) {
	_ = s.Record("", nil, []store.StatDelta{{Action: action, Outcome: store.Served, At: at}})
}

// SetStats sets an action's lifetime served and convert counts.
func (s *Store) SetStats(action string, served, convert int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats[action]
	if st == nil {
		st = &store.ActionStats{}
		s.stats[action] = st
	}
	st.Served, st.Convert = served, convert
}

// ServedSince implements store.Store.
func (s *Store) ServedSince(action string, since int64) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.served[action]
	return int64(len(t) - sort.Search(len(t), func(i int) bool { return t[i] >= since }))
}

// ActionStats implements store.Store.
func (s *Store) ActionStats(action string) (served, convert int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if st := s.stats[action]; st != nil {
		return st.Served, st.Convert
	}
	return 0, 0
}

// Stats implements store.Store.
func (s *Store) Stats() (time.Time, map[string]*store.ActionStats) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]*store.ActionStats, len(s.stats))
	for id, st := range s.stats {
		out[id] = st.Clone()
	}
	return s.since, out
}

// SetRetention implements store.Store.
func (s *Store) SetRetention(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retention = min(max(d, time.Hour), store.MaxDays*24*time.Hour)
}

// Close implements store.Store.
func (s *Store) Close() error { return nil }
