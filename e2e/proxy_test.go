package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"
)

// publicGateway starts `keygate echo` and a gateway whose routes are:
// /public → echo with auth none, / → echo with auth required (nothing
// authenticates yet, so it answers 401).
func publicGateway(t *testing.T) *gateway {
	t.Helper()
	echoAddr := startEchoProc(t)
	routes := echoRoute("public", "/public", echoAddr) +
		fmt.Sprintf("  - name: private\n    path_prefix: /\n    upstreams: [\"http://%s\"]\n    auth: required\n", echoAddr)
	return startGateway(t, serveOpts{routes: routes})
}

func TestForwarding(t *testing.T) {
	t.Parallel()
	g := publicGateway(t)
	tests := []struct {
		name, method, target, body string
		wantPath, wantQuery        string
	}{
		{"get with query", "GET", "/public/hello?x=1&y=%20z", "", "/public/hello", "x=1&y=%20z"},
		{"post body", "POST", "/public/items", `{"a":1}`, "/public/items", ""},
		{"put", "PUT", "/public/items/7?v=2", "abcdef", "/public/items/7", "v=2"},
		{"patch", "PATCH", "/public/items/7", "p", "/public/items/7", ""},
		{"delete", "DELETE", "/public/items/7", "", "/public/items/7", ""},
		{"encoded chars kept", "GET", "/public/a%20b/c%3Ad?q=%2F", "", "/public/a%20b/c%3Ad", "q=%2F"},
		{"prefix itself", "GET", "/public", "", "/public", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: example.test\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
				tc.method, tc.target, len(tc.body), tc.body)
			r := rawDo(t, g.public, raw)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			e := decodeEcho(t, r.body)
			if rid := r.header.Get("X-Request-Id"); rid == "" || len(e.Headers["X-Request-Id"]) != 1 || e.Headers["X-Request-Id"][0] != rid {
				t.Errorf("request id: response %q, upstream %q", rid, e.Headers["X-Request-Id"])
			}
			if e.Method != tc.method || e.Path != tc.wantPath || e.Query != tc.wantQuery || e.BodySize != len(tc.body) {
				t.Errorf("upstream saw %s %q ? %q (%d bytes); want %s %q ? %q (%d bytes)",
					e.Method, e.Path, e.Query, e.BodySize, tc.method, tc.wantPath, tc.wantQuery, len(tc.body))
			}
		})
	}
	t.Run("chunked body", func(t *testing.T) {
		r := rawDo(t, g.public, "POST /public/c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n")
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		if e := decodeEcho(t, r.body); e.BodySize != 8 {
			t.Errorf("body_size = %d, want 8", e.BodySize)
		}
	})
	t.Run("protected route without credentials", func(t *testing.T) {
		resp, err := http.Get(g.url("/private"))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("status %d, want 401", resp.StatusCode)
		}
	})
}

// normHeader folds a header name the way a lenient upstream might: case,
// '_' and '.' all collapse.
func normHeader(name string) string {
	return strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(name))
}

func TestIdentityHeaderSpoofing(t *testing.T) {
	t.Parallel()
	g := publicGateway(t)
	spoofs := []struct {
		name    string
		headers string
	}{
		{"canonical", "X-Auth-User: admin\r\nX-Auth-Account: admin\r\nX-Auth-Roles: admin\r\nX-Auth-Method: basic\r\n"},
		{"lower case", "x-auth-user: admin\r\nx-auth-roles: admin\r\n"},
		{"upper case", "X-AUTH-USER: admin\r\nX-AUTH-ACCOUNT: admin\r\n"},
		{"underscores", "X_Auth_User: admin\r\nx_auth_roles: admin\r\n"},
		{"dots", "X.Auth.User: admin\r\nX.Auth.Roles: admin\r\n"},
		{"mixed separators", "X-Auth_User: admin\r\nX_Auth.Roles: admin\r\n"},
		{"repeated", "X-Auth-User: a\r\nX-Auth-User: b\r\nx-auth-user: c\r\n"},
		{"key headers", "X-Auth-Key-Id: k1\r\nX-Auth-Key-Name: ci\r\n"},
		{"unknown x-auth header", "X-Auth-Whatever: 1\r\n"},
		{"with credentials", "Authorization: Basic YWRtaW46cHc=\r\nX-Auth-User: admin\r\n"},
		{"named in connection", "Connection: X-Auth-User\r\nX-Auth-User: admin\r\n"},
		{"empty value", "X-Auth-User: \r\n"},
	}
	for _, sp := range spoofs {
		t.Run(sp.name, func(t *testing.T) {
			raw := "GET /public/whoami HTTP/1.1\r\nHost: h\r\n" + sp.headers + "X-Innocent: yes\r\nConnection: close\r\n\r\n"
			r := rawDo(t, g.public, raw)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			e := decodeEcho(t, r.body)
			for name, v := range e.Headers {
				if strings.HasPrefix(normHeader(name), "x-auth-") {
					t.Errorf("upstream saw %s: %q", name, v)
				}
			}
			if len(e.Headers["X-Innocent"]) != 1 {
				t.Errorf("ordinary header lost: %v", e.Headers)
			}
		})
	}
}

