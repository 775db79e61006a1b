package server

import (
	"bytes"
	"slices"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/nudge-engine/nudge/store"
)

// handleCustomer answers /v1/customers/{id}: PUT replaces the attributes,
// PATCH merges a JSON merge patch into them, GET shows the profile and
// DELETE erases it. Writes are durable when answered.
func (s *Server) handleCustomer(ctx *fasthttp.RequestCtx, rawID []byte) error {
	id, err := customerID(rawID)
	if err != nil {
		return err
	}
	switch string(ctx.Method()) {
	case fasthttp.MethodGet:
		return s.getCustomer(ctx, id)
	case fasthttp.MethodDelete:
		// Erasure is idempotent: an unknown id is erased too (204).
		if _, err := s.st.Delete(id); err != nil {
			return s.storeFailed("delete customer", err)
		}
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return nil
	case fasthttp.MethodPatch:
		if err := checkPatchType(ctx.Request.Header.ContentType()); err != nil {
			return err
		}
	}
	var attrs map[string]any
	if err := s.decodeBody(ctx, &attrs); err != nil {
		return err
	}
	if attrs == nil {
		return badRequest(codeInvalidJSON, "", "the body must be a JSON object")
	}
	if string(ctx.Method()) == fasthttp.MethodPut {
		if err := s.st.PutAttributes(id, attrs); err != nil {
			return s.storeFailed("put attributes", err)
		}
	} else {
		patched, err := s.st.PatchAttributes(id, attrs)
		if err != nil {
			return s.storeFailed("patch attributes", err)
		}
		attrs = patched
	}
	b := []byte(`{"id":`)
	b = appendString(b, id)
	b = append(b, `,"attributes":`...)
	b = appendObject(b, attrs)
	writeJSON(ctx, fasthttp.StatusOK, append(b, "}\n"...))
	return nil
}

// checkPatchType accepts application/json and application/merge-patch+json
// (with parameters, like charset); a missing Content-Type counts as JSON.
func checkPatchType(ct []byte) *apiError {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	if len(ct) == 0 || bytes.EqualFold(ct, []byte("application/json")) || bytes.EqualFold(ct, []byte("application/merge-patch+json")) {
		return nil
	}
	return newError(fasthttp.StatusUnsupportedMediaType, codeMediaType, "",
		"a merge patch must be application/merge-patch+json or application/json")
}

// getCustomer writes the profile: attributes, event aggregates per type
// and contact counts per action (over the contact history kept).
func (s *Server) getCustomer(ctx *fasthttp.RequestCtx, id string) error {
	c, err := s.st.Customer(id)
	if err != nil {
		return s.storeFailed("read customer", err)
	}
	if c.Empty() {
		return newError(fasthttp.StatusNotFound, codeNotFound, "", "no customer with this id")
	}
	now := s.opts.Now().UnixNano()
	b := []byte(`{"id":`)
	b = appendString(b, id)
	b = append(b, `,"attributes":`...)
	b = appendObject(b, c.AttributeMap())

	b = append(b, `,"events":{`...)
	events := c.EventMap()
	types := make([]string, 0, len(events))
	for t := range events {
		types = append(types, t)
	}
	slices.Sort(types)
	for i, t := range types {
		e := events[t]
		if i > 0 {
			b = append(b, ',')
		}
		n7, _ := e.Window(now, 7*24*time.Hour)
		n30, sum30 := e.Window(now, 30*24*time.Hour)
		b = appendString(b, t)
		b = append(b, `:{"count":`...)
		b = appendInt(b, e.Count)
		b = append(b, `,"sum":`...)
		b = appendFloat(b, e.Sum)
		b = append(b, `,"first_at":`...)
		b = appendTime(b, e.First)
		b = append(b, `,"last_at":`...)
		b = appendTime(b, e.Last)
		b = append(b, `,"count_7d":`...)
		b = appendInt(b, n7)
		b = append(b, `,"count_30d":`...)
		b = appendInt(b, n30)
		b = append(b, `,"sum_30d":`...)
		b = appendFloat(b, sum30)
		b = append(b, '}')
	}

	type contactCounts struct {
		n    [store.Holdout]int64 // by outcome
		last int64
	}
	counts := map[store.Name]*contactCounts{}
	for _, k := range c.Contacts {
		cc := counts[k.Action]
		if cc == nil {
			cc = &contactCounts{}
			counts[k.Action] = cc
		}
		if k.Outcome < store.Holdout {
			cc.n[k.Outcome]++
		}
		cc.last = max(cc.last, k.At)
	}
	actions := make([]store.Name, 0, len(counts))
	for a := range counts {
		actions = append(actions, a)
	}
	slices.SortFunc(actions, func(a, b store.Name) int { return strings.Compare(a.String(), b.String()) })
	b = append(b, `},"contacts":{`...)
	for i, a := range actions {
		cc := counts[a]
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, a.String())
		b = append(b, ':', '{')
		for o, name := range store.OutcomeNames() {
			b = appendString(b, name)
			b = append(b, ':')
			b = appendInt(b, cc.n[o])
			b = append(b, ',')
		}
		b = append(b, `"last_at":`...)
		b = appendTime(b, cc.last)
		b = append(b, '}')
	}
	writeJSON(ctx, fasthttp.StatusOK, append(b, "}}\n"...))
	return nil
}
