package proxy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keygate/keygate/configs"
)

// servletIISClass is the whole class of issue 12 item 1: targets a servlet
// container, IIS or a double-decoding framework reads as a path under
// /admin while a plain prefix match would not.
var servletIISClass = []string{
	"/admin;x/secret",
	"/admin;/secret",
	"/admin;jsessionid=0123ABC/secret",
	"/public;jsessionid=0123ABC",
	"/public/..;/admin/secret",
	"/..;/admin/secret",
	"/public/..;a=b/admin",
	"/admin%3Bx/secret",
	"/admin%3bx/secret",
	"/public/..%3B/admin",
	"/public/%252e%252e/admin",
	"/public%252fadmin",
	"/public%255cadmin",
	"/admin%253bx/secret",
	"/public/%2525/x",
	"/%2561dmin/secret",
	"/public/%c0%ae%c0%ae/admin",
	"/public/%C0%AE%C0%AE%C0%AFadmin",
	"/public/%e0%80%ae%e0%80%ae/admin",
	"/public/%f0%80%80%ae/admin",
	"/public/%c0%af../admin",
	"/admin./secret",
	"/admin../secret",
	"/admin.",
	"/admin%20/secret",
	"/admin%20",
	"/admin.%20/secret",
	"/public/%u002e%u002e/admin",
	"/public/%U002E%U002E/admin",
	"/admin::$DATA",
	"/admin/secret.aspx::$DATA",
	"/admin:%24DATA/x",
	"/public/%EF%BC%8E%EF%BC%8E/admin",
	"/public%EF%BC%8Fadmin",
	"/public%EF%BC%BC..%EF%BC%BCadmin",
	"/%EF%BD%81dmin/secret",
	"/admin%EF%BC%9Bx/secret",
	"/public/%E2%80%A4%E2%80%A4/admin",
	"/public%E2%88%95admin",
	"/admin%C2%A0/secret",
}

func TestServletIISPathClass(t *testing.T) {
	up := newUpstream(t)
	cfg := baseConfig(
		configs.Route{Name: "admin", PathPrefix: "/admin", Upstreams: []string{up.url()}, Auth: configs.AuthRequired},
		configs.Route{Name: "open", PathPrefix: "/", Upstreams: []string{up.url()}, Auth: configs.AuthNone},
	)
	_, addr := startProxy(t, cfg, Options{Authenticator: testAuth{}})
	for _, target := range servletIISClass {
		t.Run(target, func(t *testing.T) {
			up.reset()
			r := rawDo(t, addr, get(target))
			wantErrBody(t, r, 400, "bad_path")
			if n := up.count(); n != 0 {
				t.Fatalf("upstream got %d requests", n)
			}
		})
	}
	// Neighbours that have one reading stay served.
	for _, target := range []string{"/public/a%20b", "/public/caf%C3%A9", "/public/100%25", "/public/x:y", "/public/v1.2/x",
		"/public/ADMINI~1/x"} { // no case_insensitive route: no Windows upstream

		t.Run(target, func(t *testing.T) {
			up.reset()
			if r := rawDo(t, addr, get(target)); r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			if s := up.last(t); s.URI != target {
				t.Fatalf("upstream saw %q", s.URI)
			}
		})
	}
}

