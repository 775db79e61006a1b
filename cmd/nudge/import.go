package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nudge-engine/nudge/store"
	pebblestore "github.com/nudge-engine/nudge/store/pebble"
)

const importUsage = `Usage: nudge import --data DIR FILE.jsonl

Bulk-loads customers into the store in DIR, one JSON object per line:
  {"id": "c-1", "attributes": {...}, "events": [{"type", "time", "value", "properties"}]}
A customer already in the store is replaced. "-" reads standard input.
`

// importLine is one line of an import file.
type importLine struct {
	ID         string         `json:"id"`
	Attributes map[string]any `json:"attributes"`
	Events     []struct {
		Type       string          `json:"type"`
		Time       string          `json:"time"`
		Value      json.RawMessage `json:"value"`
		Properties map[string]any  `json:"properties"`
	} `json:"events"`
}

const importBatch = 1000

func runImport(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, importUsage); fs.PrintDefaults() }
	data := fs.String("data", "", "data directory of the store (required)")
	cacheMB := fs.Int("cache-mb", 64, "cache size in MiB while importing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *data == "" || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	in := os.Stdin
	if name := fs.Arg(0); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "nudge import: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	st, err := pebblestore.Open(pebblestore.Options{Dir: *data, CacheMB: *cacheMB})
	if err != nil {
		fmt.Fprintf(stderr, "nudge import: cannot open store: %v\n", err)
		return 1
	}
	n, events, err := importCustomers(in, st, stderr, time.Now())
	if err == nil {
		// A bulk load leaves the LSM tree unsettled; settle it now rather
		// than while serving (store/pebble's Compact).
		fmt.Fprintf(stderr, "\rimported %d customers, %d events; compacting\n", n, events)
		err = st.Compact()
	}
	if cerr := st.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("cannot close store: %w", cerr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "\nnudge import: %v (%d customers before it were imported)\n", err, n)
		return 1
	}
	fmt.Fprintf(stderr, "\rimported %d customers, %d events into %s\n", n, events, *data)
	return 0
}

// importer is what importCustomers writes to.
type importer interface {
	Import(customers []*store.Customer) error
	Sync() error
}

// importCustomers reads JSONL customers from r and imports them in
// batches, writing a progress line to progress at most every second.
func importCustomers(r io.Reader, st importer, progress io.Writer, now time.Time) (customers, events int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	batch := make([]*store.Customer, 0, importBatch)
	start, last := time.Now(), time.Now()
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := st.Import(batch); err != nil {
			return fmt.Errorf("cannot import: %w", err)
		}
		customers += len(batch)
		batch = batch[:0]
		if time.Since(last) >= time.Second {
			last = time.Now()
			rate := float64(customers) / time.Since(start).Seconds()
			fmt.Fprintf(progress, "\rimported %d customers, %d events (%.0f customers/s)", customers, events, rate)
		}
		return nil
	}
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		c, n, err := parseImportLine(b, now)
		if err != nil {
			return customers, events, fmt.Errorf("line %d: %w", line, err)
		}
		events += n
		batch = append(batch, c)
		if len(batch) == importBatch {
			if err := flush(); err != nil {
				return customers, events, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return customers, events, fmt.Errorf("line %d: %w", line+1, err)
	}
	if err := flush(); err != nil {
		return customers, events, err
	}
	return customers, events, st.Sync()
}

func parseImportLine(b []byte, now time.Time) (*store.Customer, int, error) {
	var l importLine
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return nil, 0, fmt.Errorf("invalid JSON: %w", err)
	}
	if err := store.ValidateID(l.ID); err != nil {
		return nil, 0, fmt.Errorf("id %q %w", l.ID, err)
	}
	c := &store.Customer{ID: l.ID, Attributes: l.Attributes}
	for i, e := range l.Events {
		if err := store.ValidateEventType(e.Type); err != nil {
			return nil, 0, fmt.Errorf("events[%d].type %q %w", i, e.Type, err)
		}
		at := now
		if e.Time != "" {
			t, err := time.Parse(time.RFC3339Nano, e.Time)
			if err != nil {
				return nil, 0, fmt.Errorf("events[%d].time %q is not an RFC 3339 time", i, e.Time)
			}
			at = t
		}
		var v float64
		if len(e.Value) > 0 && string(e.Value) != "null" {
			if err := json.Unmarshal(e.Value, &v); err != nil {
				return nil, 0, fmt.Errorf("events[%d].value must be a number", i)
			}
		}
		c.AddEvent(e.Type, at.UnixNano(), v)
	}
	return c, len(l.Events), nil
}
