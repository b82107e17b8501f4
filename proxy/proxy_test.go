package proxy

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/configs"
)

// stdRoutes: /public (auth none), /admin (auth required), / (optional).
func stdRoutes(up string) []configs.Route {
	return []configs.Route{
		{Name: "public", PathPrefix: "/public", Upstreams: []string{up}, Auth: configs.AuthNone},
		{Name: "admin", PathPrefix: "/admin", Upstreams: []string{up}, Auth: configs.AuthRequired},
		{Name: "root", PathPrefix: "/", Upstreams: []string{up}, Auth: configs.AuthOptional},
	}
}

func TestForwarding(t *testing.T) {
	up := newUpstream(t)
	_, addr := startProxy(t, baseConfig(stdRoutes(up.url())...), Options{Authenticator: testAuth{}})
	tests := []struct {
		name, raw, method, uri string
		body                   int
	}{
		{"get with query", get("/public/a/b?x=1&y=%2F/z"), "GET", "/public/a/b?x=1&y=%2F/z", 0},
		{"post body", "POST /public/p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", "POST", "/public/p", 5},
		{"put chunked body", "PUT /public/c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", "PUT", "/public/c", 7},
		{"delete", "DELETE /public/d HTTP/1.1\r\nHost: h\r\n\r\n", "DELETE", "/public/d", 0},
		{"encoded reserved kept raw", get("/public/a%20b%3Ac"), "GET", "/public/a%20b%3Ac", 0},
		{"trailing slash", get("/public/"), "GET", "/public/", 0},
		{"empty query dropped", get("/public/q?"), "GET", "/public/q", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rawDo(t, addr, tt.raw)
			if r.Status != 200 {
				t.Fatalf("status %d body %s", r.Status, r.Body)
			}
			s := up.last(t)
			if s.Method != tt.method || s.URI != tt.uri || s.BodySize != tt.body {
				t.Fatalf("upstream saw %s %q body %d, want %s %q body %d", s.Method, s.URI, s.BodySize, tt.method, tt.uri, tt.body)
			}
			if s.get("Transfer-Encoding") != nil {
				t.Fatalf("Transfer-Encoding forwarded: %v", s.Headers)
			}
			if r.Header.Get("X-Upstream") != "yes" || r.Body != "upstream:"+tt.uri {
				t.Fatalf("upstream response not copied: %v %q", r.Header, r.Body)
			}
		})
	}
}

// identityLike reports headers the upstream got that look like identity headers.
func identityLike(s seen) []string {
	var out []string
	for _, kv := range s.Headers {
		n := strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(kv[0]))
		if strings.HasPrefix(n, "x-auth-") {
			out = append(out, kv[0]+": "+kv[1])
		}
	}
	return out
}

func TestIdentityHeaderSpoofing(t *testing.T) {
	up := newUpstream(t)
	_, addr := startProxy(t, baseConfig(stdRoutes(up.url())...), Options{Authenticator: testAuth{}})
	spoofs := [][]string{
		{"X-Auth-User: mallory"},
		{"x-auth-user: mallory"},
		{"X_Auth_User: mallory"},
		{"X.Auth.User: mallory"},
		{"X-AUTH-USER: mallory", "X-Auth-User: eve"},
		{"X-Auth-Roles: admin", "x_auth_roles: root", "X.AUTH.ROLES: x"},
		{"X-Auth-Account: other", "X-Auth-Method: basic", "X-Auth-Key-Id: k9", "X-Auth-Key-Name: n"},
		{"X-Auth-Anything-Else: 1"},
	}
	targets := []struct {
		name, path string
		auth       string
		user       string // expected X-Auth-User ("" none)
	}{
		{"required with credentials", "/admin/x", "Authorization: Bearer good", "alice"},
		{"optional without credentials", "/other", "", ""},
		{"optional with credentials", "/other", "Authorization: Bearer good", "alice"},
		{"auth none without credentials", "/public/x", "", ""},
		{"auth none with credentials", "/public/x", "Authorization: Bearer good", ""},
	}
	for _, tg := range targets {
		for i, sp := range spoofs {
			t.Run(fmt.Sprintf("%s/%d", tg.name, i), func(t *testing.T) {
				lines := append([]string{}, sp...)
				if tg.auth != "" {
					lines = append(lines, tg.auth)
				}
				r := rawDo(t, addr, get(tg.path, lines...))
				if r.Status != 200 {
					t.Fatalf("status %d %s", r.Status, r.Body)
				}
				s := up.last(t)
				got := identityLike(s)
				if tg.user == "" {
					if len(got) != 0 {
						t.Fatalf("spoofed identity headers reached upstream: %v", got)
					}
					return
				}
				want := []string{"X-Auth-User: alice", "X-Auth-Account: acme", "X-Auth-Roles: admin,dev", "X-Auth-Method: bearer"}
				if strings.Join(got, "|") != strings.Join(want, "|") {
					t.Fatalf("identity headers %v, want %v", got, want)
				}
			})
		}
	}
}

