package forwardauth

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keygate/keygate/configs"
)

var identityNames = []string{"X-Auth-User", "X-Auth-Account", "X-Auth-Roles", "X-Auth-Method", "X-Auth-Key-Id", "X-Auth-Key-Name"}

// wantAllowed checks a 200: empty body and every identity header present
// with the given values (in identityNames order).
func wantAllowed(t *testing.T, r interface {
	StatusCode() int
	Body() []byte
}, hdr func(string) (string, bool), want ...string) {
	t.Helper()
	if r.StatusCode() != 200 || len(r.Body()) != 0 {
		t.Fatalf("status %d body %q, want 200 and no body", r.StatusCode(), r.Body())
	}
	for i, n := range identityNames {
		v, ok := hdr(n)
		if !ok {
			t.Fatalf("%s missing from the answer", n)
		}
		if v != want[i] {
			t.Fatalf("%s = %q, want %q", n, v, want[i])
		}
	}
}

func errCode(t *testing.T, body []byte) string {
	t.Helper()
	var v struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Error.Code == "" {
		t.Fatalf("body %q is not a JSON error (%v)", body, err)
	}
	return v.Error.Code
}

// TestHTTPCheckShapes: every way a front proxy describes the original
// request, allowed and denied, with the statuses a front proxy accepts.
func TestHTTPCheckShapes(t *testing.T) {
	e := newEnv(t, nil)
	alice := basic("alice", testPassword)
	bob := basic("bob", testPassword)
	type tc struct {
		name       string
		method     string
		uri        string
		hdr        []string
		status     int
		code       string   // error code when denied
		ident      []string // identity header values when allowed
		challenges bool
	}
	aliceID := []string{"alice", "acme", "dev,ops", "basic", "", ""}
	anon := []string{"", "", "", "", "", ""}
	cases := []tc{
		// Traefik / Caddy: X-Forwarded-*.
		{name: "forwarded basic", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Method", "GET", "X-Forwarded-Host", "svc.example", "X-Forwarded-Uri", "/api/x?y=1", "Authorization", alice}, status: 200, ident: aliceID},
		{name: "forwarded api key", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Method", "POST", "X-Forwarded-Uri", "/api/x", "Authorization", "Bearer " + e.key}, status: 200,
			ident: []string{"alice", "acme", "dev", "api_key", e.keyID, "ci"}},
		{name: "forwarded apikey scheme", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Uri", "/api/x", "Authorization", "Basic " + b64("_api_key:"+e.key)}, status: 200,
			ident: []string{"alice", "acme", "dev", "api_key", e.keyID, "ci"}},
		{name: "forwarded no credential", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Uri", "/api/x"}, status: 401, code: "unauthorized", challenges: true},
		{name: "forwarded bad password", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Uri", "/api/x", "Authorization", basic("alice", "wrong")}, status: 401, code: "invalid_credentials", challenges: true},
		{name: "forwarded role missing", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Uri", "/ops/x", "Authorization", bob}, status: 403, code: "forbidden"},
		{name: "forwarded role held", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Uri", "/ops/x", "Authorization", alice}, status: 200, ident: aliceID},
		{name: "forwarded public", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Uri", "/public/a"}, status: 200, ident: anon},
		{name: "forwarded optional anonymous", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Uri", "/opt/a"}, status: 200, ident: anon},
		{name: "forwarded no route", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Uri", "/nowhere", "Authorization", alice}, status: 403, code: "no_route"},
		{name: "forwarded method refused", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Method", "DELETE", "X-Forwarded-Uri", "/ro/a", "Authorization", alice}, status: 403, code: "method_not_allowed"},
		{name: "forwarded bad method", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Method", "GE T", "X-Forwarded-Uri", "/api/a", "Authorization", alice}, status: 403, code: "bad_request"},
		{name: "forwarded dot segment", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Uri", "/public/../api/x", "Authorization", alice}, status: 403, code: "bad_path"},
		{name: "forwarded encoded slash", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Uri", "/public%2f..%2fapi/x"}, status: 403, code: "bad_path"},
		{name: "forwarded double slash", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Uri", "//api/x", "Authorization", alice}, status: 403, code: "bad_path"},
		{name: "forwarded absolute uri", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Uri", "http://evil/public", "Authorization", alice}, status: 403, code: "bad_path"},
		{name: "forwarded bad host", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Host", "a b", "X-Forwarded-Uri", "/api/x", "Authorization", alice}, status: 403, code: "bad_host"},
		{name: "forwarded empty uri", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Uri", "", "Authorization", alice}, status: 403, code: "bad_request"},
		{name: "original empty uri", method: "GET", uri: "/", hdr: []string{"X-Original-URI", "", "Authorization", alice}, status: 403, code: "bad_request"},
		{name: "forwarded twice", method: "GET", uri: "/", hdr: []string{"X-Forwarded-Uri", "/public/a", "X-Forwarded-Uri", "/api/x"}, status: 403, code: "ambiguous_original"},
		{name: "forwarded and original", method: "GET", uri: "/", hdr: []string{"X-Original-URI", "/api/x", "X-Forwarded-Uri", "/public/a"}, status: 403, code: "ambiguous_original"},
		// nginx auth_request: X-Original-*.
		{name: "original basic", method: "GET", uri: "/auth", hdr: []string{"X-Original-Method", "GET", "X-Original-URI", "/api/x?q=1", "Host", "svc.example", "Authorization", alice}, status: 200, ident: aliceID},
		{name: "original no credential", method: "GET", uri: "/auth", hdr: []string{"X-Original-URI", "/api/x"}, status: 401, code: "unauthorized", challenges: true},
		{name: "original ambiguous", method: "GET", uri: "/auth", hdr: []string{"X-Original-URI", "/public/%2e%2e/api", "Authorization", alice}, status: 403, code: "bad_path"},
		{name: "original role", method: "GET", uri: "/auth", hdr: []string{"X-Original-URI", "/ops/", "Authorization", bob}, status: 403, code: "forbidden"},
		{name: "original spoofed identity ignored", method: "GET", uri: "/auth", hdr: []string{"X-Original-URI", "/opt/", "X-Auth-User", "root"}, status: 200, ident: anon},
		// Envoy HTTP ext_authz: path_prefix + original path, allowed headers only.
		{name: "envoy basic", method: "GET", uri: "/check/api/x?a=b", hdr: []string{"Host", "svc.example", "Authorization", alice}, status: 200, ident: aliceID},
		{name: "envoy post", method: "POST", uri: "/check/api/x", hdr: []string{"Authorization", alice, "Content-Length", "0"}, status: 200, ident: aliceID},
		{name: "envoy no credential", method: "GET", uri: "/check/api/x", status: 401, code: "unauthorized", challenges: true},
		{name: "envoy public", method: "HEAD", uri: "/check/public/x", status: 200, ident: anon},
		{name: "envoy method refused", method: "PUT", uri: "/check/ro/x", hdr: []string{"Authorization", alice}, status: 403, code: "method_not_allowed"},
		{name: "envoy missing prefix", method: "GET", uri: "/api/x", hdr: []string{"Authorization", alice}, status: 403, code: "bad_path"},
		{name: "envoy prefix not a segment", method: "GET", uri: "/checkapi/x", hdr: []string{"Authorization", alice}, status: 403, code: "bad_path"},
		{name: "envoy ambiguous", method: "GET", uri: "/check/public/..;/api", hdr: []string{"Authorization", alice}, status: 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.check(loopback, c.method, c.uri, c.hdr...)
			hdr := func(n string) (string, bool) {
				v := r.Header.Peek(n)
				return string(v), v != nil
			}
			if r.StatusCode() != c.status {
				t.Fatalf("status %d %s, want %d", r.StatusCode(), r.Body(), c.status)
			}
			if c.status == 200 {
				wantAllowed(t, r, hdr, c.ident...)
				if len(r.Header.Peek("X-Request-Id")) == 0 {
					t.Fatal("no X-Request-Id")
				}
				return
			}
			code := errCode(t, r.Body())
			if c.code != "" && code != c.code {
				t.Fatalf("code %q, want %q (%s)", code, c.code, r.Body())
			}
			www := r.Header.PeekAll("WWW-Authenticate")
			if c.challenges != (len(www) == 2) {
				t.Fatalf("challenges %q", www)
			}
			if r.Header.Peek("X-Auth-User") != nil {
				t.Fatal("identity header on a refusal")
			}
		})
	}
}

// A check from a peer outside forward_auth.trusted_proxies is 403 whatever
// it claims, including a valid credential.
func TestHTTPUntrustedPeer(t *testing.T) {
	e := newEnv(t, nil)
	for _, hdr := range [][]string{
		{"X-Forwarded-Uri", "/public/a"},
		{"X-Original-URI", "/public/a"},
		{"X-Forwarded-Uri", "/api/a", "Authorization", basic("alice", testPassword)},
		{},
	} {
		r := e.check(untrusted, "GET", "/check/public/a", hdr...)
		if r.StatusCode() != 403 || errCode(t, r.Body()) != "untrusted_peer" {
			t.Fatalf("%v: status %d %s", hdr, r.StatusCode(), r.Body())
		}
	}
	if got := testutil.ToFloat64(e.f.checks[ModeForwarded][resForbidden]); got != 2 {
		t.Fatalf("forwarded forbidden checks = %v, want 2", got)
	}
}

// Envoy's HTTP service removes Authorization when the route does not
// forward it (x-envoy-auth-headers-to-remove), and keeps it otherwise.
func TestHTTPEnvoyRemovesAuthorization(t *testing.T) {
	e := newEnv(t, nil)
	alice := basic("alice", testPassword)
	r := e.check(loopback, "GET", "/check/api/x", "Authorization", alice)
	if got := string(r.Header.Peek("X-Envoy-Auth-Headers-To-Remove")); got != "authorization" {
		t.Fatalf("headers to remove %q", got)
	}
	r = e.check(loopback, "GET", "/check/fwd/x", "Authorization", alice)
	if r.StatusCode() != 200 || r.Header.Peek("X-Envoy-Auth-Headers-To-Remove") != nil {
		t.Fatalf("forward_authorization route: %d %q", r.StatusCode(), r.Header.Peek("X-Envoy-Auth-Headers-To-Remove"))
	}
}

// Failure limits apply to checks as to proxied requests: past
// auth.failures.per_user_per_minute, 429 with Retry-After.
func TestHTTPFailureLimit(t *testing.T) {
	e := newEnv(t, func(c *configs.Config) { c.Auth.Failures.PerUserPerMinute = 3 })
	var last int
	for range 6 {
		r := e.check(loopback, "GET", "/", "X-Forwarded-Uri", "/api/x", "Authorization", basic("alice", "wrong"))
		last = r.StatusCode()
		if last == 429 {
			if len(r.Header.Peek("Retry-After")) == 0 || errCode(t, r.Body()) != "rate_limited" {
				t.Fatalf("429 without Retry-After or code: %s", r.Body())
			}
			break
		}
		if last != 401 {
			t.Fatalf("status %d", last)
		}
	}
	if last != 429 {
		t.Fatal("never limited")
	}
	if got := testutil.ToFloat64(e.f.checks[ModeForwarded][resRateLimited]); got != 1 {
		t.Fatalf("rate_limited checks = %v", got)
	}
	if !strings.Contains(metricsText(t, e), `keygate_forward_auth_checks_total{mode="forwarded",result="unauthorized"} 3`) {
		t.Fatal("metric text missing the 3 unauthorized checks")
	}
}
