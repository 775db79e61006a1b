package server_test

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/nudge-engine/nudge/engine"
	"github.com/nudge-engine/nudge/server"
	"github.com/nudge-engine/nudge/store"
)

// The fuzz targets below decode every request body (and the GET decide
// query and the customer path) through the real handler, with small
// limits so the fuzzer reaches them. Whatever the input:
//
//   - no panic, no 5xx;
//   - the answer is JSON (204 aside);
//   - a 4xx has the SPEC error shape and wrote nothing;
//   - nothing invalid (id, event type) ever reaches the store;
//   - a 2xx means what it says: PUT/PATCH answer the stored attributes,
//     events accepted n stored n events, a decision names its customer.
//
// Seeds are committed in testdata/fuzz/<target>; each target fails when
// its seed directory is missing or empty, so a rename cannot silently
// leave a target without seeds.

// fuzzServer is a server over a checkStore, called without a network.
type fuzzServer struct {
	st      *checkStore
	handler fasthttp.RequestHandler
}

func newFuzzServer(f *testing.F) *fuzzServer {
	f.Helper()
	seeds, err := os.ReadDir(filepath.Join("testdata", "fuzz", f.Name()))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds in testdata/fuzz/%s (%v): a fuzz target must have its seed corpus", f.Name(), err)
	}
	st := newCheckStore()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	srv, err := server.New(server.Options{MaxBodyBytes: 64 << 10, MaxDepth: 16, MaxStringBytes: 512, MaxPlacements: 8, MaxBatch: 16,
		Now: func() time.Time { return now }}, st, &fakeRules{rs: mustCompile(f, testRules)}, engine.New(engine.Options{}), nil)
	if err != nil {
		f.Fatal(err)
	}
	return &fuzzServer{st: st, handler: srv.Handler()}
}

var loopbackAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}

// do runs one request on an empty store (plus what prepare writes) and
// checks the answer; it returns the status and the decoded JSON body.
func (fs *fuzzServer) do(t *testing.T, method, uri, contentType string, body []byte, prepare func(*checkStore)) (int, map[string]any) {
	t.Helper()
	fs.st.reset()
	if prepare != nil {
		prepare(fs.st)
		fs.st.writes.Store(0)
	}
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	if contentType != "" {
		req.Header.SetContentType(contentType)
	}
	req.SetBody(body)
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, loopbackAddr, nil)
	fs.handler(&ctx)
	status, out := ctx.Response.StatusCode(), ctx.Response.Body()
	what := method + " " + uri
	if status >= 500 {
		t.Fatalf("%s %q: %d %s", what, body, status, out)
	}
	if bad := fs.st.badWrites(); len(bad) > 0 {
		t.Fatalf("%s %q: invalid data reached the store: %v", what, body, bad)
	}
	if status == fasthttp.StatusNoContent {
		if len(out) != 0 {
			t.Fatalf("%s: 204 with a body %q", what, out)
		}
		return status, nil
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("%s %q: %d answer is not a JSON object: %v: %q", what, body, status, err, out)
	}
	if status >= 400 {
		checkErrorShape(t, what, m)
		if n := fs.st.writes.Load(); n != 0 {
			t.Fatalf("%s %q: answered %d but wrote to the store %d times", what, body, status, n)
		}
	}
	return status, m
}

var snakeCase = regexp.MustCompile(`^[a-z]+(_[a-z0-9]+)*$`)

// checkErrorShape checks {"error": {"code", "message", "field"?}}.
func checkErrorShape(t *testing.T, what string, m map[string]any) {
	t.Helper()
	e, ok := m["error"].(map[string]any)
	if !ok || len(m) != 1 {
		t.Fatalf("%s: error body %v; want {\"error\": {...}} only", what, m)
	}
	if code, _ := e["code"].(string); !snakeCase.MatchString(code) {
		t.Fatalf("%s: error code %v is not snake_case", what, e["code"])
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Fatalf("%s: error without a message: %v", what, e)
	}
	for k, v := range e {
		switch k {
		case "code", "message":
		case "field":
			if s, ok := v.(string); !ok || s == "" {
				t.Fatalf("%s: error field %v; want a non-empty string", what, v)
			}
		case "details":
			if e["code"] != "invalid_rules" {
				t.Fatalf("%s: details on a %v error", what, e["code"])
			}
		default:
			t.Fatalf("%s: unexpected key %q in error %v", what, k, e)
		}
	}
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func checkDecision(t *testing.T, m map[string]any) {
	t.Helper()
	if id, _ := m["decision_id"].(string); !hexID.MatchString(id) {
		t.Fatalf("decision_id %v", m["decision_id"])
	}
	id, _ := m["customer_id"].(string)
	if err := store.ValidateID(id); err != nil {
		t.Fatalf("decided for invalid customer id %q: %v", id, err)
	}
	if _, ok := m["placements"].(map[string]any); !ok {
		t.Fatalf("decision without placements: %v", m)
	}
}

// jsonRoundTrip is v as encoding/json would decode it again.
func jsonRoundTrip(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("cannot marshal %v: %v", v, err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func FuzzDecideBody(f *testing.F) {
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		status, m := fs.do(t, "POST", "/v1/decide", "application/json", body, nil)
		if status == 200 {
			checkDecision(t, m)
		}
	})
}

func FuzzDecideQuery(f *testing.F) {
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, query string) {
		status, m := fs.do(t, "GET", "/v1/decide?"+query, "", nil, nil)
		if status == 200 {
			checkDecision(t, m)
		}
	})
}

