// Command nudge is the nudge decision engine: one binary with
// subcommands to serve decisions and to check and test rule files.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `nudge: a real-time personalization decision engine

Usage:
  nudge serve --rules DIR --data DIR [flags]   serve decisions over HTTP
  nudge import --data DIR FILE.jsonl           bulk-load customers
  nudge rules check DIR   validate and compile a rules directory
  nudge rules test DIR    run the rule tests (*_test.yaml) of a directory
  nudge help              show this help
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "rules":
		return runRules(args[1:], stdout, stderr)
	case "serve":
		return runServe(args[1:], stderr)
	case "import":
		return runImport(args[1:], stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "nudge: unknown command %q\n\n%s", args[0], usage)
	return 2
}
