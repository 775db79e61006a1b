package server

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/store"
)

// decideBody is the JSON body of POST /v1/decide.
// Plain strings, not pointers: absent and "" mean the same, and
// decoding allocates less.
type decideBody struct {
	CustomerID string   `json:"customer_id"`
	Placement  string   `json:"placement"` // shorthand for one placement
	Placements []string `json:"placements"`
	Channel    string   `json:"channel"`
	Context    any      `json:"context"`

	// ctx is the map the fast decoder fills with the context, kept
	// empty across requests (the engine drops its reference to the
	// context when the decision is made; encoding/json ignores the field).
	ctx map[string]any
	// words is the fast decoder's (scanner.word), kept across requests.
	words map[string]any
}

// simulateBody is the JSON body of POST /v1/simulate beyond the decide
// body: the simulation's inputs. (Not an embedded decideBody: encoding/json
// would name its fields "decideBody.customer_id" in errors.)
type simulateBody struct {
	Now      *string          `json:"now"`
	Customer *json.RawMessage `json:"customer"`
	// Seed fixes propensity() sampling so a simulation can be repeated
	// (an extension of SPEC 3; default: random).
	Seed *uint64 `json:"seed"`
}

// decideCall is the state of one decide request, pooled: the engine's
// Decision and the response buffer are reused across requests.
type decideCall struct {
	body       decideBody
	unknown    store.Customer // the context of a customer the store does not know
	req        engine.Request
	dec        engine.Decision
	placements []string
	buf        []byte
	contacts   []store.Contact   // what record gives the store, reused
	stats      []store.StatDelta // (Store.Record keeps neither)
}

// reset empties b but for the Placements array, the context map and the
// decoder's words, which decoding reuses (a map that held many keys is
// dropped: clear keeps its size; words bounds itself).
func (b *decideBody) reset() {
	clear(b.Placements)
	ctx := b.ctx
	if len(ctx) > maxPooledContext {
		ctx = nil
	}
	clear(ctx)
	*b = decideBody{Placements: b.Placements[:0], ctx: ctx, words: b.words}
}

const maxPooledContext = 64

func (c *decideCall) reset() {
	c.body.reset()
	c.req = engine.Request{}
	c.unknown = store.Customer{}
	clear(c.placements)
	c.placements = c.placements[:0]
	// Drop what the decision references (actions, content) so the pool
	// does not pin an old ruleset.
	for i := range c.dec.Placements {
		clear(c.dec.Placements[i].Items)
	}
	clear(c.contacts)
	clear(c.stats)
	c.buf = c.buf[:0]
	if cap(c.buf) > maxPooledBuf {
		c.buf = nil // one huge response must not pin its buffer
	}
}

const maxPooledBuf = 64 << 10

func (s *Server) getDecide() *decideCall { return s.decides.Get().(*decideCall) }

func (s *Server) putDecide(c *decideCall) {
	c.reset()
	s.decides.Put(c)
}

// handleDecide answers GET and POST /v1/decide. Every returned item
// (fallbacks included) is recorded as a served contact, with the served
// and holdout stats deltas; recording is not durable on return (the store
// flushes within a second), so it costs no disk sync.
func (s *Server) handleDecide(ctx *fasthttp.RequestCtx) error {
	start := time.Now()
	defer func() { s.m.decideSeconds.Observe(time.Since(start).Seconds()) }()
	c := s.getDecide()
	defer s.putDecide(c)
	if string(ctx.Method()) == fasthttp.MethodGet {
		s.queryDecide(ctx, &c.body)
	} else if err := s.decodeDecide(ctx, &c.body); err != nil {
		return err
	}
	if err := s.buildRequest(&c.body, c); err != nil {
		return err
	}
	rs := s.src.Current()
	if rs == nil {
		return errNoRuleset
	}
	// The customer is read here, not by the engine, so that the latency
	// budget covers the evaluation only: a read that waits on the disk
	// must not turn into fallbacks once it has paid.
	cust, err := s.st.Customer(c.req.CustomerID)
	if err != nil {
		// A storefront calls decide on every page: a store failure must
		// not break the page, so it is 503 (retry, show the default)
		// and never a decision made without the customer's history.
		return s.storeFailed("read customer", err)
	}
	if cust == nil {
		c.unknown.ID = c.req.CustomerID
		cust = &c.unknown
	}
	now := s.opts.Now()
	c.req.Now, c.req.Seed, c.req.Customer = now, rand.Uint64(), cust
	if s.opts.DecideTimeout > 0 {
		c.req.Deadline = time.Now().Add(s.opts.DecideTimeout)
	}
	if err := s.eng.Decide(rs, s.st, &c.req, &c.dec); err != nil {
		return s.storeFailed("decide", err)
	}
	if c.dec.Degraded {
		s.m.degraded.Inc()
	}
	s.record(c, now.UnixNano())
	for i := range c.dec.Placements {
		s.m.decided(rs, c.dec.Placements[i].Name)
	}
	c.buf = appendDecision(c.buf[:0], &c.req, &c.dec, rs)
	c.buf = append(c.buf, "}\n"...)
	writeJSON(ctx, fasthttp.StatusOK, c.buf) // copies c.buf
	return nil
}

