package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nudge-engine/nudge/bench/loadgen"
	"github.com/nudge-engine/nudge/bench/report"
)

const reportHelp = `Writes the Markdown report of a benchmark run from a directory of result
files (nudge-bench run --out DIR/NAME.json), with one SVG plot of latency
percentiles per group next to it (FILE-GROUP.svg).`

func runReport(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("report", reportHelp, stderr)
	dir := fs.String("dir", "", "directory of *.json results (required)")
	out := fs.String("out", "", "report file, .md (required)")
	title := fs.String("title", "nudge benchmark", "report title")
	commit := fs.String("commit", "unknown", "commit benchmarked")
	commands := fs.String("commands", "", "file of the commands run, one a line")
	micro := fs.String("micro", "", "file of the Go micro-benchmark output")
	notes := fs.String("notes", "", "file of notes, one a line")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || *out == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	if err := writeReport(*dir, *out, *title, *commit, *commands, *micro, *notes); err != nil {
		fmt.Fprintf(stderr, "nudge-bench report: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s\n", *out)
	return 0
}

func writeReport(dir, out, title, commit, commandsFile, microFile, notesFile string) error {
	results, err := report.ReadResults(dir)
	if err != nil {
		return err
	}
	in := report.Input{Title: title, Date: time.Now(), Commit: commit, Machine: report.ReadMachine(),
		Results: results, Plots: map[string]string{}}
	if in.Commands, err = readLines(commandsFile); err != nil {
		return err
	}
	if in.Notes, err = readLines(notesFile); err != nil {
		return err
	}
	if microFile != "" {
		b, err := os.ReadFile(microFile)
		if err != nil {
			return err
		}
		in.Micro = string(b)
	}
	base := strings.TrimSuffix(out, filepath.Ext(out))
	for _, g := range report.Groups(results) {
		var runs []*loadgen.Result
		for _, r := range results {
			if r.Group == g {
				runs = append(runs, r)
			}
		}
		name := g
		if name == "" {
			name = "all"
		}
		file := base + "-" + name + ".svg"
		if err := os.WriteFile(file, report.Plot("latency by percentile: "+name, runs), 0o644); err != nil {
			return err
		}
		in.Plots[g] = filepath.Base(file)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := report.Write(f, in); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readLines(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if line := strings.TrimRight(sc.Text(), " \t"); line != "" {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}
