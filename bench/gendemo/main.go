// Command gendemo writes the demo storefront's customers, one JSON object
// per line in the format of `nudge import`, deterministically: the same
// flags give the same file.
//
//	go run ./bench/gendemo > testdata/storefront/customers.jsonl
//
// The customers are a mix of the personas the demo rules address: new
// visitors, prospects, regular buyers, VIPs, lapsed buyers, cart
// abandoners, churn risks and customers with an open complaint, so every
// rule of testdata/storefront/rules has someone to fire for. Event times
// end at -now (default 2026-11-23T12:00:00Z); regenerate with a later -now
// to keep time-bound segments (cart abandoners: last 7 days) alive.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"
)

type event struct {
	Type       string         `json:"type"`
	Time       string         `json:"time"`
	Value      float64        `json:"value,omitempty"`
	Properties map[string]any `json:"properties,omitempty"`
}

type customer struct {
	ID         string         `json:"id"`
	Attributes map[string]any `json:"attributes"`
	Events     []event        `json:"events"`
}

var (
	firstNames = []string{"Ana", "Ben", "Chloé", "David", "Emma", "Farid", "Greta", "Hugo", "Inès", "Jonas",
		"Kenji", "Lena", "Marta", "Noah", "Olga", "Paulo", "Quinn", "Rosa", "Sami", "Tess", "Ugo", "Vera", "Wim", "Yara", "Zoé"}
	categories = []string{"dresses", "denim", "knitwear", "sneakers", "coats", "accessories", "boots", "shirts"}
	personas   = []struct {
		name   string
		weight int
	}{
		{"new", 18}, {"prospect", 14}, {"regular", 22}, {"vip", 10}, {"lapsed", 12},
		{"abandoner", 10}, {"churn", 8}, {"complaint", 6},
	}
)

func main() {
	n := flag.Int("n", 1000, "number of customers")
	seed := flag.Uint64("seed", 42, "random seed")
	nowFlag := flag.String("now", "2026-11-23T12:00:00Z", "the time histories end at (RFC 3339)")
	flag.Parse()
	now, err := time.Parse(time.RFC3339, *nowFlag)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gendemo: bad -now: %v\n", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i := range *n {
		if err := enc.Encode(generate(i, *seed, now)); err != nil {
			fmt.Fprintf(os.Stderr, "gendemo: %v\n", err)
			os.Exit(1)
		}
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintf(os.Stderr, "gendemo: %v\n", err)
		os.Exit(1)
	}
}

func persona(rng *rand.Rand) string {
	total := 0
	for _, p := range personas {
		total += p.weight
	}
	x := rng.IntN(total)
	for _, p := range personas {
		if x < p.weight {
			return p.name
		}
		x -= p.weight
	}
	return "regular"
}

func generate(i int, seed uint64, now time.Time) customer {
	rng := rand.New(rand.NewPCG(seed, uint64(i)))
	p := persona(rng)
	c := customer{ID: fmt.Sprintf("c-%04d", 1000+i), Attributes: map[string]any{}}
	ago := func(minDays, maxDays float64) time.Time {
		d := minDays + rng.Float64()*(maxDays-minDays)
		return now.Add(-time.Duration(d * float64(24*time.Hour))).Truncate(time.Minute)
	}
	add := func(typ string, t time.Time, value float64, props map[string]any) {
		c.Events = append(c.Events, event{Type: typ, Time: t.UTC().Format(time.RFC3339), Value: value, Properties: props})
	}
	sessions := func(k int, minDays, maxDays float64) {
		for range k {
			add("session", ago(minDays, maxDays), 0, map[string]any{"device": []string{"mobile", "desktop", "app"}[rng.IntN(3)]})
		}
	}
	purchases := func(k int, minDays, maxDays float64) float64 {
		total := 0.0
		for range k {
			v := float64(20+rng.IntN(280)) + 0.9
			total += v
			add("purchase", ago(minDays, maxDays), v, map[string]any{"category": categories[rng.IntN(len(categories))]})
		}
		return total
	}
	a := c.Attributes
	if p != "new" || rng.IntN(3) == 0 {
		a["first_name"] = firstNames[rng.IntN(len(firstNames))]
	}
	a["tier"] = "bronze"
	a["favorite_category"] = categories[rng.IntN(len(categories))]
	consent := map[string]any{"email": rng.IntN(10) < 7, "sms": rng.IntN(10) < 3, "push": rng.IntN(10) < 4}
	a["consent"] = consent
	a["app_installed"] = consent["push"] == true && rng.IntN(4) > 0
	a["email_open_rate"] = round(0.05 + rng.Float64()*0.5)
	a["push_open_rate"] = round(0.02 + rng.Float64()*0.2)
	a["churn_risk"] = round(rng.Float64() * 0.5)

	switch p {
	case "new":
		if rng.IntN(2) == 0 {
			sessions(1, 0, 1)
		}
		delete(a, "favorite_category")
	case "prospect":
		sessions(2+rng.IntN(6), 0, 40)
		if rng.IntN(2) == 0 {
			add("wishlist_price_drop", ago(0, 5), 0, map[string]any{"product": fmt.Sprintf("p-%d", rng.IntN(900))})
		}
	case "regular":
		sessions(5+rng.IntN(20), 0, 60)
		ltv := purchases(2+rng.IntN(5), 1, 55)
		a["ltv"] = round(ltv)
		a["loyalty_points"] = float64(int(ltv) * 10)
		a["tier"] = []string{"bronze", "silver"}[rng.IntN(2)]
		if rng.IntN(3) == 0 {
			add("review", ago(1, 30), 0, nil)
		}
		if rng.IntN(4) == 0 {
			add("return", ago(1, 30), 0, nil)
		}
	case "vip":
		sessions(15+rng.IntN(30), 0, 45)
		ltv := purchases(8+rng.IntN(12), 1, 85) + 600
		a["ltv"] = round(ltv)
		a["loyalty_points"] = float64(int(ltv) * 10)
		a["tier"] = []string{"gold", "platinum"}[rng.IntN(2)]
		a["churn_risk"] = round(rng.Float64() * 0.3)
	case "lapsed":
		sessions(3+rng.IntN(8), 61, 85)
		ltv := purchases(1+rng.IntN(4), 62, 88)
		a["ltv"] = round(ltv)
		a["tier"] = "silver"
		a["churn_risk"] = round(0.4 + rng.Float64()*0.3)
	case "abandoner":
		sessions(3+rng.IntN(6), 0, 20)
		if rng.IntN(2) == 0 {
			a["ltv"] = round(purchases(1, 20, 80))
		}
		for range 1 + rng.IntN(3) {
			add("add_to_cart", ago(0.1, 6), float64(30+rng.IntN(200)), map[string]any{"category": categories[rng.IntN(len(categories))]})
		}
	case "churn":
		sessions(2+rng.IntN(5), 31, 80)
		a["ltv"] = round(purchases(2+rng.IntN(4), 35, 85))
		a["churn_risk"] = round(0.7 + rng.Float64()*0.3)
	case "complaint":
		sessions(3+rng.IntN(8), 0, 30)
		a["ltv"] = round(purchases(1+rng.IntN(3), 3, 50))
		if rng.IntN(2) == 0 {
			a["complaint_open"] = true
		} else {
			add("complaint", ago(0, 10), 0, map[string]any{"reason": []string{"late delivery", "damaged item", "refund"}[rng.IntN(3)]})
		}
	}
	if c.Events == nil {
		c.Events = []event{}
	}
	return c
}

func round(x float64) float64 { return float64(int(x*100+0.5)) / 100 }
