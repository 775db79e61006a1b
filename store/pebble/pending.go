package pebblestore

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// pending gathers the unsynced writes (Record: contacts) of many requests
// into one Pebble batch, so that a decision does not pay a commit of its
// own: Pebble's commit pipeline takes one mutex per batch, and under load
// the requests of both cores queued on it. A write is staged under its
// customer's stripe lock and published to the cache at once; whoever
// staged it then applies the gathered batch unless another goroutine is
// applying, which picks it up (group commit, without a timer: the batch
// grows with the load and a lone request applies its own at once).
//
// Order: every other write (synced writes, deletes, imports) and every
// read of Pebble on a cache miss first waits until nothing staged is left
// unapplied (drain), so a write never overtakes a contact staged before it
// for the same customer and a miss never reads a customer without a
// contact it was given. count tracks what is staged and not yet applied
// (incremented when staged, decremented after the apply), in all and per
// stripe of customers, so that a miss or a write waits only when its own
// customers' stripes have something staged: the common case costs an
// atomic load.
type pending struct {
	db *pebble.DB

	mu      sync.Mutex // guards b, n and stripes
	b       *pebble.Batch
	n       int64        // writes staged in b
	stripes []uint16     // the stripe of each write staged in b
	count   atomic.Int64 // writes staged and not yet applied
	per     [numStripes]atomic.Int32

	applyMu  sync.Mutex   // held while applying a swapped-out batch
	unsynced *atomic.Bool // set after each apply (Store.unsynced)
}

// maxRounds bounds how many gathered batches one request applies before it
// returns to its own answer; what is left is applied by the next writer,
// a miss, or the sync loop.
const maxRounds = 4

func newPending(db *pebble.DB, unsynced *atomic.Bool) *pending {
	return &pending{db: db, b: db.NewBatch(), unsynced: unsynced}
}

// stage adds the operations of b (which the caller keeps) to the gathered
// batch. The caller holds the lock of stripe, the stripe of the customer b
// writes.
func (p *pending) stage(b *pebble.Batch, stripe int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.b.Apply(b, nil); err != nil {
		return fmt.Errorf("cannot stage write: %w", err)
	}
	p.n++
	p.stripes = append(p.stripes, uint16(stripe))
	p.per[stripe].Add(1)
	p.count.Add(1)
	return nil
}

// empty reports whether every staged write has been applied.
func (p *pending) empty() bool { return p.count.Load() == 0 }

// drainFor is drain if a write for a customer of stripe is staged and not
// yet applied (the caller holds the stripe's lock).
func (p *pending) drainFor(stripe int) error {
	if p.per[stripe].Load() == 0 {
		return nil
	}
	return p.drain()
}

// apply applies gathered batches unless another goroutine is applying
// (which then applies what was staged meanwhile). An error leaves the
// writes staged, in order, for the next apply.
func (p *pending) apply() error {
	if !p.applyMu.TryLock() {
		return nil
	}
	defer p.applyMu.Unlock()
	return p.applyLocked(maxRounds)
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
		b, n, stripes := p.b, p.n, p.stripes
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		p.b, p.n, p.stripes = p.db.NewBatch(), 0, nil
		p.mu.Unlock()
		if err := p.db.Apply(b, pebble.NoSync); err != nil {
			// Put the writes back in front of those staged since, so
			// that nothing acknowledged is dropped and the order holds.
			p.mu.Lock()
			if aerr := b.Apply(p.b, nil); aerr == nil {
				p.b.Close()
				p.b, p.n, p.stripes = b, p.n+n, append(stripes, p.stripes...)
			} else {
				b.Close()
			}
			p.mu.Unlock()
			return fmt.Errorf("cannot write contacts: %w", err)
		}
		b.Close()
		p.unsynced.Store(true)
		for _, st := range stripes {
			p.per[st].Add(-1)
		}
		p.count.Add(-n)
	}
	return nil
}

// close releases the gathered batch; call after the last drain.
func (p *pending) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.b.Close()
}
