package rules_test

import (
	"fmt"
	"testing"
)

// TestExpressionSandbox: an expression reaches nothing but its
// environment. Every way in expr (or in Go habits) to reach the process
// environment, files, the network, other processes or the wall clock is
// refused when the rules load, with the problem located. (The runtime
// side, what $env holds, is engine's TestExpressionEnvironment.)
//
// The custom functions of env.go were reviewed for the same: count, sum,
// days_since, segment, shown, outcomes and propensity read only the
// decision's customer context and counters through Funcs; the
// customer·get and context·get lookups read the two maps of the request;
// none of them touches a file, the network, the environment or the clock.
func TestExpressionSandbox(t *testing.T) {
	refused := map[string]string{
		`env("HOME") != ""`:                                      "unknown name env",
		`getenv("HOME") != ""`:                                   "unknown name getenv",
		`os.Getenv("HOME") != ""`:                                "unknown name os",
		`$env.HOME != nil`:                                       "unknown name HOME",
		`$env["PATH"] != nil`:                                    "unknown name PATH",
		`readFile("/etc/passwd") != ""`:                          "unknown name readFile",
		`file("/etc/passwd") != nil`:                             "unknown name file",
		`open("/etc/passwd") != nil`:                             "unknown name open",
		`exec("id") == ""`:                                       "unknown name exec",
		`http.Get("http://x") != nil`:                            "unknown name http",
		`fetch("http://x") != nil`:                               "unknown name fetch",
		`now() > now`:                                            "not callable", // the wall clock: now is the decision's time
		`timezone("Europe/Paris") != nil`:                        "unknown name timezone",
		`timezone("/etc/passwd") != nil`:                         "unknown name timezone",
		`date("2026-11-27", "2006-01-02", "Europe/Paris") > now`: "time zone",
		`date("2026-11-27", "2006-01-02", "../../../etc/passwd") > now`: "time zone",
	}
	for src, want := range refused {
		t.Run(src, func(t *testing.T) {
			list := compileErrors(t, files("r.yaml", fmt.Sprintf("segments:\n  s: %q\n", src)))
			p := findProblem(t, list, want)
			if p.File != "r.yaml" || p.Line != 2 || p.Col < 6 {
				t.Errorf("problem at %s:%d:%d; want inside the expression on line 2", p.File, p.Line, p.Col)
			}
		})
	}
	// What stays is pure computation on the arguments.
	allowed := []string{
		`len($env) > 0`, `date("2026-11-27T09:00:00+01:00") < now`, `date("27/11/2026", "02/01/2006") < now`,
		`fromJSON("{}") != nil`, `toJSON(context) != ""`, `"x" matches "^x$"`, `duration("1h") > duration("1m")`,
		`len(repeat("x", 10)) == 10`, `now.Hour() >= 0`, `upper(customer.name ?? "") != "X"`,
	}
	for _, src := range allowed {
		mustCompile(t, files("r.yaml", fmt.Sprintf("segments:\n  s: %q\n", src)))
	}
}
