package pebblestore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/nudge-engine/nudge/store"
)

// keyContactV2 and contactValueV2 write a contact as layout 2 did: a key
// per contact ('k', the id as a string, the time with the sign bit flipped,
// a sequence number) and a value of contactV1, outcome, action, channel.
func keyContactV2(id string, at int64, seq uint32) []byte {
	b := appendString([]byte{'k'}, id)
	b = binary.BigEndian.AppendUint64(b, uint64(at)^(1<<63))
	return binary.BigEndian.AppendUint32(b, seq)
}

func contactValueV2(k *store.Contact) []byte {
	b := []byte{contactV1, byte(k.Outcome)}
	return appendString(appendString(b, k.Action.String()), k.Channel.String())
}

// writeV2 creates a database of layout 2 holding customers, and a stale
// contact log (as a conversion stopped half way leaves) for the first.
func writeV2(t *testing.T, dir string, customers []*store.Customer) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: formatVersion})
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.Set(keyLayout, []byte{'0' + layoutV2}, nil))
	must(b.Set(keySince, binary.AppendVarint(nil, time.Now().UnixNano()), nil))
	for _, c := range customers {
		rec, err := appendCustomer(nil, c)
		must(err)
		must(b.Set(keyCustomer(nil, c.ID), rec, nil))
		for i := range c.Contacts {
			k := &c.Contacts[i]
			must(b.Set(keyContactV2(c.ID, k.At, uint32(i)), contactValueV2(k), nil))
		}
	}
	stale := []store.Contact{served("stale", time.Now().UnixNano())}
	must(b.Set(keyHistory(nil, customers[0].ID), appendContacts(nil, stale), nil))
	must(b.Commit(pebble.Sync))
	must(db.Close())
}

// TestMigrateV2: Open converts a layout 2 directory into contact logs,
// over several batches, keeping every customer's contacts in order, and
// leaves no contact key of layout 2 behind.
func TestMigrateV2(t *testing.T) {
	defer func(n int) { migrateBatchBytes = n }(migrateBatchBytes)
	migrateBatchBytes = 1 << 10
	now := time.Now()
	var customers []*store.Customer
	for i := range 60 {
		c := &store.Customer{ID: fmt.Sprintf("c-%d", i), Attributes: map[string]any{"n": float64(i)}}
		for j := range i % 7 {
			c.Contacts = append(c.Contacts, store.Contact{Action: store.Intern(fmt.Sprintf("a%d", j%3)), Channel: store.Intern("web"),
				Outcome: store.Outcome(j % 3), At: now.Add(time.Duration(j/2-10) * time.Minute).UnixNano()})
		}
		customers = append(customers, c)
	}
	// Ids whose keys sort next to each other's.
	customers = append(customers, &store.Customer{ID: "c", Contacts: []store.Contact{served("x", now.UnixNano())}},
		&store.Customer{ID: "c\x00", Contacts: []store.Contact{served("y", now.UnixNano())}})
	dir := t.TempDir()
	writeV2(t, dir, customers)

	s := openTest(t, dir)
	for _, want := range customers {
		got := mustCustomer(t, s, want.ID)
		if got == nil {
			t.Fatalf("%s: missing", want.ID)
		}
		if !reflect.DeepEqual(canon(got), canon(want)) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", want.ID, canon(got), canon(want))
		}
	}
	v, closer, err := s.db.Get(keyLayout)
	if err != nil {
		t.Fatal(err)
	}
	if string(v) != "3" {
		t.Errorf("layout %q; want 3", v)
	}
	closer.Close()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte("k"), UpperBound: []byte("l")})
	if err != nil {
		t.Fatal(err)
	}
	if it.First() {
		t.Errorf("layout 2 key left: %q", it.Key())
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLogMerger: the merger concatenates operands oldest first whatever
// the order Pebble hands them over in, as the default merger does.
func TestLogMerger(t *testing.T) {
	ops := []string{"a", "bb", "", "ccc", "d", "ee"} // oldest first
	for start := range ops {
		for older := 0; older <= start; older++ {
			// Pebble starts from one operand, then adds older ones
			// (newest to oldest) and newer ones (oldest to newest).
			var merged [][]byte
			for _, op := range ops[start-older:] {
				merged = append(merged, []byte(op))
			}
			v, closer := mergeLog(t, merged, older)
			got := string(v)
			closer.Close()
			want := ""
			for _, op := range ops[start-older:] {
				want += op
			}
			def, _ := pebble.DefaultMerger.Merge(nil, []byte(ops[start]))
			for i := start - 1; i >= start-older; i-- {
				_ = def.MergeOlder([]byte(ops[i]))
			}
			for i := start + 1; i < len(ops); i++ {
				_ = def.MergeNewer([]byte(ops[i]))
			}
			defGot, _, _ := def.Finish(true)
			if string(got) != want || string(defGot) != want {
				t.Errorf("start %d, %d older: got %q, default merger %q; want %q", start, older, got, defGot, want)
			}
		}
	}
}

// TestMigrateV2Corrupt: a damaged contact key of layout 2 stops the
// conversion with an error (and Open with it), never a panic, and leaves
// the directory as it was.
func TestMigrateV2Corrupt(t *testing.T) {
	for name, key := range map[string][]byte{
		"short":     {'k', 1, 'c', 0, 0},
		"bad id":    {'k', 9, 'c'},
		"long tail": append(keyContactV2("c", 1, 0), 0),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeV2(t, dir, []*store.Customer{{ID: "c"}})
			db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: formatVersion})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Set(key, contactValueV2(&store.Contact{Action: store.Intern("a")}), pebble.Sync); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err := Open(Options{Dir: dir}); err == nil {
				s.Close()
				t.Fatal("Open converted a damaged contact key")
			} else if !strings.Contains(err.Error(), "layout 2") {
				t.Errorf("error %q does not name the conversion", err)
			}
		})
	}
}

