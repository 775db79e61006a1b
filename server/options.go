package server

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Options configure a Server. The zero value of every field means its
// default; New calls EnsureDefaults and Validate.
type Options struct {
	// APIKey, when set, is required in the X-API-Key header of decide,
	// events and feedback requests. Default: "" (no key needed).
	APIKey string
	// AdminToken, when set, is required as "Authorization: Bearer <token>"
	// on the admin endpoints (customer reads and writes, simulate, stats,
	// rules reload). When it is empty those endpoints answer loopback
	// clients only. Default: "".
	AdminToken string
	// CORSOrigins lists the browser origins ("https://shop.example") allowed
	// to call decide and feedback; "*" allows any. Default: none.
	CORSOrigins []string

	// MaxBodyBytes is the largest request body; larger ones get 413.
	// Default: 1 MiB.
	MaxBodyBytes int
	// MaxHeaderBytes bounds the request line and headers (the fasthttp read
	// buffer); a GET decide with many placements needs a few KiB.
	// Default: 16 KiB.
	MaxHeaderBytes int
	// MaxDepth is the deepest JSON nesting accepted. Default: 64.
	MaxDepth int
	// MaxStringBytes is the longest JSON string (keys included) accepted.
	// Default: 64 KiB.
	MaxStringBytes int
	// MaxPlacements is the most placements one decide request may name.
	// Default: 32.
	MaxPlacements int
	// MaxBatch is the most events one POST /v1/events may carry.
	// Default: 1000.
	MaxBatch int

	// ReadTimeout bounds reading one request. Default: 10s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response. Default: 10s.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a keep-alive connection waits for its
	// next request. Default: 60s.
	IdleTimeout time.Duration
	// MaxInFlight is how many requests are handled at once; the excess is
	// answered 503 with Retry-After: 1 (health and metrics are exempt).
	// Default: 1024.
	MaxInFlight int
	// DecideTimeout is the latency budget of a decision's evaluation,
	// counted from when the customer has been read: a decision that would
	// take longer answers every placement's fallback, with "degraded":
	// true, and is counted in nudge_decide_degraded_total (see
	// engine.Request.Deadline). The customer read itself is not
	// interrupted. Simulate has no budget. Negative: no budget.
	// Default: 50ms.
	DecideTimeout time.Duration

	// Logger receives the server's logs and fasthttp's (at debug level).
	// Attribute values are never logged at info level or above.
	// Default: the zero zerolog.Logger, which logs nothing.
	Logger zerolog.Logger
	// Now is the clock of decisions, events without a time and feedback.
	// Default: time.Now.
	Now func() time.Time
	// IsLoopback reports whether a client address is on the loopback
	// interface (admin endpoints without an AdminToken).
	// Default: the address's IP is a loopback IP.
	IsLoopback func(net.Addr) bool
}

// Defaults of Options.
const (
	DefaultMaxBodyBytes   = 1 << 20
	DefaultMaxHeaderBytes = 16 << 10
	DefaultMaxDepth       = 64
	DefaultMaxStringBytes = 64 << 10
	DefaultMaxPlacements  = 32
	DefaultMaxBatch       = 1000
	DefaultReadTimeout    = 10 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultIdleTimeout    = 60 * time.Second
	DefaultMaxInFlight    = 1024
	DefaultDecideTimeout  = 50 * time.Millisecond
)

// EnsureDefaults fills the zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	setDefault(&o.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&o.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDefault(&o.MaxDepth, DefaultMaxDepth)
	setDefault(&o.MaxStringBytes, DefaultMaxStringBytes)
	setDefault(&o.MaxPlacements, DefaultMaxPlacements)
	setDefault(&o.MaxBatch, DefaultMaxBatch)
	setDefault(&o.ReadTimeout, DefaultReadTimeout)
	setDefault(&o.WriteTimeout, DefaultWriteTimeout)
	setDefault(&o.IdleTimeout, DefaultIdleTimeout)
	setDefault(&o.MaxInFlight, DefaultMaxInFlight)
	setDefault(&o.DecideTimeout, DefaultDecideTimeout)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.IsLoopback == nil {
		o.IsLoopback = isLoopback
	}
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// Validate reports every invalid field; call it after EnsureDefaults
// (New does both).
func (o *Options) Validate() error {
	var errs []error
	positive := func(name string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, not %d", name, v))
		}
	}
	positive("MaxBodyBytes", o.MaxBodyBytes)
	positive("MaxHeaderBytes", o.MaxHeaderBytes)
	positive("MaxDepth", o.MaxDepth)
	positive("MaxStringBytes", o.MaxStringBytes)
	positive("MaxPlacements", o.MaxPlacements)
	positive("MaxBatch", o.MaxBatch)
	positive("MaxInFlight", o.MaxInFlight)
	for name, d := range map[string]time.Duration{"ReadTimeout": o.ReadTimeout, "WriteTimeout": o.WriteTimeout, "IdleTimeout": o.IdleTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, not %s", name, d))
		}
	}
	// A credential with spaces or control characters could never be sent
	// in a header, so every request would be refused.
	if strings.ContainsFunc(o.APIKey, badTokenRune) {
		errs = append(errs, errors.New("APIKey must not contain spaces or control characters"))
	}
	if strings.ContainsFunc(o.AdminToken, badTokenRune) {
		errs = append(errs, errors.New("AdminToken must not contain spaces or control characters"))
	}
	for _, origin := range o.CORSOrigins {
		if err := checkOrigin(origin); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func badTokenRune(r rune) bool { return r <= ' ' || r == 0x7f }

// checkOrigin accepts "*" or scheme://host[:port], as browsers send it.
func checkOrigin(origin string) error {
	if origin == "*" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("CORS origin %q must be \"*\" or scheme://host[:port] without a path", origin)
	}
	return nil
}

func isLoopback(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UDPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true // only local processes reach a Unix socket
	case nil:
		return false
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
