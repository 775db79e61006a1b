package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/dgraph-io/ristretto/v2"
	"github.com/nudge-engine/nudge/store"
)

// formatVersion is the Pebble format the store creates and upgrades to: the
// newest that Pebble v2.1.7 supports (pebble.FormatNewest). It is named
// rather than FormatNewest so that a Pebble upgrade never ratchets the
// on-disk format, which older binaries could not open, without a decision.
const formatVersion = pebble.FormatValueSeparation

const (
	// numStripes is the number of customer locks; a power of two.
	numStripes = 4096
	// avgRecordBytes is the expected size of a customer record, to size
	// the cache's admission counters (ten per expected entry).
	avgRecordBytes = 512
	// decodedPerEncoded is how many bytes of heap a decoded customer takes
	// per byte of its record (measured: about 5 KB for a 950-byte record).
	decodedPerEncoded = 5
	// negativeCost is the cost of caching that an id is unknown, plus the
	// id's length.
	negativeCost = 16
)

// ErrClosed is returned by the methods of a closed Store that need the
// database.
var ErrClosed = errors.New("pebblestore: store is closed")

// Store is the durable store.Store. It is safe for concurrent use.
type Store struct {
	opts     Options
	db       *pebble.DB
	cache    *ristretto.Cache[string, *entry]
	seed     maphash.Seed
	stripes  [numStripes]sync.Mutex
	counters *counters
	since    time.Time

	retention atomic.Int64 // how long contacts are kept, nanoseconds
	unsynced  atomic.Bool  // a NoSync write was applied since the last WAL sync
	now       func() time.Time

	closeMu   sync.RWMutex // held shared by operations that use db or cache.Wait/Set
	closed    atomic.Bool
	flushMu   sync.Mutex // serializes flush
	stop      chan struct{}
	loopDone  chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// entry is the cached value of one customer: a holder that writes update in
// place (see doc.go). c is nil when the customer is known not to exist.
type entry struct {
	c    atomic.Pointer[store.Customer]
	cost int64 // the cost the cache was last told; guarded by the stripe lock
}

// Open opens (creating if needed) the store in opts.Dir.
func Open(opts Options) (*Store, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	blockCache := pebble.NewCache(int64(opts.BlockCacheMB) << 20)
	defer blockCache.Unref()
	popts := &pebble.Options{
		FormatMajorVersion: formatVersion,
		Logger:             opts.Logger,
		Cache:              blockCache,
	}
	for i := range popts.Levels {
		// A point read of an unknown customer (anonymous visitors) then
		// rarely reads a data block.
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(opts.Dir, popts)
	if err != nil {
		return nil, fmt.Errorf("cannot open store in %s: %w", opts.Dir, err)
	}
	s, err := open(opts, db)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	go s.syncLoop()
	return s, nil
}

func open(opts Options, db *pebble.DB) (*Store, error) {
	since, err := initMeta(db)
	if err != nil {
		return nil, err
	}
	counters, err := loadCounters(db)
	if err != nil {
		return nil, err
	}
	maxCost := int64(opts.CacheMB) << 20
	cache, err := ristretto.NewCache(&ristretto.Config[string, *entry]{
		NumCounters:        max(10*maxCost/(decodedPerEncoded*avgRecordBytes), 1000),
		MaxCost:            maxCost,
		BufferItems:        64,
		IgnoreInternalCost: true,
		Metrics:            true,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot create cache: %w", err)
	}
	s := &Store{
		opts:     opts,
		db:       db,
		cache:    cache,
		seed:     maphash.MakeSeed(),
		counters: counters,
		since:    since,
		now:      time.Now,
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	s.retention.Store(int64(store.MaxDays * 24 * time.Hour))
	return s, nil
}

// initMeta checks the layout version, writing it and the statistics start
// time on first open, and returns that time.
func initMeta(db *pebble.DB) (time.Time, error) {
	v, closer, err := db.Get(keyLayout)
	switch err {
	case nil:
		layout := string(v)
		closer.Close()
		if layout != string(rune('0'+layoutV1)) {
			return time.Time{}, fmt.Errorf("cannot open store: unknown layout version %q", layout)
		}
	case pebble.ErrNotFound:
		b := db.NewBatch()
		defer b.Close()
		now := time.Now().UTC()
		_ = b.Set(keyLayout, []byte{'0' + layoutV1}, nil)
		_ = b.Set(keySince, binary.AppendVarint(nil, now.UnixNano()), nil)
		if err := b.Commit(pebble.Sync); err != nil {
			return time.Time{}, fmt.Errorf("cannot initialize store: %w", err)
		}
	default:
		return time.Time{}, fmt.Errorf("cannot read store layout: %w", err)
	}
	v, closer, err = db.Get(keySince)
	if err != nil {
		return time.Time{}, fmt.Errorf("cannot read statistics start: %w", err)
	}
	defer closer.Close()
	ns, n := binary.Varint(v)
	if n != len(v) {
		return time.Time{}, fmt.Errorf("cannot read statistics start: %w", errCorrupt)
	}
	return time.Unix(0, ns).UTC(), nil
}

// keyCustomer appends the key of a customer record: 'c' and the id.
func keyCustomer(b []byte, id string) []byte {
	return append(append(b, 'c'), id...)
}

func (s *Store) stripe(id string) int {
	return int(maphash.String(s.seed, id) & (numStripes - 1))
}

// enter makes the caller an operation that Close waits for.
func (s *Store) enter() error {
	s.closeMu.RLock()
	if s.closed.Load() {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *Store) leave() { s.closeMu.RUnlock() }

// Customer implements store.Store. A cached customer costs a map lookup and
// no allocation; a miss reads and decodes the record and caches it.
func (s *Store) Customer(id string) (*store.Customer, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if e, ok := s.cache.Get(id); ok {
		return e.c.Load(), nil
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	mu := &s.stripes[s.stripe(id)]
	mu.Lock()
	defer mu.Unlock()
	waited := false
	c, e, size, err := s.loadLocked(id, &waited)
	if err != nil || e != nil {
		return c, err
	}
	s.cacheLocked(id, nil, c, size)
	return c, nil
}

// loadLocked returns the customer (nil if unknown), its cache entry (nil
// if not cached) and, when read from disk, its record size. The caller
// holds id's stripe lock. A miss waits once for the cache's pending sets,
// tracked by *waited, so that no set queued before is still to be applied
// (see doc.go).
func (s *Store) loadLocked(id string, waited *bool) (*store.Customer, *entry, int, error) {
	if e, ok := s.cache.Get(id); ok {
		return e.c.Load(), e, 0, nil
	}
	if !*waited {
		s.cache.Wait()
		*waited = true
		if e, ok := s.cache.Get(id); ok {
			return e.c.Load(), e, 0, nil
		}
	}
	v, closer, err := s.db.Get(keyCustomer(nil, id))
	if err == pebble.ErrNotFound {
		return nil, nil, 0, nil
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("cannot read customer %q: %w", id, err)
	}
	c, err := decodeCustomer(id, string(v))
	size := len(v)
	closer.Close()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("cannot decode customer %q: %w", id, err)
	}
	return c, nil, size, nil
}

// cacheLocked makes c (nil: unknown) the cached value of id, whose record
// takes size bytes; e is its current entry or nil. The caller holds id's
// stripe lock and has called loadLocked for id under it.
func (s *Store) cacheLocked(id string, e *entry, c *store.Customer, size int) {
	// The cost is an estimate of the decoded customer's memory, so that
	// CacheMB bounds the heap the cache holds: a decoded customer takes
	// about decodedPerEncoded times its record (maps, slices, strings).
	cost := int64(len(id) + decodedPerEncoded*size)
	if c == nil {
		cost = int64(len(id) + negativeCost)
	}
	if e != nil {
		e.c.Store(c)
		// Tell the cache a changed size (a customer grows with its
		// contacts), but not every byte: each Set queues an item.
		if d := cost - e.cost; d > e.cost/8 || -d > e.cost/8 {
			e.cost = cost
			s.cache.Set(id, e, cost)
		}
		return
	}
	e = &entry{cost: cost}
	e.c.Store(c)
	s.cache.Set(id, e, cost)
}

// lockStripes locks the stripes of ids in ascending order and returns the
// function that unlocks them.
func (s *Store) lockStripes(ids []string) func() {
	idx := make([]int, len(ids))
	for i, id := range ids {
		idx[i] = s.stripe(id)
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		s.stripes[i].Lock()
	}
	return func() {
		for _, i := range slices.Backward(idx) {
			s.stripes[i].Unlock()
		}
	}
}

func (s *Store) cutoff() int64 {
	return s.now().UnixNano() - s.retention.Load()
}

// change is a customer rewritten by a write.
type change struct {
	id   string
	e    *entry
	c    *store.Customer // nil: deleted
	size int
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// write applies changes under the stripe locks held by the caller: one
// batch, then the cache. If durable, it commits with an fsync and returns a
// function that waits for the fsync, to call after the locks are released:
// the next write to the same customers then joins the same group commit
// instead of waiting for this fsync under the lock. Writes that follow see
// this one in Pebble and the cache before it is durable, but a crash loses
// a suffix of the log, never a write without the ones before it, and
// nothing is acknowledged before its fsync.
func (s *Store) write(changes []change, durable bool) (wait func() error, err error) {
	b := s.db.NewBatch()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	var key []byte
	for i := range changes {
		ch := &changes[i]
		key = keyCustomer(key[:0], ch.id)
		if ch.c == nil {
			err = b.Delete(key, nil)
		} else {
			var rec []byte
			if rec, err = appendCustomer((*bp)[:0], ch.c); err == nil {
				*bp = rec
				ch.size = len(rec)
				err = b.Set(key, rec, nil)
			}
		}
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("cannot write customer %q: %w", ch.id, err)
		}
	}
	if durable {
		err = s.db.ApplyNoSyncWait(b, pebble.Sync)
	} else {
		err = s.db.Apply(b, pebble.NoSync)
		s.unsynced.Store(true)
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("cannot write: %w", err)
	}
	for _, ch := range changes {
		s.cacheLocked(ch.id, ch.e, ch.c, ch.size)
	}
	if !durable {
		return nil, b.Close()
	}
	return func() error {
		err := b.SyncWait()
		if cerr := b.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("cannot sync write: %w", err)
		}
		return nil
	}, nil
}

// update rewrites one customer with f applied to a copy of it.
func (s *Store) update(id string, durable bool, f func(c *store.Customer) error) (*store.Customer, error) {
	if id == "" {
		return nil, errors.New("cannot write customer: empty id")
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	c, wait, err := func() (*store.Customer, func() error, error) {
		mu := &s.stripes[s.stripe(id)]
		mu.Lock()
		defer mu.Unlock()
		waited := false
		old, e, _, err := s.loadLocked(id, &waited)
		if err != nil {
			return nil, nil, err
		}
		c := old.Copy()
		if c == nil {
			c = &store.Customer{ID: id}
		}
		if err := f(c); err != nil {
			return nil, nil, err
		}
		c.PruneContacts(s.cutoff())
		wait, err := s.write([]change{{id: id, e: e, c: c}}, durable)
		return c, wait, err
	}()
	if err == nil && wait != nil {
		err = wait()
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// PutAttributes implements store.Store.
func (s *Store) PutAttributes(id string, attrs map[string]any) error {
	attrs, err := normalize(attrs)
	if err != nil {
		return err
	}
	_, err = s.update(id, true, func(c *store.Customer) error {
		c.Attributes = attrs
		return nil
	})
	return err
}

// PatchAttributes implements store.Store.
func (s *Store) PatchAttributes(id string, patch map[string]any) (map[string]any, error) {
	c, err := s.update(id, true, func(c *store.Customer) error {
		attrs, err := normalize(store.MergePatch(c.Attributes, patch))
		c.Attributes = attrs
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.Attributes, nil
}

// Delete implements store.Store. The record is gone from reads and the
// cache on return; Pebble drops its bytes from the files when compactions
// pass over the deletion.
func (s *Store) Delete(id string) (bool, error) {
	if err := s.enter(); err != nil {
		return false, err
	}
	defer s.leave()
	existed, wait, err := func() (bool, func() error, error) {
		mu := &s.stripes[s.stripe(id)]
		mu.Lock()
		defer mu.Unlock()
		waited := false
		old, e, _, err := s.loadLocked(id, &waited)
		if err != nil || old == nil {
			return false, nil, err
		}
		wait, err := s.write([]change{{id: id, e: e}}, true)
		return true, wait, err
	}()
	if err == nil && wait != nil {
		err = wait()
	}
	if err != nil {
		return false, err
	}
	return existed, nil
}

// AddEvents implements store.Store: one batch for all the customers,
// committed with one (group-committed) fsync.
func (s *Store) AddEvents(events []store.Event) error {
	if len(events) == 0 {
		return nil
	}
	for i := range events {
		if events[i].CustomerID == "" {
			return fmt.Errorf("cannot add event %d: empty customer id", i)
		}
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	wait, err := func() (func() error, error) {
		byID := make(map[string]int, len(events))
		changes := make([]change, 0, len(events))
		ids := make([]string, 0, len(events))
		for i := range events {
			if _, ok := byID[events[i].CustomerID]; !ok {
				byID[events[i].CustomerID] = len(ids)
				ids = append(ids, events[i].CustomerID)
			}
		}
		unlock := s.lockStripes(ids)
		defer unlock()
		waited := false
		cutoff := s.cutoff()
		for _, id := range ids {
			old, e, _, err := s.loadLocked(id, &waited)
			if err != nil {
				return nil, err
			}
			c := old.Copy()
			if c == nil {
				c = &store.Customer{ID: id}
			}
			c.PruneContacts(cutoff)
			changes = append(changes, change{id: id, e: e, c: c})
		}
		for i := range events {
			ev := &events[i]
			changes[byID[ev.CustomerID]].c.AddEvent(ev.Type, ev.At, ev.Value)
		}
		return s.write(changes, true)
	}()
	if err != nil {
		return err
	}
	return wait()
}

// Record implements store.Store. The contacts are written without an fsync;
// the sync loop makes them durable within SyncInterval.
func (s *Store) Record(id string, contacts []store.Contact, stats []store.StatDelta) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if id != "" && len(contacts) > 0 {
		_, err := s.update(id, false, func(c *store.Customer) error {
			for _, ct := range contacts {
				c.AddContact(ct)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	s.counters.record(stats)
	return nil
}

// ServedSince implements store.Store, at the resolution described in
// stats.go: the minute (windows up to a day) or hour holding since counts
// in full.
func (s *Store) ServedSince(action string, since int64) int64 {
	return s.counters.servedSince(action, since)
}

// ActionStats implements store.Store.
func (s *Store) ActionStats(action string) (served, convert int64) {
	return s.counters.actionStats(action)
}

// Stats implements store.Store. since is when the database was created.
func (s *Store) Stats() (time.Time, map[string]*store.ActionStats) {
	return s.since, s.counters.copyStats()
}

// SetRetention implements store.Store: d is clamped to [1h, MaxDays days].
// Contacts older than the retention are dropped when their customer is
// next written.
func (s *Store) SetRetention(d time.Duration) {
	s.retention.Store(int64(min(max(d, time.Hour), store.MaxDays*24*time.Hour)))
}

// Import writes whole customers, replacing any stored under their ids, in
// one batch without an fsync: call Sync when done. The customers are not
// retained. Contacts older than the retention are dropped.
func (s *Store) Import(customers []*store.Customer) error {
	if len(customers) == 0 {
		return nil
	}
	changes := make([]change, len(customers))
	ids := make([]string, len(customers))
	cutoff := s.cutoff()
	for i, c := range customers {
		if c == nil || c.ID == "" {
			return fmt.Errorf("cannot import customer %d: empty id", i)
		}
		attrs, err := normalize(c.Attributes)
		if err != nil {
			return fmt.Errorf("cannot import customer %q: %w", c.ID, err)
		}
		cp := *c
		cp.Attributes = attrs
		if len(cp.Contacts) > 0 && cp.Contacts[0].At < cutoff {
			cp.Contacts = slices.Clone(cp.Contacts)
			cp.PruneContacts(cutoff)
		}
		changes[i] = change{id: c.ID, c: &cp}
		ids[i] = c.ID
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	unlock := s.lockStripes(ids)
	defer unlock()
	b := s.db.NewBatch()
	defer b.Close()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	var key []byte
	for _, ch := range changes {
		rec, err := appendCustomer((*bp)[:0], ch.c)
		if err != nil {
			return fmt.Errorf("cannot import customer %q: %w", ch.id, err)
		}
		*bp = rec
		key = keyCustomer(key[:0], ch.id)
		if err := b.Set(key, rec, nil); err != nil {
			return fmt.Errorf("cannot import customer %q: %w", ch.id, err)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("cannot import: %w", err)
	}
	s.unsynced.Store(true)
	// Drop the cached versions; nothing else can be pending for these ids
	// once Wait returns, as we hold their locks (see doc.go).
	s.cache.Wait()
	for _, id := range ids {
		s.cache.Del(id)
	}
	return nil
}

// Sync makes every acknowledged write durable, statistics included.
func (s *Store) Sync() error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	return s.flush()
}

// Empty reports whether no customer is stored.
func (s *Store) Empty() (bool, error) {
	if err := s.enter(); err != nil {
		return false, err
	}
	defer s.leave()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte("c"), UpperBound: []byte("d")})
	if err != nil {
		return false, fmt.Errorf("cannot read store: %w", err)
	}
	empty := !it.First()
	if err := it.Close(); err != nil {
		return false, fmt.Errorf("cannot read store: %w", err)
	}
	return empty, nil
}

// CacheStats returns the hits and misses of the customer cache.
func (s *Store) CacheStats() (hits, misses uint64) {
	return s.cache.Metrics.Hits(), s.cache.Metrics.Misses()
}

// syncLoop flushes every SyncInterval until Close.
func (s *Store) syncLoop() {
	defer close(s.loopDone)
	t := time.NewTicker(s.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.flush(); err != nil {
				s.opts.Logger.Errorf("pebblestore: %v", err)
			}
		}
	}
}

// flush persists the statistics that changed and, if anything was written
// without an fsync since the last one, syncs the write-ahead log: syncing
// its end makes every record before it durable.
func (s *Store) flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	// Swap before writing: a write applied after the swap sets the flag
	// again and is synced next time.
	unsynced := s.unsynced.Swap(false)
	b := s.db.NewBatch()
	defer b.Close()
	err := s.counters.persist(b)
	if err == nil {
		if b.Empty() {
			if !unsynced {
				return nil
			}
			err = s.db.LogData(nil, pebble.Sync)
		} else {
			err = b.Commit(pebble.Sync)
		}
	}
	if err != nil {
		s.counters.failed()
		s.unsynced.Store(true)
		return fmt.Errorf("cannot sync: %w", err)
	}
	return nil
}

// Close implements store.Store: it waits for the operations in progress,
// persists the statistics, syncs and closes the database. Later calls
// return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.loopDone
		s.closeMu.Lock()
		s.closed.Store(true)
		s.closeMu.Unlock()
		err := s.flush()
		s.cache.Close()
		s.closeErr = errors.Join(err, s.db.Close())
	})
	return s.closeErr
}
