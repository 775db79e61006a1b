package server

import (
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"

	"github.com/valyala/fasthttp"
)

// apiError is an error answered to the client: a status and the
// {"error": {"code", "message", "field"}} body. Handlers return it; only
// writeError turns errors into responses.
type apiError struct {
	status  int
	code    string // snake_case
	message string
	field   string        // optional JSON path of the offending input
	allow   string        // 405: the Allow header
	details []ErrorDetail // 422 invalid_rules
}

func (e *apiError) Error() string {
	if e.field != "" {
		return e.code + ": " + e.field + ": " + e.message
	}
	return e.code + ": " + e.message
}

func newError(status int, code, field, format string, args ...any) *apiError {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	return &apiError{status: status, code: code, message: msg, field: field}
}

// Error codes. Every code is counted in nudge_http_errors_total.
const (
	codeInvalidJSON      = "invalid_json"
	codeInvalidUTF8      = "invalid_utf8"
	codeTooDeep          = "too_deep"
	codeStringTooLong    = "string_too_long"
	codeMissingField     = "missing_field"
	codeInvalidField     = "invalid_field"
	codeTooMany          = "too_many"
	codeBodyTooLarge     = "body_too_large"
	codeHeaderTooLarge   = "header_too_large"
	codeBadHTTP          = "bad_request"
	codeUnauthorized     = "unauthorized"
	codeForbidden        = "forbidden"
	codeNotFound         = "not_found"
	codeMethod           = "method_not_allowed"
	codeMediaType        = "unsupported_media_type"
	codeInvalidRules     = "invalid_rules"
	codeOverloaded       = "overloaded"
	codeNotReady         = "not_ready"
	codeStoreUnavailable = "store_unavailable"
	codeTimeout          = "timeout"
	codeInternal         = "internal"
)

func badRequest(code, field, format string, args ...any) *apiError {
	return newError(http.StatusBadRequest, code, field, format, args...)
}

func missing(field string) *apiError {
	return badRequest(codeMissingField, field, "%s is required", field)
}

func invalid(field, format string, args ...any) *apiError {
	return badRequest(codeInvalidField, field, format, args...)
}

var (
	errOverloaded = newError(http.StatusServiceUnavailable, codeOverloaded, "", "too many requests in flight; retry shortly")
	errNoRuleset  = newError(http.StatusServiceUnavailable, codeNotReady, "", "no ruleset is active yet")
	errNotFound   = newError(http.StatusNotFound, codeNotFound, "", "no such endpoint")
	errInternal   = newError(http.StatusInternalServerError, codeInternal, "", "internal error")
)

// storeFailed logs a store failure and returns the answer for it: 503,
// so clients retry and a storefront shows its default content. The cause
// is logged, never sent: it may name internals.
func (s *Server) storeFailed(op string, err error) *apiError {
	s.opts.Logger.Error().Err(err).Str("op", op).Msg("store failed")
	return newError(http.StatusServiceUnavailable, codeStoreUnavailable, "", "the customer store is unavailable; retry shortly")
}

func methodNotAllowed(allow string) *apiError {
	e := newError(http.StatusMethodNotAllowed, codeMethod, "", "method not allowed; allowed: %s", allow)
	e.allow = allow
	return e
}

// writeError answers err: an *apiError as it says, anything else as 500
// (logged, never sent). Whatever the handler had written is discarded,
// so a failure never produces a partial response.
func (s *Server) writeError(ctx *fasthttp.RequestCtx, r route, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		s.opts.Logger.Error().Err(err).Str("route", routeNames[r]).Msg("cannot handle request")
		e = errInternal
	}
	ctx.Response.ResetBody()
	ctx.SetStatusCode(e.status)
	ctx.SetContentType(contentJSON)
	if e.status == fasthttp.StatusServiceUnavailable {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	if e.allow != "" {
		ctx.Response.Header.Set("Allow", e.allow)
	}
	ctx.SetBody(appendError(nil, e))
	s.m.errors.WithLabelValues(routeNames[r], e.code).Inc()
}

func appendError(b []byte, e *apiError) []byte {
	b = append(b, `{"error":{"code":`...)
	b = appendString(b, e.code)
	b = append(b, `,"message":`...)
	b = appendString(b, e.message)
	if e.field != "" {
		b = append(b, `,"field":`...)
		b = appendString(b, e.field)
	}
	if e.code == codeInvalidRules {
		b = append(b, `,"details":[`...)
		for i, d := range e.details {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendDetail(b, d)
		}
		b = append(b, ']')
	}
	return append(b, "}}\n"...)
}

func appendDetail(b []byte, d ErrorDetail) []byte {
	b = append(b, `{"file":`...)
	b = appendString(b, d.File)
	b = append(b, `,"line":`...)
	b = appendInt(b, int64(d.Line))
	b = append(b, `,"column":`...)
	b = appendInt(b, int64(d.Column))
	b = append(b, `,"message":`...)
	b = appendString(b, d.Message)
	return append(b, '}')
}

// recoverPanic turns a panic of a handler into a 500: counted, logged
// with its stack, never fatal.
func (s *Server) recoverPanic(ctx *fasthttp.RequestCtx, r route) {
	p := recover()
	if p == nil {
		return
	}
	s.m.panics.Inc()
	s.opts.Logger.Error().Str("route", routeNames[r]).Str("panic", fmt.Sprint(p)).Bytes("stack", debug.Stack()).Msg("handler panicked")
	ctx.Response.Reset()
	s.writeError(ctx, r, errInternal)
}
