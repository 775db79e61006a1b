package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/store"
)

// eventIn is one event of POST /v1/events.
type eventIn struct {
	CustomerID *string  `json:"customer_id"`
	Type       *string  `json:"type"`
	Time       *string  `json:"time"`
	Value      *float64 `json:"value"`
	Properties any      `json:"properties"`
}

// eventsIn is the body of POST /v1/events: one event, or a batch in
// "events".
type eventsIn struct {
	CustomerID *string            `json:"customer_id"`
	Type       *string            `json:"type"`
	Time       *string            `json:"time"`
	Value      *float64           `json:"value"`
	Properties any                `json:"properties"`
	Events     *[]json.RawMessage `json:"events"`
}

// event validates the event; field paths start with prefix. An empty
// customerID means the event must name its own (inline simulate events
// belong to the simulated customer).
func (in *eventIn) event(prefix, customerID string, now time.Time) (store.Event, *apiError) {
	field := func(name string) string { return joinField(prefix, name) }
	ev := store.Event{CustomerID: customerID}
	if customerID == "" {
		if in.CustomerID == nil {
			return ev, missing(field("customer_id"))
		}
		if err := checkID(field("customer_id"), *in.CustomerID); err != nil {
			return ev, err
		}
		ev.CustomerID = *in.CustomerID
	}
	if in.Type == nil {
		return ev, missing(field("type"))
	}
	if err := checkEventType(field("type"), *in.Type); err != nil {
		return ev, err
	}
	ev.Type = *in.Type
	at, err := parseTime(field("time"), in.Time, now)
	if err != nil {
		return ev, err
	}
	ev.At = at.UnixNano()
	if in.Value != nil {
		ev.Value = *in.Value
	}
	props, err := objectField(in.Properties, field("properties"))
	if err != nil {
		return ev, err
	}
	ev.Properties = props
	return ev, nil
}

// eventsFast is the body of POST /v1/events decoded in one pass; a body
// it does not fit is decoded again as eventsIn, event by event, to name
// the problem (decodeEvents).
type eventsFast struct {
	eventIn
	Events *[]eventIn `json:"events"`
}

// decodeEvents decodes the body of POST /v1/events: the top-level event
// fields and the batch (nil if there is no "events"). Bodies of the usual
// shape take one pass without reflection (decodeEventsFast); other bodies
// that decode take one pass of encoding/json; the rest a second, slower
// one that reports the first problem with its event's index.
func (s *Server) decodeEvents(ctx *fasthttp.RequestCtx) (eventIn, *[]eventIn, *apiError) {
	body := ctx.Request.Body()
	if err := checkJSON(body, s.opts.MaxDepth, s.opts.MaxStringBytes); err != nil {
		return eventIn{}, nil, err
	}
	if in, batch, ok := decodeEventsFast(body); ok {
		return in, batch, nil
	}
	var fast eventsFast
	if len(bytes.TrimSpace(body)) > 0 && json.Unmarshal(body, &fast) == nil {
		return fast.eventIn, fast.Events, nil
	}
	var slow eventsIn
	if err := decodeJSON(body, &slow, ""); err != nil {
		return eventIn{}, nil, err
	}
	in := eventIn{CustomerID: slow.CustomerID, Type: slow.Type, Time: slow.Time, Value: slow.Value, Properties: slow.Properties}
	if slow.Events == nil {
		return in, nil, nil
	}
	if err := s.checkBatch(&in, len(*slow.Events)); err != nil {
		return eventIn{}, nil, err
	}
	batch := make([]eventIn, len(*slow.Events))
	for i, r := range *slow.Events {
		if err := decodeJSON(r, &batch[i], fmt.Sprintf("events[%d]", i)); err != nil {
			return eventIn{}, nil, err
		}
	}
	return in, &batch, nil
}

// checkBatch checks a batch of n events whose body's top-level event
// fields are in.
func (s *Server) checkBatch(in *eventIn, n int) *apiError {
	if in.CustomerID != nil || in.Type != nil || in.Time != nil || in.Value != nil || in.Properties != nil {
		return invalid("events", "a batch holds its events in \"events\" only")
	}
	if n > s.opts.MaxBatch {
		return badRequest(codeTooMany, "events", "at most %d events per batch, not %d", s.opts.MaxBatch, n)
	}
	return nil
}

