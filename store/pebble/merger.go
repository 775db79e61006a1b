package pebblestore

import (
	"io"

	"github.com/cockroachdb/pebble/v2"
)

// logMerger is Pebble's default merger (it keeps its name,
// "pebble.concatenate", so databases of either open with the other): it
// concatenates a key's merge operands from the oldest to the newest. The
// default's MergeOlder copies everything merged so far to prepend one
// operand, which makes merging a contact log's n appends (in a compaction
// or a read, from the newest operand to the oldest) cost O(n²); this one
// collects the older operands and concatenates them once, in Finish.
var logMerger = &pebble.Merger{
	Name: pebble.DefaultMerger.Name,
	Merge: func(_, value []byte) (pebble.ValueMerger, error) {
		m := &concatMerger{}
		m.newer = append(m.newer, value...)
		return m, nil
	},
}

// concatMerger is the ValueMerger of logMerger.
type concatMerger struct {
	newer []byte // the first operand, then those added by MergeNewer
	older []byte // the operands added by MergeOlder, each appended (newest first)
	lens  []int  // the lengths of the operands in older
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

// Finish returns the concatenation of the operands, oldest first.
func (m *concatMerger) Finish(bool) ([]byte, io.Closer, error) {
	if len(m.lens) == 0 {
		return m.newer, nil, nil
	}
	out := make([]byte, 0, len(m.older)+len(m.newer))
	end := len(m.older)
	for i := len(m.lens) - 1; i >= 0; i-- {
		start := end - m.lens[i]
		out = append(out, m.older[start:end]...)
		end = start
	}
	return append(out, m.newer...), nil, nil
}