func TestCaseInsensitiveRoutes(t *testing.T) {
	iis, open := newUpstream(t), newUpstream(t)
	cfg := baseConfig(
		configs.Route{Name: "admin", PathPrefix: "/admin", Upstreams: []string{iis.url()}, Auth: configs.AuthRequired, CaseInsensitive: true},
		configs.Route{Name: "legacy", PathPrefix: "/Legacy/App", StripPrefix: "/legacy", Upstreams: []string{iis.url()}, Auth: configs.AuthNone, CaseInsensitive: true},
		configs.Route{Name: "cs", PathPrefix: "/public", Upstreams: []string{open.url()}, Auth: configs.AuthNone},
		configs.Route{Name: "open", PathPrefix: "/", Upstreams: []string{open.url()}, Auth: configs.AuthNone},
	)
	_, addr := startProxy(t, cfg, Options{Authenticator: testAuth{}})
	tests := []struct {
		target string
		status int
		up     *upstream
		uri    string
	}{
		{"/ADMIN/x", 401, nil, ""},
		{"/Admin", 401, nil, ""},
		{"/aDmIn/secret?q=1", 401, nil, ""},
		{"/adm%C4%B1n/x", 401, nil, ""}, // dotless ı uppercases to I
		{"/adm%c4%b0n/x", 401, nil, ""}, // İ lowercases to i
		{"/admins/x", 200, open, "/admins/x"},
		{"/ADMINS", 200, open, "/ADMINS"},
		{"/legacy/app/x", 200, iis, "/app/x"},
		{"/LEGACY/APP/X", 200, iis, "/APP/X"},
		{"/Legacy/App", 200, iis, "/App"},
		{"/legacy/appx", 200, open, "/legacy/appx"},
		{"/public/x", 200, open, "/public/x"},
		{"/PUBLIC/x", 200, open, "/PUBLIC/x"}, // case-sensitive route: the catch-all
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			iis.reset()
			open.reset()
			r := rawDo(t, addr, get(tt.target))
			if tt.up == nil {
				wantErrBody(t, r, tt.status, "")
				if iis.count()+open.count() != 0 {
					t.Fatal("forwarded")
				}
				return
			}
			if r.Status != tt.status {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			if s := tt.up.last(t); s.URI != tt.uri {
				t.Fatalf("upstream saw %q, want %q", s.URI, tt.uri)
			}
		})
	}
	t.Run("8.3 short names", func(t *testing.T) {
		for _, target := range []string{"/ADMINI~1/x", "/x/LEGACY~1/APP", "/WEB~1.CON"} {
			iis.reset()
			open.reset()
			wantErrBody(t, rawDo(t, addr, get(target)), 400, "bad_path")
			if iis.count()+open.count() != 0 {
				t.Fatal("forwarded")
			}
		}
	})
	t.Run("authenticated", func(t *testing.T) {
		iis.reset()
		if r := rawDo(t, addr, get("/ADMIN/x", "Authorization: Bearer good")); r.Status != 200 {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		if s := iis.last(t); s.URI != "/ADMIN/x" || s.one(t, "X-Auth-User") != "alice" {
			t.Fatalf("upstream saw %q %v", s.URI, s.Headers)
		}
	})
}

func TestFoldSegmentPrefix(t *testing.T) {
	tests := []struct {
		path, prefix string
		n            int
		ok           bool
	}{
		{"/admin", "/admin", 6, true},
		{"/ADMIN/x", "/admin", 6, true},
		{"/Admin", "/aDMIN", 6, true},
		{"/adminx", "/admin", 0, false},
		{"/adm", "/admin", 0, false},
		{"/adm%C4%B1n/x", "/admin", 11, true},
		{"/adm%c4%b0n", "/admin", 11, true},
		{"/%C5%BFecret", "/secret", 12, true},
		{"/%E2%84%AAey", "/key", 12, true},
		{"/%E2%84%AAey", "/Key", 12, true},
		{"/adm%C3%ADn", "/admin", 0, false}, // í does not fold to i
		{"/adm%C4%B1", "/admin", 0, false},
		{"/adm%C4", "/admin", 0, false},
		{"/x", "/", 0, true},
	}
	for _, tt := range tests {
		n, ok := foldSegmentPrefix([]byte(tt.path), tt.prefix)
		if n != tt.n || ok != tt.ok {
			t.Errorf("foldSegmentPrefix(%q, %q) = %d, %v; want %d, %v", tt.path, tt.prefix, n, ok, tt.n, tt.ok)
		}
	}
}

