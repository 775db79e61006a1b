package pebblestore

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// pending gathers the unsynced writes (Record: contacts) of many requests
// and applies them to Pebble in one commit, in the background: a decision
// pays neither a commit nor a memtable insert of its own.
//
// Why: every decision appends to its customer's contact log, and Pebble
// inserts each merge operand into its memtable, a skiplist of 64 MiB whose
// every level is a likely cache miss. Applied one decision at a time (in
// group commits of a few), that insert was a tenth of the server's CPU on
// the demo. Staged here, the appends of one customer are one operand (the
// log is a concatenation, see logMerger), and under a Zipf load the
// hottest customers are decided for many times between two applies;
// applied in key order, each insert starts from where the one before it
// left the skiplist (arenaskl.Inserter keeps the splice).
//
// What is staged: a write's contact-log appends (merges) go into logs, one
// buffer per key, oldest first; its other operations (the main record of
// a customer a first contact creates, a log rewritten by a prune) go into
// b, in order. An apply commits b, then the logs in key order. A write
// that sets a log drops the appends staged for it, which its value holds
// (stage), so appends staged before it are never applied after it, and
// those staged after it are.
//
// When: the sync loop applies every SyncInterval before it syncs the
// write-ahead log, so a contact is durable within SyncInterval, as when
// each request applied its own; when more than maxStaged writes or
// maxStagedBytes are staged, the request that passes the bound wakes the
// loop (kick) to apply at once, and one that finds 4 times as much staged
// (the loop is behind) applies itself.
//
// Readers. A cache miss reads the customer's log from Pebble and appends
// what is staged for it (staged, see Store.read), so a miss never waits
// for an apply; its main record needs what b holds for its stripe, which
// it drains (drainMain), as do the reads of main records alone (Record's
// check that a customer exists, events for one that is not cached).
// Everything else that reads or writes Pebble (synced writes of a log,
// deletes, imports, iterations, sync, Close) first applies what is staged
// (drain, drainFor). count and the per-stripe counters
// track what is staged and not yet applied (incremented when staged,
// decremented after the apply), so that the common case costs an atomic
// load.
type pending struct {
	db *pebble.DB

	mu       sync.Mutex    // guards b, logs, the counts below and gen
	b        *pebble.Batch // staged operations other than log appends, in order
	logs     *appends      // staged log appends
	spare    *appends      // those of the last apply, emptied, for the next swap
	n        int           // writes staged
	stripes  []uint16      // per write staged: its stripe, | logWrite if in logs only
	gen      uint64        // odd while an apply is committing what it swapped out
	count    atomic.Int64  // writes staged and not yet applied
	size     atomic.Int64  // bytes of appends staged and not yet applied
	perMain  [numStripes]atomic.Int32
	perLog   [numStripes]atomic.Int32
	kick     chan struct{} // wakes the sync loop to apply now
	applyMu  sync.Mutex    // held while applying a swapped-out batch
	order    []int32       // scratch of commit (applyMu)
	unsynced *atomic.Bool  // set after each apply (Store.unsynced)
}

// appends are the staged appends of many contact logs: per key, the
// operands concatenated, oldest first. Their buffers are kept from one
// apply to the next, so that staging a decision's contacts allocates
// only the key of a log not staged since the last apply.
type appends struct {
	index map[string]int32 // key → its index in keys and bufs
	keys  []string
	bufs  [][]byte // the buffers of keys, and spare ones beyond len(keys)
	bytes int
}

// maxKeptBuffer bounds the buffers appends keeps for reuse.
const maxKeptBuffer = 16 << 10

func newAppends() *appends { return &appends{index: map[string]int32{}} }

// add appends value to the log under key.
func (a *appends) add(key, value []byte) {
	i, ok := a.index[string(key)]
	if !ok {
		i = int32(len(a.keys))
		k := string(key)
		a.index[k] = i
		a.keys = append(a.keys, k)
		if int(i) == len(a.bufs) {
			a.bufs = append(a.bufs, nil)
		}
	}
	a.bufs[i] = append(a.bufs[i], value...)
	a.bytes += len(value)
}

// get returns what is staged for key (nil if nothing).
func (a *appends) get(key []byte) []byte {
	if i, ok := a.index[string(key)]; ok {
		return a.bufs[i]
	}
	return nil
}

// drop drops what is staged for key and returns its size; later
// appends to it are kept.
func (a *appends) drop(key []byte) int {
	i, ok := a.index[string(key)]
	if !ok {
		return 0
	}
	n := len(a.bufs[i])
	a.bytes -= n
	a.bufs[i] = a.bufs[i][:0]
	return n
}

