package store

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

func TestNames(t *testing.T) {
	if n, ok := LookupName(""); !ok || n != 0 || Name(0).String() != "" {
		t.Errorf(`"" is name %d (%v), name 0 is %q`, n, ok, Name(0))
	}
	if _, ok := LookupName("never-interned-name"); ok {
		t.Error("a name never interned has a Name")
	}
	a, b := Intern("names-a"), Intern("names-b")
	if a == b || a == 0 || a.String() != "names-a" || b.String() != "names-b" {
		t.Errorf("Intern gave %d %q and %d %q", a, a, b, b)
	}
	if Intern("names-a") != a || InternBytes([]byte("names-a")) != a {
		t.Error("interning a name again gives another Name")
	}
	if n, err := NewName("names-b"); err != nil || n != b {
		t.Errorf("NewName of a known name: %d, %v", n, err)
	}
	if n, ok := LookupName("names-a"); !ok || n != a {
		t.Errorf("LookupName: %d, %v", n, ok)
	}
}

// TestNamesConcurrent: goroutines interning the same strings at once,
// across several chunks of the table, agree on every Name, and every
// Name reads back its string.
func TestNamesConcurrent(t *testing.T) {
	const n = 3 * nameChunk
	got := make([][]Name, 4)
	var wg sync.WaitGroup
	for g := range got {
		wg.Go(func() {
			got[g] = make([]Name, n)
			for i := range n {
				j := (i*7 + g*n/4) % n // each goroutine in its own order
				got[g][j] = InternBytes(fmt.Appendf(nil, "concurrent-%d", j))
				if s := got[g][j].String(); s != fmt.Sprintf("concurrent-%d", j) {
					t.Errorf("name %d reads back %q", j, s)
					return
				}
			}
		})
	}
	wg.Wait()
	for g := 1; g < len(got); g++ {
		for i := range n {
			if got[g][i] != got[0][i] {
				t.Fatalf("concurrent-%d: Names %d and %d", i, got[0][i], got[g][i])
			}
		}
	}
}

// TestNewNameBounded: once the table holds MaxNames names, NewName refuses
// a new one and still returns known ones, while Intern (stored contacts,
// rule files) goes on.
func TestNewNameBounded(t *testing.T) {
	known := Intern("bounded-known")
	for i := 0; NumNames() < MaxNames; i++ {
		Intern(fmt.Sprint("bounded-", i))
	}
	if _, err := NewName("bounded-new"); !errors.Is(err, ErrTooManyNames) {
		t.Errorf("NewName of a new name in a full table: %v", err)
	}
	if n, err := NewName("bounded-known"); err != nil || n != known {
		t.Errorf("NewName of a known name in a full table: %d, %v", n, err)
	}
	if n := Intern("bounded-stored"); n.String() != "bounded-stored" || NumNames() != MaxNames+1 {
		t.Errorf("Intern in a full table: %d %q, %d names", n, n, NumNames())
	}
}

// TestNameAllocs: a known name costs no allocation, whichever way it is
// looked up (a decision interns its actions and channels).
func TestNameAllocs(t *testing.T) {
	b := []byte("interned-action-y")
	s := string(b[:len(b)-1]) // not a constant
	InternBytes(b)
	Intern(s)
	for name, f := range map[string]func(){
		"InternBytes": func() { InternBytes(b) },
		"Intern":      func() { Intern(s) },
		"NewName":     func() { NewName(s) },
		"LookupName":  func() { LookupName(s) },
	} {
		if a := testing.AllocsPerRun(100, f); a != 0 {
			t.Errorf("%s: %v allocations for a known name", name, a)
		}
	}
}

func BenchmarkInternBytes(b *testing.B) {
	names := [][]byte{[]byte("welcome-10"), []byte("web"), []byte("winback-20"), []byte("email")}
	for _, n := range names {
		InternBytes(n)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			InternBytes(names[i%len(names)])
			i++
		}
	})
}
