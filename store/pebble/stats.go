package pebblestore

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/nudge-engine/nudge/store"
)

// Statistics and budget counters live in memory, where the hot path reads
// them, and are written to Pebble by the sync loop (NoSync, then one WAL
// sync) and by Close: a kill -9 loses at most SyncInterval of them.
//
// Key layout (customer records are under 'c', see keyCustomer, and their
// contact logs under 'h', see keyHistory):
//
//	"mlayout"                   layout version of the database (layoutV3)
//	"msince"                    when statistics started being kept (varint ns)
//	"s"                         every action's counters (one value)
//	"b" action hour             serves of an action in one hour (budgets)
//
// Budgets: serves are counted per minute for the 25 hours before the
// latest serve of the action and per hour beyond, back to MaxDays+2 days.
// ServedSince counts the bucket holding since in full: a window of up to
// 24 hours may count up to one minute of serves before its start, a longer
// one up to one hour. Like the event windows of package store, the error
// is on the side of not serving. On disk an hour's record keeps its
// minutes, so the sync loop writes only the hours that changed (in steady
// state the current one per action) and a restart restores minute detail.

const (
	// layoutV3: one contact log per customer. Layout 2 (a key per
	// contact) is converted at Open; layout 1 (contacts inside the
	// customer records, before any release) is not readable.
	layoutV2 = 2
	layoutV3 = 3
	statsV1  = 1
	budgetV1 = 1

	nsPerMinute = int64(time.Minute)
	nsPerHour   = int64(time.Hour)
	// minuteHours is how many hours before the latest serve keep minutes.
	minuteHours = 25
	// keepHours is how many hours of serves are kept: windows up to
	// MaxDays days, plus a margin for a clock that runs ahead of the latest
	// serve.
	keepHours = (store.MaxDays + 2) * 24
)

var (
	keyLayout = []byte("mlayout")
	keySince  = []byte("msince")
	keyStats  = []byte("s")
)

// hourServes counts the serves of one hour.
type hourServes struct {
	hour  int64 // hours since the Unix epoch
	total int64
	mins  *[60]int64 // per minute; nil once older than minuteHours
}

// serveLog is an action's serves over time.
type serveLog struct {
	hours  []hourServes // ascending by hour
	latest int64        // the latest serve, Unix nanoseconds
	dirty  map[int64]struct{}
	pruned bool // hours were dropped since the last persist
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func (l *serveLog) add(at int64, n int64) {
	if len(l.hours) == 0 || at > l.latest {
		l.latest = at
	}
	hour := floorDiv(at, nsPerHour)
	latestHour := floorDiv(l.latest, nsPerHour)
	if hour < latestHour-keepHours {
		return // beyond any window
	}
	i := sort.Search(len(l.hours), func(i int) bool { return l.hours[i].hour >= hour })
	if i == len(l.hours) || l.hours[i].hour != hour {
		l.hours = slices.Insert(l.hours, i, hourServes{hour: hour})
		if hour >= latestHour-minuteHours {
			l.hours[i].mins = new([60]int64)
		}
	}
	h := &l.hours[i]
	h.total += n
	if h.mins != nil {
		h.mins[floorDiv(at, nsPerMinute)-hour*60] += n
	}
	if l.dirty == nil {
		l.dirty = map[int64]struct{}{}
	}
	l.dirty[hour] = struct{}{}
	l.trim()
}

// trim drops what the latest serve has made too old.
func (l *serveLog) trim() {
	latestHour := floorDiv(l.latest, nsPerHour)
	k := 0
	for k < len(l.hours) && l.hours[k].hour < latestHour-keepHours {
		k++
	}
	if k > 0 {
		l.hours = append(l.hours[:0], l.hours[k:]...)
		l.pruned = true
	}
	for i := range l.hours {
		if l.hours[i].hour >= latestHour-minuteHours {
			break
		}
		l.hours[i].mins = nil
	}
}

// since counts the serves at or after since, the bucket holding since in
// full.
func (l *serveLog) since(since int64) int64 {
	hour := floorDiv(since, nsPerHour)
	i := sort.Search(len(l.hours), func(i int) bool { return l.hours[i].hour >= hour })
	var n int64
	if i < len(l.hours) && l.hours[i].hour == hour && l.hours[i].mins != nil {
		for m := floorDiv(since, nsPerMinute) - hour*60; m < 60; m++ {
			n += l.hours[i].mins[m]
		}
		i++
	}
	for ; i < len(l.hours); i++ {
		n += l.hours[i].total
	}
	return n
}

// keyBudget is "b", the action's length and bytes, and the hour, big-endian
// with the sign bit flipped so that keys sort by time.
func keyBudget(b []byte, action string, hour int64) []byte {
	b = append(b, 'b')
	b = appendString(b, action)
	return binary.BigEndian.AppendUint64(b, uint64(hour)^(1<<63))
}

func appendHour(b []byte, h *hourServes) []byte {
	b = append(b, budgetV1)
	b = binary.AppendVarint(b, h.total)
	if h.mins == nil {
		return append(b, 0)
	}
	var n byte
	for _, c := range h.mins {
		if c != 0 {
			n++
		}
	}
	b = append(b, n)
	for m, c := range h.mins {
		if c != 0 {
			b = append(b, byte(m))
			b = binary.AppendVarint(b, c)
		}
	}
	return b
}

// counters is the in-memory statistics: per action counters and budgets.
type counters struct {
	mu     sync.RWMutex
	stats  map[string]*store.ActionStats
	serves map[string]*serveLog
	dirty  bool // stats changed since the last persist
	all    bool // the last persist failed: write everything next time
}

func (c *counters) record(deltas []store.StatDelta) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range deltas {
		store.CountStat(c.stats, d)
		if d.Outcome == store.Served {
			l := c.serves[d.Action]
			if l == nil {
				l = &serveLog{}
				c.serves[d.Action] = l
			}
			l.add(d.At, 1)
		}
		c.dirty = true
	}
}

