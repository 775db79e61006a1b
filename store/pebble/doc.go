// Package pebblestore is the durable store.Store: customer records in
// Pebble (github.com/cockroachdb/pebble/v2) behind a cache of decoded
// customers (github.com/dgraph-io/ristretto/v2), with the statistics and
// budget counters in memory and persisted in the background.
//
// # Records
//
// Each customer is a main record under 'c' + id (attributes and event
// aggregates) and a contact log under 'h' + id, in a compact binary
// encoding with version bytes (codec.go). Recording a decision's contacts
// (every decision does) appends them to the log as one Pebble merge
// operand (the default merger concatenates) and writes nothing else, so
// its cost does not depend on the customer's history; attribute and event
// writes rewrite the main record only. A cache miss costs two point reads
// (the main record, the log) and one decode. Delete deletes both in one
// batch. The layout is version 3; Open converts a directory of layout 2
// (a key per contact) and refuses one of layout 1 (development versions
// with the contacts inside the main record).
//
// # Durability
//
// Events, attribute writes and deletes are committed with pebble.Sync
// before they are acknowledged; an AddEvents call for many customers is one
// batch, all or nothing. Concurrent synced commits share fsyncs through
// Pebble's group commit; the stripe locks are released before waiting for
// the fsync so that writes to the same customer share them too. Import
// commits with pebble.NoSync. Record (contacts) stages its writes in
// memory (pending.go): a background loop applies them with pebble.NoSync
// every SyncInterval, or sooner once 4,096 are staged, the appends to one
// customer's log as one merge operand and the logs in key order, so that
// a decision pays neither a commit nor a memtable insert of its own. A
// cache miss reads the contacts staged for its customer along with
// Pebble's; every synced write of a log, delete, import, sync and Close
// first applies what was staged before it. The loop then syncs the
// write-ahead log when anything was written since its last sync, and
// persists the in-memory statistics in the same synced batch, so a
// contact is durable within SyncInterval. Close does all three one last
// time. After a bulk load, Compact settles the LSM tree
// (nudge import and nudge-bench gen call it).
//
// # Writes and the cache
//
// A write to a customer is a read-modify-write under one of 4096 stripe
// locks picked by a hash of the id: it reads the current customer (from the
// cache or Pebble), builds a new version (the cached value is shared with
// readers and never mutated), commits, then publishes the new version to
// the cache, all under the lock. Customers hold their attributes encoded
// as the main record has them (Customer.Encoded, see attrs in codec.go), so
// an event write or a cache miss neither builds nor rebuilds a map of
// them, and the collector marks them as one string; their event
// aggregates are in pointer-free arrays (Customer.EncodedEvents, see
// flatEvents in events.go). An attribute write shares the events
// (Customer.CopySharingContacts), an event write copies the
// aggregates out of the arrays into a map (Customer.CopyForEvents) and the
// write makes new arrays of them (stage), and both share
// the contact history; Record shares everything but the history, which it
// appends to in place when its array has room (Customer.AppendContacts:
// only the newest version, the cached one, is ever appended to, and only
// under the lock, so older versions, whose length ends before the new
// contacts, never see them). Record for a customer that is not cached
// reads nothing but whether its main record exists (a point read the
// bloom filters answer, skipped for the last two customers of its stripe
// found in Pebble, which Delete forgets): it appends to the contact log and caches
// nothing; a read that finds such a history past its bounds prunes it.
// Contacts older than the retention by store.PruneSlack, or beyond
// store.MaxContacts, are pruned by the next write: a new array in memory
// and the whole log set anew on disk. A write for many customers
// locks their stripes in ascending order, once each, so writers cannot
// deadlock. Two writes to one customer are thus serialized and neither is
// lost. A batch of events reads its uncached customers before it takes
// their locks, and under them uses a read only if its stripe's write
// count (Store.gens, bumped under the lock by every write) is what it was
// before the read; otherwise it reads again. Such a read decodes only the
// aggregates of the event types the batch brings for the customer, and
// keeps the attributes and the other types as they are encoded
// (decodeEvents); the new main record takes those back byte for byte
// (appendRecord). Decoding a customer's attributes to encode them again
// cost a fifth of the CPU of a batch of events for uncached customers;
// passing over the untouched types instead of decoding them took another
// fifth off (BenchmarkAddEventsUncached/types=4).
//
// The cache maps an id to an *entry, a holder whose atomic pointer is the
// current customer (nil: known not to exist). A write to a cached customer
// stores the new value into the entry in place: readers see it at once,
// without going through ristretto's asynchronous Set.
//
// Ristretto's quirks, as in v2.4.2 (cache.go, store.go, policy.go):
//
//   - Set of a key that is not stored is asynchronous: it queues an item
//     on setBuf that the processItems goroutine applies later, or drops it
//     when setBuf is full, or the admission policy rejects it. Set of a
//     stored key replaces the value synchronously (storedItems.Update).
//   - The policy ignores a queued new item whose key it already tracks
//     (policy.Add → updateIfHas), so a second pending Set of one key is lost
//     while the first, older value is applied.
//   - Del removes the stored value at once and queues a deletion behind the
//     pending items, so a Set queued before the Del, applied after it, makes
//     the old value visible again until the deletion is processed.
//   - Wait returns once every item queued before it has been applied.
//
// So a value queued by a cache fill could otherwise surface after a later
// write, even if only briefly. The invariant that rules this out: every
// cache operation on an id other than Get happens under the id's stripe
// lock, and before concluding that an id is not cached, the lock holder
// calls Wait (loadLocked) if an item queued for an id of its stripe may
// still be pending: the store numbers the items it queues, notes per
// stripe the last one (its number, id and entry), and after each Wait the
// number queued before it (all applied). After Wait, or when the stripe's
// last item is known applied, nothing is pending for the id (only lock
// holders queue items for it), so what Get sees is the truth: either
// the entry, which the holder then updates in place, or nothing, and then
// the holder queues a new entry with the current value (which may still be
// dropped or rejected: the next reader reloads from Pebble). At most one
// new entry is ever pending per id, and never while another is stored. An
// eviction only removes an entry: a later reader reloads from Pebble, which
// every write reaches before it touches the cache. Hits, the hot path, take
// no lock and do not allocate.
//
// When the stripe's last item is the id's own entry, queued and maybe not
// yet applied (the fill of the read a decision made just before recording
// its contacts), the lock holder needs no Wait: that entry is the
// customer's current value, since every write under the lock finds it
// there and updates it in place, whether the cache has applied it,
// rejected it or evicted it since. The sync loop waits once per
// SyncInterval and then forgets the applied entries, so a stripe does not
// keep a rejected customer alive for long.
//
// Wait is a round trip to ristretto's goroutine, which falls behind when
// the CPUs are busy (a garbage collection), and the miss holds its
// stripe's lock meanwhile: it is paid only on a miss whose stripe has a
// pending item of another id, once per write call (AddEvents waits once
// for all its customers). Under the benchmark's load (30 s, 15,000
// decisions/s) that was 1,093 Waits for 83,828 misses, 30 of them the sync
// loop's; before, every miss waited.
//
// # Statistics and budgets
//
// See stats.go for the layout and the budget resolution (per minute within
// a day of the latest serve, per hour back to MaxDays days).
package pebblestore
