package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nudge-engine/nudge/bench/loadgen"
)

func result(name, group, role, mode string, rps float64, p99 float64, start int) *loadgen.Result {
	r := &loadgen.Result{Name: name, Group: group, Role: role, Throughput: rps,
		Config:  loadgen.RunConfig{Mode: mode, Conns: 32},
		Start:   time.Date(2026, 11, 23, 10, 0, start, 0, time.UTC),
		Latency: loadgen.Percentiles{P50: p99 / 4, P90: p99 / 2, P99: p99, P999: p99 * 2, Max: p99 * 3},
		Status:  map[string]int64{"200": 100}}
	for _, p := range loadgen.CurvePercentiles {
		r.Curve = append(r.Curve, loadgen.CurvePoint{Percentile: p, Micros: p99 * (1 + p/100)})
	}
	return r
}

func sample() []*loadgen.Result {
	open := result("demo-open", "demo", RoleNudge, loadgen.ModeOpen, 5000, 800, 5)
	open.Config.Rate = 5000
	open.Service = &loadgen.Percentiles{P99: 400}
	open.SendLag = &loadgen.Percentiles{P99: 100, Max: 900}
	open.Server = &loadgen.ServerFigures{CPUSeconds: 3, Seconds: 2, CPUPerRequest: 60, GCCycles: 1, Wakeups: 1000,
		Waits:    []loadgen.SchedTail{{OverMicros: 81.92, Count: 100}, {OverMicros: 917.504, Count: 20}, {OverMicros: 10485.76, Count: 5}},
		RSSBytes: 900 << 20}
	ingest := result("ingest-batch100", "demo", RoleNudge, loadgen.ModeClosed, 700, 3000, 6)
	ingest.EventsPerSec = 70000
	ingest.Config.Batch = 100
	ingest.Kinds = map[string]loadgen.KindResult{"events": {Requests: 7000}}
	ceilingOpen := result("demo-ceiling-open", "demo", RoleCeiling, loadgen.ModeOpen, 5000, 300, 8)
	ceilingOpen.Config.Rate = 5020 // within 1 % of demo-open's
	ceilingOpen.Service = &loadgen.Percentiles{P99: 250}
	ceilingOpen.SendLag = &loadgen.Percentiles{P99: 10, Max: 90}
	failing := result("demo-nudge-2", "demo", RoleNudge, loadgen.ModeClosed, 11000, 2000, 4)
	failing.Errors, failing.Status["503"] = 3, 3
	failing.ServerError = "cannot scrape | it"
	open.Client = &loadgen.ClientFigures{CPUSeconds: 1, CPUPerRequest: 25}
	// CPU per request: nudge's closed loop 60 µs (its second run's
	// metrics unread), the ceiling's 20 and 16; the load generator 30
	// beside nudge, 18 and 16 beside the ceiling.
	ceiling1 := result("demo-ceiling-1", "demo", RoleCeiling, loadgen.ModeClosed, 40000, 1000, 1)
	ceiling1.Server = &loadgen.ServerFigures{CPUSeconds: 8, Seconds: 10, CPUPerRequest: 20}
	ceiling1.Client = &loadgen.ClientFigures{CPUSeconds: 7.2, CPUPerRequest: 18}
	nudge1 := result("demo-nudge-1", "demo", RoleNudge, loadgen.ModeClosed, 9000, 2000, 2)
	nudge1.Server = &loadgen.ServerFigures{CPUSeconds: 5.4, Seconds: 10, CPUPerRequest: 60}
	nudge1.Client = &loadgen.ClientFigures{CPUSeconds: 2.7, CPUPerRequest: 30}
	ceiling2 := result("demo-ceiling-2", "demo", RoleCeiling, loadgen.ModeClosed, 20000, 1000, 3)
	ceiling2.Server = &loadgen.ServerFigures{CPUSeconds: 3.2, Seconds: 10, CPUPerRequest: 16}
	ceiling2.Client = &loadgen.ClientFigures{CPUSeconds: 3.2, CPUPerRequest: 16}
	return []*loadgen.Result{
		ceiling1, nudge1, ceiling2,
		failing, open, ingest,
		result("gen-nudge-1", "gen1000", RoleNudge, loadgen.ModeClosed, 3000, 5000, 7),
		ceilingOpen,
	}
}

func TestRatio(t *testing.T) {
	rs := sample()
	f := func(i int, want float64, wantOK bool) {
		t.Helper()
		got, ok := Ratio(rs, rs[i])
		if ok != wantOK || (ok && (got < want-1e-9 || got > want+1e-9)) {
			t.Fatalf("Ratio(%s) = %v, %v; want %v, %v", rs[i].Name, got, ok, want, wantOK)
		}
	}
	f(1, 0.3, true) // 9000 / mean(40000, 20000)
	f(3, 11.0/30, true)
	f(0, 0, false) // a ceiling run
	f(4, 0, false) // open loop
	f(6, 0, false) // no ceiling in its group
	f(7, 0, false) // an open-loop ceiling run
}

