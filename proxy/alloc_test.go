//go:build !race

package proxy

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
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