func TestConnectionNamedHeaders(t *testing.T) {
	up := newUpstream(t)
	_, addr := startProxy(t, baseConfig(stdRoutes(up.url())...), Options{Authenticator: testAuth{}})
	tests := []struct {
		name  string
		lines []string
	}{
		{"one list", []string{"Connection: X-Auth-User, X-Auth-Roles"}},
		{"two headers", []string{"Connection: X-Auth-User", "Connection: X-Auth-Roles, X-Auth-Method"}},
		{"close plus names", []string{"Connection: close, X-Auth-User,X-Auth-Account"}},
		{"keep-alive and odd case", []string{"Connection: keep-alive,  x-auth-user ,X-REQUEST-ID"}},
		{"names forwarding headers", []string{"Connection: X-Forwarded-For, X-Request-Id, Authorization"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := append([]string{"Authorization: ApiKey good", "X-Custom: keep"}, tt.lines...)
			r := rawDo(t, addr, get("/admin/c", lines...))
			// Authorization named in Connection is read by authentication
			// first, then removed like every other named header.
			if r.Status != 200 {
				t.Fatalf("status %d %s", r.Status, r.Body)
			}
			s := up.last(t)
			if s.one(t, "X-Auth-User") != "alice" || s.one(t, "X-Auth-Roles") != "dev" ||
				s.one(t, "X-Auth-Method") != "api_key" || s.one(t, "X-Auth-Key-Id") != "k1" ||
				s.one(t, "X-Auth-Key-Name") != "ci" || s.one(t, "X-Auth-Account") != "acme" {
				t.Fatalf("injected headers missing: %v", s.Headers)
			}
			if s.get("Connection") != nil && s.get("Connection")[0] != "keep-alive" {
				// fasthttp's client may add its own keep-alive; the client's list must not pass.
				t.Fatalf("client Connection header forwarded: %v", s.get("Connection"))
			}
			s.one(t, "X-Request-Id")
			s.one(t, "X-Forwarded-For")
			if v := s.get("Authorization"); v != nil {
				t.Fatalf("Authorization forwarded: %v", v)
			}
			if s.one(t, "X-Custom") != "keep" {
				t.Fatal("unrelated header lost")
			}
		})
	}
	// the client's close is honoured on the client side.
	r := rawDo(t, addr, get("/public/x", "Connection: close"))
	if r.Status != 200 || !r.Close {
		t.Fatalf("Connection: close not honoured: %d %v", r.Status, r.Header)
	}
}

