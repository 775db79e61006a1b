// Package report turns the JSON results of a benchmark run (bench/loadgen)
// into a Markdown report with a table of the figures and SVG plots of the
// latency percentiles, nudge beside the ceiling.
package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nudge-engine/nudge/bench/loadgen"
)

// Roles of a run in its group.
const (
	RoleCeiling = "ceiling"
	RoleNudge   = "nudge"
)

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs     int     `json:"cpus"`
	CPUModel string  `json:"cpu_model"`
	MemoryGB float64 `json:"memory_gib"`
	Go       string  `json:"go"`
	Kernel   string  `json:"kernel"`
	LoadAvg  string  `json:"load_avg"`
}

// ReadMachine describes this machine from /proc and the Go runtime; what
// it cannot read is left empty.
func ReadMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseFloat(strings.Fields(procField("/proc/meminfo", "MemTotal") + " 0")[0], 64); err == nil {
		m.MemoryGB = kb / (1 << 20)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return m
}

// procField returns the value of the first "key: value" line of a /proc
// file, or "".
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// ReadResults reads every *.json result of dir, ordered by start time.
func ReadResults(dir string) ([]*loadgen.Result, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []*loadgen.Result
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var r loadgen.Result
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("cannot read result %s: %w", name, err)
		}
		if r.Name == "" {
			r.Name = strings.TrimSuffix(filepath.Base(name), ".json")
		}
		out = append(out, &r)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, nil
}

// Input is everything a report shows.
type Input struct {
	Title    string
	Date     time.Time
	Commit   string
	Machine  Machine
	Commands []string // the exact commands, in order
	Notes    []string // lines of context (data generation time, ...)
	Micro    string   // the Go micro-benchmark output
	Results  []*loadgen.Result
	// Plots maps a group to the file name of its SVG plot, relative to
	// the report.
	Plots map[string]string
}

// CeilingThroughput is the mean closed-loop throughput of the ceiling runs
// of group, and how many there were.
func CeilingThroughput(results []*loadgen.Result, group string) (float64, int) {
	sum, n := 0.0, 0
	for _, r := range results {
		if r.Group == group && r.Role == RoleCeiling && r.Config.Mode == loadgen.ModeClosed {
			sum += r.Throughput
			n++
		}
	}
	if n == 0 {
		return 0, 0
	}
	return sum / float64(n), n
}

// Ratio is a closed-loop nudge run's throughput over the mean ceiling of
// its group; false when it has none or the run is not such a run.
func Ratio(results []*loadgen.Result, r *loadgen.Result) (float64, bool) {
	if r.Role != RoleNudge || r.Config.Mode != loadgen.ModeClosed {
		return 0, false
	}
	c, n := CeilingThroughput(results, r.Group)
	if n == 0 || c == 0 {
		return 0, false
	}
	return r.Throughput / c, true
}

// CeilingAtRate returns the open-loop ceiling run of open-loop run r's
// group at r's rate (within 1 %), or nil: its percentiles are what this
// machine and load generator achieve at that rate with nothing to compute.
func CeilingAtRate(results []*loadgen.Result, r *loadgen.Result) *loadgen.Result {
	for _, c := range results {
		if c != r && c.Group == r.Group && c.Role == RoleCeiling && c.Config.Mode == loadgen.ModeOpen &&
			math.Abs(c.Config.Rate-r.Config.Rate) <= 0.01*r.Config.Rate {
			return c
		}
	}
	return nil
}

// Groups lists the groups of results in order of first appearance.
func Groups(results []*loadgen.Result) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range results {
		if !seen[r.Group] {
			seen[r.Group] = true
			out = append(out, r.Group)
		}
	}
	return out
}

