package workload

import (
	"reflect"
	"testing"
)

func TestServiceCustomer(t *testing.T) {
	spec := CustomerSpec{Seed: 3}
	for _, i := range []int{0, 7, 999_999} {
		c := ServiceCustomer(spec, i)
		if c.ID != CustomerID(i) || c.ID != Customer(spec, i).ID {
			t.Fatalf("customer %d has id %q; want %q", i, c.ID, CustomerID(i))
		}
		if !reflect.DeepEqual(c, ServiceCustomer(spec, i)) {
			t.Fatalf("customer %d differs between two calls", i)
		}
		if _, ok := c.Attributes["favorite_category"]; !ok {
			t.Fatalf("customer %d lacks the demo attributes: %v", i, c.Attributes)
		}
	}
	sessions := 0
	for i := range 100 {
		if ServiceCustomer(spec, i).Events["session"] != nil {
			sessions++
		}
	}
	if sessions < 50 {
		t.Fatalf("%d of 100 customers have sessions; want most", sessions)
	}
}
