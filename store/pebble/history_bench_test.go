package pebblestore

import (
	"fmt"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/store"
)

// historyCustomer is typicalCustomer with n served contacts spread over
// the last day.
func historyCustomer(id string, n int) *store.Customer {
	c := typicalCustomer(id)
	c.Contacts = nil
	now := time.Now()
	for i := range n {
		c.Contacts = append(c.Contacts, store.Contact{Action: store.Intern("winback-20"), Channel: store.Intern("web"),
			At: now.Add(-24*time.Hour + time.Duration(i)*(24*time.Hour/time.Duration(n+1))).UnixNano()})
	}
	return c
}

func benchHistoryStore(b *testing.B, customers, history int) (*Store, []string) {
	b.Helper()
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	batch := make([]*store.Customer, customers)
	ids := make([]string, customers)
	for i := range batch {
		ids[i] = fmt.Sprint("c", i)
		batch[i] = historyCustomer(ids[i], history)
	}
	if err := s.Import(batch); err != nil {
		b.Fatal(err)
	}
	for _, id := range ids {
		if _, err := s.Customer(id); err != nil {
			b.Fatal(err)
		}
	}
	s.waitCache()
	return s, ids
}

// BenchmarkRecordHistory records one served contact for a customer that
// already has a short or a long contact history: the cost must not depend
// on it. The history grows by one contact per iteration (pruned at
// store.MaxContacts), so a long run measures long histories in both.
func BenchmarkRecordHistory(b *testing.B) {
	for _, history := range []int{10, 10000} {
		b.Run(fmt.Sprint("contacts=", history), func(b *testing.B) {
			s, ids := benchHistoryStore(b, 1, history)
			b.ReportAllocs()
			for b.Loop() {
				now := time.Now().UnixNano()
				err := s.Record(ids[0],
					[]store.Contact{{Action: store.Intern("winback-20"), Channel: store.Intern("web"), At: now}},
					[]store.StatDelta{{Action: "winback-20", Variant: "a", Outcome: store.Served, At: now}})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAddEventsHistory commits a batch of one event for each of 4
// customers with short or long contact histories.
func BenchmarkAddEventsHistory(b *testing.B) {
	for _, history := range []int{10, 10000} {
		b.Run(fmt.Sprint("contacts=", history), func(b *testing.B) {
			s, ids := benchHistoryStore(b, 4, history)
			batch := make([]store.Event, len(ids))
			b.ReportAllocs()
			for b.Loop() {
				for j := range batch {
					batch[j] = store.Event{CustomerID: ids[j], Type: "view", At: time.Now().UnixNano(), Value: 1}
				}
				if err := s.AddEvents(batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCustomerMissHistory reads from Pebble a customer with a long
// contact history, as a cache miss of a customer decided for thousands of
// times does (a bot, a shared id, the benchmark's hottest ids): imported
// as one value, and with half of it recorded since, two contacts per
// decision, so that the read merges 1,000 operands.
func BenchmarkCustomerMissHistory(b *testing.B) {
	for _, recorded := range []int{0, 1000} {
		b.Run(fmt.Sprint("operands=", recorded), func(b *testing.B) {
			s, ids := benchHistoryStore(b, 1, store.MaxContacts/2)
			for range recorded {
				recordDecision(b, s, ids[0])
			}
			want := store.MaxContacts/2 + 2*recorded
			b.ReportAllocs()
			for b.Loop() {
				// As in BenchmarkCustomerMiss: evict once the fill is applied.
				s.waitCache()
				s.cache.Del(ids[0])
				c, err := s.Customer(ids[0])
				if err != nil || c == nil || len(c.Contacts) != want {
					b.Fatal(c, err)
				}
				sinkCustomer = c
			}
		})
	}
}

// BenchmarkReloadHistory reads back a customer with thousands of contacts
// and then records ten decisions of two contacts for it: what a small
// cache costs each time it evicts one of the hottest customers
// (historyRoom). The history starts at 4,000 contacts and grows by 20 an
// iteration, pruned at store.MaxContacts: 3,750 to 5,000.
func BenchmarkReloadHistory(b *testing.B) {
	s, ids := benchHistoryStore(b, 1, 4000)
	b.ReportAllocs()
	for b.Loop() {
		s.waitCache()
		s.cache.Del(ids[0])
		if _, err := s.Customer(ids[0]); err != nil {
			b.Fatal(err)
		}
		for range 10 {
			recordDecision(b, s, ids[0])
		}
	}
}

// recordDecision records a decision's two served contacts for id.
func recordDecision(b *testing.B, s *Store, id string) {
	now := time.Now().UnixNano()
	cts := []store.Contact{{Action: store.Intern("winback-20"), Channel: store.Intern("web"), At: now},
		{Action: store.Intern("free-ship"), Channel: store.Intern("web"), At: now}}
	if err := s.Record(id, cts, nil); err != nil {
		b.Fatal(err)
	}
}
