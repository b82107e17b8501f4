package proxy

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/principal"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
)

// metaIdentity is an API key identity with metadata (built as the key
// authenticator builds it) expiring at exp.
func metaIdentity(meta string, exp time.Time) *authn.Identity {
	k := &store.APIKey{ID: "k1", Name: "ci", Roles: []string{"dev"}, ExpiresAt: exp, Metadata: []byte(meta)}
	u := &store.User{Username: "alice", Account: "acme", Roles: []string{"dev"}}
	return principal.KeyIdentity(k, u)
}

func TestMetaHeaderNames(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"team", "X-Auth-Key-Meta-Team"},
		{"TIER", "X-Auth-Key-Meta-Tier"},
		{"cost_center", "X-Auth-Key-Meta-Cost-Center"},
		{"a-b_c", "X-Auth-Key-Meta-A-B-C"},
		{"x1", "X-Auth-Key-Meta-X1"},
	} {
		if got := string(metaHeaders([]string{tc.in})[0].header); got != tc.want {
			t.Errorf("%s → %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestForwardKeyMetadata: the route's metadata members reach the upstream
// as X-Auth-Key-Meta-*, sanitised; client copies of those headers (any
// spelling) never do, with or without a key; members the key lacks and
// members the route does not name are not sent; other credentials send none.
func TestForwardKeyMetadata(t *testing.T) {
	up := newUpstream(t)
	route := configs.Route{Name: "api", PathPrefix: "/", Upstreams: []string{up.url()}, Auth: configs.AuthOptional,
		ForwardKeyMetadata: []string{"team", "tier", "cost_center"}}
	id := metaIdentity(`{"team":"core\r\nX-Evil: 1","tier":3,"secret":"no","cost_center":"`+strings.Repeat("é", 300)+`"}`, time.Time{})
	bearer := &authn.Identity{Username: "bob", Account: "acme", Method: authn.MethodBearer}
	cases := []struct {
		name string
		id   *authn.Identity
		want map[string]string // header → value; absent: must not arrive
	}{
		{"api key", id, map[string]string{
			"X-Auth-Key-Meta-Team": "core  X-Evil: 1", "X-Auth-Key-Meta-Tier": "3",
			"X-Auth-Key-Meta-Cost-Center": strings.Repeat("é", authn.MaxMetaValueLen/2)}},
		{"bearer", bearer, map[string]string{}},
		{"anonymous", nil, map[string]string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(ConfigOf(baseConfig(route)), Options{Authenticator: fixedAuth{tc.id}})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			raw := "GET /x HTTP/1.1\r\nHost: svc\r\nX-Auth-Key-Meta-Team: spoof\r\nx_auth_key_meta_tier: spoof\r\n" +
				"X.Auth.Key.Meta.Secret: spoof\r\nX-AUTH-KEY-META-COST-CENTER: spoof\r\nConnection: X-Auth-Key-Meta-Team\r\n\r\n"
			var req fasthttp.Request
			if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
				t.Fatal(err)
			}
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
			p.Handler(&ctx)
			if ctx.Response.StatusCode() != 200 {
				t.Fatalf("status %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			got := up.last(t)
			for _, kv := range got.Headers {
				if v := kv[1]; strings.Contains(v, "spoof") || strings.ContainsAny(v, "\r\n\x00") {
					t.Errorf("upstream got %s: %q", kv[0], v)
				}
				name := strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(kv[0]))
				if strings.HasPrefix(name, "x-auth-key-meta-") {
					want, ok := tc.want[kv[0]]
					if !ok || want != kv[1] {
						t.Errorf("upstream got %s: %q; want %q (sent: %v)", kv[0], kv[1], want, ok)
					}
				}
			}
			for h := range tc.want {
				got.one(t, h)
			}
		})
	}
}

// TestKeyExpiresHeader: Keygate-Key-Expires appears on responses to requests
// made with a key expiring within the warning window only.
func TestKeyExpiresHeader(t *testing.T) {
	up := newUpstream(t)
	route := configs.Route{Name: "api", PathPrefix: "/", Upstreams: []string{up.url()}, Auth: configs.AuthRequired}
	now := time.Now()
	soon, later := now.Add(24*time.Hour).Truncate(time.Second), now.Add(30*24*time.Hour)
	for _, tc := range []struct {
		name string
		id   *authn.Identity
		warn time.Duration
		want string
	}{
		{"inside", metaIdentity("", soon), 168 * time.Hour, soon.UTC().Format(time.RFC3339)},
		{"outside", metaIdentity("", later), 168 * time.Hour, ""},
		{"never expires", metaIdentity("", time.Time{}), 168 * time.Hour, ""},
		{"warning off", metaIdentity("", soon), 0, ""},
		{"bearer", &authn.Identity{Username: "a", Method: authn.MethodBearer, ExpiresAt: soon, ExpiresHeader: "x"}, 168 * time.Hour, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ConfigOf(baseConfig(route))
			cfg.KeyExpiryWarning = tc.warn
			p, err := New(cfg, Options{Authenticator: fixedAuth{tc.id}})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			var ctx fasthttp.RequestCtx
			var req fasthttp.Request
			req.SetRequestURI("/x")
			req.Header.SetHost("svc")
			ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
			p.Handler(&ctx)
			if got := string(ctx.Response.Header.Peek(KeyExpiresHeader)); got != tc.want {
				t.Errorf("%s = %q, want %q", KeyExpiresHeader, got, tc.want)
			}
		})
	}
}
