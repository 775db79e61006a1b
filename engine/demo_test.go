package engine_test

import (
	"bufio"
	"encoding/json"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/store"
	"github.com/nudge-engine/nudge/store/memstore"
)

// loadDemoCustomers reads testdata/storefront/customers.jsonl (the import
// format of SPEC 6).
func loadDemoCustomers(t *testing.T) []*store.Customer {
	t.Helper()
	f, err := os.Open("../testdata/storefront/customers.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*store.Customer
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			ID         string         `json:"id"`
			Attributes map[string]any `json:"attributes"`
			Events     []struct {
				Type  string    `json:"type"`
				Time  time.Time `json:"time"`
				Value float64   `json:"value"`
			} `json:"events"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		c := &store.Customer{ID: line.ID, Attributes: line.Attributes}
		for _, e := range line.Events {
			c.AddEvent(e.Type, e.Time.UnixNano(), e.Value)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The demo customers give every demo action someone to be decided for:
// deciding every placement for every customer on a few days around Black
// Friday returns each action at least once.
func TestDemoCustomersReachEveryAction(t *testing.T) {
	rs, err := rules.LoadDir("../testdata/storefront/rules")
	if err != nil {
		t.Fatal(err)
	}
	customers := loadDemoCustomers(t)
	if len(customers) != 1000 {
		t.Fatalf("%d demo customers; want 1000", len(customers))
	}
	src := memstore.New()
	for _, c := range customers {
		src.Put(c)
	}
	var placements []string
	for name := range rs.Placements {
		placements = append(placements, name)
	}
	sort.Strings(placements)
	eng := engine.New(engine.Options{})
	seen := map[string]int{}
	var d engine.Decision
	days := []string{"2026-11-23T12:00:00Z", "2026-11-28T15:00:00Z", "2026-12-03T10:00:00Z"}
	for _, day := range days {
		now, _ := time.Parse(time.RFC3339, day)
		for _, channel := range []string{"web", "auto"} {
			for i, c := range customers {
				// Small and large baskets, low and normal stock.
				ctx := map[string]any{"cart_value": []float64{40, 140}[i%2], "category": c.Attributes["favorite_category"],
					"stock": []float64{3, 50}[i%3%2], "device": "mobile"}
				for _, p := range placements {
					req := &engine.Request{CustomerID: c.ID, Placements: []string{p}, Channel: channel, Now: now, Context: ctx}
					if err := eng.Decide(rs, src, req, &d); err != nil {
						t.Fatal(err)
					}
					for _, it := range d.Placements[0].Items {
						seen[it.Action.ID]++
					}
				}
			}
		}
	}
	for _, a := range rs.Actions {
		if seen[a.ID] == 0 {
			t.Errorf("no demo customer gets action %s", a.ID)
		}
	}
	t.Logf("decisions per action: %v", seen)
}
