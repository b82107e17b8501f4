package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// pathsGateway runs the binary with an auth: none catch-all and protected
// routes next to it, as in issue 12: /admin (auth required), /Legacy
// (case_insensitive, auth required), /ro (GET and POST only, auth none), the host
// internal.example.com (auth required) and *.corp.example.com (auth none, its
// own upstream). Every upstream counts what it receives.
func pathsGateway(t *testing.T, extra string) (g *gateway, open, corp *testUpstream) {
	t.Helper()
	open, corp = startUpstream(t, 0), startUpstream(t, 0)
	routes := fmt.Sprintf(`  - name: admin
    path_prefix: /admin
    upstreams: ["http://%[1]s"]
    auth: required
  - name: legacy
    path_prefix: /Legacy
    case_insensitive: true
    upstreams: ["http://%[1]s"]
    auth: required
  - name: ro
    path_prefix: /ro
    methods: [GET, POST]
    upstreams: ["http://%[1]s"]
    auth: none
  - name: internal
    host: internal.example.com
    path_prefix: /
    upstreams: ["http://%[1]s"]
    auth: required
  - name: corp
    host: "*.corp.example.com"
    path_prefix: /
    upstreams: ["http://%[2]s"]
    auth: none
`, open.addr, corp.addr) + echoRoute("open", "/", open.addr)
	return startGateway(t, serveOpts{routes: routes, extra: extra}), open, corp
}

// e2eServletIISClass is the class of issue 12 item 1 (the whole list, with
// the reason of each, is internal/reqtarget's table test).
var e2eServletIISClass = []string{
	"/admin;x/secret", "/admin;/secret", "/admin;jsessionid=0123ABC/secret", "/public;jsessionid=1",
	"/x/..;/admin/secret", "/..;/admin/secret", "/x/..;a=b/admin",
	"/admin%3Bx/secret", "/admin%3bx/secret", "/x/..%3B/admin",
	"/x/%252e%252e/admin", "/x%252fadmin", "/x%255cadmin", "/admin%253bx/secret", "/x/%2525/y", "/%2561dmin/secret",
	"/x/%c0%ae%c0%ae/admin", "/x/%C0%AE%C0%AE%C0%AFadmin", "/x/%e0%80%ae%e0%80%ae/admin", "/x/%f0%80%80%ae/admin", "/x/%c0%af../admin",
	"/admin./secret", "/admin../secret", "/admin.", "/admin%20/secret", "/admin%20", "/admin.%20/secret", "/Legacy./x",
	"/x/%u002e%u002e/admin", "/x/%U002E%U002E/admin",
	"/admin::$DATA", "/admin/secret.aspx::$DATA", "/admin:%24DATA/x",
	"/x/%EF%BC%8E%EF%BC%8E/admin", "/x%EF%BC%8Fadmin", "/%EF%BD%81dmin/secret", "/admin%EF%BC%9Bx/secret",
	"/x/%E2%80%A4%E2%80%A4/admin", "/x%E2%88%95admin", "/admin%C2%A0/secret",
	"/ADMINI~1/secret", "/LEGACY~1/x", // 8.3 short names: a case_insensitive (Windows) route exists
}