// mergeLog merges ops (oldest first) as Pebble does, from operand start:
// then the older ones, newest first, then the newer ones, oldest first.
func mergeLog(t testing.TB, ops [][]byte, start int) ([]byte, io.Closer) {
	vm, err := logMerger.Merge(nil, ops[start])
	if err != nil {
		t.Fatal(err)
	}
	for i := start - 1; i >= 0; i-- {
		if err := vm.MergeOlder(ops[i]); err != nil {
			t.Fatal(err)
		}
	}
	for i := start + 1; i < len(ops); i++ {
		if err := vm.MergeNewer(ops[i]); err != nil {
			t.Fatal(err)
		}
	}
	v, closer, err := vm.Finish(true)
	if err != nil || closer == nil {
		t.Fatalf("Finish: closer %v, error %v", closer, err)
	}
	return v, closer
}

// TestLogMergerInterleaved: older and newer operands in any order, of
// sizes that make the buffer grow at either end, merge into the
// concatenation oldest first, and a pooled merger starts afresh.
func TestLogMergerInterleaved(t *testing.T) {
	for seed := range 20 {
		var want []byte // what the operands concatenate to
		vm, err := logMerger.Merge(nil, []byte("first;"))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, "first;"...)
		for i := range 40 {
			op := bytes.Repeat([]byte{byte('a' + i%26)}, 1+(seed*7+i*13)%300)
			if (seed+i*i)%3 == 0 {
				err, want = vm.MergeNewer(op), append(want, op...)
			} else {
				err, want = vm.MergeOlder(op), append(op, want...)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		v, closer, err := vm.Finish(true)
		if err != nil || !bytes.Equal(v, want) {
			t.Fatalf("seed %d: got %d bytes, want %d (%v)", seed, len(v), len(want), err)
		}
		closer.Close()
	}
}

// TestLogMergerPooled: a merger closed after its result was used is
// reused, with a correct result each time (longer and shorter than the
// last, from any starting operand) and no allocation, and one whose
// buffers grew large is not kept.
func TestLogMergerPooled(t *testing.T) {
	ops := make([][]byte, 20)
	for i := range ops {
		ops[i] = []byte(fmt.Sprintf("contact-%02d;", i))
	}
	want := string(bytes.Join(ops, nil))
	for _, n := range []int{1, 5, 20, 3, 12, 2, 20, 1} {
		sub := ops[len(ops)-n:]
		for start := range sub {
			v, closer := mergeLog(t, sub, start)
			if got, want := string(v), string(bytes.Join(sub, nil)); got != want {
				t.Fatalf("%d operands from %d: %q; want %q", n, start, got, want)
			}
			closer.Close()
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		v, closer := mergeLog(t, ops, len(ops)-1)
		if string(v) != want {
			t.Fatalf("got %q; want %q", v, want)
		}
		closer.Close()
	})
	// The race detector makes sync.Pool drop items at random; make test
	// runs this test without it too.
	if allocs != 0 && !raceEnabled {
		t.Errorf("%v allocations per merge of %d operands; want 0", allocs, len(ops))
	}
	big := [][]byte{make([]byte, maxPooledMerge), []byte("x")}
	_, closer := mergeLog(t, big, 1)
	if m := closer.(*concatMerger); m.bytes() <= maxPooledMerge {
		t.Fatalf("a merge of %d bytes counts %d", maxPooledMerge+1, m.bytes())
	}
	closer.Close()
	for range 10 {
		m := mergerPool.Get().(*concatMerger)
		if m.bytes() > maxPooledMerge {
			t.Fatalf("the pool kept a merger of %d bytes", m.bytes())
		}
		defer mergerPool.Put(m)
	}
}

// BenchmarkLogMerger merges a contact log of 20 appends, as a cache miss
// of a customer decided for 20 times since the last compaction does.
func BenchmarkLogMerger(b *testing.B) {
	ops := make([][]byte, 20)
	for i := range ops {
		ops[i] = []byte(fmt.Sprintf("contact-%02d;", i))
	}
	b.ReportAllocs()
	for b.Loop() {
		_, closer := mergeLog(b, ops, len(ops)-1)
		closer.Close()
	}
}
