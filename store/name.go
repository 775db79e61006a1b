package store

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
)

// Name is an interned action or channel name: a number standing for the
// string, the same in every customer for the life of the process. A
// contact holds its action and channel as names, so that a history holds
// no pointer: the garbage collector, which marks every cached customer in
// every cycle, skips a pointer-free array without reading it. The zero
// Name is the empty string.
//
// Names are never freed. They come from rule files (bounded by the
// ruleset), from stored contacts (bounded by what was accepted) and from
// requests; Intern takes any name, NewName only while the table holds
// fewer than MaxNames, so that clients naming ever new actions cannot grow
// it without bound.
type Name uint32

// MaxNames is how many names the table holds before NewName refuses a
// new one. A ruleset has a few thousand actions and channels at most.
const MaxNames = 1 << 16

// ErrTooManyNames is NewName's error once the table is full.
var ErrTooManyNames = errors.New("too many distinct action and channel names")

const nameChunk = 1 << 10

var names struct {
	ids    sync.Map // string → Name; read without a lock
	mu     sync.Mutex
	n      atomic.Uint32                        // names held, the empty one included
	chunks atomic.Pointer[[]*[nameChunk]string] // names by Name; replaced when it grows
}

func init() {
	chunks := []*[nameChunk]string{new([nameChunk]string)}
	names.chunks.Store(&chunks)
	names.n.Store(1) // Name 0 is ""
}

// String returns the name's string.
func (n Name) String() string {
	return (*names.chunks.Load())[n/nameChunk][n%nameChunk]
}

// LookupName returns the Name of s if s has one. A name without one
// appears in no contact.
func LookupName(s string) (Name, bool) {
	if s == "" {
		return 0, true
	}
	if v, ok := names.ids.Load(s); ok {
		return v.(Name), true
	}
	return 0, false
}

// Intern returns the Name of s, registering s if new. It is for names the
// process has to represent whatever their number: those of the active
// ruleset and of stored contacts. Names from requests go through NewName.
func Intern(s string) Name {
	if n, ok := LookupName(s); ok {
		return n
	}
	n, _ := register(s, false)
	return n
}

// InternBytes is Intern for a name in a buffer, which it does not keep:
// it allocates only to register a new name.
func InternBytes(b []byte) Name {
	if len(b) == 0 {
		return 0
	}
	if v, ok := names.ids.Load(string(b)); ok {
		return v.(Name)
	}
	return Intern(string(b))
}

// NewName is Intern for a name a request brings: it fails with
// ErrTooManyNames if s is new and the table already holds MaxNames names.
func NewName(s string) (Name, error) {
	if n, ok := LookupName(s); ok {
		return n, nil
	}
	return register(s, true)
}

func register(s string, bounded bool) (Name, error) {
	names.mu.Lock()
	defer names.mu.Unlock()
	if v, ok := names.ids.Load(s); ok { // registered meanwhile
		return v.(Name), nil
	}
	n := names.n.Load()
	if bounded && n >= MaxNames {
		return 0, ErrTooManyNames
	}
	chunks := *names.chunks.Load()
	if int(n/nameChunk) == len(chunks) {
		grown := append(chunks[:len(chunks):len(chunks)], new([nameChunk]string))
		names.chunks.Store(&grown)
		chunks = grown
	}
	s = strings.Clone(s) // s may alias a request's buffer
	chunks[n/nameChunk][n%nameChunk] = s
	names.n.Store(n + 1)
	names.ids.Store(s, Name(n)) // publishes the slot written above
	return Name(n), nil
}

// NumNames is how many names the table holds, the empty one included.
func NumNames() int { return int(names.n.Load()) }