func TestHopByHop(t *testing.T) {
	up := newUpstream(t)
	up.respond = func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Keep-Alive", "timeout=5")
		ctx.Response.Header.Set("X-Up-Private", "1")
		ctx.Response.Header.Add("Connection", "X-Up-Private")
		ctx.Response.Header.Set("Proxy-Authenticate", "Basic")
		ctx.Response.Header.Set("Upgrade", "h2c")
		ctx.Response.Header.Set("X-Request-Id", "upstream-chose-this")
	}
	_, addr := startProxy(t, baseConfig(stdRoutes(up.url())...), Options{})
	r := rawDo(t, addr, get("/public/h",
		"Keep-Alive: timeout=100", "Proxy-Connection: keep-alive", "Proxy-Authorization: Basic eDp5",
		"TE: trailers", "Trailer: X-T", "Upgrade: websocket", "Connection: X-Foo, Upgrade",
		"X-Foo: named", "X-Bar: kept"))
	if r.Status != 200 {
		t.Fatalf("status %d %s", r.Status, r.Body)
	}
	s := up.last(t)
	for _, h := range []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "TE", "Trailer", "Upgrade", "X-Foo"} {
		if v := s.get(h); v != nil {
			t.Errorf("%s forwarded: %v", h, v)
		}
	}
	if s.one(t, "X-Bar") != "kept" {
		t.Error("X-Bar lost")
	}
	for _, h := range []string{"Keep-Alive", "X-Up-Private", "Proxy-Authenticate", "Upgrade"} {
		if v := r.Header.Values(h); v != nil {
			t.Errorf("response %s passed: %v", h, v)
		}
	}
	if ids := r.Header.Values("X-Request-Id"); len(ids) != 1 || ids[0] == "upstream-chose-this" {
		t.Errorf("response request id %v", ids)
	}
}

func TestForwardedHeaders(t *testing.T) {
	up := newUpstream(t)
	client := []string{"X-Forwarded-For: 6.6.6.6", "X-Forwarded-For: 7.7.7.7", "X-Forwarded-Proto: https",
		"X-Forwarded-Host: evil.example", "Forwarded: for=6.6.6.6;proto=https", "X_Forwarded_For: 8.8.8.8", "X-Real-Ip: 6.6.6.6"}
	tests := []struct {
		name              string
		trusted           []string
		lines             []string
		xff, proto, host  string
		forwarded, realIP bool
	}{
		{"untrusted peer", nil, client, "127.0.0.1", "http", "example.com", false, false},
		{"untrusted other cidr", []string{"10.0.0.0/8", "::1"}, client, "127.0.0.1", "http", "example.com", false, false},
		{"trusted cidr", []string{"127.0.0.0/8"}, client, "6.6.6.6, 7.7.7.7, 8.8.8.8, 127.0.0.1", "https", "evil.example", true, true},
		{"trusted ip, nothing sent", []string{"127.0.0.1"}, nil, "127.0.0.1", "http", "example.com", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig(stdRoutes(up.url())...)
			cfg.TrustedProxies = tt.trusted
			_, addr := startProxy(t, cfg, Options{})
			r := rawDo(t, addr, get("/public/f", tt.lines...))
			if r.Status != 200 {
				t.Fatalf("status %d", r.Status)
			}
			s := up.last(t)
			if got := s.one(t, "X-Forwarded-For"); got != tt.xff {
				t.Errorf("XFF %q want %q", got, tt.xff)
			}
			if got := s.one(t, "X-Forwarded-Proto"); got != tt.proto {
				t.Errorf("XFP %q want %q", got, tt.proto)
			}
			if got := s.one(t, "X-Forwarded-Host"); got != tt.host {
				t.Errorf("XFH %q want %q", got, tt.host)
			}
			if (s.get("Forwarded") != nil) != tt.forwarded || (s.get("X-Real-Ip") != nil) != tt.realIP {
				t.Errorf("Forwarded/X-Real-Ip presence wrong: %v", s.Headers)
			}
			if s.get("X_Forwarded_For") != nil {
				t.Errorf("underscore variant passed")
			}
		})
	}
}