func TestHopByHopHeaders(t *testing.T) {
	t.Parallel()
	g := publicGateway(t)
	tests := []struct {
		name    string
		headers string
		gone    []string
	}{
		{"named in connection", "Connection: X-Foo\r\nX-Foo: bar\r\n", []string{"x-foo", "connection"}},
		{"identity header named", "Connection: X-Auth-User, X-Auth-Roles\r\nX-Auth-User: x\r\nX-Auth-Roles: y\r\n", []string{"x-auth-user", "x-auth-roles"}},
		{"split over two connection headers", "Connection: X-A\r\nConnection: X-B\r\nX-A: 1\r\nX-B: 2\r\n", []string{"x-a", "x-b"}},
		{"keep-alive and proxy headers", "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\nUpgrade: h2c\r\nTe: trailers\r\n",
			[]string{"keep-alive", "proxy-connection", "proxy-authorization", "upgrade", "te"}},
		{"odd case in connection", "Connection: x-FOO\r\nX-Foo: bar\r\n", []string{"x-foo"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDo(t, g.public, "GET /public/h HTTP/1.1\r\nHost: h\r\n"+tc.headers+"X-Keep: 1\r\n\r\n")
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			e := decodeEcho(t, r.body)
			for name := range e.Headers {
				for _, gone := range tc.gone {
					if strings.EqualFold(name, gone) {
						t.Errorf("upstream saw hop-by-hop %s: %q", name, e.Headers[name])
					}
				}
			}
			if len(e.Headers["X-Keep"]) != 1 {
				t.Errorf("end-to-end header lost: %v", e.Headers)
			}
		})
	}
}

func TestForwardedHeadersFromUntrustedClient(t *testing.T) {
	t.Parallel()
	g := publicGateway(t)
	tests := []struct {
		name    string
		headers string
	}{
		{"x-forwarded-*", "X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n"},
		{"lower case", "x-forwarded-for: 10.0.0.1, 1.2.3.4\r\nx-forwarded-proto: https\r\n"},
		{"repeated", "X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n"},
		{"forwarded", "Forwarded: for=1.2.3.4;proto=https;host=evil.example\r\n"},
		{"x-real-ip", "X-Real-Ip: 1.2.3.4\r\n"},
		{"none", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDo(t, g.public, "GET /public/f HTTP/1.1\r\nHost: gw.example\r\n"+tc.headers+"Connection: close\r\n\r\n")
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			h := map[string][]string{}
			for name, v := range decodeEcho(t, r.body).Headers {
				h[strings.ToLower(name)] = append(h[strings.ToLower(name)], v...)
			}
			if got := h["x-forwarded-for"]; len(got) != 1 || got[0] != "127.0.0.1" {
				t.Errorf("X-Forwarded-For = %q, want [127.0.0.1]", got)
			}
			if got := h["x-forwarded-proto"]; len(got) != 1 || got[0] != "http" {
				t.Errorf("X-Forwarded-Proto = %q, want [http]", got)
			}
			if got := h["x-forwarded-host"]; len(got) != 1 || got[0] != "gw.example" {
				t.Errorf("X-Forwarded-Host = %q, want [gw.example]", got)
			}
			for _, v := range append(h["forwarded"], h["x-real-ip"]...) {
				if strings.Contains(v, "1.2.3.4") {
					t.Errorf("client forwarding value reached upstream: %q", v)
				}
			}
		})
	}
}

