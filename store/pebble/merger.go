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
// collects the older operands and concatenates them once, in Finish.
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
		m.newer = append(m.newer[:0], value...)
		return m, nil
	},
}

var mergerPool = sync.Pool{New: func() any { return new(concatMerger) }}

// maxPooledMerge bounds the buffers a pooled merger keeps: the log of a
// customer decided for thousands of times is merged rarely (it is cached),
// and must not pin its size in the pool.
const maxPooledMerge = 64 << 10

// bytes is the memory of m's buffers.
func (m *concatMerger) bytes() int {
	return cap(m.newer) + cap(m.older) + cap(m.out) + 8*cap(m.lens)
}

// concatMerger is the ValueMerger of logMerger.
type concatMerger struct {
	newer []byte // the first operand, then those added by MergeNewer
	older []byte // the operands added by MergeOlder, each appended (newest first)
	lens  []int  // the lengths of the operands in older
	out   []byte // the result, when there are older operands
}

// MergeNewer appends value to the result.
func (m *concatMerger) MergeNewer(value []byte) error {
	m.newer = append(m.newer, value...)
	return nil
}

// MergeOlder puts value before the result, in Finish.
func (m *concatMerger) MergeOlder(value []byte) error {
	m.older = append(m.older, value...)
	m.lens = append(m.lens, len(value))
	return nil
}

// Finish returns the concatenation of the operands, oldest first, valid
// until the merger (the returned Closer) is closed.
func (m *concatMerger) Finish(bool) ([]byte, io.Closer, error) {
	if len(m.lens) == 0 {
		return m.newer, m, nil
	}
	out := m.out[:0]
	end := len(m.older)
	for i := len(m.lens) - 1; i >= 0; i-- {
		start := end - m.lens[i]
		out = append(out, m.older[start:end]...)
		end = start
	}
	m.out = append(out, m.newer...)
	return m.out, m, nil
}

// Close puts the merger back in the pool (unless it is too large to
// keep); its result is invalid from then.
func (m *concatMerger) Close() error {
	if m.bytes() > maxPooledMerge {
		return nil
	}
	m.newer, m.older, m.lens, m.out = m.newer[:0], m.older[:0], m.lens[:0], m.out[:0]
	mergerPool.Put(m)
	return nil
}