// Write writes the Markdown report.
func Write(w io.Writer, in Input) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	p("# %s\n\n", in.Title)
	p("%s, commit %s.\n\n", in.Date.UTC().Format("2006-01-02 15:04 MST"), in.Commit)

	p("## Machine\n\n")
	m := in.Machine
	p("| | |\n|---|---|\n")
	p("| CPUs (nproc) | %d |\n| CPU | %s |\n| memory | %.1f GiB |\n| Go | %s |\n| kernel | %s |\n| load average at report time | %s |\n\n",
		m.CPUs, m.CPUModel, m.MemoryGB, m.Go, m.Kernel, m.LoadAvg)
	p("The load generator, the ceiling server and nudge share these CPUs: compare ratios within one report, not absolute numbers across machines or reports.\n\n")

	p("## Summary\n\n")
	for _, line := range Summary(in.Results) {
		p("- %s\n", line)
	}
	p("\n")

	p("## End-to-end runs\n\n")
	p("Closed loop: every connection sends its next request when the previous is answered (maximum throughput). ")
	p("Open loop: a constant rate on a fixed schedule, latency from each request's due time (coordinated omission corrected). ")
	p("Latency percentiles are of 2xx answers; `× ceiling` is the run's throughput over the mean of its group's ceiling runs, measured alternately in the same run.\n\n")
	p("| run | group | mode | conns | rate | throughput (req/s) | events/s | × ceiling | p50 | p90 | p99 | p99.9 | max | errors |\n")
	p("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range in.Results {
		rate, ev, ratio := "", "", ""
		if r.Config.Mode == loadgen.ModeOpen {
			rate = fmt.Sprintf("%.0f/s", r.Config.Rate)
		}
		if r.EventsPerSec > 0 {
			ev = fmt.Sprintf("%.0f", r.EventsPerSec)
		}
		if x, ok := Ratio(in.Results, r); ok {
			ratio = fmt.Sprintf("%.2f", x)
		}
		errs := strconv.FormatInt(r.Errors, 10)
		if list := r.ErrorList(); len(list) > 0 {
			errs += " (" + strings.Join(list, ", ") + ")"
		}
		if r.Unsent > 0 {
			errs += fmt.Sprintf(", %d unsent", r.Unsent)
		}
		l := r.Latency
		p("| %s | %s | %s | %d | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Name, r.Group, r.Config.Mode,
			r.Config.Conns, rate, r.Throughput, ev, ratio, loadgen.FormatMicros(l.P50), loadgen.FormatMicros(l.P90),
			loadgen.FormatMicros(l.P99), loadgen.FormatMicros(l.P999), loadgen.FormatMicros(l.Max), errs)
	}
	p("\n")
	var open []*loadgen.Result
	for _, r := range in.Results {
		if r.Service != nil {
			open = append(open, r)
		}
	}
	if len(open) > 0 {
		p("Open-loop runs: latency from the actual send (what a tester without the correction would report) and how late requests left their schedule:\n\n")
		p("| run | p99 from due time | p99 from send | p99.9 from send | send lag p99 | send lag max |\n|---|---:|---:|---:|---:|---:|\n")
		for _, r := range open {
			p("| %s | %s | %s | %s | %s | %s |\n", r.Name, loadgen.FormatMicros(r.Latency.P99), loadgen.FormatMicros(r.Service.P99),
				loadgen.FormatMicros(r.Service.P999), loadgen.FormatMicros(r.SendLag.P99), loadgen.FormatMicros(r.SendLag.Max))
		}
		p("\n")
	}
	writeServerFigures(p, in.Results)
	for _, g := range Groups(in.Results) {
		if f, ok := in.Plots[g]; ok {
			p("![latency by percentile, %s](%s)\n\n", g, f)
		}
	}

	if len(in.Notes) > 0 {
		p("## Notes\n\n")
		for _, n := range in.Notes {
			p("- %s\n", n)
		}
		p("\n")
	}
	if in.Micro != "" {
		p("## Go micro-benchmarks\n\n```\n%s\n```\n\n", strings.TrimSpace(in.Micro))
	}
	if len(in.Commands) > 0 {
		p("## Commands\n\nExactly as run (`bench/run.sh`), in order:\n\n```sh\n")
		for _, c := range in.Commands {
			p("%s\n", c)
		}
		p("```\n\n")
	}
	p("Raw results (one JSON file per run, with the HdrHistogram of each) sit next to this report.\n")
	return bw.Flush()
}

