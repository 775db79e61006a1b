package server_test

import (
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/server"
	"github.com/nudge-engine/nudge/store"
	"github.com/nudge-engine/nudge/store/memstore"
)

// noRecord is a memstore that drops recorded contacts, so a benchmark's
// customers do not accumulate history (and hit their caps) as it runs.
type noRecord struct{ *memstore.Store }

func (noRecord) Record(string, []store.Contact, []store.StatDelta) error { return nil }

var benchSink int

// BenchmarkDecideHandler runs POST /v1/decide through the handler (no
// network): JSON decoding, the engine on the demo storefront rules,
// recording and the response. Customers and requests are the demo's rule
// tests.
func BenchmarkDecideHandler(b *testing.B) {
	rs, err := rules.LoadDir("../testdata/storefront/rules")
	if err != nil {
		b.Fatal(err)
	}
	st := noRecord{memstore.New()}
	var bodies [][]byte
	for i, t := range rs.Tests {
		c := engine.CustomerFromTest(t.Customer)
		c.ID = fmt.Sprintf("%s-%d", c.ID, i)
		st.Put(c)
		body, err := json.Marshal(map[string]any{"customer_id": c.ID, "placements": t.Request.Placements,
			"channel": t.Request.Channel, "context": t.Request.Context})
		if err != nil {
			b.Fatal(err)
		}
		bodies = append(bodies, body)
	}
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	srv, err := server.New(server.Options{Now: func() time.Time { return now }}, st, &fakeRules{rs: rs}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	handler := srv.Handler()
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	ctxs := make([]*fasthttp.RequestCtx, len(bodies))
	for i, body := range bodies {
		var req fasthttp.Request
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI("/v1/decide")
		req.Header.SetContentType("application/json")
		req.SetBody(body)
		ctxs[i] = new(fasthttp.RequestCtx)
		ctxs[i].Init(&req, addr, nil)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			ctx := ctxs[i%len(ctxs)]
			ctx.Response.Reset()
			handler(ctx)
			if ctx.Response.StatusCode() != fasthttp.StatusOK {
				b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			benchSink += len(ctx.Response.Body())
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			// Each goroutine has its own contexts: a RequestCtx is not
			// safe for concurrent use.
			own := make([]*fasthttp.RequestCtx, len(ctxs))
			for i, c := range ctxs {
				own[i] = new(fasthttp.RequestCtx)
				own[i].Init(&c.Request, addr, nil)
			}
			i, n := 0, 0
			for pb.Next() {
				ctx := own[i%len(own)]
				ctx.Response.Reset()
				handler(ctx)
				n += len(ctx.Response.Body())
				i++
			}
			_ = n
		})
	})
}

// noEvents is a store that drops events, so that BenchmarkEventsHandler
// measures the handler.
type noEvents struct{ *memstore.Store }

func (noEvents) AddEvents([]store.Event) error { return nil }

// BenchmarkEventsHandler runs POST /v1/events with a batch of 100 events
// through the handler (no network, a store that drops them): decoding and
// validation.
func BenchmarkEventsHandler(b *testing.B) {
	rs, err := rules.LoadDir("../testdata/storefront/rules")
	if err != nil {
		b.Fatal(err)
	}
	srv, err := server.New(server.Options{}, noEvents{memstore.New()}, &fakeRules{rs: rs}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	events := make([]map[string]any, 100)
	for i := range events {
		events[i] = map[string]any{"customer_id": fmt.Sprintf("c-%d", i*7919%100000), "type": "page_view",
			"time": "2026-11-23T10:00:00Z", "value": float64(i % 50), "properties": map[string]any{"path": "/shoes"}}
	}
	body, err := json.Marshal(map[string]any{"events": events})
	if err != nil {
		b.Fatal(err)
	}
	var req fasthttp.Request
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI("/v1/events")
	req.Header.SetContentType("application/json")
	req.SetBody(body)
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	handler := srv.Handler()
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		handler(ctx)
		if ctx.Response.StatusCode() != fasthttp.StatusAccepted {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}
