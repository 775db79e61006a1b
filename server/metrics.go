package server

import (
	"bytes"
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/valyala/fasthttp"

	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/store"
)

// metrics are the server's Prometheus metrics. Label values are bounded:
// routes and error codes are fixed sets, placements are those of the
// active ruleset (others count as "other"), rules are the ruleset's.
type metrics struct {
	requests      [numRoutes]prometheus.Counter
	errors        *prometheus.CounterVec // route, code
	decideSeconds prometheus.Histogram
	decisions     *prometheus.CounterVec // placement
	placements    atomic.Pointer[placementCounters]
	reloads       [2]prometheus.Counter // error, ok
	events        prometheus.Counter
	feedback      *prometheus.CounterVec // outcome
	panics        prometheus.Counter
	rejected      prometheus.Counter
	recordErrors  prometheus.Counter
	degraded      prometheus.Counter
	namesRefused  prometheus.Counter
}

// placementCounters are the decisions counters of one ruleset's
// placements, looked up once per ruleset: WithLabelValues hashes the
// label and takes the vector's lock at every call (1 % of the server's
// CPU on decide).
type placementCounters struct {
	rs    *rules.Ruleset
	of    map[string]prometheus.Counter
	other prometheus.Counter
}

// decided counts a decision of placement name under ruleset rs.
func (m *metrics) decided(rs *rules.Ruleset, name string) {
	pc := m.placements.Load()
	if pc == nil || pc.rs != rs {
		pc = &placementCounters{rs: rs, of: make(map[string]prometheus.Counter, len(rs.Placements)),
			other: m.decisions.WithLabelValues("other")}
		for p := range rs.Placements {
			pc.of[p] = m.decisions.WithLabelValues(p)
		}
		m.placements.Store(pc)
	}
	if c, ok := pc.of[name]; ok {
		c.Inc()
		return
	}
	pc.other.Inc()
}

func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	m := &metrics{}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nudge_http_requests_total",
		Help: "HTTP requests by route.",
	}, []string{"route"})
	for r := range m.requests {
		m.requests[r] = requests.WithLabelValues(routeNames[r])
	}
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nudge_http_errors_total",
		Help: "HTTP error responses by route and error code.",
	}, []string{"route", "code"})
	m.decideSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "nudge_decide_duration_seconds",
		Help:    "Time to handle a decide request, from parsing to the response.",
		Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1},
	})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nudge_decisions_total",
		Help: `Placements decided, by placement ("other": not in the active ruleset).`,
	}, []string{"placement"})
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nudge_rules_reloads_total",
		Help: "Ruleset reload attempts by result (ok, error).",
	}, []string{"result"})
	m.reloads[0], m.reloads[1] = reloads.WithLabelValues("error"), reloads.WithLabelValues("ok")
	m.events = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nudge_events_ingested_total",
		Help: "Events accepted and stored.",
	})
	m.feedback = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nudge_feedback_total",
		Help: "Feedback recorded, by outcome.",
	}, []string{"outcome"})
	for _, o := range store.OutcomeNames()[1:] {
		m.feedback.WithLabelValues(o)
	}
	m.panics = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nudge_http_panics_total",
		Help: "Handler panics recovered (answered 500).",
	})
	m.rejected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nudge_http_inflight_rejections_total",
		Help: "Requests answered 503 because MaxInFlight requests were in flight.",
	})
	m.recordErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nudge_record_errors_total",
		Help: "Decisions whose served contacts could not be recorded (the decision was still answered).",
	})
	m.degraded = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nudge_decide_degraded_total",
		Help: "Decisions that exceeded the decide timeout and answered the placements' fallbacks.",
	})
	m.namesRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nudge_names_refused_total",
		Help: "Action and channel names refused because the table of names was full (feedback and simulate answered 400 too_many; a decision's contact recorded without its channel).",
	})
	names := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "nudge_names",
		Help: "Distinct action and channel names held (the table refuses new ones from requests past store.MaxNames).",
	}, func() float64 { return float64(store.NumNames()) })
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "nudge_http_inflight_requests",
		Help: "Requests being handled.",
	}, func() float64 { return float64(s.inflight.Load()) })

	cs := []prometheus.Collector{requests, m.errors, m.decideSeconds, m.decisions, reloads, m.events,
		m.feedback, m.panics, m.rejected, m.recordErrors, m.degraded, m.namesRefused, names, inflight, &ruleErrors{src: s.src}}
	if c, ok := s.st.(CacheStatser); ok {
		cs = append(cs,
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "nudge_cache_hits_total",
				Help: "Customer reads answered from the cache.",
			}, func() float64 { h, _ := c.CacheStats(); return float64(h) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "nudge_cache_misses_total",
				Help: "Customer reads that went to disk.",
			}, func() float64 { _, n := c.CacheStats(); return float64(n) }))
	}
	if e, ok := s.st.(EngineStatser); ok {
		cs = append(cs, engineStats{e})
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("cannot register metrics: %w", err)
		}
	}
	return m, nil
}

