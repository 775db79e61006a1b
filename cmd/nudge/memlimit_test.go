package main

import (
	"testing"

	pebblestore "github.com/nudge-engine/nudge/store/pebble"
)

func TestMemoryLimit(t *testing.T) {
	opts := pebblestore.Options{Dir: "x", CacheMB: 256}
	opts.EnsureDefaults()
	const mib = 1 << 20
	for _, tc := range []struct {
		name       string
		flagMB     int
		envSet     bool
		pebbleInGo bool
		want       int64
		from       string
	}{
		{"flag wins over GOMEMLIMIT", 1000, true, false, 1000 * mib, "--memory-limit-mb"},
		{"GOMEMLIMIT kept", 0, true, false, 0, "GOMEMLIMIT"},
		{"derived, Pebble outside the Go heap", 0, false, false, (128 + 2*256) * mib, "derived from --cache-mb"},
		{"derived, Pebble in the Go heap", 0, false, true, int64(128+2*256+opts.PebbleMB()) * mib, "derived from --cache-mb"},
	} {
		got, from := memoryLimit(tc.flagMB, &opts, tc.envSet, tc.pebbleInGo)
		if got != tc.want || from != tc.from {
			t.Errorf("%s: got %d MiB from %q; want %d MiB from %q", tc.name, got/mib, from, tc.want/mib, tc.from)
		}
	}
}
