package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests below run nudge as a child process: the test binary re-runs
// itself with NUDGE_TEST_MAIN=1, and TestMain then behaves as the nudge
// binary. So crash tests can kill -9 a real server.

func TestMain(m *testing.M) {
	if os.Getenv("NUDGE_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// child is a nudge serve process.
type child struct {
	cmd    *exec.Cmd
	addr   string
	stderr *bytes.Buffer
	mu     *sync.Mutex
}

// startServe starts nudge serve on a free loopback port and waits until
// it serves.
func startServe(t *testing.T, rulesDir, dataDir string, env ...string) *child {
	t.Helper()
	return startServeArgs(t, []string{"--rules", rulesDir, "--data", dataDir}, env...)
}

// startServeArgs starts nudge serve with args (besides --addr and
// --cache-mb) and the environment additions env.
func startServeArgs(t *testing.T, args []string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--addr", "127.0.0.1:0", "--cache-mb", "8"}, args...)...)
	cmd.Env = append(append(os.Environ(), "NUDGE_TEST_MAIN=1"), env...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stderr: new(bytes.Buffer), mu: new(sync.Mutex)}
	// A test that fails before it stops its server must not leave it
	// running (a failed run of the crash tests used to leave servers
	// behind, serving on data directories already removed).
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			c.mu.Lock()
			c.stderr.WriteString(line + "\n")
			c.mu.Unlock()
			var m struct {
				Msg  string `json:"message"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "nudge is serving" {
				addr <- m.Addr
			}
		}
	}()
	select {
	case c.addr = <-addr:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("nudge serve did not start:\n%s", c.logs())
	}
	return c
}

func (c *child) logs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

func (c *child) url(path string) string { return "http://" + c.addr + path }

var client = &http.Client{Timeout: 10 * time.Second}

func request(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// copyDemoRules copies the demo storefront rules to a temp dir.
func copyDemoRules(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "rules")
	src := filepath.Join(testdata, "storefront", "rules")
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

type customerView struct {
	Attributes map[string]any `json:"attributes"`
	Events     map[string]struct {
		Count int `json:"count"`
	} `json:"events"`
	Contacts map[string]struct {
		Served int `json:"served"`
	} `json:"contacts"`
}

func getCustomer(t *testing.T, c *child, id string) (int, customerView) {
	t.Helper()
	code, body := request(t, "GET", c.url("/v1/customers/"+id), "")
	var v customerView
	if code == 200 {
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("GET customer %s: %v: %s", id, err, body)
		}
	}
	return code, v
}

// TestCrashKeepsAcknowledgedWrites kills a loaded server with SIGKILL at
// random moments and checks, after each restart on the same data
// directory, that every acknowledged event batch and customer write is
// there.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	rulesDir, dataDir := copyDemoRules(t), t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	ackedEvents := map[string]int{} // customer -> acknowledged events
	ackedSeq := map[string]int{}    // customer -> last acknowledged PUT seq
	var mu sync.Mutex
	const rounds = 5
	for round := range rounds {
		c := startServe(t, rulesDir, dataDir)
		// Everything acknowledged before is still there.
		for id, n := range ackedEvents {
			_, v := getCustomer(t, c, id)
			if got := v.Events["page_view"].Count; got < n {
				t.Fatalf("round %d: customer %s has %d page_view events; %d were acknowledged", round, id, got, n)
			}
		}
		for id, seq := range ackedSeq {
			_, v := getCustomer(t, c, id)
			if got, _ := v.Attributes["seq"].(float64); int(got) < seq {
				t.Fatalf("round %d: customer %s has seq %v; seq %d was acknowledged", round, id, v.Attributes["seq"], seq)
			}
		}
		// Load: writers until the kill.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("crash-%d-%d", round, w)
				for seq := 1; ; seq++ {
					select {
					case <-stop:
						return
					default:
					}
					var ok bool
					if seq%2 == 0 {
						ok = post(c.url("/v1/events"), fmt.Sprintf(`{"events":[{"customer_id":%q,"type":"page_view"},{"customer_id":%q,"type":"page_view"}]}`, id, id), 202)
						if ok {
							mu.Lock()
							ackedEvents[id] += 2
							mu.Unlock()
						}
					} else {
						ok = put(c.url("/v1/customers/"+id), fmt.Sprintf(`{"seq": %d, "round": %d}`, seq, round))
						if ok {
							mu.Lock()
							ackedSeq[id] = seq
							mu.Unlock()
						}
					}
					if !ok {
						return // the server is gone
					}
				}
			}()
		}
		time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond)
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = c.cmd.Wait()
		close(stop)
		wg.Wait()
	}
	if len(ackedEvents) == 0 || len(ackedSeq) == 0 {
		t.Fatal("no write was acknowledged: the test proved nothing")
	}
	events, puts := 0, 0
	for _, n := range ackedEvents {
		events += n
	}
	for _, n := range ackedSeq {
		puts += (n + 1) / 2
	}
	t.Logf("%d rounds: %d events and about %d customer writes acknowledged", rounds, events, puts)
	c := startServe(t, rulesDir, dataDir)
	defer func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() }()
	for id, n := range ackedEvents {
		_, v := getCustomer(t, c, id)
		if got := v.Events["page_view"].Count; got < n {
			t.Errorf("customer %s has %d page_view events; %d were acknowledged", id, got, n)
		}
	}
	for id, seq := range ackedSeq {
		_, v := getCustomer(t, c, id)
		if got, _ := v.Attributes["seq"].(float64); int(got) < seq {
			t.Errorf("customer %s has seq %v; seq %d was acknowledged", id, v.Attributes["seq"], seq)
		}
	}
}

func post(url, body string, want int) bool {
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == want
}

func put(url, body string) bool {
	req, _ := http.NewRequest("PUT", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == 200
}

// TestSigtermDrainsAndKeepsContacts decides under load, stops the server
// with SIGTERM, and checks that it exits 0 and that every served contact
// it answered is there after a restart.
func TestSigtermDrainsAndKeepsContacts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	rulesDir, dataDir := copyDemoRules(t), t.TempDir()
	c := startServe(t, rulesDir, dataDir)
	var mu sync.Mutex
	served := map[string]int{} // customer -> items answered
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("drain-%d", w)
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Post(c.url("/v1/decide"), "application/json",
					strings.NewReader(fmt.Sprintf(`{"customer_id":%q,"placements":["home_hero"],"channel":"web"}`, id)))
				if err != nil {
					return
				}
				var d struct {
					Placements map[string][]json.RawMessage `json:"placements"`
				}
				err = json.NewDecoder(resp.Body).Decode(&d)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					return
				}
				mu.Lock()
				served[id] += len(d.Placements["home_hero"])
				mu.Unlock()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := c.cmd.Wait()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("nudge serve exited with %v after SIGTERM; want 0\n%s", err, c.logs())
	}
	if !strings.Contains(c.logs(), "drained") {
		t.Errorf("no drain in the logs:\n%s", c.logs())
	}
	c = startServe(t, rulesDir, dataDir)
	defer func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() }()
	total := 0
	for id, n := range served {
		total += n
		_, v := getCustomer(t, c, id)
		got := 0
		for _, k := range v.Contacts {
			got += k.Served
		}
		if got < n {
			t.Errorf("customer %s has %d served contacts after SIGTERM; %d were answered", id, got, n)
		}
	}
	if total == 0 {
		t.Fatal("no decision answered: the test proved nothing")
	}
}

// TestLiveReload edits the rules of a running server: a valid edit is
// live within 2 s; a broken one is rejected with its position while the
// old rules keep serving; so is a ruleset whose rule test fails.
func TestLiveReload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	rulesDir, dataDir := copyDemoRules(t), t.TempDir()
	c := startServe(t, rulesDir, dataDir)
	defer func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() }()
	status := func() (version string, lastErr json.RawMessage) {
		_, body := request(t, "GET", c.url("/v1/rules"), "")
		var s struct {
			Version   string          `json:"version"`
			LastError json.RawMessage `json:"last_error"`
		}
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatalf("GET /v1/rules: %v: %s", err, body)
		}
		return s.Version, s.LastError
	}
	v0, _ := status()
	extra := filepath.Join(rulesDir, "actions", "live.yaml")

	// A valid edit: a new action, live within 2 s.
	good := "actions:\n  - id: live-edit\n    kind: message\n    placements: [footer]\n"
	if err := os.WriteFile(extra, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	// Live once a decision for the footer returns the new action (an
	// intermediate reload may see the file half written).
	decideFooter := func() string {
		_, body := request(t, "POST", c.url("/v1/decide"), `{"customer_id":"r-1","placements":["footer"],"channel":"web"}`)
		return string(body)
	}
	start := time.Now()
	live := false
	for time.Since(start) < 5*time.Second {
		if live = strings.Contains(decideFooter(), `"live-edit"`); live {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !live {
		t.Fatalf("the edit was not live after 5 s")
	}
	// SPEC 6 asks for 2 s; the watcher debounces 200 ms and reloads at
	// most 1 s after a burst starts. Timing is not asserted here (shared
	// machines); the deadline above is generous, and the figure is logged.
	t.Logf("the edit went live after %v", time.Since(start))
	v1, _ := status()
	if v1 == v0 {
		t.Fatalf("version %s unchanged after the edit", v1)
	}

	// A broken edit: rejected, with file, line and column; the old rules serve.
	broken := "actions:\n  - id: live-edit\n    kind: message\n    placements: [footer]\n    when: customer.tier ==\n"
	if err := os.WriteFile(extra, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	var lastErr json.RawMessage
	for start = time.Now(); time.Since(start) < 5*time.Second; time.Sleep(50 * time.Millisecond) {
		if _, lastErr = status(); len(lastErr) > 0 && string(lastErr) != "null" {
			break
		}
	}
	if v, _ := status(); v != v1 {
		t.Errorf("version %s after a broken edit; want %s kept", v, v1)
	}
	if !strings.Contains(string(lastErr), `"file":"actions/live.yaml"`) || !strings.Contains(string(lastErr), `"line":5`) {
		t.Errorf("last_error %s; want the file and line of the problem", lastErr)
	}
	if code, body := request(t, "POST", c.url("/v1/rules/reload"), ""); code != 422 || !strings.Contains(string(body), `"invalid_rules"`) {
		t.Errorf("reload of broken rules: %d %s; want 422 invalid_rules", code, body)
	}
	if body := decideFooter(); !strings.Contains(body, `"live-edit"`) {
		t.Errorf("decide after the broken edit: %s; want the old rules serving live-edit", body)
	}

	// A failing rule test rejects the ruleset too.
	if err := os.WriteFile(extra, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	failing := "tests:\n  - name: live edit is never shown\n    now: 2026-11-23T10:00:00Z\n    request: {placements: [footer], channel: web}\n    expect: {footer: []}\n"
	if err := os.WriteFile(filepath.Join(rulesDir, "tests", "live_test.yaml"), []byte(failing), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := request(t, "POST", c.url("/v1/rules/reload"), ""); code != 422 || !strings.Contains(string(body), "live edit is never shown") {
		t.Errorf("reload with a failing test: %d %s; want 422 naming the test", code, body)
	}
	if v, _ := status(); v != v1 {
		t.Errorf("version %s after a failing test; want %s kept", v, v1)
	}
}

// TestConcurrentWritesOverHTTP: 20 clients × 50 events for one customer
// give exactly 1,000; concurrent PATCHes of different keys all survive.
func TestConcurrentWritesOverHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	c := startServe(t, copyDemoRules(t), t.TempDir())
	defer func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() }()
	var wg sync.WaitGroup
	var failed sync.Map
	for w := range 20 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 50 {
				if !post(c.url("/v1/events"), `{"customer_id":"busy","type":"page_view"}`, 202) {
					failed.Store("event", true)
				}
			}
		}()
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("PATCH", c.url("/v1/customers/busy"), strings.NewReader(fmt.Sprintf(`{"k%02d": %d}`, w, w)))
			req.Header.Set("Content-Type", "application/merge-patch+json")
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != 200 {
				failed.Store("patch", true)
				return
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	failed.Range(func(k, _ any) bool { t.Errorf("a %s request failed", k); return true })
	_, v := getCustomer(t, c, "busy")
	if got := v.Events["page_view"].Count; got != 1000 {
		t.Errorf("%d page_view events; want exactly 1000", got)
	}
	for w := range 20 {
		if got, ok := v.Attributes[fmt.Sprintf("k%02d", w)].(float64); !ok || int(got) != w {
			t.Errorf("attribute k%02d = %v; want %d", w, v.Attributes[fmt.Sprintf("k%02d", w)], w)
		}
	}
}

// TestServeMetricsForBenchmarks: /metrics carries what nudge-bench run
// --server-metrics reads (bench/loadgen/server.go): the process's CPU
// time and memory, the collections and the scheduler's latencies.
func TestServeMetricsForBenchmarks(t *testing.T) {
	c := startServe(t, copyDemoRules(t), t.TempDir())
	code, body := request(t, "GET", c.url("/metrics"), "")
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, name := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes",
		"go_gc_duration_seconds_count", `go_sched_latencies_seconds_bucket{le="+Inf"}`} {
		if !strings.Contains(string(body), "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