// TestPathConfusion sends paths that try to reach the protected route through
// the public one. Acceptable: 400, the protected route's 401 (or a 404), or a
// 200 from the public route where the forwarded path, however the upstream
// decodes and cleans it, is still under /public.
func TestPathConfusion(t *testing.T) {
	t.Parallel()
	g := publicGateway(t)
	targets := []string{
		"/public/../admin",
		"/public/./../admin",
		"/public/%2e%2e/admin",
		"/public/%2E%2E/admin",
		"/public/.%2e/admin",
		"/public/..%2fadmin",
		"/public/..%2Fadmin",
		"/public%2f..%2fadmin",
		"/public/%2e%2e%2fadmin",
		"/public/..;/admin",
		"/public/..\\admin",
		"/public/%5c..%5cadmin",
		"/public/%252e%252e/admin",
		"//admin",
		"///public/../admin",
		"/./admin",
		"/admin?x=/public",
		"/admin#/public",
		"/PUBLIC/../admin",
		"/public/%00/../admin",
		"/public//../../admin",
		"/public/%2e/admin",
	}
	for _, target := range targets {
		t.Run(target, func(t *testing.T) {
			r := rawDo(t, g.public, "GET "+target+" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
			switch r.status {
			case 400, 401, 404:
				return
			case 200:
			default:
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			e := decodeEcho(t, r.body)
			if strings.HasPrefix(target, "/admin") {
				t.Fatalf("protected path served anonymously: forwarded %q", e.Path)
			}
			// However an upstream decodes (once, as RFC 3986 says) and cleans
			// it, the path it acts on must stay under /public.
			p := e.Path
			if u, err := url.PathUnescape(p); err == nil {
				p = u
			}
			p = strings.ReplaceAll(p, "\\", "/")
			if c := path.Clean(p); c != "/public" && !strings.HasPrefix(c, "/public/") {
				t.Fatalf("public route forwarded %q (upstream reads %q)", e.Path, c)
			}
			if e.Path != target && path.Clean(e.Path) != e.Path {
				t.Errorf("forwarded %q is neither the path sent (%q) nor a normalised one", e.Path, target)
			}
		})
	}
}

// TestSmuggling sends ambiguous framing over raw TCP: every shape gets 400 and
// the upstream sees nothing.
func TestSmuggling(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, 0)
	g := startGateway(t, serveOpts{routes: echoRoute("all", "/", up.addr)})
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
	shapes := []struct{ name, raw string }{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + smuggled},
		{"two CL differing", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc" + smuggled},
		{"two CL equal", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"},
		{"CL list", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc"},
		{"CL sign", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc"},
		{"TE not chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE chunked then identity", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE xchunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"two TE", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"space before colon", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n" + smuggled},
		{"empty header name", "GET / HTTP/1.1\r\nHost: h\r\n: value\r\n\r\n"},
		{"space in header name", "GET / HTTP/1.1\r\nHost: h\r\nX Bad: value\r\n\r\n"},
		{"no host", "GET / HTTP/1.1\r\n\r\n"},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},
	}
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			r := rawDo(t, g.public, sh.raw)
			if r.status != 400 {
				t.Errorf("status %d, want 400: %s", r.status, r.body)
			}
		})
	}
	// Give a wrongly forwarded request time to arrive before counting.
	time.Sleep(100 * time.Millisecond)
	if n := up.count.Load(); n != 0 {
		t.Errorf("upstream received %d requests; want none", n)
	}
	// The gateway still works for a well-formed request.
	if r := rawDo(t, g.public, "GET /ok HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"); r.status != 200 {
		t.Errorf("well-formed request: %d", r.status)
	}
}

func TestOversize(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, 0)
	g := startGateway(t, serveOpts{routes: echoRoute("all", "/", up.addr)})
	big := strings.Repeat("a", 100<<10)
	tests := []struct {
		name string
		raw  string
		want int
	}{
		{"100 KB header", "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + big + "\r\n\r\n", 431},
		{"many headers", "GET / HTTP/1.1\r\nHost: h\r\n" + strings.Repeat("X-Many: 0123456789012345678901234567890123456789\r\n", 2000) + "\r\n", 431},
		{"100 KB url", "GET /" + big + " HTTP/1.1\r\nHost: h\r\n\r\n", 431},
		{"1 MB bearer token", "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + strings.Repeat("t", 1<<20) + "\r\n\r\n", 431},
		{"2 MiB body", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2097152\r\n\r\n" + strings.Repeat("b", 2<<20), 413},
		{"declared 10 GiB body", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10737418240\r\n\r\nxx", 413},
		{"2 MiB chunked body", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n200000\r\n" + strings.Repeat("c", 0x200000) + "\r\n0\r\n\r\n", 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			r := rawDo(t, g.public, tc.raw)
			if r.status != tc.want && !(tc.want == 431 && strings.Contains(tc.name, "url") && r.status == 414) {
				t.Errorf("status %d, want %d: %.200s", r.status, tc.want, r.body)
			}
			if took := time.Since(began); took > 3*time.Second {
				t.Errorf("took %v", took)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if n := up.count.Load(); n != 0 {
		t.Errorf("upstream received %d oversize requests", n)
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Parallel()
	slow := startUpstream(t, time.Second)
	dead := freeAddr(t) // nothing listens here
	routes := echoRoute("down", "/down", dead) +
		echoRoute("slow", "/slow", slow.addr, "timeout: 300ms")
	g := startGateway(t, serveOpts{routes: routes})
	tests := []struct {
		path    string
		want    int
		maxTime time.Duration
	}{
		{"/down/x", 502, 3 * time.Second},
		{"/slow/x", 504, 3 * time.Second}, // the 504 itself proves the 300ms timeout: the upstream answers after 1s
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			began := time.Now()
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(g.url(tc.path))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if code := errorCode(body); code == "" {
				t.Errorf("not a JSON error: %s", body)
			}
			if strings.Contains(string(body), dead) || strings.Contains(string(body), slow.addr) {
				t.Errorf("error reveals the upstream address: %s", body)
			}
			if took := time.Since(began); took > tc.maxTime {
				t.Errorf("took %v, want under %v", took, tc.maxTime)
			}
		})
	}
}
