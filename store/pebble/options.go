package pebblestore

import (
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Options configure a Store. The zero value of every field but Dir means
// its default; EnsureDefaults fills them in.
type Options struct {
	// Dir is the directory of the database; it is created if missing.
	// Required.
	Dir string

	// CacheMB is the size of the cache of decoded customers, in MiB. An
	// entry costs an estimate of the heap it keeps alive: its decoded
	// customer (attributes, event aggregates, contacts, outcome summary and
	// contact index; size.go) and about 200 bytes of the cache's own
	// bookkeeping. So CacheMB bounds the heap the cache holds, give or take
	// the estimate's error (within 15 % in TestCustomerBytes). The default
	// is 256.
	CacheMB int

	// BlockCacheMB is the size of Pebble's block cache, in MiB: it serves
	// the customers that miss the decoded cache without reading the disk.
	// Pebble charges its memtables to the same cache, so Open adds their
	// size (PebbleMB); blocks get BlockCacheMB or more while no more than
	// two memtables are alive. The default is 32.
	BlockCacheMB int

	// SyncInterval bounds how long a write acknowledged without an fsync
	// (Record: contacts and statistics) can stay in the OS page cache: a
	// background loop persists the statistics and syncs the write-ahead log
	// this often when anything was written since its last sync. It is what
	// kill -9 can lose of them. The default is 1s.
	SyncInterval time.Duration

	// Logger receives Pebble's log messages, the store's own errors of
	// the background sync and its notices (Infof, the format starting with
	// "pebblestore: ": a layout conversion at Open), so the caller can
	// route them through its logger.
	// The default discards Infof and Errorf and panics in Fatalf (Pebble
	// calls Fatalf only when it cannot continue).
	Logger pebble.Logger
}

// Default values of Options.
const (
	DefaultCacheMB      = 256
	DefaultBlockCacheMB = 32
	DefaultSyncInterval = time.Second
)

// Limits checked by Validate.
const (
	maxCacheMB      = 1 << 24 // 16 TiB: CacheMB<<20 must fit an int64 with room
	maxSyncInterval = time.Minute
)

// PebbleMB is the most memory, in MiB, that Pebble's buffers take: the
// block cache and the memtables (Open makes them memTableMB each; Pebble
// stops writes while two are queued). It is the size of the cache Open
// gives Pebble, which counts the memtables in it. Pebble allocates them outside the
// Go heap when built with cgo, from the Go heap otherwise. It expects
// EnsureDefaults to have been called.
func (o *Options) PebbleMB() int {
	return o.BlockCacheMB + 2*memTableMB
}

// EnsureDefaults fills in the default of every unset field and returns o.
func (o *Options) EnsureDefaults() *Options {
	if o.CacheMB == 0 {
		o.CacheMB = DefaultCacheMB
	}
	if o.BlockCacheMB == 0 {
		o.BlockCacheMB = DefaultBlockCacheMB
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.Logger == nil {
		o.Logger = discardLogger{}
	}
	return o
}

// Validate reports every problem of o at once. It expects EnsureDefaults to
// have been called.
func (o *Options) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("pebblestore: Dir is required"))
	}
	if o.CacheMB <= 0 || o.CacheMB > maxCacheMB {
		errs = append(errs, fmt.Errorf("pebblestore: CacheMB is %d; it must be in 1..%d", o.CacheMB, maxCacheMB))
	}
	if o.BlockCacheMB <= 0 || o.BlockCacheMB > maxCacheMB {
		errs = append(errs, fmt.Errorf("pebblestore: BlockCacheMB is %d; it must be in 1..%d", o.BlockCacheMB, maxCacheMB))
	}
	if o.SyncInterval <= 0 || o.SyncInterval > maxSyncInterval {
		errs = append(errs, fmt.Errorf("pebblestore: SyncInterval is %v; it must be in (0, %v]", o.SyncInterval, maxSyncInterval))
	}
	if o.Logger == nil {
		errs = append(errs, errors.New("pebblestore: Logger is nil"))
	}
	return errors.Join(errs...)
}

// discardLogger is the default Logger.
type discardLogger struct{}

func (discardLogger) Infof(string, ...any)  {}
func (discardLogger) Errorf(string, ...any) {}

func (discardLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}
