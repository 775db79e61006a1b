// Package server is nudge's HTTP transport (SPEC section 3): one route
// switch over fasthttp, JSON decoding with bounded work, authentication,
// CORS, limits, panic recovery, metrics and a single error writer. The
// decisions are the engine's, the data is the store's, the rules are a
// RulesSource's; this package only maps HTTP onto them.
//
// # Endpoints
//
//	POST|GET /v1/decide            client  200; 400; 401; 503 store or no ruleset
//	PUT|PATCH|GET|DELETE
//	        /v1/customers/{id}     admin   200 (DELETE 204); 400; 401/403; 404 (GET); 415 (PATCH)
//	POST    /v1/events             client  202 {"accepted": n}; 400; 401; 503
//	POST    /v1/feedback           client  202 {"accepted": 1}; 400; 401; 503
//	POST    /v1/simulate           admin   200 with "explain"; 400; 401/403; 503
//	GET     /v1/rules              public  200
//	POST    /v1/rules/reload       admin   200 {"version"}; 422 invalid_rules
//	GET     /v1/stats              admin   200
//	GET     /healthz /readyz /metrics  public  200 (readyz: 503 when not ready)
//
// Every route answers OPTIONS with 204 and an Allow header, an unknown
// path 404, a known path with another method 405 (with Allow), a body over
// Options.MaxBodyBytes 413, and more than Options.MaxInFlight requests at
// once 503 with Retry-After: 1 (probes and metrics exempt).
//
// # Overload and slow clients
//
// MaxInFlight is a counter, not a queue: a request over it is answered
// 503 at once, before its body is decoded, so the work in progress (and
// the memory it holds) is bounded by MaxInFlight requests and admitted
// requests are not slowed by the excess. A client that sends its request
// slowly is cut when ReadTimeout passes since its first byte (fasthttp
// sets one deadline for the whole request, headers and body); an idle
// keep-alive connection when IdleTimeout passes. Connections waiting to
// be read hold no in-flight slot.
//
// # Latency budget
//
// Decide reads the customer, then gives the engine a deadline of
// Options.DecideTimeout (engine.Request.Deadline). A decision over it
// answers every placement's fallback with "degraded": true at the top of
// the response, counted in nudge_decide_degraded_total; the served
// fallbacks are recorded as usual. The read is outside the budget: a
// read that waited on the disk has paid already, and a decision for the
// customer costs little next to it. Simulate has no budget.
//
// # Errors
//
// Every handler returns an error; writeError is the only place that turns
// one into a response, {"error": {"code", "message", "field"}}, so every
// failure has the same shape and is counted by route and code. A bad
// request is always a 4xx and never writes anything: a batch is validated
// as a whole before the store sees it. A panic is recovered into a 500 and
// counted. Store failures are 503 (retry), never 500.
//
// # Requests
//
// Bodies are checked before encoding/json sees them (checkJSON: valid
// UTF-8, nesting depth, string length), in one linear pass, so decoding
// work is bounded by the body size limit. A decide body of the usual
// shape (plain strings, a flat context) is then decoded in one pass
// without reflection (decodeDecideFast); anything else, errors included,
// by encoding/json. Nothing of a fasthttp.RequestCtx
// (its byte slices included) is kept after a handler returns: every string
// taken from a request is a copy.
//
// # Choices where SPEC 3 is silent
//
//   - An omitted decide channel stays "" (no channel filter; an item goes
//     on the action's first listed channel, or has "channel": null). It is
//     not defaulted to "web".
//   - A placement repeated in one request is decided once (the response is
//     keyed by placement). GET /v1/decide has no context.
//   - A decision whose served contacts cannot be recorded is still
//     answered (logged, nudge_record_errors_total); a customer that cannot
//     be read is 503.
//   - DELETE of an unknown customer is 204 (erasure is idempotent).
//   - Feedback does not look decisions up (they are not stored); its
//     contact takes the channel of the action's latest serve unless the
//     body names a "channel".
//   - Simulate with an inline customer still reads budgets and
//     propensities from the store (read only); "seed" fixes its sampling.
//   - Every rejected reload is 422, an unreadable directory included.
//   - Without an admin token, admin endpoints trust the socket address:
//     behind a reverse proxy on the same host every client is loopback, so
//     set a token there.
package server