func TestServletIISPaths(t *testing.T) {
	t.Parallel()
	g, open, corp := pathsGateway(t, "")
	for _, target := range e2eServletIISClass {
		t.Run(target, func(t *testing.T) {
			r := rawDo(t, g.public, "GET "+target+" HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n")
			if r.status != 400 || errorCode(r.body) != "bad_path" {
				t.Fatalf("status %d %s, want 400 bad_path", r.status, r.body)
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	if n := open.count.Load() + corp.count.Load(); n != 0 {
		t.Fatalf("upstream received %d of the ambiguous requests", n)
	}

	t.Run("case_insensitive", func(t *testing.T) {
		for _, tc := range []struct {
			target string
			status int
		}{
			{"/legacy/x", 401}, {"/LEGACY/x", 401}, {"/lEgAcY", 401}, {"/leg%C4%B1cy/x", 200}, // 'ı' folds to i, not to a
			{"/Leg%C4%B1cy/x", 200}, {"/legacyx", 200}, {"/ADMIN/x", 200}, // /admin is case-sensitive: catch-all
		} {
			r := rawDo(t, g.public, "GET "+tc.target+" HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n")
			if r.status != tc.status {
				t.Errorf("%s: status %d, want %d: %s", tc.target, r.status, tc.status, r.body)
			}
		}
	})
}

func TestHostCanonicalisation(t *testing.T) {
	t.Parallel()
	g, open, corp := pathsGateway(t, "")
	tests := []struct {
		host   string
		status int
		up     *testUpstream // which upstream answers a 200
		fwd    string        // Host and X-Forwarded-Host upstream
	}{
		{"internal.example.com", 401, nil, ""},
		{"internal.example.com.", 401, nil, ""},
		{"INTERNAL.example.com:8080", 401, nil, ""},
		{"Internal.Example.COM.:8080", 401, nil, ""},
		{"a,b", 400, nil, ""},
		{"internal.example.com,other", 400, nil, ""},
		{"internal.example.com;x", 400, nil, ""},
		{"a!b", 400, nil, ""},
		{"internal.example.com..", 400, nil, ""},
		{"gw.example", 200, open, "gw.example"},
		{"GW.Example.:8080", 200, open, "gw.example:8080"},
		{"svc.corp.example.com", 200, corp, "svc.corp.example.com"},
		{"SVC.Corp.Example.com.", 200, corp, "svc.corp.example.com"},
		{"corp.example.com", 200, open, "corp.example.com"},
		{"a.b.corp.example.com", 200, open, "a.b.corp.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			before := open.count.Load() + corp.count.Load()
			r := rawDo(t, g.public, "GET /x HTTP/1.1\r\nHost: "+tc.host+"\r\nX-Forwarded-Host: evil.example\r\nConnection: close\r\n\r\n")
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status == 400 {
				if c := errorCode(r.body); c != "bad_host" {
					t.Errorf("code %q, want bad_host", c)
				}
			}
			if tc.up == nil {
				time.Sleep(20 * time.Millisecond)
				if n := open.count.Load() + corp.count.Load(); n != before {
					t.Fatal("forwarded")
				}
				return
			}
			e := decodeEcho(t, r.body)
			if got := e.Headers["Host"]; len(got) != 1 || got[0] != tc.fwd {
				t.Errorf("upstream Host %q, want %q", got, tc.fwd)
			}
			if got := e.Headers["X-Forwarded-Host"]; len(got) != 1 || got[0] != tc.fwd {
				t.Errorf("upstream X-Forwarded-Host %q, want %q", got, tc.fwd)
			}
		})
	}
	t.Run("absolute-form", func(t *testing.T) {
		r := rawDo(t, g.public, "GET http://internal.example.com/x HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n")
		if r.status != 400 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
}

func TestOverrideHeadersStripped(t *testing.T) {
	t.Parallel()
	g, _, _ := pathsGateway(t, "")
	sent := []string{
		"X-HTTP-Method-Override: DELETE", "x_http_method_override: DELETE", "X.HTTP.Method.Override: DELETE",
		"X-HTTP-Method: DELETE", "X-Method-Override: DELETE", "x-method_override: DELETE",
		"X-Original-URL: /admin/secret", "X_Original_URL: /admin/secret", "X-Rewrite-URL: /admin/secret",
		"x.rewrite.url: /admin/secret", "X-Original-URI: /admin/secret", "X-Original-Method: DELETE",
	}
	overrides := []string{"x-http-method-override", "x-http-method", "x-method-override", "x-original-url", "x-rewrite-url", "x-original-uri", "x-original-method"}
	r := rawDo(t, g.public, "GET /ro/x HTTP/1.1\r\nHost: gw.example\r\n"+strings.Join(sent, "\r\n")+"\r\nX-Keep: 1\r\nConnection: close\r\n\r\n")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	e := decodeEcho(t, r.body)
	for name, v := range e.Headers {
		for _, o := range overrides {
			if normHeader(name) == o {
				t.Errorf("upstream saw %s: %q", name, v)
			}
		}
	}
	if e.Method != "GET" || e.Path != "/ro/x" || len(e.Headers["X-Keep"]) != 1 {
		t.Errorf("upstream saw %s %s %v", e.Method, e.Path, e.Headers)
	}

	t.Run("_method on a route with methods", func(t *testing.T) {
		for _, q := range []string{"_method=DELETE", "a=1&_METHOD=DELETE", "%5Fmethod=PUT", "_%6dethod=PUT", ".method=DELETE", "[method=PATCH", "x;_method=DELETE"} {
			r := rawDo(t, g.public, "GET /ro/x?"+q+" HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n")
			if r.status != 400 || errorCode(r.body) != "method_override" {
				t.Errorf("%s: status %d %s, want 400 method_override", q, r.status, r.body)
			}
		}
		for _, body := range []struct{ ct, body string }{
			{"application/x-www-form-urlencoded", "a=1&_method=DELETE"},
			{"application/x-www-form-urlencoded; charset=UTF-8", "%5FMETHOD=PUT"},
			{"multipart/form-data; boundary=kg", "--kg\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--kg--\r\n"},
		} {
			r := rawDo(t, g.public, fmt.Sprintf("POST /ro/x HTTP/1.1\r\nHost: gw.example\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
				body.ct, len(body.body), body.body))
			if r.status != 400 || errorCode(r.body) != "method_override" {
				t.Errorf("form %q: status %d %s, want 400 method_override", body.body, r.status, r.body)
			}
		}
		// Routes without methods forward it: nothing to bypass.
		r := rawDo(t, g.public, "GET /x?_method=DELETE HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n")
		if r.status != 200 || decodeEcho(t, r.body).Query != "_method=DELETE" {
			t.Errorf("status %d: %s", r.status, r.body)
		}
	})
}

func TestOverrideHeadersKeepList(t *testing.T) {
	t.Parallel()
	g, _, _ := pathsGateway(t, "headers:\n  keep_override_headers: [X-HTTP-Method-Override]\n")
	r := rawDo(t, g.public, "GET /x HTTP/1.1\r\nHost: gw.example\r\nx_http_method_override: PATCH\r\nX-Original-URL: /admin\r\nConnection: close\r\n\r\n")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	e := decodeEcho(t, r.body)
	var kept []string
	for name, v := range e.Headers {
		switch normHeader(name) {
		case "x-http-method-override":
			kept = append(kept, v...)
		case "x-original-url":
			t.Errorf("X-Original-URL forwarded: %v", e.Headers)
		}
	}
	if len(kept) != 1 || kept[0] != "PATCH" {
		t.Errorf("kept header lost: %v", e.Headers)
	}
}

func TestCaseInsensitiveOverlapRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`listen: %q
admin: {listen: %q}
store: {driver: bolt, bolt: {path: %q}}
routes:
  - name: iis
    path_prefix: /
    case_insensitive: true
    upstreams: ["http://127.0.0.1:9"]
    auth: none
  - name: admin
    path_prefix: /admin
    upstreams: ["http://127.0.0.1:9"]
`, freeAddr(t), freeAddr(t), dir+"/kg.db")
	path := dir + "/keygate.yaml"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, []string{"KEYGATE_TOKENS_SIGNING_SECRET=" + testSigningSecret}, "serve", "--config", path)
	if code != 2 || !strings.Contains(stderr, "routes[1].case_insensitive") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}