func TestCeilingAtRate(t *testing.T) {
	rs := sample()
	if c := CeilingAtRate(rs, rs[4]); c != rs[7] {
		t.Fatalf("CeilingAtRate(demo-open) = %v; want demo-ceiling-open", c)
	}
	rs[7].Config.Rate = 5100 // 2 % off
	if c := CeilingAtRate(rs, rs[4]); c != nil {
		t.Fatalf("a ceiling at another rate matched: %s", c.Name)
	}
	rs[7].Config.Rate, rs[7].Group = 5000, "other"
	if c := CeilingAtRate(rs, rs[4]); c != nil {
		t.Fatalf("a ceiling of another group matched: %s", c.Name)
	}
}

func TestWrite(t *testing.T) {
	var buf bytes.Buffer
	in := Input{Title: "nudge benchmark", Date: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), Commit: "abc1234",
		Machine:  Machine{CPUs: 2, CPUModel: "Test CPU", MemoryGB: 24, Go: "go1.26", Kernel: "Linux 6"},
		Commands: []string{"nudge-bench gen --customers 100", "nudge-bench run --url http://127.0.0.1:1"},
		Micro:    "BenchmarkX 10 100 ns/op", Results: sample(), Plots: map[string]string{"demo": "r-demo.svg"}}
	if err := Write(&buf, in); err != nil {
		t.Fatal(err)
	}
	md := buf.String()
	for _, want := range []string{
		"| CPUs (nproc) | 2 |", "Test CPU", "24.0 GiB", "commit abc1234",
		"| demo-nudge-1 | demo | closed | 32 |  | 9000 |  | 0.30 | 500µs | 1.00ms | 2.00ms | 4.00ms | 6.00ms | 0 |",
		"| demo-nudge-2 | demo | closed | 32 |  | 11000 |  | 0.37 |", "3 (503: 3)",
		"| demo-open | demo | open | 32 | 5000/s |",
		"**demo**: nudge 10000 req/s (mean of 2 closed-loop runs) = **0.33 × the ceiling** (30000 req/s, mean of 2 runs)",
		"**demo-open**: p99 800µs", "; the ceiling at the same rate: p99 300µs (p99.9 600µs, max 900µs)",
		"| demo-ceiling-open | 300µs | 250µs |", "**ingest-batch100**: 70000 durable events/s",
		"| demo-open | 800µs | 400µs |", "![latency by percentile, demo](r-demo.svg)",
		"BenchmarkX 10 100 ns/op", "nudge-bench gen --customers 100\nnudge-bench run",
		"; CPU per request: nudge 60µs, the ceiling 18µs, and the load generator 30µs beside nudge, 17µs beside the ceiling\n",
		"| demo-open | open | 60µs | 25µs | 1.50 | 1 | 2.00 % (> 918µs) | 0.50 % (> 10.49ms) | 900 MiB |",
		"| demo-ceiling-1 | closed | 20µs | 18µs | 0.80 | 0 |",
		"| demo-nudge-2 | closed | not read: cannot scrape / it |  |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md, "gen1000**: nudge") {
		t.Error("a group without ceiling runs got a ratio")
	}
	if t.Failed() {
		t.Log(md)
	}
}

func TestPlot(t *testing.T) {
	rs := sample()
	svg := Plot("latency: demo", rs[:5])
	dec := xml.NewDecoder(bytes.NewReader(svg))
	lines, texts := 0, []string{}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
			for _, a := range se.Attr {
				if a.Name.Local == "points" && len(strings.Fields(a.Value)) != len(loadgen.CurvePercentiles) {
					t.Fatalf("a curve has %d points; want %d", len(strings.Fields(a.Value)), len(loadgen.CurvePercentiles))
				}
			}
		}
		if cd, ok := tok.(xml.CharData); ok {
			texts = append(texts, string(cd))
		}
	}
	if lines != 5 {
		t.Fatalf("%d curves; want 5", lines)
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"demo-ceiling-1 40000/s", "demo-open @5000/s", "99.9%", "max", "latency: demo"} {
		if !strings.Contains(all, want) {
			t.Errorf("plot lacks %q", want)
		}
	}
	// A higher latency is drawn higher (smaller y).
	if x, y := nines(99), nines(99.9); !(x < y) || nines(100) != maxNines {
		t.Fatalf("nines: 99 → %v, 99.9 → %v, max → %v", x, y, nines(100))
	}
}

func TestReadResults(t *testing.T) {
	dir := t.TempDir()
	rs := sample()
	for _, i := range []int{2, 0, 1} { // written out of order
		b, _ := json.Marshal(rs[i])
		if err := os.WriteFile(filepath.Join(dir, rs[i].Name+".json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Name != "demo-ceiling-1" || got[1].Name != "demo-nudge-1" || got[2].Name != "demo-ceiling-2" {
		t.Fatalf("results not in start order: %v", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadResults(dir); err == nil {
		t.Fatal("a malformed result was accepted")
	}
}

func TestReadMachine(t *testing.T) {
	m := ReadMachine()
	if m.CPUs < 1 || m.Go == "" {
		t.Fatalf("machine %+v", m)
	}
	if _, err := os.Stat("/proc/cpuinfo"); err == nil && (m.MemoryGB <= 0 || m.Kernel == "") {
		t.Fatalf("machine %+v: memory and kernel unread from /proc", m)
	}
}
