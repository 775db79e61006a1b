package store

import (
	"math"
	"sync/atomic"
)

// indexMin is the length of history from which a customer keeps a
// contact index: below it a scan is as fast.
const indexMin = 32

// contactIndex chains, for each action, the positions of its contacts in
// a customer's Contacts, newest first, so that counting the contacts of
// one action (caps, shown(), outcomes()) costs the contacts of that action
// in the window, not the whole history: a customer decided for thousands
// of times (a bot, a shared id) has up to MaxContacts contacts, and a
// ruleset with many capped actions counts for each of them.
//
// It holds no pointer but a few headers: its arrays are of int32, so the
// garbage collector, which marks every cached customer in each cycle,
// does not read them (a customer's index of 100 contacts over 10 actions
// was about 900 bytes of pointers to scan as per-action lists).
//
// It follows the sharing rules of Customer: versions that share a
// Contacts array share the chains. The single writer of the newest
// version (AppendContacts) writes the new position's link, then publishes
// it as its action's newest; readers of older versions skip positions at
// or beyond their own len(Contacts). The slot of an action is its index
// in names, which the writer appends to as it does to Contacts (in place
// when the array has room; a version reads only its own names). A
// customer with few actions is looked up by a scan of names, one cache
// line; beyond indexScan actions, byName holds the slots of the first
// ones, never modified once published and rebuilt only every indexScan
// new actions, and the newer ones are scanned. A new array (an
// out-of-order insert, a prune, a copy) gets new chains.
type contactIndex struct {
	names  []Name         // names[slot] is the action of slot in chains.last
	byName map[Name]int32 // the slots of names[:len(byName)]; nil while there are few
	ch     *chains
}

// indexScan is the most names an index looks up by a scan: 16 Names
// are a cache line.
const indexScan = 16

// slot returns the slot of action, if the index has it.
func (x *contactIndex) slot(action Name) (int32, bool) { return slotIn(x.names, x.byName, action) }

// slotIn returns the slot of action in names, whose first len(byName)
// are in byName.
func slotIn(names []Name, byName map[Name]int32, action Name) (int32, bool) {
	from := 0
	if byName != nil {
		if slot, ok := byName[action]; ok {
			return slot, true
		}
		from = len(byName)
	}
	for i, a := range names[from:] {
		if a == action {
			return int32(from + i), true
		}
	}
	return 0, false
}

// mapNames returns a map of the slots of names.
func mapNames(names []Name) map[Name]int32 {
	m := make(map[Name]int32, len(names))
	for i, a := range names {
		m[a] = int32(i)
	}
	return m
}

// chains are the links of an index, shared by the versions of a history.
// prev and last are replaced when they grow (the values copied), so a
// reader that loads last's slot, then prev, finds every link it follows.
type chains struct {
	prev atomic.Pointer[[]int32]        // per position: the previous position of its action, -1: none; len is the room
	last atomic.Pointer[[]atomic.Int32] // per slot: its action's newest position; -1: none
	n    atomic.Int32                   // positions linked
	room atomic.Int32                   // len(prev) + cap(last), for IndexRoom
}

// link makes pos the newest position of slot; it returns false when pos
// is not the next position to link, that is when a newer version that was
// then discarded (its write failed) linked positions beyond the current
// newest: the caller rebuilds the index. room is the capacity of the
// contacts' array, which prev grows to when it is full, so that the links
// grow when the history's array does (a store re-estimates a customer's
// memory then).
func (ch *chains) link(slot, pos, room int32) bool {
	if ch.n.Load() != pos {
		return false
	}
	prev := *ch.prev.Load()
	if int(pos) == len(prev) {
		grown := make([]int32, max(room, pos+1))
		copy(grown, prev)
		ch.room.Add(int32(len(grown) - len(prev)))
		ch.prev.Store(&grown)
		prev = grown
	}
	last := *ch.last.Load()
	prev[pos] = last[slot].Load()
	ch.n.Store(pos + 1)
	last[slot].Store(pos) // publishes prev[pos]
	return true
}

// addSlot appends a slot with no position to last and returns it.
func (ch *chains) addSlot() int32 {
	last := *ch.last.Load()
	if len(last) == cap(last) {
		grown := make([]atomic.Int32, len(last), max(2*cap(last), 4))
		for i := range last {
			grown[i].Store(last[i].Load())
		}
		ch.room.Add(int32(cap(grown) - cap(last)))
		last = grown
	}
	last = last[:len(last)+1]
	last[len(last)-1].Store(-1)
	ch.last.Store(&last)
	return int32(len(last) - 1)
}