func TestHostCanonicalAndWildcard(t *testing.T) {
	internal, corp, deep, open := newUpstream(t), newUpstream(t), newUpstream(t), newUpstream(t)
	cfg := baseConfig(
		configs.Route{Name: "internal", Host: "Internal.Example.com.", PathPrefix: "/", Upstreams: []string{internal.url()}, Auth: configs.AuthNone},
		configs.Route{Name: "corp", Host: "*.corp.example.com", PathPrefix: "/", Upstreams: []string{corp.url()}, Auth: configs.AuthNone},
		configs.Route{Name: "corp-exact", Host: "vip.corp.example.com:443", PathPrefix: "/", Upstreams: []string{deep.url()}, Auth: configs.AuthNone},
		configs.Route{Name: "open", PathPrefix: "/", Upstreams: []string{open.url()}, Auth: configs.AuthNone},
	)
	_, addr := startProxy(t, cfg, Options{})
	tests := []struct {
		host     string
		up       *upstream
		fwdHost  string // Host and X-Forwarded-Host upstream
		wantCode string // 400 when set
	}{
		{"internal.example.com", internal, "internal.example.com", ""},
		{"internal.example.com.", internal, "internal.example.com", ""},
		{"INTERNAL.example.com:8080", internal, "internal.example.com:8080", ""},
		{"Internal.Example.Com.:08080", internal, "internal.example.com:8080", ""},
		{"a.corp.example.com", corp, "a.corp.example.com", ""},
		{"A-1.CORP.example.com.", corp, "a-1.corp.example.com", ""},
		{"vip.corp.example.com", deep, "vip.corp.example.com", ""}, // exact beats wildcard
		{"corp.example.com", open, "corp.example.com", ""},
		{"a.b.corp.example.com", open, "a.b.corp.example.com", ""},
		{"other.example.com", open, "other.example.com", ""},
		{"[::1]:8080", open, "[::1]:8080", ""},
		{"a,b", nil, "", "bad_host"},
		{"internal.example.com,evil", nil, "", "bad_host"},
		{"internal.example.com;x", nil, "", "bad_host"},
		{"internal.example.com..", nil, "", "bad_host"},
		{"a!b", nil, "", "bad_host"},
		{"x.corp.example.com'", nil, "", "bad_host"},
		{"a(b)", nil, "", "bad_host"},
		{"*.corp.example.com", nil, "", "bad_host"},
		{"a+b", nil, "", "bad_host"},
		{"a=b", nil, "", "bad_host"},
		{"a$b&c", nil, "", "bad_host"},
		{"internal.example.com:99999", nil, "", "bad_host"},
		{"internal%2eexample.com", nil, "", "bad_request"}, // fasthttp refuses these itself
		{"internal.example.com:80:80", nil, "", "bad_request"},
		{"internal.example.com:http", nil, "", "bad_request"},
	}
	ups := []*upstream{internal, corp, deep, open}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			for _, u := range ups {
				u.reset()
			}
			r := rawDo(t, addr, "GET /x HTTP/1.1\r\nHost: "+tt.host+"\r\n\r\n")
			if tt.wantCode != "" {
				wantErrBody(t, r, 400, tt.wantCode)
				for _, u := range ups {
					if u.count() != 0 {
						t.Fatal("forwarded")
					}
				}
				return
			}
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			s := tt.up.last(t)
			if h := s.one(t, "Host"); h != tt.fwdHost {
				t.Errorf("upstream Host %q, want %q", h, tt.fwdHost)
			}
			if h := s.one(t, "X-Forwarded-Host"); h != tt.fwdHost {
				t.Errorf("X-Forwarded-Host %q, want %q", h, tt.fwdHost)
			}
		})
	}
	t.Run("absolute-form", func(t *testing.T) {
		r := rawDo(t, addr, "GET http://internal.example.com/x HTTP/1.1\r\nHost: other.example.com\r\n\r\n")
		wantErrBody(t, r, 400, "bad_path")
	})
}

