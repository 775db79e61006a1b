// Package engine decides: given a compiled ruleset, a customer's context
// and a request, it returns the actions for each placement (SPEC 4.7) and,
// on request, why each candidate was or was not returned.
//
// # Inputs
//
// Decide reads the customer through the Source interface (the store
// implements it; tests use store/memstore or OneCustomer). The clock
// (Request.Now) and the random seed for Thompson sampling (Request.Seed)
// are inputs, never read from globals, so rule tests and simulations are
// reproducible.
//
// # Arbitration
//
// For each placement, in request order: the candidates are the actions
// listing the placement, pre-sorted at load by priority and id. They are
// walked one priority tier at a time. Each candidate passes the filters in
// the order of the explain reasons (schedule, channel, stop rules, when,
// suppression policies, caps, budget); the eligible ones of the tier are
// sorted by score (desc) then id, then taken unless already returned for an
// earlier placement, over the limit, or held out by their experiment. Once
// the limit is filled, lower tiers cannot outrank what was taken, so they
// are not evaluated (unless explaining). With nothing taken, the
// placement's fallback is returned.
//
// Segments, policy conditions, policy cap counts and the channel ranking
// for channel "auto" are evaluated at most once per decision.
//
// # Cost
//
// Per-decision scratch state (expr VMs, memo tables, the expression
// environment) is pooled. The engine allocates nothing per candidate
// action; what allocates is expr's own boxing of computed numbers,
// rendering the content of returned actions, and the explanation when asked
// for. A Decision can be reused across calls.
//
// # Deadline
//
// Request.Deadline is a latency budget for the evaluation. Decide reads
// the clock before each placement and every 16 candidates (never per
// candidate: a clock read costs about as much as a cheap candidate), so
// a decision overruns its deadline by at most the cost of 16 candidates
// and whatever one expression costs: a running expression is never
// interrupted. Once the deadline has passed, nothing evaluated so far is
// kept: every placement answers only its fallback (with the usual
// fallback rules: taken once per request, and only on a channel that can
// carry it), Decision.Degraded is set, and there are no explain entries
// and no holdouts. A partial ranking would not be the one the rules ask
// for; the fallback is what the rules name for "nothing better".
//
// # Errors
//
// A runtime error inside an expression never fails a decision: the
// condition counts as false, the score as 0, a template part as empty; the
// error is counted on the expression (rules.Expr.Errors) and passed to
// Options.OnRuleError.
package engine