// buildIndex indexes cs, or returns nil when cs is too short to need it.
// A cache miss builds one, so it takes a handful of allocations whatever
// the number of actions: the three arrays (links, newest positions,
// names), the index with its chains and their first headers, and past
// indexScan actions the map and its groups.
func buildIndex(cs []Contact) *contactIndex {
	if len(cs) < indexMin {
		return nil
	}
	b := new(struct {
		contactIndex
		chains
		prev []int32 // the first headers the chains point to
		last []atomic.Int32
	})
	x := &b.contactIndex
	x.ch = &b.chains
	prev := make([]int32, cap(cs)) // the history's room
	var small [64]int32
	last := small[:0]
	var nameBuf [64]Name
	names := nameBuf[:0]
	var byName map[Name]int32 // while building, of every name
	for i := range cs {
		a := cs[i].Action
		slot, ok := slotIn(names, byName, a)
		if !ok {
			slot = int32(len(last))
			names = append(names, a)
			if byName != nil {
				byName[a] = slot
			} else if len(names) > indexScan {
				byName = mapNames(names)
			}
			last = append(last, -1)
		}
		prev[i] = last[slot]
		last[slot] = int32(i)
	}
	own := make([]atomic.Int32, len(last))
	for i, pos := range last {
		own[i].Store(pos)
	}
	x.names = append(make([]Name, 0, len(names)+4), names...) // off the stack, with room
	x.byName = byName
	b.prev, b.last = prev, own
	x.ch.prev.Store(&b.prev)
	x.ch.last.Store(&b.last)
	x.ch.n.Store(int32(len(cs)))
	x.ch.room.Store(int32(len(prev) + cap(own) + cap(x.names)))
	return x
}

// with returns the index with position pos of action linked: x itself,
// a new index sharing x's chains when action is new, or nil when x is
// stale (see chains.link) and must be rebuilt. room is the capacity of
// the contacts' array.
func (x *contactIndex) with(action Name, pos, room int32) *contactIndex {
	if slot, ok := x.slot(action); ok {
		if !x.ch.link(slot, pos, room) {
			return nil
		}
		return x
	}
	// No other version has linked since x (n is pos), so none has added
	// a slot or a name beyond x's: the new slot is len(x.names).
	if x.ch.n.Load() != pos {
		return nil
	}
	slot := x.ch.addSlot()
	if slot != int32(len(x.names)) {
		return nil // not expected (see above); rebuilt all the same
	}
	names := append(x.names, action)
	if cap(names) != cap(x.names) {
		x.ch.room.Add(int32(cap(names) - cap(x.names)))
	}
	byName := x.byName
	if len(names)-len(byName) > indexScan {
		byName = mapNames(names)
	}
	x.ch.link(slot, pos, room)
	return &contactIndex{names: names, byName: byName, ch: x.ch}
}

// IndexedActions is the number of actions in c's contact index, 0
// without one. It changes when the index appears or an action is new to
// it, so a store can tell cheaply that the index's memory changed.
func (c *Customer) IndexedActions() int {
	if c == nil || c.index == nil {
		return 0
	}
	return len(c.index.names)
}

// IndexMapped is the number of actions in the map of c's contact index
// (the others are found by a scan), 0 without one: with IndexedActions
// and IndexRoom, what a store needs to account for the index's memory.
func (c *Customer) IndexMapped() int {
	if c == nil || c.index == nil {
		return 0
	}
	return len(c.index.byName)
}

// IndexRoom is the room of c's contact index's arrays of 4-byte values
// (its links, one per contact and as many as the history has room for,
// and its newest position and name per action), 0 without one: with
// IndexMapped, what a store needs to account for the index's memory. It
// is the newest version's room, shared by the older versions of c.
func (c *Customer) IndexRoom() int {
	if c == nil || c.index == nil {
		return 0
	}
	return int(c.index.ch.room.Load())
}

// CountContacts counts the contacts of action with outcome o whose time is
// within [from, to], stopping at limit (a cap needs to know whether it is
// reached, not by how much). It reads the newest first.
func (c *Customer) CountContacts(action string, o Outcome, from, to, limit int64) int64 {
	name, ok := LookupName(action)
	if !ok {
		return 0 // no contact has it
	}
	return c.CountContactsOf(name, o, from, to, limit)
}

// CountContactsOf is CountContacts for the action's Name, which a caller
// that counts the same actions again and again looks up once.
func (c *Customer) CountContactsOf(action Name, o Outcome, from, to, limit int64) int64 {
	if c == nil || limit <= 0 {
		return 0
	}
	return c.countContacts(action, o, from, to, limit)
}

func (c *Customer) countContacts(action Name, o Outcome, from, to, limit int64) int64 {
	if o != Served && c.Outcomes != nil && o < 8 && c.Outcomes[action]&(1<<o) == 0 {
		return 0
	}
	cs := c.Contacts
	var n int64
	if x := c.index; x != nil {
		slot, ok := x.slot(action)
		if !ok {
			return 0
		}
		// last before prev: see chains.
		pos := (*x.ch.last.Load())[slot].Load()
		prev := *x.ch.prev.Load()
		for ; pos >= 0 && n < limit; pos = prev[pos] {
			if int(pos) >= len(cs) {
				continue // linked by a newer version
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

// MayHaveOutcome reports whether some contact of c may have outcome o with
// an action that counts accepts. It is false only when the Outcomes
// summary rules every such contact out, so that a count of them can skip
// the history: o is not Served (which the summary leaves out), and no
// action counts accepts has o in it. Without a summary it is true.
func (c *Customer) MayHaveOutcome(o Outcome, counts func(action string) bool) bool {
	if c.Outcomes == nil || o == Served || o >= 8 {
		return true
	}
	for a, bits := range c.Outcomes {
		if bits&(1<<o) != 0 && counts(a.String()) {
			return true
		}
	}
	return false
}

// Summarize rebuilds what a store keeps beside the contacts, the Outcomes
// summary and the contact index, after the owner of c has set its
// Contacts.
func (c *Customer) Summarize() {
	c.Outcomes = SummarizeOutcomes(c.Contacts)
	c.index = buildIndex(c.Contacts)
}
