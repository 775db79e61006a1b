//go:build !linux

package loadgen

import "time"

// preciseSleep sleeps for d. Only Linux has the nanosleep-based version;
// elsewhere a Go timer's precision is what the open loop gets.
func preciseSleep(d time.Duration) { time.Sleep(d) }