// decodeBody bounds and decodes a JSON request body into v.
func (s *Server) decodeBody(ctx *fasthttp.RequestCtx, v any) *apiError {
	body := ctx.Request.Body()
	if err := checkJSON(body, s.opts.MaxDepth, s.opts.MaxStringBytes); err != nil {
		return err
	}
	return decodeJSON(body, v, "")
}

// decodeDecide bounds and decodes a decide body into b, which is empty
// but for the Placements array it may reuse: in one pass when the body has
// the usual shape (decodeDecideFast), else with encoding/json.
func (s *Server) decodeDecide(ctx *fasthttp.RequestCtx, b *decideBody) *apiError {
	body := ctx.Request.Body()
	if err := checkJSON(body, s.opts.MaxDepth, s.opts.MaxStringBytes); err != nil {
		return err
	}
	if decodeDecideFast(body, b) {
		return nil
	}
	b.reset() // of what the fast decoder wrote
	return decodeJSON(body, b, "")
}

// queryDecide reads GET /v1/decide?customer_id=&placement=&channel=.
// placement may repeat and may hold a comma-separated list; "placements"
// is accepted too. There is no context in a GET: it is empty.
func (s *Server) queryDecide(ctx *fasthttp.RequestCtx, b *decideBody) {
	args := ctx.QueryArgs()
	b.CustomerID = string(args.Peek("customer_id"))
	b.Channel = string(args.Peek("channel"))
	limit := s.opts.MaxPlacements + 1 // one more shows the request is over
	for key, v := range args.All() {
		if string(key) != "placement" && string(key) != "placements" {
			continue
		}
		for len(v) > 0 && len(b.Placements) < limit {
			var p []byte
			if i := slices.Index(v, ','); i >= 0 {
				p, v = v[:i], v[i+1:]
			} else {
				p, v = v, nil
			}
			if p = trimSpace(p); len(p) > 0 {
				b.Placements = append(b.Placements, string(p))
			}
		}
	}
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return b
}

// buildRequest validates a decide body into c.req (Now and Seed aside).
//
// An omitted channel stays "": the engine then applies no channel filter
// and delivers each action on its first listed channel (or none). It is
// not defaulted to "web": an app or call-center caller that forgets the
// channel would otherwise get web-only actions.
func (s *Server) buildRequest(b *decideBody, c *decideCall) *apiError {
	if err := checkID("customer_id", b.CustomerID); err != nil {
		return err
	}
	n := len(b.Placements)
	if b.Placement != "" {
		n++
	}
	switch {
	case n == 0:
		return missing("placements")
	case n > s.opts.MaxPlacements:
		return badRequest(codeTooMany, "placements", "at most %d placements per request", s.opts.MaxPlacements)
	}
	// The response is an object keyed by placement: a repeated placement
	// is decided once.
	if b.Placement != "" {
		if err := store.ValidateID(b.Placement); err != nil {
			return invalid("placement", "placement %v", err)
		}
		c.placements = append(c.placements, b.Placement)
	}
	for i, p := range b.Placements {
		if err := store.ValidateID(p); err != nil {
			f := fmt.Sprintf("placements[%d]", i)
			return invalid(f, "%s %v", f, err)
		}
		if !slices.Contains(c.placements, p) {
			c.placements = append(c.placements, p)
		}
	}
	if b.Channel != "" {
		if err := checkID("channel", b.Channel); err != nil {
			return err
		}
	}
	ctxMap, err := objectField(b.Context, "context")
	if err != nil {
		return err
	}
	c.req = engine.Request{CustomerID: b.CustomerID, Placements: c.placements, Channel: b.Channel, Context: ctxMap}
	return nil
}