// FuzzCustomerPut fuzzes the path id and the body of PUT.
func FuzzCustomerPut(f *testing.F) {
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, id string, body []byte) {
		status, m := fs.do(t, "PUT", "/v1/customers/"+id, "application/json", body, nil)
		if status != 200 {
			return
		}
		checkStored(t, fs.st, m)
	})
}

// FuzzCustomerPatch patches a stored customer; the patch must give what
// RFC 7386 says, and the answer must be what is stored.
func FuzzCustomerPatch(f *testing.F) {
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		before := map[string]any{"tier": "gold", "consent": map[string]any{"email": true, "sms": false}, "ltv": 10.0}
		status, m := fs.do(t, "PATCH", "/v1/customers/c-1", contentType, body, func(st *checkStore) {
			_ = st.PutAttributes("c-1", before)
		})
		if status != 200 {
			return
		}
		checkStored(t, fs.st, m)
		var patch map[string]any
		if err := json.Unmarshal(body, &patch); err != nil {
			t.Fatalf("a PATCH that is not a JSON object was accepted: %q", body)
		}
		want := mergePatch(jsonRoundTrip(t, before).(map[string]any), patch)
		if got := m["attributes"]; !reflect.DeepEqual(got, jsonRoundTrip(t, want)) {
			t.Fatalf("PATCH %s gave %v; want %v", body, got, want)
		}
	})
}

// mergePatch is RFC 7386, written plainly as the reference.
func mergePatch(target, patch map[string]any) map[string]any {
	if target == nil {
		target = map[string]any{}
	}
	for k, v := range patch {
		switch v := v.(type) {
		case nil:
			delete(target, k)
		case map[string]any:
			sub, _ := target[k].(map[string]any)
			target[k] = mergePatch(sub, v)
		default:
			target[k] = v
		}
	}
	return target
}

// checkStored checks that the {"id", "attributes"} answer of a customer
// write is what the store holds.
func checkStored(t *testing.T, st *checkStore, m map[string]any) {
	t.Helper()
	id, _ := m["id"].(string)
	c, err := st.Customer(id)
	if err != nil || c == nil {
		t.Fatalf("answered 200 for %q but nothing is stored (%v)", id, err)
	}
	if got, want := jsonRoundTrip(t, c.Attributes), m["attributes"]; !reflect.DeepEqual(got, want) {
		t.Fatalf("stored attributes %v; answered %v", got, want)
	}
}

func FuzzEvents(f *testing.F) {
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		status, m := fs.do(t, "POST", "/v1/events", "application/json", body, nil)
		if status != 202 {
			return
		}
		n, _ := m["accepted"].(float64)
		if stored := fs.st.events.Load(); int64(n) != stored || len(m) != 1 {
			t.Fatalf("answered %v; %d events stored", m, stored)
		}
	})
}

func FuzzFeedback(f *testing.F) {
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		status, m := fs.do(t, "POST", "/v1/feedback", "application/json", body, nil)
		if status != 202 {
			return
		}
		if m["accepted"] != 1.0 || fs.st.writes.Load() != 1 {
			t.Fatalf("answered %v after %d writes; want accepted 1 after one", m, fs.st.writes.Load())
		}
	})
}

// FuzzSimulate: simulate must never write, whatever it answers.
func FuzzSimulate(f *testing.F) {
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		status, m := fs.do(t, "POST", "/v1/simulate", "application/json", body, nil)
		if n := fs.st.writes.Load(); n != 0 {
			t.Fatalf("simulate %q answered %d and wrote %d times", body, status, n)
		}
		if status != 200 {
			return
		}
		checkDecision(t, m)
		if _, ok := m["explain"].([]any); !ok {
			t.Fatalf("simulate without explain: %v", m)
		}
	})
}
