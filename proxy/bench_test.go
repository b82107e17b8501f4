package proxy

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/configs"
)

type fixedAuth struct{ id *authn.Identity }

func (a fixedAuth) Authenticate(*fasthttp.RequestCtx, *Route, netip.Addr) (*authn.Identity, error) {
	return a.id, nil
}

// BenchmarkProxyHandler runs the whole pipeline, authenticated, against a
// fasthttp upstream on loopback.
func BenchmarkProxyHandler(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	us := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }}
	go us.Serve(ln)     //nolint:errcheck
	defer us.Shutdown() //nolint:errcheck
	id := &authn.Identity{Username: "alice", Account: "acme", Roles: []string{"dev"}, RolesHeader: "dev", Method: authn.MethodBearer}
	p, err := New(ConfigOf(baseConfig(configs.Route{Name: "api", PathPrefix: "/api", Upstreams: []string{"http://" + ln.Addr().String()}, Auth: configs.AuthRequired})),
		Options{Authenticator: fixedAuth{id}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	raw := "GET /api/users/42?expand=1 HTTP/1.1\r\nHost: svc.example.com\r\nUser-Agent: bench\r\n" +
		"Authorization: Bearer abc\r\nX-Auth-User: mallory\r\nAccept: */*\r\n\r\n"
	var tmpl fasthttp.Request
	if err := tmpl.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		b.Fatal(err)
	}
	peer := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5555}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		for pb.Next() {
			ctx.Init(&tmpl, peer, nil)
			p.Handler(&ctx)
			if ctx.Response.StatusCode() != 200 {
				b.Fatalf("status %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
		}
	})
}

// BenchmarkPipelineChecks is framing + path + match + hygiene alone.
func BenchmarkPipelineChecks(b *testing.B) {
	rt := fuzzRouter(b)
	san := &sanitizer{identity: []string{"x-auth-user", "x-auth-account", "x-auth-roles", "x-auth-method", "x-auth-key-id", "x-auth-key-name"},
		override: strippedOverrides(nil)}
	raw := "GET /api/v2/users/42?expand=1 HTTP/1.1\r\nHost: svc.example.com\r\nUser-Agent: bench\r\n" +
		"Authorization: Bearer abc\r\nX-Auth-User: mallory\r\nConnection: keep-alive, X-Foo\r\nX-Foo: 1\r\nAccept: */*\r\n\r\n"
	var tmpl, req fasthttp.Request
	if err := tmpl.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		b.Fatal(err)
	}
	s := new(scratch)
	b.ReportAllocs()
	for b.Loop() {
		tmpl.Header.CopyTo(&req.Header)
		s.reset()
		_ = checkRawHeaders(req.Header.RawHeaders())
		_ = s.canonicalHost(&req)
		path, query, _, _ := splitTarget(req.Header.RequestURI())
		_ = rt.match(s.host[:s.hostName], path)
		_ = hasMethodParam(query)
		san.sanitizeRequest(&req.Header, s, false)
	}
}