func (c *counters) servedSince(action string, since int64) int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if l := c.serves[action]; l != nil {
		return l.since(since)
	}
	return 0
}

func (c *counters) actionStats(action string) (served, convert int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if st := c.stats[action]; st != nil {
		return st.Served, st.Convert
	}
	return 0, 0
}

func (c *counters) copyStats() map[string]*store.ActionStats {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]*store.ActionStats, len(c.stats))
	for id, st := range c.stats {
		out[id] = st.Clone()
	}
	return out
}

// persist adds what changed since the last persist to b. If committing b
// fails, the caller calls failed so that the next persist writes all.
func (c *counters) persist(b *pebble.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dirty || c.all {
		if err := b.Set(keyStats, appendStats(nil, c.stats), nil); err != nil {
			return err
		}
		c.dirty = false
	}
	var key, val []byte
	for _, action := range slices.Sorted(maps.Keys(c.serves)) {
		l := c.serves[action]
		if l.pruned || c.all {
			// Delete every hour before the oldest one kept.
			end := int64(1<<63 - 1)
			if len(l.hours) > 0 {
				end = l.hours[0].hour
			}
			if err := b.DeleteRange(keyBudget(nil, action, -1<<63), keyBudget(nil, action, end), nil); err != nil {
				return err
			}
			l.pruned = false
		}
		for i := range l.hours {
			h := &l.hours[i]
			if _, ok := l.dirty[h.hour]; !ok && !c.all {
				continue
			}
			key = keyBudget(key[:0], action, h.hour)
			val = appendHour(val[:0], h)
			if err := b.Set(key, val, nil); err != nil {
				return err
			}
		}
		clear(l.dirty)
	}
	c.all = false
	return nil
}

func (c *counters) failed() {
	c.mu.Lock()
	c.all = true
	c.mu.Unlock()
}

func appendCounters(b []byte, c *store.Counters) []byte {
	for _, n := range [...]int64{c.Served, c.Click, c.Accept, c.Dismiss, c.Convert, c.Holdout} {
		b = binary.AppendVarint(b, n)
	}
	return appendFloat(b, c.Value)
}

