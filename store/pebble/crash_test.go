package pebblestore

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/store"
)

// crashEnv selects the child mode of TestCrash: its value is the store's
// directory.
const crashEnv = "PEBBLESTORE_CRASH_DIR"

const crashCustomers = 7

// TestCrash kills a writing process with SIGKILL, reopens its store and
// checks that every write it acknowledged is there, several times on the
// same directory.
func TestCrash(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))

	// What a reopened store held after the previous round: acknowledged
	// writes are checked on top of it.
	events := make([]int64, crashCustomers)
	seqs := make([]int64, crashCustomers)
	for round := range 6 {
		acked := make([]int64, crashCustomers)   // events per customer
		lastSeq := make([]int64, crashCustomers) // last acknowledged attribute seq
		var nextSeq int64
		lines := crashRound(t, dir, time.Duration(50+r.IntN(250))*time.Millisecond)
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) != 3 {
				t.Fatalf("round %d: bad line %q", round, l)
			}
			k, _ := strconv.Atoi(f[1])
			n, _ := strconv.ParseInt(f[2], 10, 64)
			switch f[0] {
			case "E": // n events of customer k
				acked[k] += n
			case "A": // attribute seq n of customer k
				lastSeq[k] = n
				nextSeq = n + 1
			default:
				t.Fatalf("round %d: bad line %q", round, l)
			}
		}
		t.Logf("round %d: %d writes acknowledged", round, len(lines))

		s, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		for k := range crashCustomers {
			id := "c" + strconv.Itoa(k)
			c, err := s.Customer(id)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			var got int64
			var seq int64 = -1
			if c != nil {
				if st := c.EventMap()["buy"]; st != nil {
					got = st.Count
				}
				if v, ok := c.AttributeMap()["seq"].(float64); ok {
					seq = int64(v)
				}
			}
			// Every acknowledged event is there; at most the batch in
			// flight at the kill (up to 6 events of one customer) is
			// there too.
			if got < events[k]+acked[k] || got > events[k]+acked[k]+6 {
				t.Errorf("round %d: %s has %d events; want %d acknowledged (+6 in flight at most) on top of %d",
					round, id, got, acked[k], events[k])
			}
			events[k] = got
			// The latest acknowledged attributes, or the write in flight.
			if lastSeq[k] > 0 && seq != lastSeq[k] && seq != nextSeq {
				t.Errorf("round %d: %s has seq %d; want %d (or %d in flight)", round, id, seq, lastSeq[k], nextSeq)
			}
			if lastSeq[k] == 0 && seq < seqs[k] {
				t.Errorf("round %d: %s has seq %d; want at least %d from the previous round", round, id, seq, seqs[k])
			}
			seqs[k] = max(seq, 0)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

// crashRound runs the child until it has written for d, kills it and
// returns the lines it printed.
func crashRound(t *testing.T, dir string, d time.Duration) []string {
	t.Helper()
	cmd, sc := startChild(t, "TestCrash", crashEnv, dir)
	defer cmd.Process.Kill()

	if !sc.Scan() || sc.Text() != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not start: %q, %v", sc.Text(), sc.Err())
	}
	lines := make(chan string, 1<<16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	time.Sleep(d)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-done // the pipe holds every line written before the kill
	cmd.Wait()
	close(lines)
	var all []string
	for l := range lines {
		all = append(all, l)
	}
	return all
}

// startChild starts this test binary running only test, in its child
// mode (env set to the store's directory dir), and returns it with a
// scanner of its output. The caller kills it.
func startChild(t *testing.T, test, env, dir string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out)
}

// crashChild writes until killed, printing a line per acknowledged write:
// "E k n" for n events of customer ck, "A k seq" for its attributes.
func crashChild(dir string) {
	s, err := Open(Options{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println("ready")
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	seq := time.Now().UnixNano() / 1000 // grows across rounds
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		if i%3 == 2 {
			k := r.IntN(crashCustomers)
			seq++
			if err := s.PutAttributes("c"+strconv.Itoa(k), map[string]any{"seq": float64(seq), "pad": strings.Repeat("x", r.IntN(2000))}); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			fmt.Printf("A %d %d\n", k, seq)
			continue
		}
		// A batch of 3 events for each of two customers.
		k1, k2 := r.IntN(crashCustomers), r.IntN(crashCustomers)
		var batch []store.Event
		for j := range 3 {
			at := time.Now().UnixNano() + int64(j)
			batch = append(batch,
				store.Event{CustomerID: "c" + strconv.Itoa(k1), Type: "buy", At: at, Value: 1},
				store.Event{CustomerID: "c" + strconv.Itoa(k2), Type: "buy", At: at, Value: 1})
		}
		if err := s.AddEvents(batch); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if k1 == k2 {
			fmt.Printf("E %d 6\n", k1)
		} else {
			fmt.Printf("E %d 3\nE %d 3\n", k1, k2)
		}
	}
	os.Exit(0)
}

// crashContactsEnv selects the child mode of TestCrashContacts: its value
// is the store's directory.
const crashContactsEnv = "PEBBLESTORE_CRASH_CONTACTS_DIR"

// crashSyncInterval is the child's SyncInterval in TestCrashContacts.
const crashSyncInterval = 200 * time.Millisecond

// TestCrashContacts kills a process recording contacts (about one a
// millisecond: too few for the staged bound, so only the sync loop
// applies them) with SIGKILL, and checks that every contact acknowledged
// more than a second before the kill, five sync intervals, survived: the
// contacts staged in memory are applied and synced within SyncInterval.
func TestCrashContacts(t *testing.T) {
	if dir := os.Getenv(crashContactsEnv); dir != "" {
		crashContactsChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	cmd, sc := startChild(t, "TestCrashContacts", crashContactsEnv, dir)
	defer cmd.Process.Kill()
	var acked []int64 // the times of the contacts acknowledged, in order
	for sc.Scan() {
		at, err := strconv.ParseInt(sc.Text(), 10, 64)
		if err != nil {
			t.Fatalf("bad line %q", sc.Text())
		}
		acked = append(acked, at)
		if len(acked) > 0 && time.Duration(at-acked[0]) > 2500*time.Millisecond {
			break
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now().UnixNano()
	cmd.Wait()
	if len(acked) == 0 {
		t.Fatal("no contact acknowledged")
	}

	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := mustCustomer(t, s, "c")
	have := map[int64]bool{}
	if c != nil {
		for _, k := range c.Contacts {
			have[k.At] = true
		}
	}
	old, lost := 0, 0
	for _, at := range acked {
		if killed-at > int64(time.Second) {
			old++
			if !have[at] {
				lost++
			}
		}
	}
	t.Logf("%d contacts acknowledged, %d of them more than 1 s before the kill, %d stored", len(acked), old, len(have))
	if old == 0 || lost > 0 {
		t.Errorf("%d of the %d contacts acknowledged more than 1 s before the kill were lost", lost, old)
	}
}

// crashContactsChild records a contact about every millisecond until
// killed, printing the time of each once Record returned.
func crashContactsChild(dir string) {
	s, err := Open(Options{Dir: dir, SyncInterval: crashSyncInterval})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		at := time.Now().UnixNano()
		if err := s.Record("c", []store.Contact{{Action: store.Intern("a"), Channel: store.Intern("web"), At: at}}, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(at)
		time.Sleep(time.Millisecond)
	}
	os.Exit(0)
}