// record stores the served contacts and the stats deltas of a decision.
// A failure is logged and counted, and the decision is still answered:
// the customer may then see an action once more than its caps allow,
// which is better than a broken page.
func (s *Server) record(c *decideCall, now int64) {
	d := &c.dec
	contacts, stats := c.contacts[:0], c.stats[:0]
	for i := range d.Placements {
		for j := range d.Placements[i].Items {
			it := &d.Placements[i].Items[j]
			contacts = append(contacts, store.Contact{Action: it.Name, Outcome: store.Served, Channel: s.channelName(it.Channel), At: now})
			stats = append(stats, store.StatDelta{Action: it.Action.ID, Variant: it.Variant, Outcome: store.Served, At: now})
		}
	}
	for _, h := range d.Holdouts {
		stats = append(stats, store.StatDelta{Action: h.Action, Variant: h.Variant, Outcome: store.Holdout, At: now})
	}
	c.contacts, c.stats = contacts, stats
	if len(stats) == 0 {
		return
	}
	if err := s.st.Record(c.req.CustomerID, contacts, stats); err != nil {
		s.m.recordErrors.Inc()
		s.opts.Logger.Error().Err(err).Msg("cannot record served contacts")
	}
}

// appendDecision writes the decide response without its closing brace
// (simulate appends "explain").
func appendDecision(b []byte, req *engine.Request, d *engine.Decision, rs *rules.Ruleset) []byte {
	b = append(b, `{"decision_id":"`...)
	var id [16]byte
	binary.LittleEndian.PutUint64(id[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(id[8:], rand.Uint64())
	b = hex.AppendEncode(b, id[:])
	b = append(b, `","customer_id":`...)
	b = appendString(b, req.CustomerID)
	b = append(b, `,"ruleset":`...)
	b = appendString(b, rs.Version)
	if d.Degraded {
		b = append(b, `,"degraded":true`...)
	}
	b = append(b, `,"placements":{`...)
	for i := range d.Placements {
		p := &d.Placements[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, p.Name)
		b = append(b, ":["...)
		for j := range p.Items {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendItem(b, &p.Items[j])
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendItem writes one decided action. Its channel is null when the
// request named none and the action lists none; content is {} when the
// action has none.
func appendItem(b []byte, it *engine.Item) []byte {
	a := it.Action
	b = append(b, `{"action":`...)
	b = appendString(b, a.ID)
	b = append(b, `,"kind":`...)
	b = appendString(b, a.Kind.String())
	b = append(b, `,"channel":`...)
	if it.Channel == "" {
		b = append(b, "null"...)
	} else {
		b = appendString(b, it.Channel)
	}
	b = append(b, `,"priority":`...)
	b = appendInt(b, int64(a.Priority))
	b = append(b, `,"score":`...)
	b = appendFloat(b, it.Score)
	b = append(b, `,"content":`...)
	if it.Content == nil {
		b = append(b, "{}"...)
	} else {
		b = appendValue(b, it.Content)
	}
	if it.Experiment != "" {
		b = append(b, `,"experiment":`...)
		b = appendString(b, it.Experiment)
		b = append(b, `,"variant":`...)
		b = appendString(b, it.Variant)
	}
	if it.Fallback {
		b = append(b, `,"fallback":true`...)
	}
	return append(b, '}')
}

// handleSimulate answers POST /v1/simulate: a decision with explanations
// and no side effects. With an inline customer the stored one is not
// read; counters across customers (budgets, propensity) still come from
// the store, read only. Nothing is recorded.
func (s *Server) handleSimulate(ctx *fasthttp.RequestCtx) error {
	var body simulateBody
	var dbody decideBody
	if err := s.decodeBody(ctx, &dbody); err != nil {
		return err
	}
	if err := decodeJSON(ctx.Request.Body(), &body, ""); err != nil {
		return err
	}
	if dbody.CustomerID == "" && body.Customer != nil {
		// The inline customer's id may stand for customer_id.
		var idOnly struct {
			ID *string `json:"id"`
		}
		if json.Unmarshal(*body.Customer, &idOnly) == nil && idOnly.ID != nil {
			dbody.CustomerID = *idOnly.ID
		}
	}
	c := s.getDecide()
	defer s.putDecide(c)
	if err := s.buildRequest(&dbody, c); err != nil {
		return err
	}
	now, err := parseTime("now", body.Now, s.opts.Now())
	if err != nil {
		return err
	}
	c.req.Now, c.req.Explain = now, true
	c.req.Seed = rand.Uint64()
	if body.Seed != nil {
		c.req.Seed = *body.Seed
	}
	if body.Customer != nil && string(*body.Customer) != "null" {
		cust, err := s.inlineCustomer(*body.Customer, c.req.CustomerID, now)
		if err != nil {
			return err
		}
		c.req.Customer = cust
	}
	rs := s.src.Current()
	if rs == nil {
		return errNoRuleset
	}
	if err := s.eng.Decide(rs, s.st, &c.req, &c.dec); err != nil {
		return s.storeFailed("read customer", err)
	}
	c.buf = appendDecision(c.buf[:0], &c.req, &c.dec, rs)
	c.buf = append(c.buf, `,"explain":[`...)
	for i := range c.dec.Explain {
		if i > 0 {
			c.buf = append(c.buf, ',')
		}
		c.buf = appendExplain(c.buf, &c.dec.Explain[i])
	}
	c.buf = append(c.buf, "]}\n"...)
	writeJSON(ctx, fasthttp.StatusOK, c.buf)
	return nil
}

// appendExplain writes one explain entry: reason null when selected,
// score null when not computed, rank null when not eligible; "fallback":
// true marks a placement's fallback.
func appendExplain(b []byte, e *engine.Explain) []byte {
	b = append(b, `{"action":`...)
	b = appendString(b, e.Action)
	b = append(b, `,"placement":`...)
	b = appendString(b, e.Placement)
	b = append(b, `,"eligible":`...)
	b = strconv.AppendBool(b, e.Eligible)
	b = append(b, `,"selected":`...)
	b = strconv.AppendBool(b, e.Selected)
	b = append(b, `,"reason":`...)
	if e.Selected || e.Reason == "" {
		b = append(b, "null"...)
	} else {
		b = appendString(b, e.Reason)
	}
	b = append(b, `,"score":`...)
	if e.Scored {
		b = appendFloat(b, e.Score)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"rank":`...)
	if e.Eligible && e.Rank > 0 {
		b = appendInt(b, int64(e.Rank))
	} else {
		b = append(b, "null"...)
	}
	if e.Fallback {
		b = append(b, `,"fallback":true`...)
	}
	return append(b, '}')
}

// channelName is the name of the channel a decision served an action on,
// which the request may have named: once the table of names is full, a
// channel neither seen before nor used by the ruleset is recorded as
// no channel (store.Name 0) rather than fail a decision already made.
func (s *Server) channelName(ch string) store.Name {
	n, _ := s.newName(ch) // 0 on error
	return n
}

// inlineCustomer is the "customer" of a simulate body.
type inlineCustomerBody struct {
	ID         *string           `json:"id"`
	Attributes any               `json:"attributes"`
	Events     []json.RawMessage `json:"events"`
	Contacts   []json.RawMessage `json:"contacts"`
}

type inlineContact struct {
	Action  *string `json:"action"`
	Outcome *string `json:"outcome"`
	Time    *string `json:"time"`
	Channel *string `json:"channel"`
}

// inlineCustomer builds the customer context of a simulation, like
// engine.CustomerFromTest does for rule tests. Event and contact times
// default to the simulation's now.
func (s *Server) inlineCustomer(raw json.RawMessage, id string, now time.Time) (*store.Customer, *apiError) {
	var body inlineCustomerBody
	if err := decodeJSON(raw, &body, "customer"); err != nil {
		return nil, err
	}
	if body.ID != nil && *body.ID != id {
		return nil, invalid("customer.id", "customer.id must equal customer_id")
	}
	attrs, err := objectField(body.Attributes, "customer.attributes")
	if err != nil {
		return nil, err
	}
	c := &store.Customer{ID: id, Attributes: attrs}
	for i, r := range body.Events {
		prefix := fmt.Sprintf("customer.events[%d]", i)
		var in eventIn
		if err := decodeJSON(r, &in, prefix); err != nil {
			return nil, err
		}
		ev, err := in.event(prefix, id, now)
		if err != nil {
			return nil, err
		}
		c.AddEvent(ev.Type, ev.At, ev.Value)
	}
	for i, r := range body.Contacts {
		prefix := fmt.Sprintf("customer.contacts[%d]", i)
		var in inlineContact
		if err := decodeJSON(r, &in, prefix); err != nil {
			return nil, err
		}
		if in.Action == nil {
			return nil, missing(prefix + ".action")
		}
		if err := checkID(prefix+".action", *in.Action); err != nil {
			return nil, err
		}
		if in.Outcome == nil {
			return nil, missing(prefix + ".outcome")
		}
		o, ok := store.ParseOutcome(*in.Outcome)
		if !ok {
			return nil, invalid(prefix+".outcome", "%s.outcome must be one of served, click, accept, dismiss, convert", prefix)
		}
		at, err := parseTime(prefix+".time", in.Time, now)
		if err != nil {
			return nil, err
		}
		action, aerr := s.name(prefix+".action", *in.Action)
		if aerr != nil {
			return nil, aerr
		}
		var ch store.Name
		if in.Channel != nil && *in.Channel != "" {
			if err := checkID(prefix+".channel", *in.Channel); err != nil {
				return nil, err
			}
			if ch, aerr = s.name(prefix+".channel", *in.Channel); aerr != nil {
				return nil, aerr
			}
		}
		c.AddContact(store.Contact{Action: action, Outcome: o, Channel: ch, At: at.UnixNano()})
	}
	return c, nil
}
