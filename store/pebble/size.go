package pebblestore

import (
	"slices"
	"unsafe"

	"github.com/nudge-engine/nudge/store"
)

// The cache's cost of a customer is customerBytes: an estimate of the heap
// its decoded form holds, so that Options.CacheMB bounds the memory the
// cache keeps alive rather than a multiple of it. It is computed on every
// cache fill and every write but a Record that appends in place (see
// cacheLocked), so it does arithmetic only: no reflection, one pass over
// the attributes (nested values included) and the event types, and the
// contacts by their length and capacity. TestCustomerBytes holds it
// against runtime.MemStats for decoded customers.
//
// It models the layout of Go 1.24 to 1.26 on 64-bit platforms (a change
// of the runtime's layout shows in TestCustomerBytes):
//
//   - An allocation takes its size class (internal/runtime/gc), plus an
//     8-byte header when it holds pointers and is over 512 bytes; pointer-
//     free objects under 16 bytes share 16-byte blocks (the tiny
//     allocator), so they count their own size; over 32 KiB, whole pages.
//   - A map (swiss table, internal/runtime/maps) is a 48-byte header and,
//     up to 8 entries, one group of 8 slots with an 8-byte control word;
//     beyond that, tables of a power-of-two number of slots, filled to at
//     most 7/8, of at most 1024 slots each, behind a directory.
//   - An interface holding a string, a slice or a non-zero float64 points
//     to a boxed copy of it (16, 24 and 8 bytes); bool and nil box nothing.
//   - The decoder slices every key and string value out of one copy of the
//     main record (codec.go), so they cost the record once. A customer
//     written through the API holds its strings apart, in about as many
//     bytes as they take in its new record. Either way the strings cost
//     the larger of the record and the sum of their lengths.
//   - Contacts' actions and channels are names (store.Name), shared by
//     every customer, so they are not counted; each contact counts its
//     store.Contact in the slice's capacity, a pointer-free array.
//   - A long history keeps a contact index (store/index.go): a 112-byte
//     object, arrays of 4-byte values (their room: Customer.IndexRoom),
//     and past a few actions a map slot per action (Customer.IndexMapped).
const (
	sizeClassMax   = 32768 // the largest size class
	pageBytes      = 8192  // large objects take whole pages
	mallocHeader   = 8     // the type header of pointerful objects over headerMin
	headerMin      = 512
	tinyMax        = 16 // pointer-free objects under this share blocks
	mapHeaderBytes = 48 // internal/runtime/maps.Map
	mapTableBytes  = 32 // internal/runtime/maps.table
	groupSlots     = 8  // slots per map group; each group has an 8-byte control word
	maxTableSlots  = 1024
	stringHeader   = 16
	sliceHeader    = 24
	ifaceBytes     = 16

	// Slots of the maps of a customer: key and element, padded to 8.
	attrSlot    = 16 + 16 // string → any
	eventSlot   = 16 + 8  // string → *EventStats
	outcomeSlot = 4 + 4   // store.Name → uint8
	indexSlot   = 4 + 4   // store.Name → int32

	indexStruct = 112 // store.contactIndex, its chains and their first headers

	customerStruct     = int(unsafe.Sizeof(store.Customer{}))
	statsStruct        = int(unsafe.Sizeof(store.EventStats{}))
	dayStruct          = int(unsafe.Sizeof(store.DayBucket{}))
	stampStruct        = int(unsafe.Sizeof(store.Stamp{}))
	flatEventsStruct   = int(unsafe.Sizeof(flatEvents{}))
	encodedAttrsStruct = int(unsafe.Sizeof(encodedAttrs{}))
	flatTypeStruct     = int(unsafe.Sizeof(flatType{}))
	contactStruct      = int(unsafe.Sizeof(store.Contact{}))
)

// sizeClasses are the sizes of Go's small-object size classes
// (internal/runtime/gc.SizeClassToSize in Go 1.26).
var sizeClasses = [...]int{
	8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224,
	240, 256, 288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896,
	1024, 1152, 1280, 1408, 1536, 1792, 2048, 2304, 2688, 3072, 3200, 3456,
	4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880,
	12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264,
	28672, 32768,
}

// allocBytes is the heap an allocation of n bytes takes; ptrs says whether
// the object holds pointers.
func allocBytes(n int, ptrs bool) int {
	switch {
	case n <= 0:
		return 0
	case !ptrs && n < tinyMax:
		return n
	case ptrs && n > headerMin && n <= sizeClassMax-mallocHeader:
		n += mallocHeader
	case n > sizeClassMax:
		return (n + pageBytes - 1) &^ (pageBytes - 1)
	}
	i, _ := slices.BinarySearch(sizeClasses[:], n) // n <= sizeClassMax here
	return sizeClasses[i]
}

