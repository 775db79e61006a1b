package pebblestore

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/nudge-engine/nudge/store"
)

// A customer is stored as one main record and one contact log.
//
// The main record is one Pebble value under keyCustomer:
//
//	version  byte (recordV2)
//	attrs    value                      (see appendValue; null for no attributes)
//	events   uvarint n, then n × (type string, count varint, sum float,
//	         first varint, last-first varint,
//	         uvarint d, d × (day delta varint, count uvarint, sum float),
//	         uvarint r, r × (time delta varint, value float))
//
// The contact log is one Pebble value under keyHistory: 'h' and the id (a
// string, so that no id's key is a prefix of another's). It is a sequence
// of contacts, each self-delimiting:
//
//	version  byte (contactV2)
//	outcome  byte
//	at       varint (Unix ns)
//	action   string
//	channel  string
//
// Recording a decision's contacts writes them as one Pebble merge operand
// under the customer's log, which Pebble's default merger concatenates to
// what is there: it needs no read of the customer and never rewrites the
// main record. An import, and a prune, set the whole log. A cache miss is
// two point reads (the main record, then the log) and one decode; the log
// lists contacts in the order they were recorded, which decodeContacts
// puts in time order (stably, so that contacts at one time keep the order
// they had in Contacts). A customer's contact log exists only while its
// main record does (a first contact writes an empty main record in the
// same batch), so an unknown id costs one point read, which the bloom
// filters answer. Layout 2 kept one key per contact under 'k'; Open
// converts it (migrateV2). Layout 1 embedded the contacts in the main
// record and is not read (initMeta).
//
// Strings are a uvarint length and the bytes. Floats that are integers or
// whole cents (0, counts, prices such as 19.99) are a varint of 1 to 4
// bytes, others their 8 bytes (appendFloat).
// Times are deltas from the previous time of the same list (days from the
// previous day), signed so that out-of-order input still round-trips. The
// customer id is the key, so it is not repeated in the value.
//
// Attributes use a small self-describing binary form rather than JSON: it is
// about half the size of the JSON text, and decoding it is a tag switch over
// a string with no reflection and no escaping, several times faster than
// encoding/json building the same map[string]any (see BenchmarkDecode). It
// keeps exactly the JSON data model (null, bool, float64, string, []any,
// map[string]any), so what the engine sees from the cache and from disk is
// the same; other Go values are normalized into it on write (normalize).
//
// The decoder converts the value to one string and slices every key and
// string out of it: decoding allocates per map, slice and event type, never
// per string. A customer read from Pebble keeps its attributes so encoded,
// a slice of the record (attrs, store.EncodedAttributes), and decodes only
// the values the rules ask for; a write keeps them as it encoded them
// (stage). Its event aggregates are decoded into pointer-free arrays
// (flatEvents, store.EncodedEvents) that rules read without decoding. The
// contact decoder makes actions and channels names (store.Name).
const (
	recordV2  = 2
	contactV1 = 1 // a contact value of layout 2 (migrateV2)
	contactV2 = 2
)

// Value tags of the attribute encoding.
const (
	tagNull byte = iota
	tagFalse
	tagTrue
	tagFloat
	tagString
	tagArray
	tagObject
)

// maxDepth bounds the nesting of attribute values, in encoding and decoding
// (the server's limit is 64).
const maxDepth = 100

var errCorrupt = errors.New("corrupt record")

// appendCustomer appends the main record of c (its id and contacts
// excluded) to b.
func appendCustomer(b []byte, c *store.Customer) ([]byte, error) {
	return appendRecord(b, c, kept{})
}

// kept is what decodeEvents leaves encoded in a main record, for
// appendRecord to write back byte for byte: the attributes, and the event
// types that the write does not touch.
type kept struct {
	attrs  string   // empty: none kept
	events []string // runs of encoded event types, slices of the record
	n      int      // how many types events holds
}