// writeServerFigures writes the table of what the servers' own metrics
// say about each run that read them (nudge-bench run --server-metrics),
// with the load generator's own CPU per request.
func writeServerFigures(p func(string, ...any), results []*loadgen.Result) {
	var rs []*loadgen.Result
	for _, r := range results {
		if r.Server != nil || r.ServerError != "" {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return
	}
	p("What the servers' own metrics (nudge's `/metrics`, and the ceiling's, which serves the same process and Go runtime metrics) say about each run, between the start and the end of its measured time: ")
	p("the server's CPU time per request answered and how many CPUs that is, the collections that ended, ")
	p("and how often a goroutine made runnable waited for a CPU longer than about 1 ms and 10 ms (the Go runtime's scheduler latency histogram, which samples one scheduling in eight). ")
	p("Waits beyond a millisecond mean the CPUs were busy, with the server's own work, its collector's, the load generator's or another process's. ")
	p("The load generator's own CPU time per request is beside it: the three share the CPUs, so a request costs the machine both.\n\n")
	p("| run | mode | CPU / request | load generator's CPU / request | CPUs | collections | waited ≈ 1 ms | waited ≈ 10 ms | RSS |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		client := ""
		if r.Client != nil {
			client = loadgen.FormatMicros(r.Client.CPUPerRequest)
		}
		s := r.Server
		if s == nil {
			p("| %s | %s | %s | %s | | | | | |\n", r.Name, r.Config.Mode, "not read: "+strings.ReplaceAll(r.ServerError, "|", "/"), client)
			continue
		}
		wait := func(us float64) string {
			share, over, ok := s.Share(us)
			if !ok {
				return ""
			}
			return fmt.Sprintf("%.2f %% (> %s)", 100*share, loadgen.FormatMicros(over))
		}
		p("| %s | %s | %s | %s | %.2f | %d | %s | %s | %.0f MiB |\n", r.Name, r.Config.Mode, loadgen.FormatMicros(s.CPUPerRequest),
			client, s.CPUs(), s.GCCycles, wait(1000), wait(10000), s.RSSBytes/(1<<20))
	}
	p("\n")
}

// CPUPerRequest is the mean CPU time per request, in µs, of the server
// and of the load generator over the closed-loop decide runs of group and
// role that measured it; 0 where none did.
func CPUPerRequest(results []*loadgen.Result, group, role string) (server, client float64) {
	var sum [2]float64
	var n [2]int
	for _, r := range results {
		if r.Group != group || r.Role != role || r.Config.Mode != loadgen.ModeClosed || r.Kinds["events"].Requests > 0 {
			continue
		}
		if r.Server != nil {
			sum[0] += r.Server.CPUPerRequest
			n[0]++
		}
		if r.Client != nil {
			sum[1] += r.Client.CPUPerRequest
			n[1]++
		}
	}
	for i := range n {
		if n[i] > 0 {
			sum[i] /= float64(n[i])
		}
	}
	return sum[0], sum[1]
}

// Summary returns the key figures: nudge/ceiling per group, p99 of the
// open-loop runs beside the ceiling's at the same rate, ingest rates.
func Summary(results []*loadgen.Result) []string {
	var out []string
	for _, g := range Groups(results) {
		c, nc := CeilingThroughput(results, g)
		if nc == 0 {
			continue
		}
		sum, n := 0.0, 0
		for _, r := range results {
			if r.Group == g && r.Role == RoleNudge && r.Config.Mode == loadgen.ModeClosed && r.Kinds["events"].Requests == 0 {
				sum += r.Throughput
				n++
			}
		}
		if n == 0 {
			continue
		}
		line := fmt.Sprintf("**%s**: nudge %.0f req/s (mean of %d closed-loop runs) = **%.2f × the ceiling** (%.0f req/s, mean of %d runs)",
			g, sum/float64(n), n, sum/float64(n)/c, c, nc)
		ns, nl := CPUPerRequest(results, g, RoleNudge)
		cs, cl := CPUPerRequest(results, g, RoleCeiling)
		if ns > 0 && cs > 0 {
			line += fmt.Sprintf("; CPU per request: nudge %s, the ceiling %s", loadgen.FormatMicros(ns), loadgen.FormatMicros(cs))
			if nl > 0 && cl > 0 {
				line += fmt.Sprintf(", and the load generator %s beside nudge, %s beside the ceiling", loadgen.FormatMicros(nl), loadgen.FormatMicros(cl))
			}
		}
		out = append(out, line)
	}
	for _, r := range results {
		switch {
		case r.Role != RoleNudge:
		case r.Config.Mode == loadgen.ModeOpen:
			line := fmt.Sprintf("**%s**: p99 %s (p99.9 %s, max %s) at a constant %.0f req/s, coordinated omission corrected",
				r.Name, loadgen.FormatMicros(r.Latency.P99), loadgen.FormatMicros(r.Latency.P999), loadgen.FormatMicros(r.Latency.Max), r.Config.Rate)
			if c := CeilingAtRate(results, r); c != nil {
				line += fmt.Sprintf("; the ceiling at the same rate: p99 %s (p99.9 %s, max %s)",
					loadgen.FormatMicros(c.Latency.P99), loadgen.FormatMicros(c.Latency.P999), loadgen.FormatMicros(c.Latency.Max))
			}
			out = append(out, line)
		case r.EventsPerSec > 0 && r.Kinds["decide"].Requests == 0:
			out = append(out, fmt.Sprintf("**%s**: %.0f durable events/s in %.0f requests/s of %d event(s), p99 %s",
				r.Name, r.EventsPerSec, r.Throughput, r.Config.Batch, loadgen.FormatMicros(r.Latency.P99)))
		}
	}
	return out
}