// mapBytes is the heap of a map of n entries whose slots take slot bytes,
// as made with a size hint of n or grown to n (the sizes agree but for
// maps beyond one table, which splitting leaves between half and 7/8
// full).
func mapBytes(n, slot int) int {
	b := allocBytes(mapHeaderBytes, true)
	if n == 0 {
		return b
	}
	group := groupSlots + groupSlots*slot
	if n <= groupSlots {
		return b + allocBytes(group, true)
	}
	slots := 1
	for slots*7 < n*8 { // the load factor is 7/8
		slots <<= 1
	}
	tables := 1
	if slots > maxTableSlots {
		tables, slots = slots/maxTableSlots, maxTableSlots
	}
	return b + allocBytes(8*tables, true) +
		tables*(allocBytes(mapTableBytes, true)+allocBytes(slots/groupSlots*group, true))
}

// entryBytes is the heap of a cache entry apart from its customer: the
// entry and ristretto's bookkeeping of it (its stored item and the
// policy's cost, in maps; the key is kept as a hash, not as the id).
// Measured: about 200 bytes.
const entryBytes = 200

// entryCost is the cache's cost of the entry of c (nil: an id known not to
// exist), whose main record takes record bytes.
func entryCost(c *store.Customer, record int) int64 {
	if c == nil {
		return entryBytes
	}
	return int64(entryBytes + customerBytes(c, record))
}

// customerBytes estimates the heap that c holds (see above). record is the
// size of the main record c was decoded from or written as; 0 if unknown.
// It does not count what c shares with other versions of the customer
// (only the newest is cached) nor the cache's own bookkeeping.
func customerBytes(c *store.Customer, record int) int {
	// The id is the request's, held by the customer.
	n := allocBytes(customerStruct, true) + allocBytes(len(c.ID), false)
	strs := 0 // bytes of the keys and string values
	switch a := encodedOf(c); {
	case c.Attributes != nil:
		n += objectBytes(c.Attributes, &strs)
	case a != "":
		// The holder; its bytes are the record's, or a copy of them
		// (stage). What the engine derives from them is small and not
		// counted.
		n += allocBytes(encodedAttrsStruct, true)
		strs += len(a)
	}
	if f, _ := c.EncodedEvents.(*flatEvents); c.Events == nil && f != nil {
		n += allocBytes(flatEventsStruct, true) + allocBytes(len(f.names), false) +
			allocBytes(len(f.types)*flatTypeStruct, false) +
			allocBytes(cap(f.days)*dayStruct, false) + allocBytes(cap(f.recent)*stampStruct, false)
	}
	if c.Events != nil {
		// The decoder makes one array of all the EventStats.
		n += mapBytes(len(c.Events), eventSlot) + allocBytes(len(c.Events)*statsStruct, true)
		for t, s := range c.Events {
			strs += len(t)
			n += allocBytes(cap(s.Days)*dayStruct, false) + allocBytes(cap(s.Recent)*stampStruct, false)
		}
	}
	n += allocBytes(cap(c.Contacts)*contactStruct, false)
	if c.Outcomes != nil {
		n += mapBytes(len(c.Outcomes), outcomeSlot)
	}
	if c.IndexedActions() > 0 {
		n += allocBytes(indexStruct, true) + 4*c.IndexRoom()
		if m := c.IndexMapped(); m > 0 {
			n += mapBytes(m, indexSlot)
		}
	}
	return n + allocBytes(max(strs, record), false)
}

// objectBytes is the heap of an attribute object but its strings' bytes,
// which it adds to *strs.
func objectBytes(m map[string]any, strs *int) int {
	n := mapBytes(len(m), attrSlot)
	for k, v := range m {
		*strs += len(k)
		n += valueBytes(v, strs)
	}
	return n
}

// valueBytes is the heap of an attribute value held in an interface but
// its strings' bytes, which it adds to *strs.
func valueBytes(v any, strs *int) int {
	switch v := v.(type) {
	case string:
		if v == "" {
			return 0 // the runtime's shared zero value
		}
		*strs += len(v)
		return allocBytes(stringHeader, true) // the boxed header
	case float64:
		if v == 0 {
			return 0
		}
		return 8 // tiny allocator
	case []any:
		n := allocBytes(sliceHeader, true) + allocBytes(cap(v)*ifaceBytes, true)
		for _, e := range v {
			n += valueBytes(e, strs)
		}
		return n
	case map[string]any:
		return objectBytes(v, strs)
	}
	return 0 // nil, bool: no box
}
