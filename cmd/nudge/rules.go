package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/rules"
)

const rulesUsage = `Usage:
  nudge rules check DIR
  nudge rules test DIR
`

func runRules(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || (args[0] != "check" && args[0] != "test") {
		fmt.Fprint(stderr, rulesUsage)
		return 2
	}
	rs, err := rules.LoadDir(args[1])
	if err != nil {
		var list rules.ErrorList
		if errors.As(err, &list) {
			fmt.Fprint(stdout, list.Format())
			return 1
		}
		fmt.Fprintf(stderr, "nudge: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, rs.Warnings.Format())
	if args[0] == "check" {
		return 0
	}
	results := engine.RunTests(rs, time.Now())
	failed := 0
	for _, r := range results {
		if r.Passed() {
			continue
		}
		failed++
		fmt.Fprintf(stdout, "FAIL %s\n%s", r.Test, r.Report())
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", len(results)-failed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}
