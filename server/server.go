package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/rules"
	"github.com/nudge-engine/nudge/store"
)

// Server serves the nudge HTTP API.
type Server struct {
	opts     Options
	st       store.Store
	src      RulesSource
	eng      *engine.Engine
	gatherer prometheus.Gatherer
	m        *metrics
	srv      *fasthttp.Server

	apiKey, adminToken [sha256.Size]byte // hashes: compared in constant time
	corsAny            bool
	cors               map[string]bool

	inflight atomic.Int64
	closing  atomic.Bool
	decides  sync.Pool // *decideCall

	// named is the last ruleset whose names newName interned, once the
	// table of names refused one (see newName).
	namedMu sync.Mutex
	named   *rules.Ruleset
}

// New returns a server over the store st, the rules of src and the engine
// eng (nil: engine.New with default options). Its metrics are registered
// in reg (nil: a registry of its own); GET /metrics serves reg.
//
// The store may implement CacheStatser (cache metrics) and Readier
// (GET /readyz).
func New(opts Options, st store.Store, src RulesSource, eng *engine.Engine, reg *prometheus.Registry) (*Server, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("invalid server options: %w", err)
	}
	if st == nil || src == nil {
		return nil, errors.New("cannot create server: a store and a rules source are required")
	}
	if eng == nil {
		eng = engine.New(engine.Options{})
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{opts: opts, st: st, src: src, eng: eng, gatherer: reg, cors: map[string]bool{}}
	if opts.APIKey != "" {
		s.apiKey = sha256.Sum256([]byte(opts.APIKey))
	}
	if opts.AdminToken != "" {
		s.adminToken = sha256.Sum256([]byte(opts.AdminToken))
	}
	for _, o := range opts.CORSOrigins {
		if o == "*" {
			s.corsAny = true
		}
		s.cors[o] = true
	}
	s.decides.New = func() any { return new(decideCall) }
	m, err := newMetrics(reg, s)
	if err != nil {
		return nil, err
	}
	s.m = m
	s.srv = &fasthttp.Server{
		Handler:                      s.handle,
		ErrorHandler:                 s.handleTransportError,
		ReadTimeout:                  opts.ReadTimeout,
		WriteTimeout:                 opts.WriteTimeout,
		IdleTimeout:                  opts.IdleTimeout,
		MaxRequestBodySize:           opts.MaxBodyBytes,
		ReadBufferSize:               opts.MaxHeaderBytes,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		CloseOnShutdown:              true,
		Logger:                       fasthttpLogger{s},
	}
	return s, nil
}

// Handler returns the request handler, for tests and custom servers.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

// Serve serves requests on ln until Shutdown; then it returns nil.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Shutdown stops accepting connections, fails /readyz, and waits until the
// requests in flight are answered and their connections closed, or until
// ctx is done (then it returns ctx.Err()).
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	return s.srv.ShutdownWithContext(ctx)
}

type fasthttpLogger struct{ s *Server }

// Printf routes fasthttp's own logs (mostly connection errors) through
// the server's logger at debug level.
func (l fasthttpLogger) Printf(format string, args ...any) {
	l.s.opts.Logger.Debug().Str("component", "fasthttp").Msgf(format, args...)
}

// route identifies an endpoint; routes index metrics and the route table.
type route uint8

const (
	routeOther route = iota // unknown path
	routeDecide
	routeCustomer
	routeEvents
	routeFeedback
	routeSimulate
	routeRules
	routeReload
	routeStats
	routeHealthz
	routeReadyz
	routeMetrics
	numRoutes
)

var routeNames = [numRoutes]string{"other", "decide", "customers", "events", "feedback", "simulate",
	"rules", "rules_reload", "stats", "healthz", "readyz", "metrics"}

// access is who may call a route.
type access uint8

const (
	public access = iota // anyone
	client               // X-API-Key when Options.APIKey is set
	admin                // bearer AdminToken, or loopback without one
)

type routeSpec struct {
	allow  string // the Allow header: methods besides OPTIONS
	access access
	cors   bool // browsers may call it (Options.CORSOrigins)
	exempt bool // not counted toward MaxInFlight: probes must answer under load
}

