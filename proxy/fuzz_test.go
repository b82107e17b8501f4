package proxy

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/configs"
)

func fuzzRouter(t testing.TB) *router {
	var routes []*Route
	for i, rc := range []configs.Route{
		{Name: "root", PathPrefix: "/", Upstreams: []string{"http://127.0.0.1:1"}},
		{Name: "api", PathPrefix: "/api", Upstreams: []string{"http://127.0.0.1:1"}, StripPrefix: "/api"},
		{Name: "apiv2", PathPrefix: "/api/v2", Upstreams: []string{"http://127.0.0.1:1"}},
		{Name: "admin", PathPrefix: "/admin/", Upstreams: []string{"http://127.0.0.1:1"}},
		{Name: "hosted", Host: "svc.example.com", PathPrefix: "/admin", Upstreams: []string{"http://127.0.0.1:1"}},
	} {
		r, err := compileRoute(i, &rc)
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, r)
	}
	return newRouter(routes)
}

func FuzzMatch(f *testing.F) {
	for _, s := range []string{"/", "/api", "/api/v2/x?y=/z", "/public/../admin", "/%2e%2E/", "/a%2fb", "//x",
		"/a\\b", "/%61", "/api/", "/apix", "*", "http://x/y", "/a?b#c", "/..;/admin", "/admin%2F"} {
		f.Add(s, "svc.example.com:80")
		f.Add(s, "")
	}
	rt := fuzzRouter(f)
	f.Fuzz(func(t *testing.T, target, host string) {
		path, query, _, err := splitTarget([]byte(target))
		if err != nil {
			return
		}
		if !strings.HasPrefix(target, string(path)) || len(path) == 0 || path[0] != '/' {
			t.Fatalf("path %q from %q", path, target)
		}
		if bytes.ContainsAny(query, "# \x00\x7f") {
			t.Fatalf("query %q accepted", query)
		}
		lp := strings.ToLower(string(path))
		for _, bad := range []string{"//", "\\", "%2f", "%5c", "%2e", "%00", "/./", "/../"} {
			if strings.Contains(lp, bad) {
				t.Fatalf("accepted ambiguous path %q", path)
			}
		}
		if strings.HasSuffix(lp, "/.") || strings.HasSuffix(lp, "/..") {
			t.Fatalf("accepted dot segment %q", path)
		}
		for _, c := range path {
			if c <= 0x20 || c >= 0x7f {
				t.Fatalf("accepted byte %#x in %q", c, path)
			}
		}
		r := rt.match([]byte(host), path)
		if r == nil {
			t.Fatalf("no route for %q (root exists)", path)
		}
		if !hasSegmentPrefix(path, r.PathPrefix) {
			t.Fatalf("route %s prefix %q does not prefix %q", r.Name, r.PathPrefix, path)
		}
		// No longer matching prefix was passed over in the same host group.
		group := rt.any
		if r.Host != "" {
			group = rt.hosted
		}
		for _, o := range group {
			if len(o.PathPrefix) > len(r.PathPrefix) && hasSegmentPrefix(path, o.PathPrefix) &&
				(o.Host == "" || asciiEqualFold(hostOnly([]byte(host)), o.Host)) {
				t.Fatalf("%q matched %q, longer %q exists", path, r.PathPrefix, o.PathPrefix)
			}
		}
		if r.StripPrefix != "" && hasSegmentPrefix(path, r.StripPrefix) {
			rest := path[len(r.StripPrefix):]
			if len(rest) > 0 && rest[0] != '/' {
				t.Fatalf("strip left %q", rest)
			}
		}
	})
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{
		"X-Auth-User: a\r\nConnection: X-Foo, x_auth_roles\r\nX-Foo: 1\r\n",
		"x.auth.user: a\r\nX_AUTH_ACCOUNT: b\r\nConnection: close\r\nConnection: X-Bar\r\nX-Bar: 2\r\n",
		"X-Forwarded-For: 1.2.3.4\r\nForwarded: for=x\r\nKeep-Alive: 1\r\nTE: trailers\r\nUpgrade: h2c\r\n",
		"Cookie: a=b\r\nConnection: Cookie, Host, Content-Length\r\nContent-Length: 0\r\n",
		"X-User-Name: x\r\nx-user-name: y\r\n",
	} {
		f.Add(s)
	}
	san := &sanitizer{identity: []string{"x-auth-user", "x-auth-account", "x-auth-roles", "x-user-name"}}
	f.Fuzz(func(t *testing.T, block string) {
		raw := "GET / HTTP/1.1\r\nHost: h\r\n" + block + "\r\n"
		var req fasthttp.Request
		if err := req.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			return
		}
		_ = checkRawHeaders(req.Header.RawHeaders()) // must not panic
		var conn []string
		for k, v := range req.Header.All() {
			if strings.EqualFold(string(k), "Connection") {
				for _, tok := range strings.Split(string(v), ",") {
					if tok = strings.TrimSpace(tok); tok != "" {
						conn = append(conn, tok)
					}
				}
			}
		}
		for _, trusted := range []bool{false, true} {
			var r2 fasthttp.Request
			req.Header.CopyTo(&r2.Header)
			var s scratch
			san.sanitizeRequest(&r2.Header, &s, trusted)
			for k := range r2.Header.All() {
				n := strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(string(k)))
				if strings.HasPrefix(n, "x-auth-") || n == "x-user-name" {
					t.Fatalf("identity-like header %q survived", k)
				}
				if isHopByHop(k) {
					t.Fatalf("hop-by-hop %q survived", k)
				}
				if n == "host" || n == "content-length" {
					continue
				}
				for _, c := range conn {
					if strings.EqualFold(c, string(k)) {
						t.Fatalf("header %q named in Connection survived", k)
					}
				}
				if !trusted && (strings.HasPrefix(n, "x-forwarded-") || n == "forwarded") {
					t.Fatalf("forwarding header %q from untrusted peer survived", k)
				}
			}
		}
	})
}
