package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nudge-engine/nudge/bench/loadgen"
	"github.com/nudge-engine/nudge/bench/workload"
	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/store"
)

type fakeImporter struct {
	ids    map[string]bool
	synced bool
}

func (f *fakeImporter) Import(cs []*store.Customer) error {
	for _, c := range cs {
		if f.ids[c.ID] {
			return fmt.Errorf("customer %s imported twice", c.ID)
		}
		f.ids[c.ID] = true
	}
	return nil
}

func (f *fakeImporter) Sync() error { f.synced = true; return nil }

func TestGenerate(t *testing.T) {
	f := &fakeImporter{ids: map[string]bool{}}
	calls := 0
	if err := generate(f, workload.CustomerSpec{Seed: 1}, 2500, 3, func(int) { calls++ }); err != nil {
		t.Fatal(err)
	}
	if len(f.ids) != 2500 || !f.ids[workload.CustomerID(0)] || !f.ids[workload.CustomerID(2499)] || f.ids[workload.CustomerID(2500)] {
		t.Fatalf("imported %d customers; want exactly c-0000000..c-0002499", len(f.ids))
	}
	if !f.synced || calls == 0 {
		t.Fatalf("synced %v, progress calls %d", f.synced, calls)
	}
}

func TestWriteRuleset(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rules")
	if err := writeRuleset(dir, workload.RulesetSpec{Actions: 50, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	rs, err := rules.LoadDir(dir)
	if err != nil {
		t.Fatalf("the written ruleset does not load: %v", err)
	}
	if rs.Action(workload.ActionID(49)) == nil || rs.Action(workload.ActionID(50)) != nil {
		t.Fatal("the written ruleset does not hold exactly actions a0000..a0049")
	}
}

// TestRunAndReport loads an in-process ceiling server through the run
// command and writes a report of the result.
func TestRunAndReport(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := loadgen.CeilingServer(loadgen.CeilingBody(300))
	go srv.Serve(ln) //nolint:errcheck // ends with the listener
	defer srv.Shutdown()

	dir := t.TempDir()
	out := filepath.Join(dir, "raw", "c1.json")
	if err := os.Mkdir(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"run", "--url", "http://" + ln.Addr().String(), "--conns", "2", "--duration", "300ms",
		"--customers", "100", "--name", "ceiling-1", "--group", "g", "--role", "ceiling", "--out", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("run exit %d: %s", code, stderr.String())
	}
	var res loadgen.Result
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Kinds["decide"].ResponseBytes != 300 || res.Role != "ceiling" || !strings.Contains(res.Command, "--conns 2") {
		t.Fatalf("result %+v", res)
	}
	if !strings.HasPrefix(stdout.String(), "ceiling-1") {
		t.Fatalf("summary %q", stdout.String())
	}

	// Open loop at half of that, through --rate-from.
	stdout.Reset()
	out2 := filepath.Join(dir, "raw", "n1.json")
	code = run([]string{"run", "--url", "http://" + ln.Addr().String(), "--mode", "open", "--rate-from", out,
		"--rate-factor", "0.01", "--conns", "2", "--duration", "300ms", "--customers", "100", "--name", "open", "--group", "g", "--out", out2}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("open run exit %d: %s", code, stderr.String())
	}
	b, _ = os.ReadFile(out2)
	var open loadgen.Result
	if err := json.Unmarshal(b, &open); err != nil {
		t.Fatal(err)
	}
	if want := res.Throughput * 0.01; open.Config.Rate < want*0.999 || open.Config.Rate > want*1.001 {
		t.Fatalf("open-loop rate %.1f; want %.1f", open.Config.Rate, want)
	}

	md := filepath.Join(dir, "report.md")
	if code := run([]string{"report", "--dir", filepath.Join(dir, "raw"), "--out", md, "--commit", "abc"}, &stdout, &stderr); code != 0 {
		t.Fatalf("report exit %d: %s", code, stderr.String())
	}
	b, err = os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "| ceiling-1 | g | closed |") || !strings.Contains(string(b), "(report-g.svg)") {
		t.Fatalf("report:\n%s", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "report-g.svg")); err != nil {
		t.Fatal(err)
	}
}

// TestHandler times decisions through the handler on a small generated
// data directory and the demo rules, and fails on a decide error.
func TestHandler(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"gen", "--customers", "300", "--data", data}, &stdout, &stderr); code != 0 {
		t.Fatalf("gen: exit %d: %s", code, stderr.String())
	}
	stdout.Reset()
	args := []string{"handler", "--data", data, "--rules", "../../testdata/storefront/rules", "--customers", "300",
		"--warmup", "50", "--requests", "30", "--sweep-mb", "1"}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("handler: exit %d: %s", code, stderr.String())
	}
	var warm, swept float64
	var n int
	if _, err := fmt.Sscanf(stdout.String(), "handler ../../testdata/storefront/rules: warm %fµs per request, swept (1 MiB between requests) %fµs per request, over %d requests each",
		&warm, &swept, &n); err != nil || warm <= 0 || swept <= 0 || n != 30 {
		t.Fatalf("output %q: %v", stdout.String(), err)
	}
	// A rules directory that does not load is an error.
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "actions.yaml"), []byte("actions: [{id: a, when: 'customer.'}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := run([]string{"handler", "--data", data, "--rules", bad}, &stdout, &stderr); code != 1 {
		t.Errorf("rules that do not compile: exit %d, want 1", code)
	}
}

func TestRunRejects(t *testing.T) {
	var stdout, stderr bytes.Buffer
	for _, args := range [][]string{
		{"run", "--mix", "decide=0"},
		{"run", "--url", "http://10.1.2.3:80"},
		{"run", "--mode", "open"}, // no rate
		{"nonsense"},
		{"handler", "--data", "x"}, // no rules
		{"handler", "--data", "x", "--rules", "y", "--sweep-mb", "0"},
	} {
		if code := run(args, &stdout, &stderr); code == 0 {
			t.Errorf("%v: exit 0", args)
		}
	}
}
