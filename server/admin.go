package server

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/nudge-engine/nudge/store"
)

// rulesJSON is the body of GET /v1/rules.
type rulesJSON struct {
	Version   string          `json:"version"`
	LoadedAt  *time.Time      `json:"loaded_at"`
	Files     []string        `json:"files"`
	Actions   int             `json:"actions"`
	Segments  int             `json:"segments"`
	LastError *rulesErrorJSON `json:"last_error"`
}

type rulesErrorJSON struct {
	At      time.Time     `json:"at"`
	Details []ErrorDetail `json:"details"`
}

// handleRules answers GET /v1/rules; loaded_at is null while no ruleset
// is active.
func (s *Server) handleRules(ctx *fasthttp.RequestCtx) error {
	st := s.src.Status()
	out := rulesJSON{Version: st.Version, Files: st.Files, Actions: st.Actions, Segments: st.Segments}
	if out.Files == nil {
		out.Files = []string{}
	}
	if !st.LoadedAt.IsZero() {
		t := st.LoadedAt.UTC()
		out.LoadedAt = &t
	}
	if e := st.LastError; e != nil {
		out.LastError = &rulesErrorJSON{At: e.At.UTC(), Details: e.Details}
		if out.LastError.Details == nil {
			out.LastError.Details = []ErrorDetail{}
		}
	}
	return marshalJSON(ctx, fasthttp.StatusOK, out)
}

// handleReload answers POST /v1/rules/reload: 200 {"version"}, or 422
// invalid_rules with the problems while the previous ruleset stays
// active. Every rejection is a 422, an unreadable rules directory too:
// the request was fine, the rules could not be activated.
func (s *Server) handleReload(ctx *fasthttp.RequestCtx) error {
	version, err := s.src.Reload()
	if err != nil {
		e := newError(fasthttp.StatusUnprocessableEntity, codeInvalidRules, "",
			"the rules were rejected, the previous ruleset stays active: %s", err.Error())
		e.details = ErrorDetails(err)
		return e
	}
	return marshalJSON(ctx, fasthttp.StatusOK, map[string]string{"version": version})
}

// handleStats answers GET /v1/stats: the counters of every action and of
// its experiment variants, with ctr = click/served and conversion_rate =
// convert/served (0 when nothing was served).
func (s *Server) handleStats(ctx *fasthttp.RequestCtx) error {
	since, stats := s.st.Stats()
	b := []byte(`{"since":`)
	b = appendTime(b, since.UnixNano())
	b = append(b, `,"actions":{`...)
	ids := make([]string, 0, len(stats))
	for id := range stats {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i, id := range ids {
		st := stats[id]
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, id)
		b = append(b, ':')
		b = appendCounters(b, &st.Counters)
		b = append(b, `,"variants":{`...)
		names := make([]string, 0, len(st.Variants))
		for v := range st.Variants {
			names = append(names, v)
		}
		slices.Sort(names)
		for j, v := range names {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendString(b, v)
			b = append(b, ':')
			b = appendCounters(b, st.Variants[v])
			b = append(b, '}')
		}
		b = append(b, "}}"...)
	}
	writeJSON(ctx, fasthttp.StatusOK, append(b, "}}\n"...))
	return nil
}

// appendCounters writes the counters as an object left open, so the
// caller can add "variants".
func appendCounters(b []byte, c *store.Counters) []byte {
	ratio := func(n int64) float64 {
		if c.Served == 0 {
			return 0
		}
		return float64(n) / float64(c.Served)
	}
	for _, f := range [...]struct {
		name string
		n    int64
	}{{"served", c.Served}, {"click", c.Click}, {"accept", c.Accept}, {"dismiss", c.Dismiss}, {"convert", c.Convert}, {"holdout", c.Holdout}} {
		if f.name == "served" {
			b = append(b, '{')
		} else {
			b = append(b, ',')
		}
		b = appendString(b, f.name)
		b = append(b, ':')
		b = appendInt(b, f.n)
	}
	b = append(b, `,"value":`...)
	b = appendFloat(b, c.Value)
	b = append(b, `,"ctr":`...)
	b = appendFloat(b, ratio(c.Click))
	b = append(b, `,"conversion_rate":`...)
	return appendFloat(b, ratio(c.Convert))
}

// handleReadyz answers 200 when the store can serve and a ruleset is
// active, 503 otherwise (also once Shutdown began, so load balancers
// stop sending requests while in-flight ones drain).
func (s *Server) handleReadyz(ctx *fasthttp.RequestCtx) error {
	notReady := func(msg string) error {
		return newError(fasthttp.StatusServiceUnavailable, codeNotReady, "", "%s", msg)
	}
	if s.closing.Load() {
		return notReady("the server is shutting down")
	}
	if r, ok := s.st.(Readier); ok {
		if err := r.Ready(); err != nil {
			s.opts.Logger.Warn().Err(err).Msg("store not ready")
			return notReady("the store is not ready")
		}
	}
	rs := s.src.Current()
	if rs == nil {
		return notReady("no ruleset is active yet")
	}
	b := []byte(`{"status":"ready","ruleset":`)
	b = appendString(b, rs.Version)
	writeJSON(ctx, fasthttp.StatusOK, append(b, "}\n"...))
	return nil
}

// marshalJSON writes v with encoding/json (not on the hot path).
func marshalJSON(ctx *fasthttp.RequestCtx, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	writeJSON(ctx, status, append(b, '\n'))
	return nil
}