// prepend puts o's appends in front of a's (a failed apply's, o, before
// those staged since), in buffers of a's own.
func (a *appends) prepend(o *appends) {
	for i, k := range o.keys {
		old := o.bufs[i]
		if len(old) == 0 {
			continue
		}
		j, ok := a.index[k]
		if !ok {
			a.add([]byte(k), nil)
			j = a.index[k]
		}
		a.bufs[j] = append(append(make([]byte, 0, len(old)+len(a.bufs[j])), old...), a.bufs[j]...)
		a.bytes += len(old)
	}
}

// reset empties a, keeping its buffers but the largest.
func (a *appends) reset() {
	clear(a.index)
	for i, k := range a.bufs {
		if cap(k) > maxKeptBuffer {
			a.bufs[i] = nil
		} else {
			a.bufs[i] = k[:0]
		}
	}
	a.keys, a.bytes = a.keys[:0], 0
}

// logWrite marks, in pending.stripes, a write staged in logs only.
const logWrite = 1 << 15

// maxStaged and maxStagedBytes bound what is staged before the sync loop
// is woken to apply it: at 20,000 decisions a second, a fifth of a second
// of them, which a Zipf(1.1) load over a million customers spreads over
// about 40 % as many keys.
const (
	maxStaged      = 4096
	maxStagedBytes = 1 << 20
)

// maxRounds bounds how many gathered batches one request applies before it
// returns to its own answer; what is left is applied by the sync loop.
const maxRounds = 4

func newPending(db *pebble.DB, unsynced *atomic.Bool) *pending {
	return &pending{db: db, b: db.NewBatch(), logs: newAppends(), spare: newAppends(),
		kick: make(chan struct{}, 1), unsynced: unsynced}
}

// stage adds the operations of b (which the caller keeps) to what is
// staged. The caller holds the lock of stripe, the stripe of the customer
// b writes. A write that sets or deletes a log drops the appends staged
// for it: the writer held the customer's lock and wrote its whole
// history, which has them (it read the customer from the cache, or from
// Pebble and what is staged, see Store.read); appends staged after it are
// applied after it.
func (p *pending) stage(b *pebble.Batch, stripe int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := b.Reader()
	main := false
	for {
		kind, key, value, ok, err := r.Next()
		if err != nil {
			return fmt.Errorf("cannot stage write: %w", err)
		}
		if !ok {
			break
		}
		switch kind {
		case pebble.InternalKeyKindMerge:
			p.logs.add(key, value)
			p.size.Add(int64(len(value)))
			continue
		case pebble.InternalKeyKindSet:
			err = p.b.Set(key, value, nil)
		case pebble.InternalKeyKindDelete:
			err = p.b.Delete(key, nil)
		default:
			err = fmt.Errorf("operation of kind %v", kind)
		}
		if err != nil {
			return fmt.Errorf("cannot stage write: %w", err)
		}
		main = true
		p.size.Add(-int64(p.logs.drop(key)))
	}
	p.counted(stripe, main)
	return nil
}

// stageAppend is stage of a write that appends value to the log under
// key and does nothing else (Store.write, for Record), without a batch.
func (p *pending) stageAppend(key, value []byte, stripe int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.logs.add(key, value)
	p.size.Add(int64(len(value)))
	p.counted(stripe, false)
}

// counted counts a write staged for a customer of stripe, main if it
// staged anything but log appends (p.mu is held).
func (p *pending) counted(stripe int, main bool) {
	p.n++
	if main {
		p.stripes = append(p.stripes, uint16(stripe))
		p.perMain[stripe].Add(1)
	} else {
		p.stripes = append(p.stripes, uint16(stripe)|logWrite)
		p.perLog[stripe].Add(1)
	}
	p.count.Add(1)
}

// staged appends to dst what is staged for the log under key and returns
// it with the generation to pass to current after reading Pebble; busy
// means an apply is committing and the caller should wait for it
// (waitApply) and call again.
func (p *pending) staged(dst []byte, key []byte) (out []byte, gen uint64, busy bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen%2 == 1 {
		return dst, 0, true
	}
	return append(dst, p.logs.get(key)...), p.gen, false
}

// current reports whether no apply started since staged returned gen: a
// read of Pebble made in between holds none of what staged returned.
func (p *pending) current(gen uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen == gen
}

