package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The mixed-load crash harness: writers own customers and send them
// events, PUTs, PATCHes, DELETEs and decisions, one request at a time, so
// each customer's acknowledged history is known exactly; other clients
// decide for the same customers meanwhile. The server is killed with
// SIGKILL at a random moment, restarted on the same data directory, and
// every customer must be in the state of its acknowledged writes, or in
// that state plus the one write that was in flight at the kill (it may
// or may not have landed). So an acknowledged write is never missing, an
// acknowledged delete stays deleted unless a later acknowledged write
// recreated the customer, and nothing unacknowledged appears besides the
// write in flight.

// crashState is what the store must hold for a customer: its attributes
// and its page_view event count. Decisions add contacts, which are not
// durable on return and are not checked here.
type crashState struct {
	attrs  map[string]any
	events int
}

// crashOp is one write of a writer.
type crashOp struct {
	kind string // events, put, patch, delete
	n    int    // the value written (put, patch) or the events sent
}

func (s crashState) apply(o crashOp) crashState {
	out := crashState{attrs: maps.Clone(s.attrs), events: s.events}
	if out.attrs == nil {
		out.attrs = map[string]any{}
	}
	switch o.kind {
	case "events":
		out.events += o.n
	case "put":
		out.attrs = map[string]any{"seq": float64(o.n)}
	case "patch":
		out.attrs["p"] = float64(o.n)
	case "delete":
		out = crashState{attrs: map[string]any{}}
	}
	return out
}

func (s crashState) String() string {
	return fmt.Sprintf("attributes %v, %d events", s.attrs, s.events)
}

// crashCustomer is a customer owned by one writer.
type crashCustomer struct {
	id      string
	acked   crashState
	pending *crashOp // sent, not acknowledged: may or may not have landed
}

// send performs o on the server and reports whether it was acknowledged.
func (c *crashCustomer) send(base string, o crashOp) (bool, error) {
	var method, path, body string
	want := 200
	switch o.kind {
	case "events":
		evs := make([]string, o.n)
		for i := range evs {
			evs[i] = fmt.Sprintf(`{"customer_id":%q,"type":"page_view"}`, c.id)
		}
		method, path, body, want = "POST", "/v1/events", `{"events":[`+strings.Join(evs, ",")+`]}`, 202
	case "put":
		method, path, body = "PUT", "/v1/customers/"+c.id, fmt.Sprintf(`{"seq":%d}`, o.n)
	case "patch":
		method, path, body = "PATCH", "/v1/customers/"+c.id, fmt.Sprintf(`{"p":%d}`, o.n)
	case "delete":
		method, path, want = "DELETE", "/v1/customers/"+c.id, 204
	}
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := crashClient.Do(req)
	if err != nil {
		return false, nil // the server is gone
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch {
	case resp.StatusCode == want:
		return true, nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return false, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return false, nil // 503: not acknowledged
}

var crashClient = &http.Client{Timeout: 5 * time.Second}

// readState reads the customer back; 404 is the empty state.
func readState(base, id string) (crashState, error) {
	resp, err := crashClient.Get(base + "/v1/customers/" + id)
	if err != nil {
		return crashState{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == 404 {
		return crashState{attrs: map[string]any{}}, nil
	}
	var v customerView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
		return crashState{}, fmt.Errorf("GET customer %s: %d %v", id, resp.StatusCode, err)
	}
	if v.Attributes == nil {
		v.Attributes = map[string]any{}
	}
	return crashState{attrs: v.Attributes, events: v.Events["page_view"].Count}, nil
}

func TestCrashMixedLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	const (
		rounds      = 20
		writers     = 4
		perWriter   = 3 // customers each writer owns
		deciders    = 2
		maxLoadTime = 400 * time.Millisecond
	)
	started := time.Now()
	rulesDir, dataDir := copyDemoRules(t), t.TempDir()
	rng := rand.New(rand.NewPCG(7, 11))
	customers := make([][]*crashCustomer, writers)
	var all []*crashCustomer
	for w := range customers {
		for k := range perWriter {
			c := &crashCustomer{id: fmt.Sprintf("mix-%d-%d", w, k), acked: crashState{attrs: map[string]any{}}}
			customers[w] = append(customers[w], c)
			all = append(all, c)
		}
	}
	counts := map[string]int{} // acknowledged writes by kind
	inFlightLanded, inFlightLost := 0, 0
	var mu sync.Mutex
	for round := range rounds + 1 {
		c := startServe(t, rulesDir, dataDir)
		base := "http://" + c.addr
		if strings.Contains(c.logs(), `"level":"error"`) {
			t.Errorf("round %d: the store did not open cleanly:\n%s", round, c.logs())
		}
		// Every customer is in its acknowledged state, or that plus the
		// write in flight at the kill.
		for _, cu := range all {
			got, err := readState(base, cu.id)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			switch {
			case reflect.DeepEqual(got, cu.acked):
				if cu.pending != nil {
					inFlightLost++
				}
			case cu.pending != nil && reflect.DeepEqual(got, cu.acked.apply(*cu.pending)):
				cu.acked = got
				inFlightLanded++
			default:
				pending := "none"
				if cu.pending != nil {
					pending = fmt.Sprintf("%+v", *cu.pending)
				}
				t.Errorf("round %d: customer %s has %v; acknowledged: %v; in flight at the kill: %s", round, cu.id, got, cu.acked, pending)
				cu.acked = got // judge the next rounds from what is there
			}
			cu.pending = nil
		}
		if round == rounds {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
			break
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range writers {
			seed := rng.Uint64()
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, uint64(w)))
				for seq := 1; ; seq++ {
					select {
					case <-stop:
						return
					default:
					}
					cu := customers[w][r.IntN(perWriter)]
					var o crashOp
					switch p := r.IntN(100); {
					case p < 30:
						o = crashOp{kind: "events", n: 1 + r.IntN(3)}
					case p < 50:
						o = crashOp{kind: "put", n: round*100000 + seq}
					case p < 65:
						o = crashOp{kind: "patch", n: round*100000 + seq}
					case p < 75:
						o = crashOp{kind: "delete"}
					default:
						if !post(base+"/v1/decide", fmt.Sprintf(`{"customer_id":%q,"placements":["home_hero","cart_sidebar"],"channel":"web"}`, cu.id), 200) {
							return
						}
						continue
					}
					cu.pending = &o
					ok, err := cu.send(base, o)
					if err != nil {
						t.Errorf("round %d: %v", round, err)
						return
					}
					if !ok {
						return // the server is gone; o stays pending
					}
					cu.acked, cu.pending = cu.acked.apply(o), nil
					mu.Lock()
					counts[o.kind]++
					mu.Unlock()
				}
			}()
		}
		for d := range deciders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					id := all[(i*7+d)%len(all)].id
					if !post(base+"/v1/decide", fmt.Sprintf(`{"customer_id":%q,"placements":["home_hero"],"channel":"web"}`, id), 200) {
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(rng.Int64N(int64(maxLoadTime))))
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = c.cmd.Wait()
		close(stop)
		wg.Wait()
	}
	t.Logf("%d SIGKILLs in %v; acknowledged: %v; writes in flight at a kill: %d landed, %d did not",
		rounds, time.Since(started).Round(time.Millisecond), counts, inFlightLanded, inFlightLost)
	for _, k := range []string{"events", "put", "patch", "delete"} {
		if counts[k] == 0 {
			t.Errorf("no %s was acknowledged: the test proved nothing about them", k)
		}
	}
}