// appendRecord is appendCustomer, with what k keeps taken as encoded: the
// attributes instead of c's when k.attrs is not empty, and k's event
// types besides c's (which must not repeat them).
func appendRecord(b []byte, c *store.Customer, k kept) ([]byte, error) {
	b = append(b, recordV2)
	var err error
	enc := encodedOf(c)
	switch {
	case k.attrs != "":
		b = append(b, k.attrs...)
	case c.Attributes == nil && enc != "":
		b = append(b, enc...)
	case c.AttributeMap() == nil:
		b = append(b, tagNull)
	default:
		if b, err = appendObject(b, c.AttributeMap(), 0); err != nil {
			return b, err
		}
	}

	if f, ok := c.EncodedEvents.(*flatEvents); ok && c.Events == nil {
		b = binary.AppendUvarint(b, uint64(len(f.types)+k.n))
		for i := range f.types {
			name, s := f.stats(i)
			b = appendEventStats(b, name, &s)
		}
	} else {
		b = binary.AppendUvarint(b, uint64(len(c.Events)+k.n))
		types := make([]string, 0, len(c.Events))
		for t := range c.Events {
			types = append(types, t)
		}
		sort.Strings(types) // deterministic output
		for _, t := range types {
			b = appendEventStats(b, t, c.Events[t])
		}
	}
	for _, run := range k.events {
		b = append(b, run...)
	}
	return b, nil
}

