package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/plugin"
	"github.com/keygate/keygate/configs"
)

// startPlugin runs the reference authorization plugin with rules on
// 127.0.0.1:0 and returns it and its URL.
func startPlugin(t *testing.T, rules string) (*plugin.Server, string) {
	t.Helper()
	r, err := plugin.ParseRules([]byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	s := plugin.New(r, "", nil)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	return s, "http://" + ln.Addr().String()
}

// The external authorizer is asked about exactly the path that is forwarded
// (after strip_prefix), route roles are still enforced, and a plugin that
// is down gives 503, never an allow.
func TestExternalAuthorizer(t *testing.T) {
	up := newUpstream(t)
	_, pluginURL := startPlugin(t, `
rules:
  - effect: allow
    actions: [GET]
    targets: ["api:/orders/**"]
  - effect: deny
    targets: ["api:/orders/secret"]
`)
	cfg := baseConfig(
		configs.Route{Name: "api", PathPrefix: "/svc", StripPrefix: "/svc", Upstreams: []string{up.url()}, Auth: configs.AuthRequired, Timeout: configs.Duration(2 * time.Second)},
		configs.Route{Name: "ops", PathPrefix: "/ops", Upstreams: []string{up.url()}, Auth: configs.AuthRequired, Roles: []string{"ops"}, Timeout: configs.Duration(2 * time.Second)},
	)
	ext, err := authz.NewExternal(configs.External{Endpoint: pluginURL, Timeout: configs.Duration(300 * time.Millisecond), CacheTTL: configs.Duration(time.Second)}, authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ext.Close() })
	_, addr := startProxy(t, cfg, Options{Authenticator: testAuth{}, Authorizer: ext})

	for _, tc := range []struct {
		name, req string
		want      int
		upstream  string // the URI the upstream must see ("" = nothing forwarded)
	}{
		{"allowed tuple, stripped path decided", "GET /svc/orders/1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer good\r\n\r\n", 200, "/orders/1"},
		{"deny wins", "GET /svc/orders/secret HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer good\r\n\r\n", 403, ""},
		{"no allow rule for the method", "POST /svc/orders/1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer good\r\nContent-Length: 0\r\n\r\n", 403, ""},
		{"unstripped path is not what is decided", "GET /svc/svc/orders/1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer good\r\n\r\n", 403, ""},
		{"route roles still enforced", "GET /ops/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer good\r\n\r\n", 403, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up.reset()
			r := rawDo(t, addr, tc.req)
			if r.Status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.want, r.Body)
			}
			if tc.upstream == "" {
				if n := up.count(); n != 0 {
					t.Fatalf("upstream saw %d requests", n)
				}
				return
			}
			if got := up.last(t).URI; got != tc.upstream {
				t.Fatalf("upstream saw %q, want %q", got, tc.upstream)
			}
		})
	}
}

func TestExternalAuthorizerDown(t *testing.T) {
	up := newUpstream(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	_ = ln.Close() // nothing listens there: connection refused
	ext, err := authz.NewExternal(configs.External{Endpoint: dead, Timeout: configs.Duration(300 * time.Millisecond), CacheTTL: configs.Duration(time.Second)}, authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ext.Close() })
	cfg := baseConfig(configs.Route{Name: "api", PathPrefix: "/", Upstreams: []string{up.url()}, Auth: configs.AuthRequired, Timeout: configs.Duration(2 * time.Second)})
	_, addr := startProxy(t, cfg, Options{Authenticator: testAuth{}, Authorizer: ext})
	r := rawDo(t, addr, "GET /orders/1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer good\r\n\r\n")
	if r.Status != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d retry-after %q, want 503 with Retry-After: %s", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	if up.count() != 0 {
		t.Fatal("forwarded although the authorizer was down")
	}
}
