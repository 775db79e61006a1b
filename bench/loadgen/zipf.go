package loadgen

import (
	"fmt"
	"math/rand/v2"
)

// Zipf draws customer indexes in [0, n) with Zipf-distributed popularity:
// the customer of rank k (0-based) is drawn with probability proportional
// to 1/(k+1)^s. Ranks are spread over the index space by a fixed
// permutation, so the hot customers are not neighbours in the store's key
// order (as real visitor ids are not). Not safe for concurrent use: give
// each goroutine its own.
type Zipf struct {
	z    *rand.Zipf
	n    uint64
	mult uint64
	off  uint64
}

// NewZipf returns a sampler over n customers with exponent s (> 1), drawing
// from rng.
func NewZipf(rng *rand.Rand, s float64, n int) (*Zipf, error) {
	if n < 1 {
		return nil, fmt.Errorf("zipf: %d customers; want at least 1", n)
	}
	if s <= 1 {
		return nil, fmt.Errorf("zipf: exponent %g; want > 1", s)
	}
	z := rand.NewZipf(rng, s, 1, uint64(n-1))
	if z == nil {
		return nil, fmt.Errorf("zipf: invalid parameters s=%g n=%d", s, n)
	}
	un := uint64(n)
	// A multiplier coprime with n makes k -> (k*mult + off) mod n a
	// bijection of [0, n).
	mult := uint64(2654435761) % un
	for gcd(mult, un) != 1 {
		mult++
	}
	return &Zipf{z: z, n: un, mult: mult, off: un / 3}, nil
}

// Next returns the index of the next customer.
func (z *Zipf) Next() int { return z.Index(z.z.Uint64()) }

// Index returns the customer index of popularity rank k in [0, n).
func (z *Zipf) Index(k uint64) int { return int((k%z.n*z.mult%z.n + z.off) % z.n) }

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