func (d *decoder) counters(c *store.Counters) {
	for _, p := range [...]*int64{&c.Served, &c.Click, &c.Accept, &c.Dismiss, &c.Convert, &c.Holdout} {
		*p = d.varint()
	}
	c.Value = d.float()
}

// appendStats encodes the statistics: version, then per action (sorted)
// its id, counters and variants (sorted) with theirs.
func appendStats(b []byte, stats map[string]*store.ActionStats) []byte {
	b = append(b, statsV1)
	b = binary.AppendUvarint(b, uint64(len(stats)))
	for _, id := range slices.Sorted(maps.Keys(stats)) {
		st := stats[id]
		b = appendString(b, id)
		b = appendCounters(b, &st.Counters)
		b = binary.AppendUvarint(b, uint64(len(st.Variants)))
		for _, v := range slices.Sorted(maps.Keys(st.Variants)) {
			b = appendString(b, v)
			b = appendCounters(b, st.Variants[v])
		}
	}
	return b
}

func decodeStats(rec string) (map[string]*store.ActionStats, error) {
	d := decoder{s: rec}
	if v := d.byte(); v != statsV1 {
		return nil, fmt.Errorf("unknown statistics version %d", v)
	}
	n := d.count(8)
	out := make(map[string]*store.ActionStats, n)
	for range n {
		id := d.string()
		st := &store.ActionStats{}
		d.counters(&st.Counters)
		if nv := d.count(8); nv > 0 {
			st.Variants = make(map[string]*store.Counters, nv)
			for range nv {
				v := d.string()
				vc := &store.Counters{}
				d.counters(vc)
				st.Variants[v] = vc
			}
		}
		if d.err != nil {
			return nil, d.err
		}
		out[id] = st
	}
	err := d.end()
	return out, err
}

// loadCounters reads the statistics and budgets.
func loadCounters(db *pebble.DB) (*counters, error) {
	c := &counters{stats: map[string]*store.ActionStats{}, serves: map[string]*serveLog{}}
	v, closer, err := db.Get(keyStats)
	switch err {
	case nil:
		c.stats, err = decodeStats(string(v))
		closer.Close()
		if err != nil {
			return nil, fmt.Errorf("cannot decode statistics: %w", err)
		}
	case pebble.ErrNotFound:
	default:
		return nil, fmt.Errorf("cannot read statistics: %w", err)
	}

	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte("b"), UpperBound: []byte("c")})
	if err != nil {
		return nil, fmt.Errorf("cannot read budgets: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		d := decoder{s: string(it.Key()[1:])}
		action := d.string()
		if len(d.s)-d.i != 8 || d.err != nil {
			return nil, fmt.Errorf("cannot decode budget key %q", it.Key())
		}
		hour := int64(binary.BigEndian.Uint64([]byte(d.s[d.i:])) ^ (1 << 63))
		h, err := decodeHour(hour, string(it.Value()))
		if err != nil {
			return nil, fmt.Errorf("cannot decode budget of %q: %w", action, err)
		}
		l := c.serves[action]
		if l == nil {
			l = &serveLog{}
			c.serves[action] = l
		}
		// Keys are in time order: append, and take the latest serve from
		// the newest hour's latest minute.
		l.hours = append(l.hours, h)
		l.latest = hour * nsPerHour
		if h.mins != nil {
			for m := 59; m >= 0; m-- {
				if h.mins[m] != 0 {
					l.latest += int64(m) * nsPerMinute
					break
				}
			}
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("cannot read budgets: %w", err)
	}
	for _, l := range c.serves {
		l.trim()
	}
	return c, nil
}

func decodeHour(hour int64, rec string) (hourServes, error) {
	d := decoder{s: rec}
	h := hourServes{hour: hour}
	if v := d.byte(); v != budgetV1 {
		return h, fmt.Errorf("unknown budget version %d", v)
	}
	h.total = d.varint()
	if n := d.byte(); n > 0 {
		h.mins = new([60]int64)
		for range n {
			m := d.byte()
			if m >= 60 {
				d.fail()
				break
			}
			h.mins[m] = d.varint()
		}
	}
	err := d.end()
	return h, err
}
