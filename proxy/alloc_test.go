//go:build !race

package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/configs"
)

// TestPipelineZeroAlloc: framing checks, path validation, route match and
// header hygiene on a prepared request allocate nothing.
func TestPipelineZeroAlloc(t *testing.T) {
	rt := fuzzRouter(t)
	san := &sanitizer{identity: []string{"x-auth-user", "x-auth-account", "x-auth-roles", "x-auth-method", "x-auth-key-id", "x-auth-key-name"},
		override: strippedOverrides(nil)}
	raw := "GET /api/v2/users/42?expand=1 HTTP/1.1\r\nHost: svc.example.com\r\nUser-Agent: bench\r\n" +
		"Authorization: Bearer abc\r\nX-Auth-User: mallory\r\nx_auth_roles: admin\r\nConnection: keep-alive, X-Foo\r\n" +
		"X-Foo: 1\r\nX-Forwarded-For: 6.6.6.6\r\nAccept: */*\r\nCookie: a=b\r\n\r\n"
	var tmpl fasthttp.Request
	if err := tmpl.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	var req fasthttp.Request
	s := new(scratch)
	run := func() {
		tmpl.Header.CopyTo(&req.Header)
		s.reset()
		if err := checkRawHeaders(req.Header.RawHeaders()); err != nil {
			t.Fatal(err)
		}
		if err := s.canonicalHost(&req); err != nil {
			t.Fatal(err)
		}
		path, query, _, err := splitTarget(req.Header.RequestURI())
		if err != nil {
			t.Fatal(err)
		}
		if r := rt.match(s.host[:s.hostName], path); r == nil || r.Name != "apiv2" {
			t.Fatalf("route %v", r)
		}
		if hasMethodParam(query) {
			t.Fatal("_method")
		}
		san.sanitizeRequest(&req.Header, s, false)
		s.rid = appendNewRequestID(s.rid, s)
	}
	run()
	if req.Header.Peek("X-Auth-User") != nil || req.Header.Peek("X-Foo") != nil {
		t.Fatal("not sanitised")
	}
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Fatalf("%v allocs per request", n)
	}
}

// TestAuthorizeNativeZeroAlloc: the native route decision (counted, as with
// the native handler, or not) allocates nothing, allowed or denied,
// authenticated or anonymous.
func TestAuthorizeNativeZeroAlloc(t *testing.T) {
	route := configs.Route{Name: "api", PathPrefix: "/api", Upstreams: []string{"http://127.0.0.1:1"}, Auth: configs.AuthOptional,
		Roles: []string{"billing", "ops"}}
	alice := &authn.Identity{Username: "alice", Account: "acme", Roles: []string{"dev", "ops"}, Method: authn.MethodBearer}
	bob := &authn.Identity{Username: "bob", Account: "acme", Roles: []string{"dev"}, Method: authn.MethodBearer}
	var ctx fasthttp.RequestCtx
	path := []byte("/api/x")
	for _, nat := range []*authz.Native{authz.NewNative(authz.Options{Registerer: prometheus.NewRegistry()}), nil} {
		p, err := New(ConfigOf(baseConfig(route)), Options{Native: nat})
		if err != nil {
			t.Fatal(err)
		}
		r := p.routes[0]
		for _, tc := range []struct {
			name    string
			id      *authn.Identity
			allowed bool
		}{{"allowed", alice, true}, {"denied", bob, false}, {"anonymous", nil, false}} {
			run := func() {
				if err := p.authorize(&ctx, r, tc.id, path); (err == nil) != tc.allowed {
					t.Fatalf("%s: %v", tc.name, err)
				}
			}
			if n := testing.AllocsPerRun(200, run); n != 0 {
				t.Fatalf("%s (counted %v): %v allocs per decision", tc.name, nat != nil, n)
			}
		}
		p.Close()
	}
}

// TestHandlerKeyExtrasZeroAlloc: injecting metadata headers and the expiry
// warning on an authenticated request allocates nothing.
func TestHandlerKeyExtrasZeroAlloc(t *testing.T) {
	id := metaIdentity(`{"team":"core","tier":"gold"}`, time.Now().Add(time.Hour))
	route := configs.Route{Name: "api", PathPrefix: "/", Upstreams: []string{"http://127.0.0.1:1"}, Auth: configs.AuthRequired,
		ForwardKeyMetadata: []string{"team", "tier"}}
	p, err := New(ConfigOf(baseConfig(route)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	r := p.routes[0]
	var req fasthttp.Request
	var resp fasthttp.Response
	now := time.Now()
	run := func() {
		p.inject(&req.Header, id)
		injectMeta(&req.Header, r, id)
		setKeyExpires(&resp.Header, id, 168*time.Hour, now)
		p.SetCheckKeyHeaders(&resp.Header, r, id, now)
	}
	run()
	if string(req.Header.Peek("X-Auth-Key-Meta-Tier")) != "gold" || len(resp.Header.Peek(KeyExpiresHeader)) == 0 {
		t.Fatal("headers not set")
	}
	if n := testing.AllocsPerRun(500, run); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

// TestHandlerHitZeroAlloc: the whole pipeline, server side to upstream and
// back (checks, routing, authentication seam, identity and forwarding
// headers, the upstream pool and its transport, response hygiene, metrics),
// allocates nothing per request: on an auth: none route and on an
// authenticated one, for a small response (read whole by the transport)
// and for a large one (streamed through the pooled upstreamStream).
func TestHandlerHitZeroAlloc(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	large := bytes.Repeat([]byte("x"), 200<<10)
	us := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if bytes.HasSuffix(ctx.Path(), []byte("/large")) {
			ctx.SetBody(large)
			return
		}
		ctx.SetBodyString("ok")
	}}
	go us.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = us.Shutdown() })
	up := []string{"http://" + ln.Addr().String()}
	id := &authn.Identity{Username: "alice", Account: "acme", Roles: []string{"dev"}, RolesHeader: "dev", Method: authn.MethodBearer}
	p, err := New(ConfigOf(baseConfig(
		configs.Route{Name: "open", PathPrefix: "/open", Upstreams: up, Auth: configs.AuthNone},
		configs.Route{Name: "api", PathPrefix: "/api", Upstreams: up, Auth: configs.AuthRequired},
	)), Options{Authenticator: fixedAuth{id}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	peer := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5555}
	for _, tc := range []struct{ name, target string }{
		{"none", "/open/x?y=1"}, {"authenticated", "/api/users/42?expand=1"}, {"large streamed", "/api/large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := "GET " + tc.target + " HTTP/1.1\r\nHost: svc.example.com\r\nUser-Agent: t\r\n" +
				"Authorization: Bearer abc\r\nX-Auth-User: mallory\r\nX-Request-Id: req-1\r\nAccept: */*\r\n\r\n"
			var tmpl fasthttp.Request
			if err := tmpl.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
				t.Fatal(err)
			}
			var ctx fasthttp.RequestCtx
			ctx.Init(&tmpl, peer, nil)
			run := func() {
				tmpl.CopyTo(&ctx.Request)
				ctx.Response.Reset()
				p.Handler(&ctx)
				if ctx.Response.StatusCode() != 200 {
					t.Fatalf("status %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
				if st := ctx.Response.BodyStream(); st != nil {
					if n, err := io.Copy(io.Discard, st); err != nil || n != int64(len(large)) {
						t.Fatalf("streamed %d bytes, %v", n, err)
					}
				}
				ctx.Response.Reset() // closes the stream: the connection goes back to the pool
			}
			run()
			if n := testing.AllocsPerRun(200, run); n != 0 {
				t.Fatalf("%v allocations per request", n)
			}
		})
	}
}