func TestPathConfusion(t *testing.T) {
	up := newUpstream(t)
	_, addr := startProxy(t, baseConfig(stdRoutes(up.url())...), Options{Authenticator: testAuth{}})
	tests := []struct {
		target string
		status int
		uri    string // what the upstream must see when forwarded
	}{
		{"/public/../admin", 400, ""},
		{"/public/%2e%2e/admin", 400, ""},
		{"/public/%2E%2e/admin", 400, ""},
		{"/public/.%2E/admin", 400, ""},
		{"/public/%2e./admin", 400, ""},
		{"/public/..", 400, ""},
		{"/public/.", 400, ""},
		{"/./admin", 400, ""},
		{"/public%2fadmin", 400, ""},
		{"/public%2F..%2Fadmin", 400, ""},
		{"/public%5cadmin", 400, ""},
		{"/public%5C..%5Cadmin", 400, ""},
		{"/public\\..\\admin", 400, ""},
		{"//admin", 400, ""},
		{"/public//admin", 400, ""},
		{"/%61dmin", 400, ""},
		{"/public/%7e", 400, ""},
		{"/public/%00", 400, ""},
		{"/public/%0a", 400, ""},
		{"/public/%zz", 400, ""},
		{"/public/%2", 400, ""},
		{"/public/\xc3\xa9", 400, ""},
		{"http://example.com/admin", 400, ""},
		{"example.com/public", 400, ""},
		{"*", 400, ""},
		{"/admin?x=/public", 401, ""},
		{"/admin/..;/public", 400, ""},
		{"/admin;x/secret", 400, ""},
		{"/public/..;/admin", 400, ""},
		{"/admin./x", 400, ""},
		{"/public?x=/../admin", 200, "/public?x=/../admin"},
		{"/public/%2e%2e%2fadmin.txt", 400, ""},
		{"/public/...", 400, ""},
		{"/public/a.b", 200, "/public/a.b"},
		{"/public/a%20b", 200, "/public/a%20b"},
		{"/publicadmin", 200, "/publicadmin"}, // root route, not /public
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			up.reset()
			r := rawDo(t, addr, get(tt.target))
			if r.Status != tt.status {
				t.Fatalf("status %d want %d (%s)", r.Status, tt.status, r.Body)
			}
			if tt.status == 400 {
				wantErrBody(t, r, 400, "")
			}
			if tt.uri == "" {
				if n := up.count(); n != 0 {
					t.Fatalf("upstream got %d requests", n)
				}
				return
			}
			if s := up.last(t); s.URI != tt.uri {
				t.Fatalf("upstream saw %q want %q", s.URI, tt.uri)
			}
		})
	}
	t.Run("OPTIONS *", func(t *testing.T) {
		r := rawDo(t, addr, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
		if r.Status != 204 || r.Header.Get("Allow") == "" {
			t.Fatalf("status %d %v", r.Status, r.Header)
		}
	})
}

