package pebblestore

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"testing"

	"github.com/nudge-engine/nudge/store"
)

// BenchmarkCollectCached measures what cached customers cost the garbage
// collector, which marks them in every cycle: one op is one full
// collection with 20,000 customers live, each as a cache miss decodes it
// (typicalCustomer, its 20 contacts spread over 10 of 50 actions).
// scan-B/customer is the heap the collector scans per customer
// (runtime/metrics /gc/scan/heap:bytes) and objects/customer its heap
// objects. The sub-benchmarks drop one part of every customer first, so
// the difference from "whole" is that part's cost; "none" holds no
// customer (the collection's cost without them; its 8 scan-B/customer are
// the slice that holds the customers, counted in every part).
func BenchmarkCollectCached(b *testing.B) {
	const n = 20000
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batch := make([]*store.Customer, n)
	for i := range batch {
		c := typicalCustomer(fmt.Sprint("c", i))
		for j := range c.Contacts {
			c.Contacts[j].Action = store.Intern(fmt.Sprintf("a%02d", (i+j*5)%50))
			c.Contacts[j].Outcome = store.Outcome(j % 3)
		}
		c.Summarize()
		batch[i] = c
	}
	if err := s.Import(batch); err != nil {
		b.Fatal(err)
	}
	batch = nil
	for _, part := range []string{"whole", "no-contacts", "no-attributes", "no-events", "none"} {
		b.Run("part="+part, func(b *testing.B) {
			held := make([]*store.Customer, n)
			for i := range held {
				if part == "none" {
					break
				}
				c, _, err := s.read(fmt.Sprint("c", i)) // a miss's read and decode
				if err != nil || c == nil {
					b.Fatal(c, err)
				}
				switch part {
				case "no-contacts":
					c.Contacts = nil
					c.Summarize() // drops the contact index
					c.Outcomes = nil
				case "no-attributes":
					c.SetAttributes(nil)
				case "no-events":
					c.Events, c.EncodedEvents = nil, nil
				}
				held[i] = c
			}
			for b.Loop() {
				runtime.GC()
			}
			scan1, objects1 := heapScan()
			runtime.KeepAlive(held) // live up to here, not beyond
			scan0, objects0 := heapScan()
			b.ReportMetric(float64(int64(scan1)-int64(scan0))/n, "scan-B/customer")
			b.ReportMetric(float64(int64(objects1)-int64(objects0))/n, "objects/customer")
		})
	}
}

// heapScan returns, after a collection, the scannable heap and the number
// of heap objects.
func heapScan() (scan, objects uint64) {
	runtime.GC()
	m := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}, {Name: "/gc/heap/objects:objects"}}
	metrics.Read(m)
	return m[0].Value.Uint64(), m[1].Value.Uint64()
}