// engineStats exports the store's EngineStats at each scrape, from one
// call (Pebble's Metrics takes its locks once). It is an unchecked
// collector: the store names its figures.
type engineStats struct{ st EngineStatser }

func (engineStats) Describe(chan<- *prometheus.Desc) {}

func (c engineStats) Collect(ch chan<- prometheus.Metric) {
	c.st.EngineStats(func(name, help string, counter bool, value float64) {
		kind := prometheus.GaugeValue
		if counter {
			kind = prometheus.CounterValue
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("nudge_"+name, help, nil, nil), kind, value)
	})
}

// ruleErrors exports the runtime errors of the active ruleset's
// expressions (rules.Expr.Errors), summed by rule name. The counters live
// on the ruleset, so a reload starts them at zero again, which Prometheus
// treats as a counter reset.
type ruleErrors struct{ src RulesSource }

var ruleErrorsDesc = prometheus.NewDesc("nudge_rule_errors_total",
	"Runtime errors of rule expressions in the active ruleset, by rule.", []string{"rule"}, nil)

func (c *ruleErrors) Describe(ch chan<- *prometheus.Desc) { ch <- ruleErrorsDesc }

func (c *ruleErrors) Collect(ch chan<- prometheus.Metric) {
	rs := c.src.Current()
	if rs == nil {
		return
	}
	seen := map[*rules.Expr]bool{} // a variant may share the action's templates
	sums := map[string]uint64{}
	rs.Expressions(func(x *rules.Expr) {
		if x == nil || seen[x] {
			return
		}
		seen[x] = true
		if n := x.Errors(); n > 0 {
			sums[x.Rule] += n
		}
	})
	for rule, n := range sums {
		ch <- prometheus.MustNewConstMetric(ruleErrorsDesc, prometheus.CounterValue, float64(n), rule)
	}
}

// ObserveReload counts one ruleset reload attempt. The RulesSource owner
// calls it for every attempt, whatever triggered it (file watch, SIGHUP,
// POST /v1/rules/reload); the reload endpoint does not count on its own,
// so nothing is counted twice.
func (s *Server) ObserveReload(ok bool) {
	if ok {
		s.m.reloads[1].Inc()
	} else {
		s.m.reloads[0].Inc()
	}
}

// serveMetrics writes the registry in the Prometheus text format.
func (s *Server) serveMetrics(ctx *fasthttp.RequestCtx) error {
	mfs, err := s.gatherer.Gather()
	if err != nil && len(mfs) == 0 {
		return fmt.Errorf("cannot gather metrics: %w", err)
	}
	if err != nil {
		s.opts.Logger.Warn().Err(err).Msg("some metrics could not be gathered")
	}
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return fmt.Errorf("cannot encode metrics: %w", err)
		}
	}
	ctx.SetContentType(string(format))
	ctx.SetBody(buf.Bytes())
	return nil
}