// waitApply waits for the apply in progress, if any.
func (p *pending) waitApply() {
	p.applyMu.Lock()
	//lint:ignore SA2001 the wait for the apply in progress is the point
	p.applyMu.Unlock()
}

// empty reports whether every staged write has been applied.
func (p *pending) empty() bool { return p.count.Load() == 0 }

// drainFor is drain if a write for a customer of stripe is staged and not
// yet applied (the caller holds the stripe's lock).
func (p *pending) drainFor(stripe int) error {
	if p.perMain[stripe].Load() == 0 && p.perLog[stripe].Load() == 0 {
		return nil
	}
	return p.drain()
}

// drainMain is drain if a write for a customer of stripe staged anything
// but log appends (the caller holds the stripe's lock): what a read of
// main records needs, and a read of a log that adds what is staged.
func (p *pending) drainMain(stripe int) error {
	if p.perMain[stripe].Load() == 0 {
		return nil
	}
	return p.drain()
}

// full reports whether more than factor times the bounds are staged or
// being applied.
func (p *pending) full(factor int64) bool {
	return p.count.Load() > factor*maxStaged || p.size.Load() > factor*maxStagedBytes
}

// afterStage runs after a request staged a write and released its lock:
// it wakes the sync loop if the bounds are passed, and applies itself if
// the loop is far behind.
func (p *pending) afterStage() error {
	if !p.full(1) {
		return nil
	}
	if p.full(4) && p.applyMu.TryLock() {
		defer p.applyMu.Unlock()
		return p.applyLocked(maxRounds)
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return nil
}

// drain applies everything staged before it was called, waiting for an
// apply in progress.
func (p *pending) drain() error {
	if p.empty() {
		return nil
	}
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	return p.applyLocked(1)
}

func (p *pending) applyLocked(rounds int) error {
	for range rounds {
		p.mu.Lock()
		b, logs, n, stripes := p.b, p.logs, p.n, p.stripes
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		size := int64(logs.bytes)
		p.b, p.logs, p.spare, p.n, p.stripes = p.db.NewBatch(), p.spare, nil, 0, nil
		p.gen++ // odd: readers of logs wait (staged)
		p.mu.Unlock()

		err := p.commit(b, logs)
		p.mu.Lock()
		if err != nil {
			p.restore(b, logs, n, stripes)
		}
		logs.reset()
		p.spare = logs
		p.gen++
		p.mu.Unlock()
		b.Close()
		if err != nil {
			return fmt.Errorf("cannot write contacts: %w", err)
		}
		p.unsynced.Store(true)
		for _, st := range stripes {
			if st&logWrite != 0 {
				p.perLog[st&^logWrite].Add(-1)
			} else {
				p.perMain[st].Add(-1)
			}
		}
		p.count.Add(-int64(n))
		p.size.Add(-size)
	}
	return nil
}

// commit applies b, then the appends in logs in key order (applyMu is
// held): each insert into the memtable's skiplist starts from where the
// one before it left it.
func (p *pending) commit(b *pebble.Batch, logs *appends) error {
	if !b.Empty() {
		if err := p.db.Apply(b, pebble.NoSync); err != nil {
			return err
		}
		// Applied: a retry after a failure below must not apply it again.
		b.Reset()
	}
	if len(logs.keys) == 0 {
		return nil
	}
	p.order = p.order[:0]
	for i := range logs.keys {
		if len(logs.bufs[i]) > 0 {
			p.order = append(p.order, int32(i))
		}
	}
	slices.SortFunc(p.order, func(i, j int32) int { return strings.Compare(logs.keys[i], logs.keys[j]) })
	mb := p.db.NewBatch()
	defer mb.Close()
	for _, i := range p.order {
		if err := mb.Merge([]byte(logs.keys[i]), logs.bufs[i], nil); err != nil {
			return err
		}
	}
	return p.db.Apply(mb, pebble.NoSync)
}

// restore puts back, after a failed apply, what it swapped out in front
// of what was staged since, so that nothing acknowledged is dropped and
// the order holds (p.mu is held). The writes still count as staged.
func (p *pending) restore(b *pebble.Batch, logs *appends, n int, stripes []uint16) {
	if !b.Empty() {
		nb := p.db.NewBatch()
		if nb.Apply(b, nil) == nil && nb.Apply(p.b, nil) == nil {
			p.b.Close()
			p.b = nb
		} else {
			nb.Close()
		}
	}
	p.logs.prepend(logs)
	p.n += n
	p.stripes = append(stripes, p.stripes...)
}

// close releases the gathered batch; call after the last drain.
func (p *pending) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.b.Close()
}
