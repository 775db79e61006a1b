package server_test

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/nudge-engine/nudge/server"
	"github.com/nudge-engine/nudge/store"
)

// TestNamesFull: once the table of action and channel names is full
// (store.MaxNames), feedback and simulate refuse a name never seen with
// 400 too_many, and go on accepting known ones; decisions, whose names
// come from the ruleset, go on recording. Filling the table is for good,
// so the test runs in a child process of its own.
func TestNamesFull(t *testing.T) {
	if os.Getenv("NUDGE_TEST_NAMES_FULL") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestNamesFull$", "-test.count=1")
		cmd.Env = append(os.Environ(), "NUDGE_TEST_NAMES_FULL=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	h := newHarness(t, server.Options{}, nil)
	for i := 0; store.NumNames() < store.MaxNames; i++ {
		store.Intern(fmt.Sprint("filler-", i))
	}
	fb := func(action, channel string) *response {
		return h.do("POST", "/v1/feedback", fmt.Sprintf(`{"decision_id":"d","customer_id":"c1","action":%q,"channel":%q,"outcome":"click"}`, action, channel))
	}
	checkError(t, fb("never-seen", "web"), 400, "too_many", "action")
	checkError(t, fb("winback-20", "never-seen-channel"), 400, "too_many", "channel")
	h.ok(fb("winback-20", "web"), 202)
	// A decision records its contacts: a channel the ruleset defines
	// keeps its name, one never seen is recorded as no channel.
	h.ok(h.do("POST", "/v1/decide", `{"customer_id":"c1","placement":"home_hero","channel":"app"}`), 200)
	h.ok(h.do("POST", "/v1/decide", `{"customer_id":"c1","placement":"home_hero","channel":"kiosk-never-seen"}`), 200)
	c, err := h.st.Customer("c1")
	if err != nil || c == nil {
		t.Fatalf("customer c1: %+v, %v", c, err)
	}
	var got []string
	for _, k := range c.Contacts {
		got = append(got, k.Action.String()+"/"+k.Outcome.String()+"/"+k.Channel.String())
	}
	if want := "[winback-20/click/web brand-story/served/app brand-story/served/]"; fmt.Sprint(got) != want {
		t.Errorf("contacts %v; want %s", got, want)
	}
	sim := `{"customer_id":"s","placement":"home_hero","customer":{"id":"s","contacts":[{"action":%q,"outcome":"served","channel":"web"}]}}`
	checkError(t, h.do("POST", "/v1/simulate", fmt.Sprintf(sim, "never-seen-either")), 400, "too_many", "customer.contacts[0].action")
	h.ok(h.do("POST", "/v1/simulate", fmt.Sprintf(sim, "winback-20")), 200)
	if n := h.metric("nudge_names_refused_total"); n != 4 {
		t.Errorf("nudge_names_refused_total %v; want 4", n)
	}

	// A ruleset whose only mention of a channel is a policy's cap: the
	// decisions on it keep the channel, so the cap holds, and feedback
	// may name it.
	h.src.mu.Lock()
	h.src.rs = mustCompile(t, `
actions:
  - id: promo
    placements: [hero]
    content: {title: hi}
policies:
  - id: sms-cap
    cap: {max: 1, window: 7d, channels: [sms-only-in-a-policy]}
placements:
  hero: {limit: 1}
`)
	h.src.mu.Unlock()
	for range 3 {
		h.ok(h.do("POST", "/v1/decide", `{"customer_id":"c2","placement":"hero","channel":"sms-only-in-a-policy"}`), 200)
	}
	h.ok(h.do("POST", "/v1/feedback", `{"decision_id":"d","customer_id":"c2","action":"promo","channel":"sms-only-in-a-policy","outcome":"click"}`), 202)
	c, _ = h.st.Customer("c2")
	got = got[:0]
	for _, k := range c.Contacts {
		got = append(got, k.Action.String()+"/"+k.Outcome.String()+"/"+k.Channel.String())
	}
	if want := "[promo/served/sms-only-in-a-policy promo/click/sms-only-in-a-policy]"; fmt.Sprint(got) != want {
		t.Errorf("contacts under the capping policy %v; want %s", got, want)
	}
	if n := h.metric("nudge_names"); n != float64(store.NumNames()) || n < store.MaxNames {
		t.Errorf("nudge_names %v; the table holds %d", n, store.NumNames())
	}
}
