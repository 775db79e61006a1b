//go:build race

package engine_test

// raceEnabled: under the race detector sync.Pool drops items at random,
// so allocation counts say nothing about the engine.
const raceEnabled = true
