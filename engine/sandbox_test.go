package engine_test

import (
	"os"
	"testing"

	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/store/memstore"
)

// TestExpressionEnvironment: at run time the only names an expression
// sees ($env, the whole environment) are those of SPEC 4.1 and the
// internal lookups; no process environment variable is among them, even
// one set for the purpose. (The load-time refusals are rules'
// TestExpressionSandbox.)
func TestExpressionEnvironment(t *testing.T) {
	t.Setenv("NUDGE_SANDBOX_PROBE", "leaked")
	rs := compileFiles(t, map[string]string{"r.yaml": `
actions:
  - id: probe
    placements: [p]
    when: not ("NUDGE_SANDBOX_PROBE" in $env) and not ("HOME" in $env) and not ("PATH" in $env)
    content:
      names: "{{ join(sort(keys($env)), ',') }}"
`})
	var d engine.Decision
	req := &engine.Request{CustomerID: "c", Placements: []string{"p"}, Now: benchNow}
	if err := engine.New(engine.Options{}).Decide(rs, memstore.New(), req, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Placements[0].Items) != 1 {
		t.Fatalf("the probe found process environment variables in $env (or failed): %+v", d.Placements[0])
	}
	got := d.Placements[0].Items[0].Content.(map[string]any)["names"]
	const want = "channel,context,context·get,count,customer,customer·all,customer·get,customer·id,days_since,now,now·get,outcomes,placement,propensity,segment·at,shown,sum"
	if got != want {
		t.Errorf("$env holds %v; want exactly %s", got, want)
	}
	if os.Getenv("NUDGE_SANDBOX_PROBE") != "leaked" {
		t.Fatal("the probe variable is not set")
	}
}