// appendEventStats appends the aggregates s of event type t.
func appendEventStats(b []byte, t string, s *store.EventStats) []byte {
	b = appendString(b, t)
	b = binary.AppendVarint(b, s.Count)
	b = appendFloat(b, s.Sum)
	b = binary.AppendVarint(b, s.First)
	b = binary.AppendVarint(b, s.Last-s.First)
	b = binary.AppendUvarint(b, uint64(len(s.Days)))
	var prevDay int32
	for _, d := range s.Days {
		b = binary.AppendVarint(b, int64(d.Day)-int64(prevDay))
		b = binary.AppendUvarint(b, uint64(d.Count))
		b = appendFloat(b, d.Sum)
		prevDay = d.Day
	}
	b = binary.AppendUvarint(b, uint64(len(s.Recent)))
	prev := s.Last
	for _, r := range s.Recent {
		b = binary.AppendVarint(b, r.At-prev)
		b = appendFloat(b, r.Value)
		prev = r.At
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Float kinds, in the low two bits of a float's first uvarint.
const (
	floatInt   = 0 // the rest is the zigzag integer
	floatCents = 1 // the rest is the zigzag number of hundredths
	floatBits  = 2 // 8 little-endian bytes of IEEE bits follow
)

// appendFloat encodes f exactly in as few bytes as is cheap to find:
// integers and amounts in cents (the usual event values and prices) as a
// varint, anything else as its 8 bytes.
func appendFloat(b []byte, f float64) []byte {
	if math.Abs(f) < 1<<50 && !(f == 0 && math.Signbit(f)) {
		if n := int64(f); float64(n) == f {
			return binary.AppendUvarint(b, zigzag(n)<<2|floatInt)
		}
		if n := int64(math.Round(f * 100)); float64(n)/100 == f {
			return binary.AppendUvarint(b, zigzag(n)<<2|floatCents)
		}
	}
	b = append(b, floatBits)
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
}

func zigzag(n int64) uint64 { return uint64(n<<1) ^ uint64(n>>63) }

func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func appendObject(b []byte, m map[string]any, depth int) ([]byte, error) {
	b = append(b, tagObject)
	b = binary.AppendUvarint(b, uint64(len(m)))
	for k, v := range m {
		b = appendString(b, k)
		var err error
		if b, err = appendValue(b, v, depth+1); err != nil {
			return b, err
		}
	}
	return b, nil
}

// appendValue appends one attribute value of the JSON data model.
func appendValue(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return b, errors.New("attributes nested too deeply")
	}
	switch v := v.(type) {
	case nil:
		return append(b, tagNull), nil
	case bool:
		if v {
			return append(b, tagTrue), nil
		}
		return append(b, tagFalse), nil
	case float64:
		return appendFloat(append(b, tagFloat), v), nil
	case string:
		return appendString(append(b, tagString), v), nil
	case []any:
		b = append(b, tagArray)
		b = binary.AppendUvarint(b, uint64(len(v)))
		for _, e := range v {
			var err error
			if b, err = appendValue(b, e, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case map[string]any:
		return appendObject(b, v, depth)
	}
	return b, fmt.Errorf("unsupported attribute type %T", v)
}

// decoder reads a record from a string so that every decoded string can be
// a slice of it.
type decoder struct {
	s   string
	i   int
	err error
	// skip: value and object check and step over attribute values
	// without building them (and return nil).
	skip bool
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.i = len(d.s)
}

func (d *decoder) byte() byte {
	if d.i >= len(d.s) {
		d.fail()
		return 0
	}
	c := d.s[d.i]
	d.i++
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.i < len(d.s) && d.s[d.i] < 0x80 {
		d.i++
		return uint64(d.s[d.i-1])
	}
	var x uint64
	var s uint
	for n := 0; n < binary.MaxVarintLen64; n++ {
		if d.i >= len(d.s) {
			break
		}
		c := d.s[d.i]
		d.i++
		if c < 0x80 {
			if n == binary.MaxVarintLen64-1 && c > 1 {
				break // overflow
			}
			return x | uint64(c)<<s
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	d.fail()
	return 0
}

// skipVarint passes over a varint, failing where uvarint would. One of
// up to 8 bytes (all but the largest) ends at the first of the next 8
// bytes whose high bit is clear.
func (d *decoder) skipVarint() {
	if len(d.s)-d.i >= 8 {
		x := binary.LittleEndian.Uint64([]byte(d.s[d.i : d.i+8]))
		if m := ^x & 0x8080808080808080; m != 0 {
			d.i += bits.TrailingZeros64(m)/8 + 1
			return
		}
	}
	for n := 0; n < binary.MaxVarintLen64 && d.i < len(d.s); n++ {
		c := d.s[d.i]
		d.i++
		if c < 0x80 {
			if n == binary.MaxVarintLen64-1 && c > 1 {
				break // overflow
			}
			return
		}
	}
	d.fail()
}

// skipFloat passes over a float, failing where float would: its kind is
// in the low bits of its first byte, and floatBits is that one byte and
// the 8 bytes of the float.
func (d *decoder) skipFloat() {
	if d.i >= len(d.s) {
		d.fail()
		return
	}
	switch c := d.s[d.i]; {
	case c == floatBits:
		if len(d.s)-d.i < 9 {
			d.fail()
			return
		}
		d.i += 9
	case c&3 == floatInt || c&3 == floatCents:
		d.skipVarint()
	default:
		d.fail()
	}
}

func (d *decoder) varint() int64 {
	ux := d.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

// count reads a length of elements that take at least size bytes each, so
// that a corrupt length cannot make the decoder allocate more than the
// record justifies.
func (d *decoder) count(size int) int {
	n := d.uvarint()
	if n > uint64(len(d.s)-d.i)/uint64(size) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.s)-d.i) {
		d.fail()
		return ""
	}
	s := d.s[d.i : d.i+int(n)]
	d.i += int(n)
	return s
}

func (d *decoder) float() float64 {
	u := d.uvarint()
	switch u & 3 {
	case floatInt:
		return float64(unzigzag(u >> 2))
	case floatCents:
		return float64(unzigzag(u>>2)) / 100
	case floatBits:
		if u == floatBits && len(d.s)-d.i >= 8 {
			f := math.Float64frombits(binary.LittleEndian.Uint64([]byte(d.s[d.i : d.i+8])))
			d.i += 8
			return f
		}
	}
	d.fail()
	return 0
}

func (d *decoder) value(depth int) any {
	if depth > maxDepth {
		d.fail()
		return nil
	}
	switch d.byte() {
	case tagNull:
		return nil
	case tagFalse:
		return false
	case tagTrue:
		return true
	case tagFloat:
		if f := d.float(); !d.skip {
			return f
		}
		return nil
	case tagString:
		if s := d.string(); !d.skip {
			return s
		}
		return nil
	case tagArray:
		n := d.count(1)
		if d.skip {
			for range n {
				d.value(depth + 1)
			}
			return nil
		}
		a := make([]any, n)
		for i := range a {
			a[i] = d.value(depth + 1)
		}
		return a
	case tagObject:
		return d.object(depth)
	}
	d.fail()
	return nil
}

func (d *decoder) object(depth int) map[string]any {
	n := d.count(2)
	if d.skip {
		for range n {
			d.string()
			d.value(depth + 1)
		}
		return nil
	}
	m := make(map[string]any, n)
	for range n {
		k := d.string()
		m[k] = d.value(depth + 1)
		if d.err != nil {
			return nil
		}
	}
	return m
}

// decodeCustomer decodes a main record written by appendCustomer: a
// customer without contacts.
func decodeCustomer(id string, rec string) (*store.Customer, error) {
	d, err := recordDecoder(rec)
	if err != nil {
		return nil, err
	}
	c := &store.Customer{ID: id}
	if a := d.encodedAttributes(); a != "" {
		c.Encoded = encoded(a)
	}
	if f := d.flatEvents(); f != nil {
		c.EncodedEvents = f
	}
	if d.err != nil {
		return nil, d.err
	}
	return c, nil
}

// attrs is an attribute object as a main record encodes it (tagObject
// first), kept encoded as store.EncodedAttributes: a cached customer's
// attributes are one string, which the garbage collector marks without
// scanning, instead of a map of boxed values. It is a slice of the record
// it was decoded from, or a copy of the part of the record written (see
// stage), and it is never modified.
type attrs string

// encodedAttrs is how a customer holds attrs (store.Customer.Encoded): a
// pointer to them and to what the rules engine derived from them alone,
// the values of the segments and conditions that read nothing else, kept
// across the customer's decisions (engine: derivedKeeper). Every version of the
// customer with the same attributes shares it; new attributes are a new
// encodedAttrs, with nothing derived yet. An interface holding a string
// boxes it in a header of its own, so this costs no more objects than
// attrs held directly did.
type encodedAttrs struct {
	attrs
	derived atomic.Value
}

// encoded returns a as a customer holds them; nil for none.
func encoded(a attrs) store.EncodedAttributes {
	if a == "" {
		return nil
	}
	return &encodedAttrs{attrs: a}
}

// Derived returns what a reader keeps derived from the attributes alone.
func (e *encodedAttrs) Derived() *atomic.Value { return &e.derived }

// encodedOf returns c's encoded attributes, "" for none.
func encodedOf(c *store.Customer) attrs {
	if e, ok := c.Encoded.(*encodedAttrs); ok {
		return e.attrs
	}
	return ""
}

// encodedAttributes checks and passes over a main record's attributes,
// and returns them as encoded ("" for none).
func (d *decoder) encodedAttributes() attrs {
	start := d.i
	d.skip = true
	d.attributes()
	d.skip = false
	if d.err != nil || d.s[start] != tagObject {
		return ""
	}
	return attrs(d.s[start:d.i])
}

// Attr implements store.EncodedAttributes: it steps over the other
// attributes, decoding only key's value. The encoding was checked when a
// was made.
func (a attrs) Attr(key string) any {
	d := decoder{s: string(a), i: 1, skip: true}
	for range d.count(2) {
		if d.string() == key {
			d.skip = false
			return d.value(1)
		}
		d.value(1)
	}
	return nil
}

// Scan implements store.EncodedAttributes: one pass over the attributes,
// decoding no value.
func (a attrs) Scan(fn func(key string, at int)) {
	d := decoder{s: string(a), i: 1, skip: true}
	for range d.count(2) {
		key := d.string()
		at := d.i
		d.value(1)
		fn(key, at)
	}
}

// ValueAt implements store.EncodedAttributes.
func (a attrs) ValueAt(at int) any {
	d := decoder{s: string(a), i: at}
	return d.value(1)
}

// NumberAt implements store.EncodedAttributes: a number is decoded as
// ValueAt decodes it, and not boxed.
func (a attrs) NumberAt(at int) (float64, bool) {
	if at >= len(a) || a[at] != tagFloat {
		return 0, false
	}
	d := decoder{s: string(a), i: at + 1}
	return d.float(), true
}

// Map implements store.EncodedAttributes.
func (a attrs) Map() map[string]any {
	d := decoder{s: string(a)}
	return d.attributes()
}

// Len implements store.EncodedAttributes.
func (a attrs) Len() int {
	d := decoder{s: string(a), i: 1}
	return d.count(2)
}

// recordDecoder returns a decoder of main record rec past its version.
func recordDecoder(rec string) (decoder, error) {
	d := decoder{s: rec}
	if v := d.byte(); v != recordV2 {
		if d.err != nil {
			return d, d.err
		}
		return d, fmt.Errorf("unknown record version %d", v)
	}
	return d, nil
}

// attributes decodes a main record's attributes (nil: none, or skipped).
func (d *decoder) attributes() map[string]any {
	switch d.byte() {
	case tagNull:
		return nil
	case tagObject:
		return d.object(0)
	}
	d.fail()
	return nil
}

// decodeEvents decodes main record rec for a write of events of the given
// types: it returns a customer with the record's events of those types
// alone, and keeps the attributes and the other types as encoded (slices
// of rec), for appendRecord. An event written to a customer that is not
// cached needs nothing else; decoding the attributes and the untouched
// aggregates to encode them again cost most of such a write.
func decodeEvents(id string, rec string, types []string) (*store.Customer, kept, error) {
	d, err := recordDecoder(rec)
	if err != nil {
		return nil, kept{}, err
	}
	start := d.i
	d.skip = true
	d.attributes()
	d.skip = false
	k := kept{attrs: rec[start:d.i]}
	c := &store.Customer{ID: id}
	run := -1 // where the current run of kept types starts
	for range d.count(6) {
		at := d.i
		t := d.string()
		if slices.Contains(types, t) {
			if run >= 0 {
				k.events = append(k.events, rec[run:at])
				run = -1
			}
			if c.Events == nil {
				c.Events = make(map[string]*store.EventStats, len(types))
			}
			s := new(store.EventStats)
			d.eventStats(s)
			c.Events[t] = s
		} else {
			if run < 0 {
				run = at
			}
			d.eventStats(nil)
			k.n++
		}
		if d.err != nil {
			break
		}
	}
	if run >= 0 {
		k.events = append(k.events, rec[run:d.i])
	}
	if err := d.end(); err != nil {
		return nil, kept{}, err
	}
	return c, k, nil
}

// end is the decoder's error, or errCorrupt if input is left over.
func (d *decoder) end() error {
	if d.err == nil && d.i != len(d.s) {
		d.fail()
	}
	return d.err
}

// eventStats decodes the aggregates of one event type into s, or skips
// them if s is nil.
func (d *decoder) eventStats(s *store.EventStats) {
	if s == nil {
		d.skipStats()
		return
	}
	s.Days, s.Recent = d.appendStats(s, s.Days[:0], s.Recent[:0])
}

// skipStats passes over the aggregates of one event type and returns how
// many day buckets and recent events they hold.
func (d *decoder) skipStats() (days, recent int) {
	d.skipVarint() // count
	d.skipFloat()  // sum
	d.skipVarint() // first
	d.skipVarint() // last
	days = d.count(3)
	for range days {
		d.skipVarint() // day
		d.skipVarint() // count
		d.skipFloat()  // sum
	}
	recent = d.count(2)
	for range recent {
		d.skipVarint() // time
		d.skipFloat()  // value
	}
	return days, recent
}

// appendStats decodes the totals of one event type's aggregates into s,
// and appends its day buckets to days and its recent events to recent.
func (d *decoder) appendStats(s *store.EventStats, days []store.DayBucket, recent []store.Stamp) ([]store.DayBucket, []store.Stamp) {
	s.Count = d.varint()
	s.Sum = d.float()
	s.First = d.varint()
	s.Last = s.First + d.varint()
	nd := d.count(3)
	days = slices.Grow(days, nd)
	var day int64
	for range nd {
		day += d.varint()
		days = append(days, store.DayBucket{Day: int32(day), Count: uint32(d.uvarint()), Sum: d.float()})
	}
	nr := d.count(2)
	recent = slices.Grow(recent, nr)
	prev := s.Last
	for range nr {
		prev += d.varint()
		recent = append(recent, store.Stamp{At: prev, Value: d.float()})
	}
	return days, recent
}

// keyHistory appends the key of a customer's contact log: 'h' and the id
// as a string.
func keyHistory(b []byte, id string) []byte {
	return appendString(append(b, 'h'), id)
}

// appendContacts appends the log entries of cts (see the package comment).
func appendContacts(b []byte, cts []store.Contact) []byte {
	for i := range cts {
		k := &cts[i]
		b = append(b, contactV2, byte(k.Outcome))
		b = binary.AppendVarint(b, k.At)
		b = appendString(b, k.Action.String())
		b = appendString(b, k.Channel.String())
	}
	return b
}

// contactDecoder decodes contacts, turning their actions and channels
// into names (store.Name): a history repeats a few of them. It remembers
// the names it met in a small open-addressing table, so that it can stay
// on the stack and decode without allocating; past decoderNames names,
// it looks the others up in the store's table each time.
type contactDecoder struct {
	slots [decoderSlots]slot
	n     int // slots used
}

// slot is one name a decoder met; s == "" is a free slot (the empty name
// is Name 0 and needs no lookup).
type slot struct {
	s    string
	name store.Name
}

const (
	decoderSlots = 64
	decoderNames = decoderSlots * 3 / 4
)

// nameHash is the hash of a decoder's table: a few bytes and the length
// of a name, which tell a ruleset's names apart (they differ at the end:
// winback-20, winback-30; action-0001, action-0002) at a fraction of the
// cost of hashing them whole, which was a fifth of decoding a long
// history. A collision only probes on: a table holds at most
// decoderNames names, whether they come from the rules or from feedback.
func nameHash(b []byte) uint {
	n := len(b)
	h := uint(n)*0x9e3779b1 ^ uint(b[0])<<5 ^ uint(b[n/2])<<10 ^ uint(b[n-1])<<15
	if n > 2 {
		h ^= uint(b[n-2]) << 20
	}
	return h ^ h>>7 ^ h>>17
}

func (cd *contactDecoder) intern(b []byte) store.Name {
	if len(b) == 0 {
		return 0
	}
	i := nameHash(b)
	for {
		i %= decoderSlots
		switch sl := &cd.slots[i]; {
		case sl.s == string(b):
			return sl.name
		case sl.s == "":
			// A stored contact's name is interned whatever the table
			// holds: it was accepted when it was written.
			name := store.InternBytes(b)
			if cd.n < decoderNames {
				*sl = slot{name.String(), name}
				cd.n++
			}
			return name
		}
		i++
	}
}

// bytesString splits a string (uvarint length and bytes) off b.
func bytesString(b []byte) (s, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

// stringAt returns where the bytes of the string (uvarint length and
// bytes) at log[i:] start and end; end is -1 if it is cut short. Names
// are short: a one-byte length is read without binary.Uvarint, and no
// slices are returned, which took a tenth of decoding a long history.
func stringAt(log []byte, i int) (start, end int) {
	switch {
	case i < len(log) && log[i] < 0x80:
		start, end = i+1, i+1+int(log[i])
	case i <= len(log):
		n, k := binary.Uvarint(log[i:])
		if k <= 0 || n > uint64(len(log)-i-k) {
			return 0, -1
		}
		start, end = i+k, i+k+int(n)
	default:
		return 0, -1
	}
	if end > len(log) {
		return 0, -1
	}
	return start, end
}

// decodeContacts appends the contacts of a contact log to cts, in time
// order (see the package comment).
func (cd *contactDecoder) decodeContacts(cts []store.Contact, log []byte) ([]store.Contact, error) {
	first := len(cts)
	sorted := true
	for i := 0; i < len(log); {
		if len(log)-i < 3 || log[i] != contactV2 {
			return cts, errCorrupt
		}
		outcome := store.Outcome(log[i+1])
		at, n := binary.Varint(log[i+2:])
		if n <= 0 {
			return cts, errCorrupt
		}
		as, ae := stringAt(log, i+2+n)
		if ae < 0 {
			return cts, errCorrupt
		}
		cs, ce := stringAt(log, ae)
		if ce < 0 {
			return cts, errCorrupt
		}
		i = ce
		if len(cts) > first && at < cts[len(cts)-1].At {
			sorted = false
		}
		cts = append(cts, store.Contact{Action: cd.intern(log[as:ae]), Outcome: outcome, Channel: cd.intern(log[cs:ce]), At: at})
	}
	if !sorted {
		slices.SortStableFunc(cts[first:], func(a, b store.Contact) int { return cmp.Compare(a.At, b.At) })
	}
	return cts, nil
}

// decodeV2 decodes one contact key and value of layout 2 ('k', the id as
// a string, the time big-endian with the sign bit flipped, a 4-byte
// sequence number; the value contactV1, outcome, action, channel) whose
// key prefix is prefixLen bytes long.
func (cd *contactDecoder) decodeV2(prefixLen int, key, val []byte) (store.Contact, error) {
	if len(key) != prefixLen+8+4 || len(val) < 2 || val[0] != contactV1 {
		return store.Contact{}, errCorrupt
	}
	at := int64(binary.BigEndian.Uint64(key[prefixLen:]) ^ (1 << 63))
	action, rest, ok := bytesString(val[2:])
	if !ok {
		return store.Contact{}, errCorrupt
	}
	channel, rest, ok := bytesString(rest)
	if !ok || len(rest) != 0 {
		return store.Contact{}, errCorrupt
	}
	return store.Contact{Action: cd.intern(action), Outcome: store.Outcome(val[1]), Channel: cd.intern(channel), At: at}, nil
}

// normalize returns attrs in the JSON data model that the record keeps:
// attrs itself when it already is (the common case: the server decodes
// JSON), a converted copy otherwise (ints from YAML, json.Number, structs).
// The cache then holds exactly what a reload from disk would give.
func normalize(attrs map[string]any) (map[string]any, error) {
	if isJSONObject(attrs, 0) {
		return attrs, nil
	}
	raw, err := json.Marshal(attrs)
	if err != nil {
		return nil, fmt.Errorf("cannot encode attributes: %w", err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("cannot encode attributes: %w", err)
	}
	return out, nil
}

func isJSONObject(m map[string]any, depth int) bool {
	for _, v := range m {
		if !isJSONValue(v, depth+1) {
			return false
		}
	}
	return true
}

func isJSONValue(v any, depth int) bool {
	if depth > maxDepth {
		return true // appendValue reports it
	}
	switch v := v.(type) {
	case nil, bool, string:
		return true
	case float64:
		return !math.IsNaN(v) && !math.IsInf(v, 0)
	case []any:
		for _, e := range v {
			if !isJSONValue(e, depth+1) {
				return false
			}
		}
		return true
	case map[string]any:
		return isJSONObject(v, depth)
	}
	return false
}
