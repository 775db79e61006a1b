package workload

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nudge-engine/nudge/store"
)

// CustomerID returns the id of generated customer i, as Customer and
// ServiceCustomer name it.
func CustomerID(i int) string { return fmt.Sprintf("c-%07d", i) }

var categories = []string{"dresses", "denim", "knitwear", "sneakers", "coats", "accessories", "boots", "shirts"}

// ServiceCustomer is Customer i of the spec with, in addition, the
// attributes and event types the demo storefront's rules read
// (favorite_category, loyalty_points, open rates, app_installed,
// complaint_open; session, add_to_cart and complaint events), so one
// generated data set serves both the demo rules and generated rulesets in
// end-to-end benchmarks. The same i gives the same customer.
func ServiceCustomer(spec CustomerSpec, i int) *store.Customer {
	spec.ensureDefaults()
	c := Customer(spec, i)
	rng := rand.New(rand.NewPCG(spec.Seed^0x5e41ce, uint64(i)))
	a := c.Attributes
	a["favorite_category"] = categories[rng.IntN(len(categories))]
	a["loyalty_points"] = float64(rng.IntN(30000))
	a["email_open_rate"] = float64(5+rng.IntN(50)) / 100
	a["push_open_rate"] = float64(2+rng.IntN(20)) / 100
	a["app_installed"] = rng.IntN(3) == 0
	if rng.IntN(30) == 0 {
		a["complaint_open"] = true
	}
	now := spec.Now.UnixNano()
	day := int64(24 * time.Hour)
	for range rng.IntN(spec.Events/2 + 1) {
		c.AddEvent("session", now-rng.Int64N(90*day), 0)
	}
	if rng.IntN(5) == 0 {
		for range 1 + rng.IntN(3) {
			c.AddEvent("add_to_cart", now-rng.Int64N(6*day), float64(30+rng.IntN(200)))
		}
	}
	if rng.IntN(20) == 0 {
		c.AddEvent("complaint", now-rng.Int64N(10*day), 0)
	}
	return c
}
