package store

import (
	"math"
	"sync/atomic"
)

// indexMin is the length of history from which a customer keeps a
// contact index: below it a scan is as fast.
const indexMin = 32

// contactIndex lists, for each action, the positions of its contacts in
// a customer's Contacts, ascending, so that counting the contacts of one
// action (caps, shown(), outcomes()) costs the contacts of that action in
// the window, not the whole history: a customer decided for thousands of
// times (a bot, a shared id) has up to MaxContacts contacts, and a ruleset
// with many capped actions counts for each of them.
//
// It follows the sharing rules of Customer: versions that share a
// Contacts array share the index. The single writer of the newest version
// (AppendContacts) appends positions in place and publishes each list's
// new length atomically; readers of older versions ignore positions at or
// beyond their own len(Contacts). The map is never modified once
// published: an action seen for the first time gets a new map holding the
// same lists. A new array (an out-of-order insert, a prune, a copy) gets a
// new index.
type contactIndex struct {
	actions map[Name]*positions
	shared  []int32 // the array the lists were built in (buildIndex)
	// ownRoom is the room of the lists' own arrays (those that moved out
	// of shared or were never in it), kept as they grow so that IndexRoom
	// costs nothing; the versions that share the lists share it.
	ownRoom *atomic.Int64
}

// positions is one action's list. arr is replaced when it grows; n is
// stored after arr and after the element, and read first. own is set once
// arr is the list's own array, not its part of the index's shared one.
type positions struct {
	arr atomic.Pointer[[]int32]
	n   atomic.Int32
	own atomic.Bool
}

// add appends pos and returns the room it added to the list's own array:
// 0, or, when the list moved to a larger array, that array's length less
// the old one's if the old one was already its own.
func (p *positions) add(pos int32) int {
	n := p.n.Load()
	arr := *p.arr.Load()
	added := 0
	if int(n) == len(arr) {
		grown := make([]int32, max(2*len(arr), 4))
		copy(grown, arr)
		added = len(grown)
		if p.own.Load() {
			added -= len(arr)
		}
		arr = grown
		arr[n] = pos
		p.own.Store(true)
		p.arr.Store(&arr)
	} else {
		arr[n] = pos
	}
	p.n.Store(n + 1)
	return added
}

// load returns the positions published so far.
func (p *positions) load() []int32 {
	n := p.n.Load()
	return (*p.arr.Load())[:n]
}

func newPositions() *positions {
	p := new(positions)
	var arr []int32
	p.arr.Store(&arr)
	p.own.Store(true)
	return p
}

// buildIndex indexes cs, or returns nil when cs is too short to need it.
// A cache miss builds one, so it takes a handful of allocations, not
// several per action: the lists share one array, each a full slice of it
// (the first append to a list moves it to an array of its own), and their
// headers come from a few slabs.
func buildIndex(cs []Contact) *contactIndex {
	if len(cs) < indexMin {
		return nil
	}
	// First pass: each contact's list, and the lists' lengths (in n).
	var small [256]*positions
	lists := small[:0]
	if len(cs) > len(small) {
		lists = make([]*positions, 0, len(cs))
	}
	// The index and its room counter in one allocation.
	b := new(struct {
		contactIndex
		room atomic.Int64
	})
	x := &b.contactIndex
	x.actions, x.ownRoom = make(map[Name]*positions), &b.room
	var slab []positions
	for i := range cs {
		p := x.actions[cs[i].Action]
		if p == nil {
			if len(slab) == cap(slab) {
				slab = make([]positions, 0, 16)
			}
			slab = slab[:len(slab)+1]
			p = &slab[len(slab)-1]
			x.actions[cs[i].Action] = p
		}
		p.n.Add(1)
		lists = append(lists, p)
	}
	// Each list's share of the array.
	all := make([]int32, len(cs))
	x.shared = all
	headers := make([][]int32, 0, len(x.actions))
	off := int32(0)
	for _, p := range x.actions {
		n := p.n.Load()
		headers = append(headers, all[off:off+n:off+n])
		p.arr.Store(&headers[len(headers)-1])
		p.n.Store(0)
		off += n
	}
	// Second pass: the positions.
	for i, p := range lists {
		n := p.n.Load()
		(*p.arr.Load())[n] = int32(i)
		p.n.Store(n + 1)
	}
	return x
}

// with returns the index with position pos of action added: x itself, or
// a new index sharing x's lists when action is new.
func (x *contactIndex) with(action Name, pos int32) *contactIndex {
	if p := x.actions[action]; p != nil {
		x.ownRoom.Add(int64(p.add(pos)))
		return x
	}
	m := make(map[Name]*positions, len(x.actions)+1)
	for a, p := range x.actions {
		m[a] = p
	}
	p := newPositions()
	x.ownRoom.Add(int64(p.add(pos)))
	m[action] = p
	return &contactIndex{actions: m, shared: x.shared, ownRoom: x.ownRoom}
}

// IndexedActions is the number of actions in c's contact index, 0
// without one. It changes when the index appears or an action is new to
// it, so a store can tell cheaply that the index's memory changed.
func (c *Customer) IndexedActions() int {
	if c == nil || c.index == nil {
		return 0
	}
	return len(c.index.actions)
}

// IndexRoom is the room of c's contact index's position lists (the
// shared array they were built in and the capacities of the arrays of
// those that moved out of it or never were in it, summed), 0 without
// one: with IndexedActions, what a store needs to account for the
// index's memory. O(1): the index keeps the sum as its lists grow. It
// is the newest version's room, shared by the older versions of c.
func (c *Customer) IndexRoom() int {
	if c == nil || c.index == nil {
		return 0
	}
	return len(c.index.shared) + int(c.index.ownRoom.Load())
}

// CountContacts counts the contacts of action with outcome o whose time is
// within [from, to], stopping at limit (a cap needs to know whether it is
// reached, not by how much). It reads the newest first.
func (c *Customer) CountContacts(action string, o Outcome, from, to, limit int64) int64 {
	if c == nil || limit <= 0 {
		return 0
	}
	name, ok := LookupName(action)
	if !ok {
		return 0 // no contact has it
	}
	return c.countContacts(name, o, from, to, limit)
}

func (c *Customer) countContacts(action Name, o Outcome, from, to, limit int64) int64 {
	if o != Served && c.Outcomes != nil && o < 8 && c.Outcomes[action]&(1<<o) == 0 {
		return 0
	}
	cs := c.Contacts
	var n int64
	if x := c.index; x != nil {
		p := x.actions[action]
		if p == nil {
			return 0
		}
		ps := p.load()
		for i := len(ps) - 1; i >= 0 && n < limit; i-- {
			pos := int(ps[i])
			if pos >= len(cs) {
				continue // appended by a newer version
			}
			k := &cs[pos]
			if k.At < from {
				break
			}
			if k.At <= to && k.Outcome == o {
				n++
			}
		}
		return n
	}
	for i := len(cs) - 1; i >= 0 && cs[i].At >= from && n < limit; i-- {
		if k := &cs[i]; k.At <= to && k.Outcome == o && k.Action == action {
			n++
		}
	}
	return n
}

// HadOutcome reports whether the customer gave outcome o for action at or
// before time to.
func (c *Customer) HadOutcome(action string, o Outcome, to int64) bool {
	return c.CountContacts(action, o, math.MinInt64, to, 1) > 0
}

// Summarize rebuilds what a store keeps beside the contacts, the Outcomes
// summary and the contact index, after the owner of c has set its
// Contacts.
func (c *Customer) Summarize() {
	c.Outcomes = SummarizeOutcomes(c.Contacts)
	c.index = buildIndex(c.Contacts)
}
