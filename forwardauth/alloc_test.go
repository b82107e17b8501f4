//go:build !race

package forwardauth

import (
	"bufio"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/configs"
)

// An allowed check on a cache hit allocates nothing, in each HTTP mode and
// for each credential form (the decision is the proxy's, shared).
func TestCheckHitZeroAlloc(t *testing.T) {
	t.Run("unlimited", func(t *testing.T) { testCheckHitZeroAlloc(t, nil) })
	// With a rate limit on the key, the user, the account and the route
	// (issue 19): the admitted path adds no allocation.
	t.Run("rate-limited", func(t *testing.T) {
		testCheckHitZeroAlloc(t, func(c *configs.Config) {
			c.RateLimits.Policies = []configs.RatePolicy{{Name: "big", Requests: 1e9, Per: configs.Duration(time.Hour)}}
			for i := range c.Routes {
				c.Routes[i].RateLimit = "big"
			}
		})
	})
}

func testCheckHitZeroAlloc(t *testing.T, edit func(*configs.Config)) {
	e := newEnv(t, edit)
	alice := basic("alice", testPassword)
	for _, c := range []struct{ name, raw string }{
		{"nginx basic", "GET /auth HTTP/1.1\r\nHost: svc.example\r\nX-Original-Method: GET\r\nX-Original-URI: /api/users/42?x=1\r\nAuthorization: " + alice + "\r\nX-Auth-User: mallory\r\n\r\n"},
		{"traefik api key", "GET / HTTP/1.1\r\nHost: keygate\r\nX-Forwarded-Method: POST\r\nX-Forwarded-Host: svc.example\r\nX-Forwarded-Uri: /api/users\r\nX-Forwarded-For: 198.51.100.2\r\nAuthorization: Bearer " + e.key + "\r\n\r\n"},
		{"envoy http", "GET /check/api/users/42 HTTP/1.1\r\nHost: svc.example\r\nAuthorization: " + alice + "\r\n\r\n"},
		{"public", "GET / HTTP/1.1\r\nHost: svc.example\r\nX-Forwarded-Uri: /public/x\r\n\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var tmpl fasthttp.Request
			if err := tmpl.Read(bufio.NewReader(strings.NewReader(c.raw))); err != nil {
				t.Fatal(err)
			}
			zeroAllocCheck(t, e, &tmpl, nil)
		})
	}
}

// zeroAllocCheck runs the check tmpl until it is answered from the cache,
// then wants no allocation per check; each answer must be 200 and pass ok
// (nil: no more).
func zeroAllocCheck(t *testing.T, e *env, tmpl *fasthttp.Request, ok func(*fasthttp.Response) bool) {
	t.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Init(tmpl, loopback, nil)
	run := func() {
		tmpl.CopyTo(&ctx.Request)
		ctx.Response.Reset()
		e.f.Handler(&ctx)
		if ctx.Response.StatusCode() != 200 || ok != nil && !ok(&ctx.Response) {
			t.Fatalf("status %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	// Fill the cache: ristretto applies sets asynchronously, so the first
	// checks may still miss (and allocate).
	for range 50 {
		run()
		time.Sleep(time.Millisecond)
	}
	if n := testing.AllocsPerRun(500, run); n != 0 {
		t.Fatalf("%v allocations per check, want 0", n)
	}
}

// An allowed check of a key with an allow-list, metadata forwarded by the
// route and an expiry warning allocates nothing on a cache hit.
func TestCheckHitZeroAllocKeyExtras(t *testing.T) {
	e := metaEnv(t)
	raw := "GET / HTTP/1.1\r\nHost: keygate\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Host: svc.example\r\nX-Forwarded-Uri: /meta/x\r\n" +
		"X-Forwarded-For: 198.51.100.2\r\nAuthorization: Bearer " + e.key + "\r\nX-Auth-Key-Meta-Team: spoof\r\n\r\n"
	var tmpl fasthttp.Request
	if err := tmpl.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	zeroAllocCheck(t, e, &tmpl, func(r *fasthttp.Response) bool { return string(r.Header.Peek("X-Auth-Key-Meta-Team")) == "core" })
}