func TestSmuggling(t *testing.T) {
	up := newUpstream(t)
	_, addr := startProxy(t, baseConfig(stdRoutes(up.url())...), Options{})
	const h = "POST /public/s HTTP/1.1\r\nHost: h\r\n"
	tests := []struct{ name, raw string }{
		{"CL then TE", h + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"TE then CL", h + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"},
		{"two CL same", h + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"},
		{"two CL different", h + "Content-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"},
		{"CL list", h + "Content-Length: 3, 3\r\n\r\nabc"},
		{"CL plus sign", h + "Content-Length: +3\r\n\r\nabc"},
		{"TE chunked, identity", h + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"},
		{"TE identity, chunked", h + "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n"},
		{"TE xchunked", h + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
		{"TE twice", h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"TE on HTTP/1.0", "POST /public/s HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"TE space before colon", h + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
		{"empty header name", h + ": x\r\nContent-Length: 0\r\n\r\n"},
		{"space before colon", h + "X-Foo : bar\r\n\r\n"},
		{"name with inner space", h + "X Foo: bar\r\n\r\n"},
		{"obs-fold", h + "X-Foo: a\r\n  b\r\nContent-Length: 0\r\n\r\n"},
		{"obs-fold tab on TE", h + "Transfer-Encoding:\r\n\tchunked\r\n\r\n0\r\n\r\n"},
		{"first header folded", "POST /public/s HTTP/1.1\r\n Host: h\r\n\r\n"},
		{"line without colon", h + "X-Foo bar\r\n\r\n"},
		{"bare LF", "POST /public/s HTTP/1.1\r\nHost: h\nX-Foo: a\r\nContent-Length: 0\r\n\r\n"},
		{"NUL in value", h + "X-Foo: a\x00b\r\n\r\n"},
		{"bad chunk size", h + "Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.reset()
			r := rawDo(t, addr, tt.raw)
			wantErrBody(t, r, 400, "")
			time.Sleep(20 * time.Millisecond)
			if n := up.count(); n != 0 {
				t.Fatalf("upstream got %d requests", n)
			}
		})
	}
}

func TestDuplicateAuthorizationAndHost(t *testing.T) {
	up := newUpstream(t)
	_, addr := startProxy(t, baseConfig(stdRoutes(up.url())...), Options{Authenticator: testAuth{}})
	tests := []struct {
		name, raw string
		status    int
	}{
		{"two valid", get("/admin/a", "Authorization: Bearer good", "Authorization: Bearer good"), 400},
		{"empty then valid", get("/admin/a", "Authorization:", "Authorization: Bearer good"), 400},
		{"valid then empty", get("/admin/a", "Authorization: Bearer good", "Authorization: "), 400},
		{"case variants", get("/admin/a", "authorization: Bearer x", "AUTHORIZATION: Bearer good"), 400},
		{"on public route", get("/public/a", "Authorization: a", "Authorization: b"), 400},
		{"missing host 1.1", "GET /public/a HTTP/1.1\r\n\r\n", 400},
		{"empty host 1.1", "GET /public/a HTTP/1.1\r\nHost:\r\n\r\n", 400},
		{"two hosts", "GET /public/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"host with slash", "GET /public/a HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
		{"host with userinfo", "GET /public/a HTTP/1.1\r\nHost: evil@a\r\n\r\n", 400},
		{"host with space", "GET /public/a HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"host ipv6 with port", "GET /public/a HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 200},
		{"http/1.0 without host", "GET /public/a HTTP/1.0\r\n\r\n", 200},
		{"single valid", get("/admin/a", "Authorization: Bearer good"), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.reset()
			r := rawDo(t, addr, tt.raw)
			if tt.status != 200 {
				wantErrBody(t, r, tt.status, "")
				if up.count() != 0 {
					t.Fatal("forwarded")
				}
				return
			}
			if r.Status != 200 {
				t.Fatalf("status %d %s", r.Status, r.Body)
			}
		})
	}
}

func TestRouting(t *testing.T) {
	a, b, c := newUpstream(t), newUpstream(t), newUpstream(t)
	cfg := baseConfig(
		configs.Route{Name: "root", PathPrefix: "/", Upstreams: []string{a.url()}, Auth: configs.AuthNone},
		configs.Route{Name: "api", PathPrefix: "/api", Upstreams: []string{b.url()}, Auth: configs.AuthNone, StripPrefix: "/api", Methods: []string{"get", "POST"}},
		configs.Route{Name: "apiv2", PathPrefix: "/api/v2/", Upstreams: []string{c.url()}, Auth: configs.AuthNone},
		configs.Route{Name: "hosted", Host: "Svc.Example.com", PathPrefix: "/", Upstreams: []string{c.url()}, Auth: configs.AuthNone},
	)
	cfg.Routes = cfg.Routes[1:] // no catch-all at first: 404s
	_, addr := startProxy(t, cfg, Options{})
	r := rawDo(t, addr, get("/nothing"))
	wantErrBody(t, r, 404, "not_found")
	r = rawDo(t, addr, get("/apix"))
	wantErrBody(t, r, 404, "not_found")

	cfg = baseConfig()
	cfg.Routes = append(cfg.Routes,
		configs.Route{Name: "root", PathPrefix: "/", Upstreams: []string{a.url()}, Auth: configs.AuthNone},
		configs.Route{Name: "api", PathPrefix: "/api", Upstreams: []string{b.url()}, Auth: configs.AuthNone, StripPrefix: "/api", Methods: []string{"get", "POST"}},
		configs.Route{Name: "apiv2", PathPrefix: "/api/v2/", Upstreams: []string{c.url()}, Auth: configs.AuthNone},
		configs.Route{Name: "hosted", Host: "Svc.Example.com", PathPrefix: "/", Upstreams: []string{c.url()}, Auth: configs.AuthNone},
	)
	_, addr = startProxy(t, cfg, Options{})
	tests := []struct {
		name, raw string
		up        *upstream
		uri       string
	}{
		{"root", get("/x"), a, "/x"},
		{"apix is root", get("/apix"), a, "/apix"},
		{"api exact stripped", get("/api"), b, "/"},
		{"api sub stripped", get("/api/users?id=1"), b, "/users?id=1"},
		{"api trailing slash", get("/api/"), b, "/"},
		{"longest prefix", get("/api/v2/x"), c, "/api/v2/x"},
		{"v2 exact", get("/api/v2"), c, "/api/v2"},
		{"host match any case and port", "GET /api/x HTTP/1.1\r\nHost: SVC.example.COM:8443\r\n\r\n", c, "/api/x"},
		{"host trailing dot", "GET /z HTTP/1.1\r\nHost: svc.example.com.\r\n\r\n", c, "/z"},
		{"other host", "GET /z HTTP/1.1\r\nHost: other.example.com\r\n\r\n", a, "/z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rawDo(t, addr, tt.raw)
			if r.Status != 200 {
				t.Fatalf("status %d %s", r.Status, r.Body)
			}
			if s := tt.up.last(t); s.URI != tt.uri {
				t.Fatalf("upstream saw %q want %q", s.URI, tt.uri)
			}
		})
	}
	t.Run("405", func(t *testing.T) {
		r := rawDo(t, addr, "DELETE /api/x HTTP/1.1\r\nHost: h\r\n\r\n")
		wantErrBody(t, r, 405, "method_not_allowed")
		if r.Header.Get("Allow") != "GET, POST" {
			t.Fatalf("Allow %q", r.Header.Get("Allow"))
		}
	})
}

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestRequestID(t *testing.T) {
	up := newUpstream(t)
	_, addr := startProxy(t, baseConfig(stdRoutes(up.url())...), Options{})
	long := strings.Repeat("a", 129)
	tests := []struct {
		name  string
		lines []string
		keep  string
	}{
		{"kept", []string{"X-Request-Id: abc-123_x.Y"}, "abc-123_x.Y"},
		{"kept 128", []string{"X-Request-Id: " + long[:128]}, long[:128]},
		{"generated", nil, ""},
		{"too long", []string{"X-Request-Id: " + long}, ""},
		{"bad chars", []string{"X-Request-Id: a b"}, ""},
		{"injection", []string{"X-Request-Id: a\"}"}, ""},
		{"empty", []string{"X-Request-Id:"}, ""},
		{"duplicate", []string{"X-Request-Id: one", "X-Request-Id: two"}, "one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rawDo(t, addr, get("/public/r", tt.lines...))
			got := r.Header.Values("X-Request-Id")
			if len(got) != 1 {
				t.Fatalf("response ids %v", got)
			}
			if tt.keep != "" && got[0] != tt.keep || tt.keep == "" && !hex32.MatchString(got[0]) {
				t.Fatalf("id %q", got[0])
			}
			if s := up.last(t); s.one(t, "X-Request-Id") != got[0] {
				t.Fatalf("upstream id %v, response %q", s.get("X-Request-Id"), got[0])
			}
		})
	}
	t.Run("on errors", func(t *testing.T) {
		r := rawDo(t, addr, get("/public/%2e%2e", "X-Request-Id: keep-me"))
		if r.Header.Get("X-Request-Id") != "keep-me" {
			t.Fatalf("id on 400: %q", r.Header.Get("X-Request-Id"))
		}
		r = rawDo(t, addr, get("/x", "X-Big: "+strings.Repeat("a", 20<<10)))
		if r.Status != 431 || !hex32.MatchString(r.Header.Get("X-Request-Id")) {
			t.Fatalf("431 response %d id %q", r.Status, r.Header.Get("X-Request-Id"))
		}
	})
}

func TestAuthSeam(t *testing.T) {
	up := newUpstream(t)
	routes := append(stdRoutes(up.url()),
		configs.Route{Name: "fwd", PathPrefix: "/fwd", Upstreams: []string{up.url()}, Auth: configs.AuthRequired, ForwardAuthorization: true},
		configs.Route{Name: "ops", PathPrefix: "/ops", Upstreams: []string{up.url()}, Auth: configs.AuthRequired, Roles: []string{"ops", "root"}},
		configs.Route{Name: "dev", PathPrefix: "/dev", Upstreams: []string{up.url()}, Auth: configs.AuthRequired, Roles: []string{"ops", "dev"}},
	)
	_, addr := startProxy(t, baseConfig(routes...), Options{Authenticator: testAuth{}})
	_, addrNoAuth := startProxy(t, baseConfig(stdRoutes(up.url())...), Options{})
	tests := []struct {
		name, addr, path, auth string
		status                 int
		code                   string
		fwdAuth                bool
	}{
		{"required, none sent", addr, "/admin/x", "", 401, "unauthorized", false},
		{"required, bad", addr, "/admin/x", "Bearer bad", 401, "invalid_credentials", false},
		{"required, ok, auth dropped", addr, "/admin/x", "Bearer good", 200, "", false},
		{"forward_authorization", addr, "/fwd/x", "Bearer good", 200, "", true},
		{"optional, bad creds still 401", addr, "/opt", "Bearer bad", 401, "", false},
		{"optional, anonymous", addr, "/opt", "", 200, "", false},
		{"roles missing", addr, "/ops/x", "Bearer good", 403, "forbidden", false},
		{"roles present", addr, "/dev/x", "ApiKey good", 200, "", false},
		{"authenticator's own challenge kept", addr, "/admin/x", "Bearer expired", 401, "invalid_token", false},
		{"internal error hidden", addr, "/admin/x", "Bearer boom", 500, "internal_error", false},
		{"no authenticator, required", addrNoAuth, "/admin/x", "Bearer good", 401, "unauthorized", false},
		{"no authenticator, optional", addrNoAuth, "/opt", "Bearer good", 200, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.reset()
			var lines []string
			if tt.auth != "" {
				lines = append(lines, "Authorization: "+tt.auth)
			}
			r := rawDo(t, tt.addr, get(tt.path, lines...))
			if tt.status != 200 {
				wantErrBody(t, r, tt.status, tt.code)
				if strings.Contains(r.Body, "s3cr3t") || strings.Contains(r.Body, "exploded") {
					t.Fatalf("error text leaked: %s", r.Body)
				}
				if tt.auth == "Bearer expired" {
					if www := r.Header.Values("Www-Authenticate"); len(www) != 1 || !strings.Contains(www[0], `error="invalid_token"`) {
						t.Fatalf("WWW-Authenticate %v", www)
					}
				} else if tt.status == 401 {
					www := r.Header.Values("Www-Authenticate")
					if len(www) != 2 || www[0] != `Basic realm="keygate"` || www[1] != `Bearer realm="keygate"` {
						t.Fatalf("WWW-Authenticate %v", www)
					}
				}
				if up.count() != 0 {
					t.Fatal("forwarded")
				}
				return
			}
			if r.Status != 200 {
				t.Fatalf("status %d %s", r.Status, r.Body)
			}
			s := up.last(t)
			if got := s.get("Authorization") != nil; got != tt.fwdAuth {
				t.Fatalf("Authorization forwarded=%v want %v", got, tt.fwdAuth)
			}
		})
	}
}
