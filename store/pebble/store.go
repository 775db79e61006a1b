package pebblestore

import (
	"bytes"
	"cmp"
	"context"
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
	// avgRecordBytes × decodedPerEncoded is the expected cost of a cache
	// entry, to size the cache's admission counters (ten per expected
	// entry). The cost is the entry's heap (entryCost): TestCustomerBytes
	// measures 0.5 KB for a customer with three attributes and 7 KB for a
	// benchmark customer (a 958-byte record, 20 contacts). The product,
	// 2.5 KB, is on the low side so that the counters suffice for a cache
	// of small customers.
	avgRecordBytes    = 512
	decodedPerEncoded = 5
)

// memTableMB is the size of Pebble's memtables (Pebble's default is 4).
const memTableMB = 64

// testHookBlockCache, if set, is called with the block cache Open gives
// Pebble (TestBlockCacheBesideMemtables).
var testHookBlockCache func(*pebble.Cache)

// ErrClosed is returned by the methods of a closed Store that need the
// database.
var ErrClosed = errors.New("pebblestore: store is closed")

// Store is the durable store.Store. It is safe for concurrent use.
type Store struct {
	opts    Options
	db      *pebble.DB
	cache   *ristretto.Cache[string, *entry]
	seed    maphash.Seed
	stripes [numStripes]sync.Mutex
	// existing holds, per stripe, the ids of the last customers read from
	// Pebble that exist (guarded by the stripe lock; Delete removes an
	// id): Record for a customer the cache did not admit after the read
	// that decided for it then need not read again whether it exists.
	existing [numStripes][2]string
	// queued numbers the items this store queues on the cache (Set, Del)
	// and applied is the highest number known applied (a Wait returned
	// after it was queued); lastQueued is, per stripe, the last item
	// queued for one of its ids (guarded by the stripe lock). A miss
	// waits for the cache only if its stripe has an item that may still
	// be pending, and not if that item is its own entry (see doc.go).
	// waits counts the Waits.
	queued, applied atomic.Uint64
	lastQueued      [numStripes]queuedItem
	waits           atomic.Uint64
	// gens counts, per stripe, the writes to its customers: write and
	// Import add one under the stripe lock once the write is staged or
	// applied, so that a read of Pebble made without the lock is known to
	// be current if the count did not change since before it (preread).
	gens     [numStripes]atomic.Uint64
	counters *counters
	since    time.Time

	retention atomic.Int64  // how long contacts are kept, nanoseconds
	unsynced  atomic.Bool   // a NoSync write was applied since the last WAL sync
	pend      *pending      // contacts staged for the next apply
	hits      atomic.Uint64 // Customer calls answered by the cache
	reads     atomic.Uint64 // customers read from Pebble
	now       func() time.Time
	// testAfterStaged, if set, runs in read between taking what is
	// staged and reading Pebble (tests: an apply in between).
	testAfterStaged func()

	closeMu   sync.RWMutex // held shared by operations that use db or cache.Wait/Set
	closed    atomic.Bool
	flushMu   sync.Mutex // serializes flush
	stop      chan struct{}
	loopDone  chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// queuedItem is an item queued on the cache: its number, its id and, for a
// Set, its entry (which the item holds; nil for a Del).
type queuedItem struct {
	n  uint64
	id string
	e  *entry
}

// entry is the cached value of one customer: a holder that writes update in
// place (see doc.go). c is nil when the customer is known not to exist.
type entry struct {
	c    atomic.Pointer[store.Customer]
	cost int64 // the cost the cache was last told; guarded by the stripe lock
	size int   // the size of c's main record; guarded by the stripe lock
}

// Open opens (creating if needed) the store in opts.Dir.
func Open(opts Options) (*Store, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	// Pebble charges each memtable's size to the block cache
	// (Cache.Reserve): a cache of BlockCacheMB alone, smaller than one
	// memtable, held no block at all once the memtables grew to their
	// size. The cache is made big enough for the memtables PebbleMB
	// counts, so blocks get at least BlockCacheMB while no more than two
	// memtables are alive.
	blockCache := pebble.NewCache(int64(opts.PebbleMB()) << 20)
	defer blockCache.Unref()
	if testHookBlockCache != nil {
		testHookBlockCache(blockCache)
	}
	popts := &pebble.Options{
		FormatMajorVersion: formatVersion,
		Logger:             opts.Logger,
		Cache:              blockCache,
		Merger:             logMerger,
		// Every decision appends to a contact log somewhere in the key
		// space, so each flushed memtable overlaps all of the base
		// level: larger memtables mean fewer, cheaper compactions per
		// byte written.
		MemTableSize: memTableMB << 20,
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
	since, err := initMeta(db, opts.Logger)
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
	s.pend = newPending(db, &s.unsynced)
	s.retention.Store(int64(store.MaxDays * 24 * time.Hour))
	return s, nil
}

// initMeta checks the layout version, converting a layout 2 database
// (migrateV2) and writing the layout and the statistics start time on
// first open, and returns that time.
func initMeta(db *pebble.DB, logger pebble.Logger) (time.Time, error) {
	v, closer, err := db.Get(keyLayout)
	switch err {
	case nil:
		layout := string(v)
		closer.Close()
		switch layout {
		case string(rune('0' + layoutV3)):
		case string(rune('0' + layoutV2)):
			logger.Infof("pebblestore: converting the store from layout 2 (a key per contact) to layout 3 (a contact log per customer)")
			start := time.Now()
			n, err := migrateV2(db)
			if err != nil {
				return time.Time{}, fmt.Errorf("cannot convert store from layout 2: %w", err)
			}
			logger.Infof("pebblestore: converted the contacts of %d customers to layout 3 in %v", n, time.Since(start).Round(time.Millisecond))
		case "1":
			return time.Time{}, errors.New("cannot open store: it was written by an earlier development version (layout 1, contacts inside customer records), which this version does not read; start from an empty directory")
		default:
			return time.Time{}, fmt.Errorf("cannot open store: unknown layout version %q", layout)
		}
	case pebble.ErrNotFound:
		b := db.NewBatch()
		defer b.Close()
		now := time.Now().UTC()
		_ = b.Set(keyLayout, []byte{'0' + layoutV3}, nil)
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

// migrateBatchBytes is the size at which migrateV2 commits its batch.
var migrateBatchBytes = 4 << 20

// migrateV2 converts a database of layout 2, one key per contact under
// 'k' + id + time + sequence, to layout 3, one contact log per customer
// (codec.go): it writes each customer's log, then deletes the 'k' range
// and sets the layout in one synced batch. Until that batch the layout
// stays 2 and the contact keys stay, so a conversion that stops half way
// is done again in full at the next Open (which first deletes the logs it
// had written). It returns how many customers had contacts.
func migrateV2(db *pebble.DB) (int, error) {
	customers := 0
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte("k"), UpperBound: []byte("l")})
	if err != nil {
		return customers, err
	}
	defer it.Close()
	b := db.NewBatch()
	defer func() { b.Close() }()
	// The logs of a conversion that stopped half way.
	if err := b.DeleteRange([]byte("h"), []byte("i"), nil); err != nil {
		return customers, err
	}
	var (
		id  []byte // the customer whose contacts cts holds
		cts []store.Contact
		cd  contactDecoder
	)
	flush := func() error {
		if id != nil {
			key := keyHistory(nil, string(id))
			if err := b.Set(key, appendContacts(nil, cts), nil); err != nil {
				return err
			}
		}
		if b.Len() < migrateBatchBytes {
			return nil
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return err
		}
		b.Close()
		b = db.NewBatch()
		return nil
	}
	for it.First(); it.Valid(); it.Next() {
		key := it.Key()
		cid, rest, ok := bytesString(key[1:])
		if !ok {
			return customers, fmt.Errorf("contact key %q: %w", key, errCorrupt)
		}
		if !bytes.Equal(cid, id) {
			if err := flush(); err != nil {
				return customers, err
			}
			id, cts, cd = slices.Clone(cid), cts[:0], contactDecoder{}
			customers++
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return customers, err
		}
		k, err := cd.decodeV2(len(key)-len(rest), key, v)
		if err != nil {
			return customers, fmt.Errorf("contact key %q: %w", key, err)
		}
		cts = append(cts, k)
	}
	if err := it.Error(); err != nil {
		return customers, err
	}
	if err := flush(); err != nil {
		return customers, err
	}
	if err := b.DeleteRange([]byte("k"), []byte("l"), nil); err != nil {
		return customers, err
	}
	if err := b.Set(keyLayout, []byte{'0' + layoutV3}, nil); err != nil {
		return customers, err
	}
	return customers, b.Commit(pebble.Sync)
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
// no allocation; a miss reads the main record and the contacts, and caches
// the customer.
func (s *Store) Customer(id string) (*store.Customer, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if e, ok := s.cache.Get(id); ok {
		s.hits.Add(1)
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
	if c != nil {
		s.readLocked(id)
	}
	if cutoff, slack := s.cutoff(); c.NeedsPrune(cutoff, slack) {
		// Rare: a history that grew while not cached (recordLocked
		// appends to those without reading them). The pruned version is
		// staged and cached by write; the next apply writes it.
		ch := change{id: id, c: c, size: size}
		ch.prune(cutoff, slack)
		if _, err := s.write([]change{ch}, false); err != nil {
			return nil, err
		}
		return ch.c, nil
	}
	s.cacheLocked(id, nil, c, size)
	return c, nil
}

// readLocked notes that id exists, having just been read from Pebble. The
// caller holds id's stripe lock.
func (s *Store) readLocked(id string) {
	r := &s.existing[s.stripe(id)]
	if r[0] != id {
		r[1], r[0] = r[0], id
	}
}

// forgetLocked removes id from the customers noted by readLocked. The
// caller holds id's stripe lock.
func (s *Store) forgetLocked(id string) {
	r := &s.existing[s.stripe(id)]
	for i := range r {
		if r[i] == id {
			r[i] = ""
		}
	}
}

// cachedLocked returns the cached customer (nil if known not to exist)
// and its entry, or a nil entry if id is not cached. The caller holds id's
// stripe lock. A miss whose stripe may have an item of another id
// pending waits for the cache's queue, once per call (tracked by
// *waited), so that no item queued before is still to be applied; the
// stripe's own pending entry for id answers without a wait (see doc.go).
func (s *Store) cachedLocked(id string, waited *bool) (*store.Customer, *entry) {
	if e, ok := s.cache.Get(id); ok {
		return e.c.Load(), e
	}
	q := &s.lastQueued[s.stripe(id)]
	if q.n <= s.applied.Load() {
		*q = queuedItem{n: q.n} // applied: do not keep the entry alive
		return nil, nil
	}
	if q.id == id && q.e != nil {
		// The stripe's pending item is this id's entry (typically the
		// fill of the read that came just before): it is the current
		// value, which writes update in place as for a stored entry, and
		// the cache stores it as it is when it applies the item.
		return q.e.c.Load(), q.e
	}
	if !*waited {
		s.waitCache()
		*waited = true
		if e, ok := s.cache.Get(id); ok {
			return e.c.Load(), e
		}
	}
	return nil, nil
}

// waitCache waits until the cache has applied every item queued before,
// and records it in applied.
func (s *Store) waitCache() {
	q := s.queued.Load()
	s.cache.Wait()
	s.waits.Add(1)
	for {
		a := s.applied.Load()
		if a >= q || s.applied.CompareAndSwap(a, q) {
			return
		}
	}
}

// queuedLocked notes that an item for id was queued on the cache: a Set
// of e, or a Del (e nil). The caller holds id's stripe lock and has just
// queued it.
func (s *Store) queuedLocked(id string, e *entry) {
	s.lastQueued[s.stripe(id)] = queuedItem{n: s.queued.Add(1), id: id, e: e}
}

// forgetApplied waits for the cache and drops the references of the
// stripes' queued items, now applied, so that an entry the cache rejected
// or evicted is not kept alive by its stripe for long.
func (s *Store) forgetApplied() {
	s.waitCache()
	applied := s.applied.Load()
	for i := range s.stripes {
		s.stripes[i].Lock()
		if q := &s.lastQueued[i]; q.n <= applied {
			*q = queuedItem{n: q.n}
		}
		s.stripes[i].Unlock()
	}
}

// loadLocked returns the customer (nil if unknown), its cache entry (nil
// if not cached) and the size of its main record. The caller holds id's
// stripe lock. What it finds cached, or pending, is as cachedLocked
// says; *waited tracks its one wait per call.
func (s *Store) loadLocked(id string, waited *bool) (*store.Customer, *entry, int, error) {
	if c, e := s.cachedLocked(id, waited); e != nil {
		return c, e, e.size, nil
	}
	// Pebble must hold what is staged for id's main record; read adds
	// the contacts staged for it.
	if err := s.pend.drainMain(s.stripe(id)); err != nil {
		return nil, nil, 0, err
	}
	s.reads.Add(1)
	c, size, err := s.read(id)
	return c, nil, size, err
}

// read reads a customer from Pebble: the main record, then the contact
// log (which exists only with a main record, see codec.go), to which it
// adds the appends staged for it (see pending.go). It also returns the
// main record's size. The caller holds id's stripe lock, and has drained
// what is staged for its stripe but appends (pending.drainMain).
func (s *Store) read(id string) (*store.Customer, int, error) {
	key := keyHistory(nil, id)
	for {
		staged, gen, busy := s.pend.staged(nil, key)
		if busy {
			s.pend.waitApply()
			continue
		}
		if s.testAfterStaged != nil {
			s.testAfterStaged()
		}
		c, size, err := s.readMain(id)
		if c == nil || err != nil {
			return nil, 0, err
		}
		log, closer, err := s.db.Get(key)
		found := err == nil
		switch {
		case err == pebble.ErrNotFound:
			log, closer, err = nil, nil, nil
		case err != nil:
			return nil, 0, fmt.Errorf("cannot read contacts of customer %q: %w", id, err)
		}
		if !s.pend.current(gen) {
			// An apply began after staged: Pebble may hold what it
			// returned.
			if closer != nil {
				closer.Close()
			}
			continue
		}
		if len(staged) > 0 {
			log = append(append(make([]byte, 0, len(log)+len(staged)), log...), staged...)
		}
		if found || len(log) > 0 {
			err = decodeHistory(c, log)
		}
		if closer != nil {
			closer.Close()
		}
		if err != nil {
			return nil, 0, fmt.Errorf("cannot decode contacts of customer %q: %w", id, err)
		}
		return c, size, nil
	}
}

// decodeHistory sets c's contacts from its log and summarizes them.
func decodeHistory(c *store.Customer, log []byte) error {
	cd := decoderPool.Get().(*contactDecoder)
	defer decoderPool.Put(cd)
	scratch := scratchPool.Get().(*[]store.Contact)
	cts, err := cd.decodeContacts((*scratch)[:0], log)
	if err == nil {
		c.Contacts = append(make([]store.Contact, 0, historyRoom(len(cts))), cts...)
	}
	if cap(cts) <= maxScratch {
		*scratch = cts[:0]
		scratchPool.Put(scratch)
	}
	if err != nil {
		return err
	}
	c.Summarize()
	return nil
}

// decoderPool keeps decoders with the names they met: a name's Name never
// changes (names are never freed), so a decoder's table stays right from
// one history to the next, and on a ruleset of a few dozen actions a
// cache miss decodes its history without a lookup in the table of names
// (a sync.Map, whose Load was 2 % of the server's CPU with a small cache).
var decoderPool = sync.Pool{New: func() any { return new(contactDecoder) }}

// scratchPool holds the arrays that read decodes contact logs into before
// copying them to arrays of their own (historyRoom): counting a log's
// entries first, to decode it in place, was a sixth of reading a long
// history.
var scratchPool = sync.Pool{New: func() any { return new([]store.Contact) }}

// maxScratch bounds the arrays scratchPool keeps: a history at
// store.MaxContacts and the appends of a while until the next prune.
const maxScratch = store.MaxContacts * 5 / 4

// historyRoom is the room a history of n contacts read from Pebble gets:
// its length, and an eighth more for the next decisions' appends. A
// customer is decided for again soon after a miss, and with room for
// four only, the third decision copied the history into an array a
// quarter longer (Go's growth), which for the hottest customers, a small
// cache's most frequent misses, doubled the bytes of a reload
// (BenchmarkReloadHistory: 311 → 155 KiB).
func historyRoom(n int) int { return n + n/8 + 4 }

// preread is a main record read without the stripe lock (see gens).
type preread struct {
	gen  uint64          // the stripe's write count before the read
	c    *store.Customer // the events of the batch's types only (decodeEvents)
	kept kept            // the rest of the record, encoded
	ok   bool            // read (the customer was not cached)
}

// preread reads and decodes the main records of the ids that are not
// cached, without their stripe locks, so that a batch of events holds the
// locks (on which the batches of the hottest customers queue) for as
// short as it can. A read whose stripe was written meanwhile is discarded
// by the caller under the lock (current).
func (s *Store) preread(ids []string, types [][]string) ([]preread, error) {
	pre := make([]preread, len(ids))
	for i, id := range ids {
		if _, ok := s.cache.Get(id); ok {
			continue
		}
		st := s.stripe(id)
		// The count first, then what was staged before it applied: a
		// write staged later changes the count.
		pre[i].gen = s.gens[st].Load()
		if err := s.pend.drainMain(st); err != nil {
			return nil, err
		}
		c, k, err := s.readEvents(id, types[i])
		if err != nil {
			return nil, err
		}
		pre[i].c, pre[i].kept, pre[i].ok = c, k, true
	}
	return pre, nil
}

// current reports whether p still holds id's main record. The caller
// holds id's stripe lock.
func (p *preread) current(s *Store, id string) bool {
	return p.ok && s.gens[s.stripe(id)].Load() == p.gen
}

// getMain returns a copy of id's main record; ok is false if there is
// none.
func (s *Store) getMain(id string) (rec string, ok bool, err error) {
	v, closer, err := s.db.Get(keyCustomer(nil, id))
	if err == pebble.ErrNotFound {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("cannot read customer %q: %w", id, err)
	}
	rec = string(v)
	closer.Close()
	return rec, true, nil
}

// readMain reads a customer's main record (attributes and events, no
// contacts) and returns it decoded (nil if unknown) with its size.
func (s *Store) readMain(id string) (*store.Customer, int, error) {
	rec, ok, err := s.getMain(id)
	if !ok {
		return nil, 0, err
	}
	c, err := decodeCustomer(id, rec)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot decode customer %q: %w", id, err)
	}
	return c, len(rec), nil
}

// readEvents reads the main record of id for a write of events of the
// given types, decoding those alone (decodeEvents); nil if there is none.
func (s *Store) readEvents(id string, types []string) (*store.Customer, kept, error) {
	rec, ok, err := s.getMain(id)
	if !ok {
		return nil, kept{}, err
	}
	c, k, err := decodeEvents(id, rec, types)
	if err != nil {
		return nil, kept{}, fmt.Errorf("cannot decode customer %q: %w", id, err)
	}
	return c, k, nil
}

// cacheLocked makes c (nil: unknown) the cached value of id, whose main
// record takes size bytes; e is its current entry or nil. The caller holds
// id's stripe lock and has called loadLocked for id under it.
func (s *Store) cacheLocked(id string, e *entry, c *store.Customer, size int) {
	// The cost is the heap the entry keeps alive (entryCost, size.go), so
	// that CacheMB bounds the memory of the cache.
	if e == nil {
		e = &entry{cost: entryCost(c, size), size: size}
		e.c.Store(c)
		s.cache.Set(id, e, e.cost)
		s.queuedLocked(id, e)
		return
	}
	old := e.c.Load()
	e.c.Store(c)
	// Record, once per decision, changes the contacts only, appended in
	// place: the estimate, which walks the attributes and events, changes
	// only when the contacts' array (and with it the index's links), the
	// outcome summary or the index's actions grow. A write that leaves
	// the record's size as it was leaves the attributes' and events'
	// memory within a few bytes.
	if old != nil && c != nil && size == e.size && cap(c.Contacts) == cap(old.Contacts) &&
		len(c.Outcomes) == len(old.Outcomes) && c.IndexedActions() == old.IndexedActions() {
		return
	}
	e.size = size
	// Tell the cache a changed size (a customer grows with its contacts),
	// but not every byte: each Set queues an item. With this margin a
	// growing history is told O(log n) times.
	if cost := entryCost(c, size); cost-e.cost > e.cost/8 || e.cost-cost > e.cost/8 {
		e.cost = cost
		s.cache.Set(id, e, cost)
		// A Set of a stored key replaces it at once (and queues only the
		// policy's cost update, which makes no value visible); it queues
		// a new item only if the entry was evicted meanwhile, and then
		// Get does not find it (or finds it applied already).
		if _, ok := s.cache.Get(id); !ok {
			s.queuedLocked(id, e)
		}
	}
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

// cutoff returns the retention cutoff and the pruning slack.
func (s *Store) cutoff() (int64, time.Duration) {
	r := s.retention.Load()
	return s.now().UnixNano() - r, store.PruneSlack(time.Duration(r))
}

// newCustomer returns an empty customer as the store keeps it: with an
// (empty) outcome summary.
func newCustomer(id string) *store.Customer {
	return &store.Customer{ID: id, Outcomes: map[store.Name]uint8{}}
}

// prune prunes the contacts of ch.c if they are due (see
// store.Customer.NeedsPrune): rarely, as it copies them.
func (ch *change) prune(cutoff int64, slack time.Duration) {
	if ch.c.NeedsPrune(cutoff, slack) {
		var n int
		ch.c, n = ch.c.Pruned(cutoff)
		ch.replace = ch.replace || n > 0
	}
}

// change is a write to one customer.
type change struct {
	id   string
	e    *entry
	c    *store.Customer // the new version; nil: deleted
	main bool            // rewrite the main record
	// kept is what to write as it was encoded in the record c was read
	// from (partial changes only): the attributes, if not empty (c has
	// none), and the event types c lacks.
	kept kept
	size int // the main record's size (set by stage when main)
	// added are contacts of c to append to its contact log.
	added []store.Contact
	// replace sets the contact log to c's contacts (an import, a prune)
	// instead of appending added.
	replace bool
	// partial: c lacks the contacts of a stored customer that is not
	// cached (it was not read, or only its main record was), so c is
	// written (its main record if main, added) but never cached.
	partial bool
}

// appendsOnly reports whether ch writes nothing but contacts appended to
// the customer's log (Record's common write).
func (ch *change) appendsOnly() bool {
	return ch.c != nil && !ch.main && !ch.replace && len(ch.added) > 0
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// stage adds ch to b, using *buf as scratch space: the batch copies what
// it is given, so each step starts again at the front of the buffer, and
// *buf keeps the largest buffer for the next call.
func stage(b *pebble.Batch, ch *change, buf *[]byte) error {
	scratch := (*buf)[:0]
	defer func() { *buf = scratch }()
	if ch.c == nil && !ch.partial {
		if err := b.Delete(keyCustomer(scratch, ch.id), nil); err != nil {
			return err
		}
		return b.Delete(keyHistory(scratch, ch.id), nil)
	}
	if ch.main {
		if ch.c.Attributes != nil {
			// The new version keeps its attributes as they are written,
			// not as a map (see attrs): it is not published yet.
			enc, err := appendObject(scratch, ch.c.Attributes, 0)
			if err != nil {
				return err
			}
			ch.c.Encoded = encoded(attrs(enc))
			ch.c.Attributes = nil
			scratch = enc[:0]
		}
		rec, err := appendRecord(scratch, ch.c, ch.kept)
		if err != nil {
			return err
		}
		scratch = rec[:0] // the front of the buffer, grown or not
		if ch.c.Events != nil && !ch.partial {
			// Likewise its events (see flatEvents), which a partial
			// change lacks some of.
			ch.c.EncodedEvents = nil
			if f := newFlatEvents(ch.c.Events); f != nil {
				ch.c.EncodedEvents = f
			}
			ch.c.Events = nil
		}
		ch.size = len(rec)
		if err := b.Set(keyCustomer(rec[len(rec):], ch.id), rec, nil); err != nil {
			return err
		}
	}
	var log []byte
	switch {
	case ch.replace && len(ch.c.Contacts) == 0:
		return b.Delete(keyHistory(scratch, ch.id), nil)
	case ch.replace:
		log = appendContacts(scratch, ch.c.Contacts)
	case len(ch.added) > 0:
		log = appendContacts(scratch, ch.added)
	default:
		return nil
	}
	scratch = log[:0]
	key := keyHistory(log[len(log):], ch.id)
	if ch.replace {
		return b.Set(key, log, nil)
	}
	return b.Merge(key, log, nil)
}

// drainBefore applies what is staged that a synced write of ch must
// follow in Pebble (the caller holds ch's stripe lock): anything staged
// for its stripe if it writes the contact log (a delete, a rewrite, an
// append, which must come after the appends staged), else what is staged
// for its stripe's main records.
func (s *Store) drainBefore(ch *change) error {
	st := s.stripe(ch.id)
	if (ch.c == nil && !ch.partial) || ch.replace || len(ch.added) > 0 {
		return s.pend.drainFor(st)
	}
	return s.pend.drainMain(st)
}

// write applies changes under the stripe locks held by the caller: one
// batch, then the cache. It returns a function to call after the locks are
// released. If durable, it commits with an fsync (after what is staged
// that it must follow, see drainBefore) and the function waits for the
// fsync: the next write to the same customers then joins the same group
// commit instead of waiting for this fsync under the lock. Writes that
// follow see this one in Pebble and the cache before it is durable, but a
// crash loses a suffix of the write-ahead log (and the contacts still
// staged, which are not acknowledged as durable), never a synced write
// without the synced ones before it, and nothing is acknowledged before
// its fsync. If not durable, the batch is staged (pending.go) and the
// function wakes the apply if enough is staged.
func (s *Store) write(changes []change, durable bool) (wait func() error, err error) {
	defer func() {
		// Staged or applied (or failed, which costs a reader a re-read).
		for i := range changes {
			s.gens[s.stripe(changes[i].id)].Add(1)
		}
	}()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	if !durable && len(changes) == 1 && changes[0].appendsOnly() {
		// Record's common write, an append to a log and nothing else,
		// is staged as such, without a batch to encode it into and
		// read it back from.
		ch := &changes[0]
		log := appendContacts((*bp)[:0], ch.added)
		key := keyHistory(log[len(log):], ch.id)
		*bp = log[:0]
		s.pend.stageAppend(key, log, s.stripe(ch.id))
		if !ch.partial {
			s.cacheLocked(ch.id, ch.e, ch.c, ch.size)
		}
		return s.pend.afterStage, nil
	}
	b := s.db.NewBatch()
	for i := range changes {
		if err := stage(b, &changes[i], bp); err != nil {
			b.Close()
			return nil, fmt.Errorf("cannot write customer %q: %w", changes[i].id, err)
		}
	}
	if durable {
		for i := range changes {
			if err = s.drainBefore(&changes[i]); err != nil {
				break
			}
		}
		if err == nil {
			err = s.db.ApplyNoSyncWait(b, pebble.Sync)
		}
	} else {
		// Writes without an fsync (Record, a prune on a miss) are for
		// one customer.
		if len(changes) != 1 {
			b.Close()
			return nil, fmt.Errorf("cannot stage a write for %d customers", len(changes))
		}
		err = s.pend.stage(b, s.stripe(changes[0].id))
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("cannot write: %w", err)
	}
	for _, ch := range changes {
		if !ch.partial {
			s.cacheLocked(ch.id, ch.e, ch.c, ch.size)
		}
	}
	if !durable {
		return s.pend.afterStage, b.Close()
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

// update rewrites the main record of one customer with f applied to a copy
// of it that shares its contacts (O(attributes + events)).
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
		c := old.CopySharingContacts()
		if c == nil {
			c = newCustomer(id)
		}
		if err := f(c); err != nil {
			return nil, nil, err
		}
		ch := change{id: id, e: e, c: c, main: true}
		ch.prune(s.cutoff())
		wait, err := s.write([]change{ch}, durable)
		return ch.c, wait, err
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
		c.SetAttributes(attrs)
		return nil
	})
	return err
}

// PatchAttributes implements store.Store.
func (s *Store) PatchAttributes(id string, patch map[string]any) (map[string]any, error) {
	c, err := s.update(id, true, func(c *store.Customer) error {
		attrs, err := normalize(store.MergePatch(c.AttributeMap(), patch))
		c.SetAttributes(attrs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.AttributeMap(), nil
}

// Delete implements store.Store: it deletes the main record and the
// contact log in one synced batch. The customer is gone
// from reads and the cache on return; Pebble drops its bytes from the
// files when compactions pass over the deletions.
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
		s.forgetLocked(id)
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
// committed with one (group-committed) fsync. It rewrites their main
// records only, not their contacts.
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
		types := make([][]string, 0, len(events)) // the event types of ids[i]
		for i := range events {
			ev := &events[i]
			j, ok := byID[ev.CustomerID]
			if !ok {
				j = len(ids)
				byID[ev.CustomerID] = j
				ids = append(ids, ev.CustomerID)
				types = append(types, nil)
			}
			if !slices.Contains(types[j], ev.Type) {
				types[j] = append(types[j], ev.Type)
			}
		}
		// The customers' stripe locks are held until the batch is
		// applied, and the hottest customers are in nearly every batch, so
		// batches queue on them: read the records of uncached customers
		// before taking the locks.
		pre, err := s.preread(ids, types)
		if err != nil {
			return nil, err
		}
		unlock := s.lockStripes(ids)
		defer unlock()
		waited := false
		cutoff, slack := s.cutoff()
		for i, id := range ids {
			// Events change the main record only: a customer that is not
			// cached needs its main record, not its contacts.
			old, e := s.cachedLocked(id, &waited)
			var c *store.Customer
			var k kept
			if e == nil {
				// Read for this write alone: no copy needed, and the
				// attributes are written back as they were read.
				if pre[i].current(s, id) {
					old, k = pre[i].c, pre[i].kept
				} else {
					if err := s.pend.drainMain(s.stripe(id)); err != nil {
						return nil, err
					}
					var err error
					if old, k, err = s.readEvents(id, types[i]); err != nil {
						return nil, err
					}
				}
				c = old
			} else {
				c = old.CopyForEvents(types[i])
			}
			if c == nil {
				c = newCustomer(id)
			}
			ch := change{id: id, e: e, c: c, kept: k, main: true, partial: e == nil && old != nil}
			if !ch.partial {
				ch.prune(cutoff, slack)
			}
			changes = append(changes, ch)
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
		if err := s.record(id, contacts); err != nil {
			return err
		}
	}
	s.counters.record(stats)
	return nil
}

// record appends contacts to a customer's history. It appends them to the
// customer's contact log (one merge operand) and never writes the main
// record (but an empty one for a new customer); in memory it appends to the cached history in place
// (store.Customer.AppendContacts): its cost does not depend on the
// history's length, but for the rare prune. Contacts older than the
// retention are dropped.
func (s *Store) record(id string, contacts []store.Contact) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	apply, err := s.recordLocked(id, contacts)
	if err == nil && apply != nil {
		err = apply()
	}
	return err
}

// recordLocked stages the contacts under id's stripe lock and returns the
// function that applies them, or nil if there is nothing to write.
func (s *Store) recordLocked(id string, contacts []store.Contact) (func() error, error) {
	cutoff, slack := s.cutoff()
	kept := contacts
	for _, k := range contacts {
		if k.At < cutoff {
			kept = slices.DeleteFunc(slices.Clone(contacts), func(k store.Contact) bool { return k.At < cutoff })
			break
		}
	}
	if len(kept) == 0 {
		return nil, nil
	}
	mu := &s.stripes[s.stripe(id)]
	mu.Lock()
	defer mu.Unlock()
	waited := false
	old, e := s.cachedLocked(id, &waited)
	var chs [1]change
	ch := &chs[0]
	*ch = change{id: id, e: e}
	if e == nil {
		// Not cached: appending to the contact log needs no read of the
		// customer, only to know whether it exists, as a first contact
		// creates the customer.
		exists, err := s.exists(id)
		if err != nil {
			return nil, err
		}
		if exists {
			ch.partial = true
			ch.added = kept
			ch.c = &store.Customer{ID: id}
			return s.write(chs[:], false)
		}
	} else {
		ch.size = e.size
	}
	if old == nil {
		old = newCustomer(id)
		ch.main = true
	}
	// The log takes the times AppendContacts gives the contacts.
	kept = store.InOrder(old.Contacts, kept)
	ch.added = kept
	ch.c = old.AppendContacts(kept)
	ch.prune(cutoff, slack)
	return s.write(chs[:], false)
}

// exists reports whether a main record is stored for id, after anything
// staged (the caller holds id's stripe lock).
func (s *Store) exists(id string) (bool, error) {
	if r := &s.existing[s.stripe(id)]; r[0] == id || r[1] == id {
		return true, nil
	}
	if err := s.pend.drainMain(s.stripe(id)); err != nil {
		return false, err
	}
	return s.hasMain(id)
}

// hasMain reports whether Pebble holds a main record for id.
func (s *Store) hasMain(id string) (bool, error) {
	_, closer, err := s.db.Get(keyCustomer(nil, id))
	if err == pebble.ErrNotFound {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cannot read customer %q: %w", id, err)
	}
	closer.Close()
	return true, nil
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
// Contacts older than the retention are not recorded, and are dropped when
// their customer is next written once the oldest is older than the
// retention by store.PruneSlack.
func (s *Store) SetRetention(d time.Duration) {
	s.retention.Store(int64(min(max(d, time.Hour), store.MaxDays*24*time.Hour)))
}

// Import writes whole customers, replacing any stored under their ids
// (contacts included), in one batch without an fsync: call Sync when done.
// The customers are not retained. Contacts older than the retention, and
// the oldest beyond store.MaxContacts, are dropped.
func (s *Store) Import(customers []*store.Customer) error {
	if len(customers) == 0 {
		return nil
	}
	changes := make([]change, len(customers))
	ids := make([]string, len(customers))
	cutoff, _ := s.cutoff()
	for i, c := range customers {
		if c == nil || c.ID == "" {
			return fmt.Errorf("cannot import customer %d: empty id", i)
		}
		attrs, err := normalize(c.AttributeMap())
		if err != nil {
			return fmt.Errorf("cannot import customer %q: %w", c.ID, err)
		}
		cp := *c
		cp.SetAttributes(attrs)
		if !slices.IsSortedFunc(cp.Contacts, func(a, b store.Contact) int { return cmp.Compare(a.At, b.At) }) {
			cp.Contacts = slices.Clone(cp.Contacts)
			slices.SortStableFunc(cp.Contacts, func(a, b store.Contact) int { return cmp.Compare(a.At, b.At) })
		}
		pc, _ := cp.Pruned(cutoff)
		changes[i] = change{id: c.ID, c: pc, main: true, replace: true}
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
	for i := range changes {
		if err := stage(b, &changes[i], bp); err != nil {
			return fmt.Errorf("cannot import customer %q: %w", changes[i].id, err)
		}
	}
	// After anything staged for these customers (see pending.go).
	if err := s.pend.drain(); err != nil {
		return fmt.Errorf("cannot import: %w", err)
	}
	err := b.Commit(pebble.NoSync)
	for _, id := range ids {
		s.gens[s.stripe(id)].Add(1)
	}
	if err != nil {
		return fmt.Errorf("cannot import: %w", err)
	}
	s.unsynced.Store(true)
	// Drop the cached versions; nothing else can be pending for these ids
	// once Wait returns, as we hold their locks (see doc.go).
	s.waitCache()
	for _, id := range ids {
		s.cache.Del(id)
		s.queuedLocked(id, nil)
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

// Compact rewrites the whole database into its settled shape. A bulk load
// (Import) leaves many overlapping files at the top of the LSM tree, which
// Pebble would otherwise compact in the background while serving, at the
// cost of CPU the decisions need; call Compact after one.
func (s *Store) Compact() error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if err := s.pend.drain(); err != nil {
		return fmt.Errorf("cannot compact: %w", err)
	}
	if err := s.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		return fmt.Errorf("cannot compact: %w", err)
	}
	return nil
}

// Empty reports whether no customer is stored.
func (s *Store) Empty() (bool, error) {
	if err := s.enter(); err != nil {
		return false, err
	}
	defer s.leave()
	if err := s.pend.drain(); err != nil {
		return false, fmt.Errorf("cannot read store: %w", err)
	}
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

// CacheStats returns how many customers were read from the cache and how
// many from Pebble (a customer that was not cached: Customer, and writes
// that needed the whole customer). Ristretto's own metrics count every
// lookup, and a miss looks up two or three times.
func (s *Store) CacheStats() (hits, misses uint64) {
	return s.hits.Load(), s.reads.Load()
}

// EngineStats reports the figures an operator watches (server's
// EngineStatser): how often the customer cache evicts and declines
// customers, whether Pebble's block cache serves the customer cache's
// misses, how many memtables and files a read goes through, and how far
// compactions lag.
func (s *Store) EngineStats(f func(name, help string, counter bool, value float64)) {
	if s.enter() != nil {
		return // closed
	}
	defer s.leave()
	cm := s.cache.Metrics
	f("cache_evictions_total", "Customers the cache evicted to make room for others: with the misses, a sign that --cache-mb is small for the customers decided for.", true, float64(cm.KeysEvicted()))
	f("cache_rejections_total", "Customers read from Pebble that the cache's admission policy declined to keep.", true, float64(cm.SetsRejected()))
	m := s.db.Metrics()
	f("pebble_block_cache_hits_total", "Block reads Pebble's block cache answered.", true, float64(m.BlockCache.Hits))
	f("pebble_block_cache_misses_total", "Block reads that went to the files.", true, float64(m.BlockCache.Misses))
	f("pebble_block_cache_bytes", "Bytes of blocks in Pebble's block cache.", false, float64(m.BlockCache.Size))
	f("pebble_memtables", "Memtables alive (the one written to, those queued for a flush, and those still read).", false, float64(m.MemTable.Count+m.MemTable.ZombieCount))
	f("pebble_memtable_bytes", "Bytes of the memtables alive.", false, float64(m.MemTable.Size+m.MemTable.ZombieSize))
	f("pebble_read_amplification", "Level-0 sublevels plus non-empty levels below: the files a point read may go through besides the memtables.", false, float64(m.ReadAmp()))
	f("pebble_l0_files", "Files in level 0, which every read checks.", false, float64(m.Levels[0].TablesCount))
	f("pebble_compaction_debt_bytes", "Bytes compactions must rewrite to bring the levels back into shape.", false, float64(m.Compact.EstimatedDebt))
	f("pebble_flushes_total", "Memtable flushes.", true, float64(m.Flush.Count))
	f("pebble_compactions_total", "Compactions.", true, float64(m.Compact.Count))
	f("pebble_disk_bytes", "Bytes of the store's files on disk.", false, float64(m.DiskSpaceUsage()))
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
		case <-s.pend.kick:
			if err := s.pend.drain(); err != nil {
				s.opts.Logger.Errorf("pebblestore: %v", err)
			}
		case <-t.C:
			if err := s.flush(); err != nil {
				s.opts.Logger.Errorf("pebblestore: %v", err)
			}
			s.forgetApplied()
		}
	}
}

// flush persists the statistics that changed and, if anything was written
// without an fsync since the last one, syncs the write-ahead log: syncing
// its end makes every record before it durable.
func (s *Store) flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if err := s.pend.drain(); err != nil {
		return fmt.Errorf("cannot sync: %w", err)
	}
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
		s.pend.close()
		s.cache.Close()
		s.closeErr = errors.Join(err, s.db.Close())
	})
	return s.closeErr
}
