package main

import (
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/nudge-engine/nudge/bench/workload"
	"github.com/nudge-engine/nudge/store"
	pebblestore "github.com/nudge-engine/nudge/store/pebble"
)

const genHelp = `Generates customers c-0000000, c-0000001, ... (bench/workload's
ServiceCustomer: attributes, event histories and contact histories that
both the demo storefront rules and generated rulesets read) and imports them
straight into a nudge data directory, the way nudge import does but without
the JSON round trip. The same flags give the same customers.`

// genBatch is the number of customers per Import call.
const genBatch = 1000

func runGen(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("gen", genHelp, stderr)
	n := fs.Int("customers", 1_000_000, "customers to generate")
	data := fs.String("data", "", "data directory (required; created)")
	seed := fs.Uint64("seed", 1, "random seed")
	actions := fs.Int("actions", 1000, "generated action ids that contact histories refer to")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "generating goroutines")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *data == "" || fs.NArg() != 0 || *n < 1 || *workers < 1 {
		fs.Usage()
		return 2
	}
	st, err := pebblestore.Open(pebblestore.Options{Dir: *data, CacheMB: 8})
	if err != nil {
		fmt.Fprintf(stderr, "nudge-bench gen: cannot open store: %v\n", err)
		return 1
	}
	start := time.Now()
	spec := workload.CustomerSpec{Actions: *actions, Seed: *seed}
	err = generate(st, spec, *n, *workers, func(done int) {
		rate := float64(done) / time.Since(start).Seconds()
		fmt.Fprintf(stderr, "\rgenerated %d of %d customers (%.0f/s)", done, *n, rate)
	})
	if err == nil {
		// Settle the LSM tree, as nudge import does, so that serving
		// right after does not pay for the bulk load's compactions.
		fmt.Fprintf(stderr, "\ncompacting")
		t := time.Now()
		err = st.Compact()
		fmt.Fprintf(stderr, " (%.1fs)", time.Since(t).Seconds())
	}
	if cerr := st.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("cannot close store: %w", cerr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "\nnudge-bench gen: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "\n")
	fmt.Fprintf(stdout, "generated %d customers into %s in %.1fs\n", *n, *data, time.Since(start).Seconds())
	return 0
}

// importer is the part of the store gen writes to.
type importer interface {
	Import([]*store.Customer) error
	Sync() error
}

// generate makes customers 0..n-1 on workers goroutines and imports them in
// batches from one goroutine (Import batches are applied whole); progress
// is called at most once a second.
func generate(st importer, spec workload.CustomerSpec, n, workers int, progress func(done int)) error {
	type batch struct{ cs []*store.Customer }
	starts := make(chan int)
	batches := make(chan batch, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for from := range starts {
				to := min(from+genBatch, n)
				cs := make([]*store.Customer, 0, to-from)
				for i := from; i < to; i++ {
					cs = append(cs, workload.ServiceCustomer(spec, i))
				}
				batches <- batch{cs}
			}
		}()
	}
	go func() {
		for from := 0; from < n; from += genBatch {
			starts <- from
		}
		close(starts)
		wg.Wait()
		close(batches)
	}()
	var err error
	done, last := 0, time.Now()
	for b := range batches {
		if err != nil {
			continue // drain so the workers finish
		}
		if err = st.Import(b.cs); err != nil {
			err = fmt.Errorf("cannot import: %w", err)
			continue
		}
		done += len(b.cs)
		if time.Since(last) >= time.Second {
			last = time.Now()
			progress(done)
		}
	}
	if err != nil {
		return err
	}
	progress(done)
	return st.Sync()
}