var routes = [numRoutes]routeSpec{
	routeDecide:   {allow: "GET, POST, OPTIONS", access: client, cors: true},
	routeCustomer: {allow: "GET, PUT, PATCH, DELETE, OPTIONS", access: admin},
	routeEvents:   {allow: "POST, OPTIONS", access: client},
	routeFeedback: {allow: "POST, OPTIONS", access: client, cors: true},
	routeSimulate: {allow: "POST, OPTIONS", access: admin},
	routeRules:    {allow: "GET, HEAD, OPTIONS", access: public},
	routeReload:   {allow: "POST, OPTIONS", access: admin},
	routeStats:    {allow: "GET, HEAD, OPTIONS", access: admin},
	routeHealthz:  {allow: "GET, HEAD, OPTIONS", access: public, exempt: true},
	routeReadyz:   {allow: "GET, HEAD, OPTIONS", access: public, exempt: true},
	routeMetrics:  {allow: "GET, HEAD, OPTIONS", access: public, exempt: true},
}

const customersPrefix = "/v1/customers/"

// match finds the route of the request and, for customers, the raw
// (still escaped) id.
func match(ctx *fasthttp.RequestCtx) (route, []byte) {
	path := ctx.Path()
	switch string(path) {
	case "/v1/decide":
		return routeDecide, nil
	case "/v1/events":
		return routeEvents, nil
	case "/v1/feedback":
		return routeFeedback, nil
	case "/v1/simulate":
		return routeSimulate, nil
	case "/v1/rules":
		return routeRules, nil
	case "/v1/rules/reload":
		return routeReload, nil
	case "/v1/stats":
		return routeStats, nil
	case "/healthz":
		return routeHealthz, nil
	case "/readyz":
		return routeReadyz, nil
	case "/metrics":
		return routeMetrics, nil
	}
	if !bytes.HasPrefix(path, []byte(customersPrefix)) {
		return routeOther, nil
	}
	// Path() is unescaped, so "a%2Fb" would look like two segments: take
	// the id from the original path when it has the same shape.
	rest := path[len(customersPrefix):]
	if orig := ctx.Request.URI().PathOriginal(); bytes.HasPrefix(orig, []byte(customersPrefix)) {
		rest = orig[len(customersPrefix):]
	}
	if bytes.IndexByte(rest, '/') >= 0 {
		return routeOther, nil
	}
	return routeCustomer, rest
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	r, rawID := match(ctx)
	s.m.requests[r].Inc()
	defer s.recoverPanic(ctx, r)
	if r == routeOther {
		s.writeError(ctx, r, errNotFound)
		return
	}
	spec := &routes[r]
	if !spec.exempt {
		if s.inflight.Add(1) > int64(s.opts.MaxInFlight) {
			s.inflight.Add(-1)
			s.m.rejected.Inc()
			s.writeError(ctx, r, errOverloaded)
			return
		}
		defer s.inflight.Add(-1)
	}
	if err := s.serve(ctx, r, spec, rawID); err != nil {
		s.writeError(ctx, r, err)
	}
}

// serve checks method, origin, credentials and body size, then runs the
// route's handler.
func (s *Server) serve(ctx *fasthttp.RequestCtx, r route, spec *routeSpec, rawID []byte) error {
	method := ctx.Method()
	if spec.cors {
		s.setCORS(ctx, spec)
	}
	if string(method) == fasthttp.MethodOptions {
		ctx.Response.Header.Set("Allow", spec.allow)
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return nil
	}
	if !allows(spec.allow, method) {
		return methodNotAllowed(spec.allow)
	}
	if err := s.authorize(ctx, spec.access); err != nil {
		return err
	}
	if len(ctx.Request.Body()) > s.opts.MaxBodyBytes {
		return s.tooLarge()
	}
	switch r {
	case routeDecide:
		return s.handleDecide(ctx)
	case routeCustomer:
		return s.handleCustomer(ctx, rawID)
	case routeEvents:
		return s.handleEvents(ctx)
	case routeFeedback:
		return s.handleFeedback(ctx)
	case routeSimulate:
		return s.handleSimulate(ctx)
	case routeRules:
		return s.handleRules(ctx)
	case routeReload:
		return s.handleReload(ctx)
	case routeStats:
		return s.handleStats(ctx)
	case routeHealthz:
		writeJSON(ctx, fasthttp.StatusOK, []byte(`{"status":"ok"}`+"\n"))
		return nil
	case routeReadyz:
		return s.handleReadyz(ctx)
	case routeMetrics:
		return s.serveMetrics(ctx)
	}
	return errNotFound
}

