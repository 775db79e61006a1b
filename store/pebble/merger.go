package pebblestore

import (
	"io"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// logMerger is Pebble's default merger (it keeps its name,
// "pebble.concatenate", so databases of either open with the other): it
// concatenates a key's merge operands from the oldest to the newest. The
// default's MergeOlder copies everything merged so far to prepend one
// operand, which makes merging a contact log's n appends (in a compaction
// or a read, from the newest operand to the oldest) cost O(n²); this one
// keeps room in front of what it merged, so that an older operand is
// copied once, into that room, and the result is ready as it is.
//
// Every cache miss of a customer with recent contacts merges its log, so
// the mergers and their buffers are pooled: Finish returns the merger as
// the value's io.Closer, and Pebble closes it once the value is no longer
// used (a Get's closer, an iterator's next step, a compaction's next key),
// which puts it back.
var logMerger = &pebble.Merger{
	Name: pebble.DefaultMerger.Name,
	Merge: func(_, value []byte) (pebble.ValueMerger, error) {
		m := mergerPool.Get().(*concatMerger)
		m.first(value)
		return m, nil
	},
}

var mergerPool = sync.Pool{New: func() any { return new(concatMerger) }}

// maxPooledMerge bounds the buffer a pooled merger keeps. It holds the
// log of a customer at store.MaxContacts (about 30 bytes a contact) with
// the room a growth leaves: a small cache evicts the customers decided
// for thousands of times (the hottest ids) and reads them back often,
// and each of those reads would otherwise allocate their log twice over.
// sync.Pool drops the mergers that two collections find unused.
const maxPooledMerge = 512 << 10

// bytes is the memory of m's buffer.
func (m *concatMerger) bytes() int { return cap(m.buf) }

// concatMerger is the ValueMerger of logMerger. The operands merged so
// far are buf[start:], oldest first; the room in front of them,
// buf[:start], takes the older operands.
type concatMerger struct {
	buf   []byte
	start int
}

// first makes value the only operand, at the end of the buffer: a read
// merges from the newest operand to the oldest.
func (m *concatMerger) first(value []byte) {
	if cap(m.buf) < len(value) {
		m.buf = make([]byte, max(2*len(value), 64))
	}
	m.buf = m.buf[:cap(m.buf)]
	m.start = len(m.buf) - len(value)
	copy(m.buf[m.start:], value)
}

// MergeNewer appends value to the result (a reverse iteration merges
// newer operands; the store does not iterate contact logs backwards).
func (m *concatMerger) MergeNewer(value []byte) error {
	m.buf = append(m.buf, value...)
	return nil
}

// MergeOlder puts value before the result: into the room in front, which
// a growth doubles.
func (m *concatMerger) MergeOlder(value []byte) error {
	if m.start < len(value) {
		n := len(m.buf) - m.start
		grown := make([]byte, 2*(n+len(value)))
		copy(grown[len(grown)-n:], m.buf[m.start:])
		m.buf, m.start = grown, len(grown)-n
	}
	m.start -= len(value)
	copy(m.buf[m.start:], value)
	return nil
}

// Finish returns the concatenation of the operands, oldest first, valid
// until the merger (the returned Closer) is closed.
func (m *concatMerger) Finish(bool) ([]byte, io.Closer, error) {
	return m.buf[m.start:], m, nil
}

// Close puts the merger back in the pool (unless it is too large to
// keep); its result is invalid from then.
func (m *concatMerger) Close() error {
	if m.bytes() > maxPooledMerge {
		return nil
	}
	m.buf, m.start = m.buf[:0], 0
	mergerPool.Put(m)
	return nil
}