func TestRouteHostConfig(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"Svc.Example.COM.", "svc.example.com"},
		{"svc.example.com:8443", "svc.example.com"},
		{"*.Corp.Example.com", "*.corp.example.com"},
		{"[::1]", "[::1]"},
		{"[::1]:80", "[::1]"},
	} {
		if got, err := routeHost(tc.in); err != nil || got != tc.want {
			t.Errorf("routeHost(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"a,b", "*.[::1]", "*", "**.x", "a..b", "x.*.y"} {
		if got, err := routeHost(in); err == nil {
			t.Errorf("routeHost(%q) = %q, want an error", in, got)
		}
	}
}

func TestOverrideHeaders(t *testing.T) {
	up := newUpstream(t)
	routes := []configs.Route{{Name: "ro", PathPrefix: "/", Upstreams: []string{up.url()}, Auth: configs.AuthNone, Methods: []string{"GET"}}}
	_, addr := startProxy(t, baseConfig(routes...), Options{})
	spellings := []string{
		"X-HTTP-Method-Override: DELETE", "x-http-method-override: DELETE", "X_HTTP_Method_Override: DELETE", "X.Http.Method.Override: DELETE",
		"X-HTTP-Method: PUT", "x_http_method: PUT",
		"X-Method-Override: PATCH", "X.METHOD.OVERRIDE: PATCH",
		"X-Original-URL: /admin/secret", "x_original_url: /admin", "X-Original-Url: /admin",
		"X-Rewrite-URL: /admin/secret", "X.Rewrite.Url: /admin",
		"X-Original-URI: /admin", "X-Original-Method: DELETE",
	}
	overrideLike := func(s seen) []string {
		var out []string
		for _, kv := range s.Headers {
			n := normalizeName(kv[0])
			for _, o := range overrideHeaders {
				if n == o {
					out = append(out, kv[0])
				}
			}
		}
		return out
	}
	for _, h := range spellings {
		t.Run(h, func(t *testing.T) {
			r := rawDo(t, addr, get("/x", h, "X-Keep: 1"))
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			s := up.last(t)
			if got := overrideLike(s); len(got) != 0 {
				t.Fatalf("upstream got override headers %v", got)
			}
			if s.Method != "GET" || s.one(t, "X-Keep") != "1" {
				t.Fatalf("upstream saw %s %v", s.Method, s.Headers)
			}
		})
	}
	t.Run("keep list", func(t *testing.T) {
		up2 := newUpstream(t)
		cfg := baseConfig(configs.Route{Name: "all", PathPrefix: "/", Upstreams: []string{up2.url()}, Auth: configs.AuthNone})
		cfg.Headers.KeepOverrideHeaders = []string{"x_http_method_override", "X-Original-URL"}
		_, addr := startProxy(t, cfg, Options{})
		r := rawDo(t, addr, get("/x", "X-HTTP-Method-Override: DELETE", "X-Original-URL: /y", "X-Rewrite-URL: /z", "X-HTTP-Method: PUT"))
		if r.Status != 200 {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		s := up2.last(t)
		if s.one(t, "X-HTTP-Method-Override") != "DELETE" || s.one(t, "X-Original-URL") != "/y" {
			t.Fatalf("kept headers lost: %v", s.Headers)
		}
		if s.get("X-Rewrite-URL") != nil || s.get("X-HTTP-Method") != nil {
			t.Fatalf("headers not kept were forwarded: %v", s.Headers)
		}
	})
}

func TestMethodParam(t *testing.T) {
	up := newUpstream(t)
	cfg := baseConfig(
		configs.Route{Name: "ro", PathPrefix: "/ro", Upstreams: []string{up.url()}, Auth: configs.AuthNone, Methods: []string{"GET", "POST"}},
		configs.Route{Name: "any", PathPrefix: "/", Upstreams: []string{up.url()}, Auth: configs.AuthNone},
	)
	_, addr := startProxy(t, cfg, Options{})
	refused := []string{"_method=DELETE", "a=1&_method=PUT", "_METHOD=DELETE", "_Method=delete", "%5Fmethod=DELETE",
		"%5fMETHOD=DELETE", "_%6Dethod=DELETE", ".method=DELETE", "%20_method=DELETE", "[method=DELETE",
		"a=1;_method=DELETE", "_method", "_method="}
	for _, q := range refused {
		t.Run(q, func(t *testing.T) {
			up.reset()
			wantErrBody(t, rawDo(t, addr, get("/ro/x?"+q)), 400, "method_override")
			if up.count() != 0 {
				t.Fatal("forwarded")
			}
			// Without methods on the route: forwarded as is.
			if r := rawDo(t, addr, get("/x?"+q)); r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
		})
	}
	for _, q := range []string{"method=DELETE", "x_method=DELETE", "_methods=DELETE", "a=_method", "__method=x", "_method_=x"} {
		t.Run("kept "+q, func(t *testing.T) {
			if r := rawDo(t, addr, get("/ro/x?"+q)); r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			if s := up.last(t); !strings.HasSuffix(s.URI, "?"+q) {
				t.Fatalf("upstream saw %q", s.URI)
			}
		})
	}
}

func TestHasMethodParam(t *testing.T) {
	tests := []struct {
		q    string
		want bool
	}{
		{"", false},
		{"_method=DELETE", true},
		{"_method", true},
		{"x=1&_method=PUT&y=2", true},
		{"x=1;_method=PUT", true},
		{"_MeThOd=x", true},
		{"%5F%6D%65%74%68%6F%64=x", true},
		{"%5f%4D%45%54%48%4F%44=x", true},
		{".method=x", true},
		{"[method=x", true},
		{"+method=x", false}, // PHP drops the leading space: "method"
		{"%20method=x", false},
		{"a+method=x", false}, // "a_method"
		{"++_method=x", true}, // PHP drops leading spaces
		{"%2e%6dethod=x", true},
		{"method=x", false},
		{"_method_=x", false},
		{"x_method=x", false},
		{"a=_method", false},
		{"_meth%zzod=x", false},
		{"_metho", false},
		{"&&&", false},
		{"_method%3d=x", false},
	}
	for _, tt := range tests {
		if got := hasMethodParam([]byte(tt.q)); got != tt.want {
			t.Errorf("hasMethodParam(%q) = %v, want %v", tt.q, got, tt.want)
		}
	}
}

func TestHasFormMethodParam(t *testing.T) {
	mp := func(name string) string {
		return "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n" +
			"--XyZ\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\nDELETE\r\n--XyZ--\r\n"
	}
	const mpType = "multipart/form-data; boundary=XyZ"
	tests := []struct {
		ct, body string
		want     bool
	}{
		{"application/x-www-form-urlencoded", "a=1&_method=DELETE", true},
		{"Application/X-WWW-Form-Urlencoded; charset=utf-8", "%5Fmethod=PUT", true},
		{"application/x-www-form-urlencoded", "a=_method", false},
		{"application/x-www-form-urlencoded", "", false},
		{"application/json", `{"_method":"DELETE"}`, false},
		{"text/plain", "_method=DELETE", false},
		{"", "_method=DELETE", false},
		{mpType, mp("_method"), true},
		{mpType, mp("_METHOD"), true},
		{mpType, mp(".method"), true},
		{mpType, mp("method"), false},
		{mpType, mp("%5Fmethod"), false},              // multipart names are not percent-decoded
		{"multipart/form-data", mp("_method"), false}, // no boundary: no form
		{mpType, "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.html\"\r\n\r\n<input name=\"_method\" value=\"DELETE\">\r\n--XyZ--\r\n", false},
		{mpType, "garbage", false},
	}
	for _, tt := range tests {
		if got := hasFormMethodParam([]byte(tt.ct), []byte(tt.body)); got != tt.want {
			t.Errorf("hasFormMethodParam(%q, %q) = %v, want %v", tt.ct, tt.body, got, tt.want)
		}
	}
}

func TestFormMethodParam(t *testing.T) {
	up := newUpstream(t)
	cfg := baseConfig(
		configs.Route{Name: "ro", PathPrefix: "/ro", Upstreams: []string{up.url()}, Auth: configs.AuthNone, Methods: []string{"GET", "POST"}},
		configs.Route{Name: "any", PathPrefix: "/", Upstreams: []string{up.url()}, Auth: configs.AuthNone},
	)
	_, addr := startProxy(t, cfg, Options{})
	post := func(path, ct, body string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: h\r\nContent-Type: " + ct + "\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body
	}
	up.reset()
	wantErrBody(t, rawDo(t, addr, post("/ro/x", "application/x-www-form-urlencoded", "a=1&_method=DELETE")), 400, "method_override")
	wantErrBody(t, rawDo(t, addr, post("/ro/x", "multipart/form-data; boundary=b",
		"--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--\r\n")), 400, "method_override")
	if up.count() != 0 {
		t.Fatal("forwarded")
	}
	if r := rawDo(t, addr, post("/ro/x", "application/x-www-form-urlencoded", "a=1&method=x")); r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	if r := rawDo(t, addr, post("/x", "application/x-www-form-urlencoded", "_method=DELETE")); r.Status != 200 {
		t.Fatalf("route without methods: status %d: %s", r.Status, r.Body)
	}
}

// TestOverrideHeaderNames: every configurable override header passes
// isOverrideHeader's length and prefix quick check, in every spelling.
func TestOverrideHeaderNames(t *testing.T) {
	z := &sanitizer{override: strippedOverrides(nil)}
	for _, h := range configs.OverrideHeaders {
		for _, v := range []string{h, strings.ToLower(h), strings.ToUpper(h), strings.ReplaceAll(h, "-", "_"), strings.ReplaceAll(h, "-", ".")} {
			if !z.isOverrideHeader([]byte(v)) {
				t.Errorf("%q not recognised", v)
			}
		}
	}
	for _, v := range []string{"X-Forwarded-For", "X-HTTP-Method-Overrides", "Content-Type", "X-Original", "Y-HTTP-Method"} {
		if z.isOverrideHeader([]byte(v)) {
			t.Errorf("%q taken for an override header", v)
		}
	}
}