// handleEvents answers POST /v1/events. A batch is all or nothing: every
// event is validated before any is stored, and 202 is sent only after the
// store made them durable.
func (s *Server) handleEvents(ctx *fasthttp.RequestCtx) error {
	in, batch, aerr := s.decodeEvents(ctx)
	if aerr != nil {
		return aerr
	}
	now := s.opts.Now()
	var events []store.Event
	if batch == nil {
		ev, err := in.event("", "", now)
		if err != nil {
			return err
		}
		events = []store.Event{ev}
	} else {
		if err := s.checkBatch(&in, len(*batch)); err != nil {
			return err
		}
		events = make([]store.Event, 0, len(*batch))
		for i := range *batch {
			in := &(*batch)[i]
			ev, err := in.event("", "", now)
			if err != nil {
				// Again with the field paths, which only an error needs.
				_, err = in.event(fmt.Sprintf("events[%d]", i), "", now)
				return err
			}
			events = append(events, ev)
		}
	}
	if len(events) > 0 {
		if err := s.st.AddEvents(events); err != nil {
			return s.storeFailed("add events", err)
		}
		s.m.events.Add(float64(len(events)))
	}
	writeJSON(ctx, fasthttp.StatusAccepted, fmt.Appendf(nil, "{\"accepted\":%d}\n", len(events)))
	return nil
}

// feedbackIn is the body of POST /v1/feedback.
type feedbackIn struct {
	DecisionID *string  `json:"decision_id"`
	CustomerID *string  `json:"customer_id"`
	Action     *string  `json:"action"`
	Outcome    *string  `json:"outcome"`
	Value      *float64 `json:"value"`
	// Channel is the channel the customer answered on (an extension of
	// SPEC 3). Default: the channel the action was last served on.
	Channel *string `json:"channel"`
}

// handleFeedback answers POST /v1/feedback: it records a contact with the
// outcome (stop rules and outcome caps count it) and a stats delta in the
// experiment variant the customer is assigned to. The decision id is
// validated but not looked up: decisions are not stored.
func (s *Server) handleFeedback(ctx *fasthttp.RequestCtx) error {
	var in feedbackIn
	if err := s.decodeBody(ctx, &in); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"decision_id", in.DecisionID}, {"customer_id", in.CustomerID}, {"action", in.Action}} {
		if f.v == nil {
			return missing(f.name)
		}
		if err := checkID(f.name, *f.v); err != nil {
			return err
		}
	}
	if in.Outcome == nil {
		return missing("outcome")
	}
	outcome, ok := store.ParseOutcome(*in.Outcome)
	if !ok || outcome == store.Served {
		return invalid("outcome", "outcome must be one of click, accept, dismiss, convert")
	}
	id, action := *in.CustomerID, *in.Action
	name, aerr := s.name("action", action)
	if aerr != nil {
		return aerr
	}
	var channel store.Name
	if in.Channel != nil && *in.Channel != "" {
		if err := checkID("channel", *in.Channel); err != nil {
			return err
		}
		if channel, aerr = s.name("channel", *in.Channel); aerr != nil {
			return aerr
		}
	} else if c, err := s.st.Customer(id); err == nil && c != nil {
		for i := len(c.Contacts) - 1; i >= 0; i-- {
			if k := c.Contacts[i]; k.Action == name && k.Outcome == store.Served {
				channel = k.Channel
				break
			}
		}
	}
	var value float64
	if in.Value != nil {
		value = *in.Value
	}
	var variant string
	if rs := s.src.Current(); rs != nil {
		if a := rs.Action(action); a != nil && a.Experiment != nil && a.Experiment.Total > 0 {
			if v := engine.Assign(a.Experiment, id); v != nil {
				variant = v.Name
			}
		}
	}
	now := s.opts.Now().UnixNano()
	contact := []store.Contact{{Action: name, Outcome: outcome, Channel: channel, At: now}}
	delta := []store.StatDelta{{Action: action, Variant: variant, Outcome: outcome, Value: value, At: now}}
	if err := s.st.Record(id, contact, delta); err != nil {
		return s.storeFailed("record feedback", err)
	}
	s.m.feedback.WithLabelValues(outcome.String()).Inc()
	writeJSON(ctx, fasthttp.StatusAccepted, []byte(`{"accepted":1}`+"\n"))
	return nil
}