// allows reports whether method is in the comma-separated list allow.
func allows(allow string, method []byte) bool {
	for len(allow) > 0 {
		var m string
		if i := strings.IndexByte(allow, ','); i >= 0 {
			m, allow = allow[:i], allow[i+2:] // ", "
		} else {
			m, allow = allow, ""
		}
		if m == string(method) {
			return true
		}
	}
	return false
}

func (s *Server) tooLarge() *apiError {
	return newError(fasthttp.StatusRequestEntityTooLarge, codeBodyTooLarge, "", "the body is larger than %d bytes", s.opts.MaxBodyBytes)
}

// setCORS answers a browser origin listed in Options.CORSOrigins; a
// preflight (OPTIONS) also learns the methods and headers it may use. An
// origin not listed gets no CORS headers, so the browser refuses.
func (s *Server) setCORS(ctx *fasthttp.RequestCtx, spec *routeSpec) {
	if len(s.cors) == 0 {
		return
	}
	h := &ctx.Response.Header
	h.Add("Vary", "Origin")
	origin := ctx.Request.Header.Peek("Origin")
	if len(origin) == 0 {
		return
	}
	switch {
	case s.corsAny:
		h.Set("Access-Control-Allow-Origin", "*")
	case s.cors[string(origin)]:
		h.SetBytesV("Access-Control-Allow-Origin", origin) // copied into the header
	default:
		return
	}
	if string(ctx.Method()) == fasthttp.MethodOptions {
		h.Set("Access-Control-Allow-Methods", spec.allow)
		h.Set("Access-Control-Allow-Headers", "Content-Type, X-API-Key")
		h.Set("Access-Control-Max-Age", "600")
	}
}

// authorize checks the credentials a route needs.
func (s *Server) authorize(ctx *fasthttp.RequestCtx, a access) *apiError {
	switch a {
	case client:
		if s.opts.APIKey != "" && !equalSecret(ctx.Request.Header.Peek("X-API-Key"), &s.apiKey) {
			return newError(fasthttp.StatusUnauthorized, codeUnauthorized, "", "missing or wrong X-API-Key header")
		}
	case admin:
		if s.opts.AdminToken != "" {
			auth := ctx.Request.Header.Peek("Authorization")
			const prefix = "bearer "
			if len(auth) <= len(prefix) || !bytes.EqualFold(auth[:len(prefix)], []byte(prefix)) ||
				!equalSecret(auth[len(prefix):], &s.adminToken) {
				ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="nudge"`)
				return newError(fasthttp.StatusUnauthorized, codeUnauthorized, "", "missing or wrong admin token (Authorization: Bearer <token>)")
			}
			return nil
		}
		if !s.opts.IsLoopback(ctx.RemoteAddr()) {
			return newError(fasthttp.StatusForbidden, codeForbidden, "", "admin endpoints answer loopback clients only when no admin token is configured")
		}
	}
	return nil
}

// equalSecret compares in constant time; hashing first hides the length.
func equalSecret(given []byte, want *[sha256.Size]byte) bool {
	h := sha256.Sum256(given)
	return subtle.ConstantTimeCompare(h[:], want[:]) == 1
}

// handleTransportError answers requests fasthttp could not read (too
// large, malformed, timed out) with the usual error shape.
func (s *Server) handleTransportError(ctx *fasthttp.RequestCtx, err error) {
	var e *apiError
	var te interface{ Timeout() bool }
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e = s.tooLarge()
	case errors.As(err, &small):
		e = newError(fasthttp.StatusRequestHeaderFieldsTooLarge, codeHeaderTooLarge, "", "the request line and headers are larger than %d bytes", s.opts.MaxHeaderBytes)
	case errors.As(err, &te) && te.Timeout():
		e = newError(fasthttp.StatusRequestTimeout, codeTimeout, "", "the request was not received in time")
	default:
		e = badRequest(codeBadHTTP, "", "malformed HTTP request")
	}
	s.m.requests[routeOther].Inc()
	s.writeError(ctx, routeOther, e)
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.SetStatusCode(status)
	ctx.SetContentType(contentJSON)
	ctx.SetBody(body)
}

// customerID unescapes and validates the id of a /v1/customers/{id} path.
func customerID(raw []byte) (string, *apiError) {
	id, err := url.PathUnescape(string(raw))
	if err != nil {
		return "", invalid("id", "the customer id in the path is not properly escaped")
	}
	if e := checkID("id", id); e != nil {
		return "", e
	}
	return id, nil
}
