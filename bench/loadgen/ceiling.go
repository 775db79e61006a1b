package loadgen

import (
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// CeilingBody returns a JSON body of exactly n bytes (at least 100) shaped
// like a decide answer: what the ceiling server sends, so its responses
// cost the network and the client what nudge's do.
func CeilingBody(n int) []byte {
	n = max(n, 100)
	head := `{"decision_id":"00000000000000000000000000000000","customer_id":"c-0000000","ruleset":"ceiling0",` +
		`"placements":{"home_hero":[{"action":"ceiling","kind":"offer","channel":"web","priority":0,"score":0,` +
		`"content":{"title":"`
	tail := `"}}]}}` + "\n"
	if pad := n - len(head) - len(tail); pad > 0 {
		return []byte(head + strings.Repeat("x", pad) + tail)
	}
	// Too short for the decide shape: a padded object.
	return []byte(`{"p":"` + strings.Repeat("x", n-9) + `"}` + "\n")
}

// CeilingServer returns a minimal fasthttp server that answers every
// request 200 with body: the HTTP ceiling of this machine, what a fasthttp
// service that does no work at all serves here. Its transport settings
// are those of nudge's server (timeouts, 16 KiB read buffer, 1 MiB body
// limit, no Server header), so the two differ only by the work nudge does.
func CeilingServer(body []byte) *fasthttp.Server {
	return &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("application/json")
			ctx.SetBody(body)
		},
		ReadTimeout:                  10 * time.Second,
		WriteTimeout:                 10 * time.Second,
		IdleTimeout:                  60 * time.Second,
		MaxRequestBodySize:           1 << 20,
		ReadBufferSize:               16 << 10,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		CloseOnShutdown:              true,
	}
}
