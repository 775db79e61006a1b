// Package memstore is an in-memory customer store for tests, benchmarks
// and examples. It implements the engine's Source; it is not durable.
package memstore

import (
	"sort"
	"sync"

	"github.com/nudge-engine/nudge/store"
)

// Store holds customers and counters in memory. Safe for concurrent use;
// a customer returned by Customer must not be modified.
type Store struct {
	mu        sync.RWMutex
	customers map[string]*store.Customer
	served    map[string][]int64 // action -> serve times, ascending
	stats     map[string][2]int64
}

// New returns an empty store.
func New() *Store {
	return &Store{
		customers: map[string]*store.Customer{},
		served:    map[string][]int64{},
		stats:     map[string][2]int64{},
	}
}

// Put stores c, replacing any customer with its id.
func (s *Store) Put(c *store.Customer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.customers[c.ID] = c
}

// Customer returns the customer, or nil when unknown.
func (s *Store) Customer(id string) (*store.Customer, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.customers[id], nil
}

// RecordServed counts one serve of action at time at (Unix nanoseconds)
// toward budgets and stats.
func (s *Store) RecordServed(action string, at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.served[action]
	i := sort.Search(len(t), func(i int) bool { return t[i] > at })
	t = append(t, 0)
	copy(t[i+1:], t[i:])
	t[i] = at
	s.served[action] = t
	st := s.stats[action]
	st[0]++
	s.stats[action] = st
}

// SetStats sets an action's lifetime served and convert counts.
func (s *Store) SetStats(action string, served, convert int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats[action] = [2]int64{served, convert}
}

// ServedSince implements engine.Counters.
func (s *Store) ServedSince(action string, since int64) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.served[action]
	return int64(len(t) - sort.Search(len(t), func(i int) bool { return t[i] >= since }))
}

// ActionStats implements engine.Counters.
func (s *Store) ActionStats(action string) (served, convert int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.stats[action]
	return st[0], st[1]
}
