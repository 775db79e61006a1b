package rules_test

import (
	"testing"

	"github.com/nudge-engine/nudge/bench/workload"
	"github.com/nudge-engine/nudge/rules"
)

// BenchmarkCompile compiles a generated ruleset of 1,000 actions: the
// cost of a reload.
func BenchmarkCompile(b *testing.B) {
	files := workload.Ruleset(workload.RulesetSpec{Actions: 1000, Seed: 1})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rules.Compile(files); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompileDemo loads the demo storefront rules from disk.
func BenchmarkCompileDemo(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rules.LoadDir("../testdata/storefront/rules"); err != nil {
			b.Fatal(err)
		}
	}
}
