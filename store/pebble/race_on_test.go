//go:build race

package pebblestore

// raceEnabled: under the race detector sync.Pool drops items at random,
// so allocation counts of pooled code say nothing.
const raceEnabled = true
