package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestServeDecideTimeoutFlag: --decide-timeout reaches the server. Over
// a budget no decision can meet, the home hero answers its fallback,
// marked degraded and counted; with 0 there is no budget.
func TestServeDecideTimeoutFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	rulesDir := copyDemoRules(t)
	// Anna is a gold customer: without a budget she gets an offer, not
	// the brand story.
	decide := `{"customer_id":"anna","placements":["home_hero"],"channel":"web"}`
	put := `{"first_name":"Anna","tier":"gold","ltv":2400}`
	for _, tc := range []struct {
		flag     string
		degraded bool
	}{{"1ns", true}, {"0", false}, {"", false}} {
		args := []string{"--rules", rulesDir, "--data", t.TempDir()}
		if tc.flag != "" {
			args = append(args, "--decide-timeout", tc.flag)
		}
		c := startServeArgs(t, args)
		if code, body := request(t, "PUT", c.url("/v1/customers/anna"), put); code != 200 {
			t.Fatalf("PUT: %d %s", code, body)
		}
		code, body := request(t, "POST", c.url("/v1/decide"), decide)
		_, metrics := request(t, "GET", c.url("/metrics"), "")
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
		if code != 200 {
			t.Fatalf("--decide-timeout %q: decide %d %s", tc.flag, code, body)
		}
		degraded := strings.Contains(string(body), `"degraded":true`)
		fallback := strings.Contains(string(body), `"action":"brand-story"`)
		counted := strings.Contains(string(metrics), "nudge_decide_degraded_total 1")
		if degraded != tc.degraded || fallback != tc.degraded || counted != tc.degraded {
			t.Errorf("--decide-timeout %q: degraded %v, brand-story fallback %v, counted %v; want %v\n%s",
				tc.flag, degraded, fallback, counted, tc.degraded, body)
		}
	}
}

// TestServeLogsHoldNoAttributeValues runs requests with distinctive
// attribute, context and property values through nudge serve, including
// a rule whose runtime error quotes an attribute value, and bad requests
// holding the values; its stderr at the default info level must never
// show them. At debug level the rule error is logged with the value:
// that run proves the test would see a leak.
func TestServeLogsHoldNoAttributeValues(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	rulesDir := copyDemoRules(t)
	leak := "actions:\n  - id: born-check\n    kind: message\n    placements: [home_hero]\n    priority: 100\n    when: int(customer.first_name) > 1990\n"
	if err := os.WriteFile(filepath.Join(rulesDir, "actions", "leak.yaml"), []byte(leak), 0o644); err != nil {
		t.Fatal(err)
	}
	secrets := []string{"SECRET-NAME-c41d", "SECRET-BORN-c41d", "SECRET-CTX-c41d", "SECRET-PROP-c41d", "SECRET-SIM-c41d", "SECRET-MAIL-c41d@example.com"}
	run := func(level string) string {
		c := startServeArgs(t, []string{"--rules", rulesDir, "--data", t.TempDir(), "--log-level", level})
		reqs := []struct{ method, path, body string }{
			{"PUT", "/v1/customers/c-1", fmt.Sprintf(`{"first_name":%q,"born":%q,"email":%q}`, secrets[0], secrets[1], secrets[5])},
			{"PATCH", "/v1/customers/c-1", fmt.Sprintf(`{"nick":%q}`, secrets[0])},
			{"POST", "/v1/events", fmt.Sprintf(`{"customer_id":"c-1","type":"purchase","value":10,"properties":{"note":%q}}`, secrets[3])},
			{"POST", "/v1/decide", fmt.Sprintf(`{"customer_id":"c-1","placements":["home_hero","cart_sidebar"],"channel":"web","context":{"page":%q}}`, secrets[2])},
			{"POST", "/v1/feedback", `{"decision_id":"d-1","customer_id":"c-1","action":"brand-story","outcome":"click"}`},
			{"POST", "/v1/simulate", fmt.Sprintf(`{"customer_id":"c-2","placement":"home_hero","channel":"web","customer":{"attributes":{"first_name":%q}}}`, secrets[4])},
			{"GET", "/v1/customers/c-1", ""},
			// Bad requests holding the values.
			{"PUT", "/v1/customers/c-1", fmt.Sprintf(`{"first_name":%q`, secrets[0])},
			{"POST", "/v1/events", fmt.Sprintf(`{"customer_id":"c-1","type":"purchase","value":%q}`, secrets[3])},
			{"POST", "/v1/decide", fmt.Sprintf(`{"customer_id":"c-1","placement":"home_hero","context":%q}`, secrets[2])},
			{"POST", "/v1/decide", fmt.Sprintf(`{"customer_id":"%s/x","placement":"home_hero"}`, secrets[0])},
		}
		for _, r := range reqs {
			if code, body := request(t, r.method, c.url(r.path), r.body); code >= 500 {
				t.Errorf("%s %s: %d %s", r.method, r.path, code, body)
			}
		}
		if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
		return c.logs()
	}
	info := run("info")
	if !strings.Contains(info, "nudge is serving") || !strings.Contains(info, "drained") {
		t.Fatalf("the capture of stderr does not work:\n%s", info)
	}
	for _, s := range secrets {
		if strings.Contains(info, s) {
			t.Errorf("stderr at info level holds the attribute value %q:\n%s", s, info)
		}
	}
	debug := run("debug")
	if !strings.Contains(debug, secrets[0]) || !strings.Contains(debug, secrets[4]) {
		t.Errorf("at debug level the failing rule's value is not logged: the test could not see a leak:\n%s", debug)
	}
}
