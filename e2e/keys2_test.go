package e2e

// Issue 18 end to end, against the built binary: two instances sharing one
// Redis. A key's update (roles, allow-list) made through A's admin API is
// enforced by B at once; rotation with a grace period; allow-lists with and
// without trusted_proxies (IPv4 and IPv6); Keygate-Key-Expires only inside
// the warning window; X-Auth-Key-Meta-* headers and their spoofing; service
// accounts and grant_type=client_credentials against the token rows of
// SECURITY.md.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/internal/testredis"
)

// k2Routes: /ops needs role ops, /meta forwards the key's team and tier,
// everything else any authenticated caller.
func k2Routes(upstream string) string {
	up := fmt.Sprintf("[\"http://%s\"]", upstream)
	return "  - name: ops\n    path_prefix: /ops\n    upstreams: " + up + "\n    auth: required\n    roles: [ops]\n" +
		"  - name: meta\n    path_prefix: /meta\n    upstreams: " + up + "\n    auth: required\n    forward_key_metadata: [team, tier]\n" +
		"  - name: api\n    path_prefix: /\n    upstreams: " + up + "\n    auth: required\n"
}

type k2Env struct {
	a, b   *gateway // a trusts 127.0.0.1 and ::1 as proxies; b trusts none
	adm    *admClient
	root   string
	ca, cb *auClient
}

func newK2Env(t *testing.T) *k2Env {
	t.Helper()
	r := testredis.Start(t)
	echoAddr := startEchoProc(t)
	e := &k2Env{root: admBasic("admin", admBootstrapPassword)}
	e.a = startGateway(t, serveOpts{routes: k2Routes(echoAddr), store: auRedisYAML(r.Addr()),
		extra: auNoLimits + "trusted_proxies: [\"127.0.0.1/32\", \"::1/128\"]\n"})
	e.b = startGateway(t, serveOpts{routes: k2Routes(echoAddr), store: auRedisYAML(r.Addr()), extra: auNoLimits})
	e.adm = newAdmClient(t, e.a)
	e.ca, e.cb = newAuClient(5*time.Second), newAuClient(5*time.Second)
	t.Cleanup(e.ca.close)
	t.Cleanup(e.cb.close)
	e.adm.want(201, "POST", "/v1/accounts", e.root, map[string]any{"name": "acme"})
	e.adm.want(201, "POST", "/v1/accounts/acme/users", e.root, map[string]any{"username": "alice", "password": "alice-Pa55word-long", "roles": []string{"read", "ops"}})
	return e
}

func (e *k2Env) newKey(t *testing.T, user string, body map[string]any) adminapi.CreatedKey {
	t.Helper()
	var k adminapi.CreatedKey
	if err := json.Unmarshal(e.adm.want(201, "POST", "/v1/accounts/acme/users/"+user+"/api-keys", e.root, body), &k); err != nil {
		t.Fatal(err)
	}
	return k
}

func (e *k2Env) patch(t *testing.T, user, id string, body map[string]any) {
	t.Helper()
	e.adm.want(200, "PATCH", "/v1/accounts/acme/users/"+user+"/api-keys/"+id, e.root, body)
}

// TestKeys2UpdateAcrossInstances: a roles patch on A is enforced on B at
// once; an allow-list patch too, with and without trusted proxies, IPv4 and
// IPv6; a refused address is 403 and no failure.
func TestKeys2UpdateAcrossInstances(t *testing.T) {
	t.Parallel()
	e := newK2Env(t)
	k := e.newKey(t, "alice", map[string]any{"name": "ci", "roles": []string{"read", "ops"}})
	h := "Bearer " + k.APIKey
	for _, g := range []*gateway{e.a, e.b} {
		auWarm(t, map[*gateway]*auClient{e.a: e.ca, e.b: e.cb}[g], g, g.url("/ops/x"), h)
	}
	e.patch(t, "alice", k.ID, map[string]any{"roles": []string{"read"}})
	if d, ok := e.cb.until(e.b.url("/ops/x"), h, 403, auRevokeBound); !ok {
		t.Fatalf("B still allows /ops after the roles patch on A (%v)", d)
	}
	e.cb.want(t, "route without roles", e.b.url("/api/x"), h, 200)
	// A answered the PATCH, but learns of it through its own subscription,
	// as every instance does (README "Revocation and multiple instances"):
	// the same bound applies to it.
	if d, ok := e.ca.until(e.a.url("/ops/x"), h, 403, auRevokeBound); !ok {
		t.Fatalf("A still allows /ops after its own roles patch (%v)", d)
	}

	// Allow-list: 10.0.0.0/8 and 2001:db8::/32. B (no trusted proxy) sees
	// 127.0.0.1 whatever X-Forwarded-For says; A (trusts loopback) the
	// client the proxy names.
	e.patch(t, "alice", k.ID, map[string]any{"allowed_cidrs": []string{"10.0.0.0/8", "2001:db8::/32"}})
	if _, ok := e.cb.until(e.b.url("/api/x"), h, 403, auRevokeBound); !ok {
		t.Fatal("B still accepts the key from 127.0.0.1 outside its allow-list")
	}
	for _, tc := range []struct {
		g    *gateway
		c    *auClient
		xff  string
		want int
	}{
		{e.b, e.cb, "", 403},
		{e.b, e.cb, "10.1.2.3", 403}, // untrusted peer: XFF ignored
		{e.a, e.ca, "", 403},
		{e.a, e.ca, "10.1.2.3", 200},
		{e.a, e.ca, "192.0.2.1", 403},
		{e.a, e.ca, "2001:db8::5", 200},
		{e.a, e.ca, "2001:db9::5", 403},
		{e.a, e.ca, "10.1.2.3, 192.0.2.1", 403}, // the rightmost untrusted hop decides
		{e.a, e.ca, "192.0.2.1, 10.9.9.9", 200},
	} {
		var hdr []string
		if tc.xff != "" {
			hdr = []string{"X-Forwarded-For", tc.xff}
		}
		r := tc.c.get(t, tc.g.url("/api/x"), h, hdr...)
		if r.status != tc.want {
			t.Errorf("%s XFF %q: %d, want %d: %s", tc.g.public, tc.xff, r.status, tc.want, r.body)
		}
		if r.status == 403 && errorCode(r.body) != "address_not_allowed" {
			t.Errorf("403 code %q", errorCode(r.body))
		}
	}
	// Refusals spent no failure budget and did not count the owner as
	// failing: alice's password still works on B.
	e.cb.want(t, "owner's password", e.b.url("/api/x"), auBasic("alice", "alice-Pa55word-long"), 200)
	// An API-key caller cannot patch.
	k2 := e.newKey(t, "alice", map[string]any{"name": "ci2"})
	if st, _, body := e.adm.do("PATCH", "/v1/user/api-keys/"+k2.ID, "Bearer "+k2.APIKey, map[string]any{"description": "x"}); st != 403 {
		t.Errorf("api key caller patch: %d %s", st, body)
	}
}

// TestKeys2RotateAcrossInstances: after a rotation with a grace period on A,
// the new key works on both; the old one until the grace ends, then 401 on
// both; grace 0 kills at once.
func TestKeys2RotateAcrossInstances(t *testing.T) {
	t.Parallel()
	e := newK2Env(t)
	k := e.newKey(t, "alice", map[string]any{"name": "ci"})
	old := "Bearer " + k.APIKey
	auWarm(t, e.ca, e.a, e.a.url("/api/x"), old)
	auWarm(t, e.cb, e.b, e.b.url("/api/x"), old)
	var nk adminapi.CreatedKey
	rotated := time.Now()
	if err := json.Unmarshal(e.adm.want(201, "POST", "/v1/accounts/acme/users/alice/api-keys/"+k.ID+"/rotate", e.root,
		map[string]any{"grace": "3s"}), &nk); err != nil {
		t.Fatal(err)
	}
	e.cb.want(t, "new key on B", e.b.url("/api/x"), "Bearer "+nk.APIKey, 200)
	e.ca.want(t, "new key on A", e.a.url("/api/x"), "Bearer "+nk.APIKey, 200)
	if time.Since(rotated) < 2*time.Second {
		e.cb.want(t, "old key on B within the grace", e.b.url("/api/x"), old, 200)
		e.ca.want(t, "old key on A within the grace", e.a.url("/api/x"), old, 200)
	}
	for _, g := range []struct {
		c *auClient
		g *gateway
	}{{e.ca, e.a}, {e.cb, e.b}} {
		if _, ok := g.c.until(g.g.url("/api/x"), old, 401, 3*time.Second+auRevokeBound); !ok {
			t.Errorf("%s: the old key still works after its grace", g.g.public)
		}
	}
	if d := time.Since(rotated); d < 3*time.Second {
		t.Errorf("the old key died after %v, before its 3s grace", d)
	}
	// Grace 0: the leaked key dies at once on both.
	var nk2 adminapi.CreatedKey
	if err := json.Unmarshal(e.adm.want(201, "POST", "/v1/accounts/acme/users/alice/api-keys/"+nk.ID+"/rotate", e.root,
		map[string]any{"grace": "0s"}), &nk2); err != nil {
		t.Fatal(err)
	}
	for _, g := range []struct {
		c *auClient
		g *gateway
	}{{e.ca, e.a}, {e.cb, e.b}} {
		if _, ok := g.c.until(g.g.url("/api/x"), "Bearer "+nk.APIKey, 401, auRevokeBound); !ok {
			t.Errorf("%s: the leaked key still works", g.g.public)
		}
		g.c.want(t, "successor", g.g.url("/api/x"), "Bearer "+nk2.APIKey, 200)
	}
}

// TestKeys2HeadersEndToEnd: Keygate-Key-Expires only inside the warning
// window (and never for passwords); X-Auth-Key-Meta-* forwarded, sanitised,
// and never taken from the client, in any spelling, with or without a key.
func TestKeys2HeadersEndToEnd(t *testing.T) {
	t.Parallel()
	e := newK2Env(t)
	soon := e.newKey(t, "alice", map[string]any{"name": "soon", "expires_in": "100h",
		"metadata": map[string]any{"team": "core", "tier": "gold\r\nX-Evil: 1", "secret": "s3"}})
	later := e.newKey(t, "alice", map[string]any{"name": "later", "expires_in": "720h"})
	r := e.cb.get(t, e.b.url("/api/x"), "Bearer "+soon.APIKey)
	if got := r.header.Get("Keygate-Key-Expires"); r.status != 200 || got != soon.ExpiresAt.UTC().Format(time.RFC3339) {
		t.Errorf("warning header = %q (status %d), want %s", got, r.status, soon.ExpiresAt.UTC().Format(time.RFC3339))
	}
	for _, h := range []string{"Bearer " + later.APIKey, auBasic("alice", "alice-Pa55word-long")} {
		if r := e.cb.get(t, e.b.url("/api/x"), h); r.status != 200 || r.header.Get("Keygate-Key-Expires") != "" {
			t.Errorf("outside the window: %d, header %q", r.status, r.header.Get("Keygate-Key-Expires"))
		}
	}
	spoof := []string{"X-Auth-Key-Meta-Team", "evil", "x_auth_key_meta_tier", "evil", "X.Auth.Key.Meta.Secret", "evil",
		"Connection", "X-Auth-Key-Meta-Team"}
	r = e.cb.get(t, e.b.url("/meta/x"), "Bearer "+soon.APIKey, spoof...)
	id := auIdentity(t, r.body)
	if got := id["x-auth-key-meta-team"]; len(got) != 1 || got[0] != "core" {
		t.Errorf("team = %q", got)
	}
	if got := id["x-auth-key-meta-tier"]; len(got) != 1 || got[0] != "gold  X-Evil: 1" {
		t.Errorf("tier = %q", got)
	}
	if got := id["x-auth-key-meta-secret"]; got != nil {
		t.Errorf("a member the route does not forward arrived: %q", got)
	}
	for _, h := range []string{"Bearer " + later.APIKey, auBasic("alice", "alice-Pa55word-long")} {
		r := e.cb.get(t, e.b.url("/meta/x"), h, spoof...)
		for name, v := range auIdentity(t, r.body) {
			if strings.HasPrefix(name, "x-auth-key-meta-") {
				t.Errorf("without metadata, upstream got %s: %q", name, v)
			}
		}
	}
	// The gauge of keys expiring within the window (counted at start-up
	// and every 5 minutes) is exposed.
	if _, _, body := e.adm.do("GET", "/metrics", "", nil); !strings.Contains(string(body), "keygate_api_keys_expiring ") {
		t.Error("keygate_api_keys_expiring is not exposed")
	}
}

// TestKeys2ServiceAccountTokens: a service account (no password) gets a
// token with client_credentials on B, bound to its key; the token works on
// A and dies everywhere with the key; every token row of SECURITY.md holds.
func TestKeys2ServiceAccountTokens(t *testing.T) {
	t.Parallel()
	e := newK2Env(t)
	e.adm.want(201, "POST", "/v1/accounts/acme/users", e.root, map[string]any{"username": "ci-bot", "type": "service", "roles": []string{"read"}})
	if st, _, body := e.adm.do("POST", "/v1/accounts/acme/users", e.root, map[string]any{"username": "bot2", "type": "service", "password": "x-Pa55word-long"}); st != 422 {
		t.Errorf("service account with a password: %d %s", st, body)
	}
	svc := e.newKey(t, "ci-bot", map[string]any{"name": "deploy"})
	user := e.newKey(t, "alice", map[string]any{"name": "ci"})
	c := &http.Client{Timeout: 5 * time.Second}
	post := func(g *gateway, form url.Values, basic string) (int, http.Header, map[string]any) {
		t.Helper()
		req, err := http.NewRequest("POST", g.url("/oauth/token"), strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic != "" {
			req.Header.Set("Authorization", basic)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = res.Body.Close() }()
		b, _ := io.ReadAll(res.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("token endpoint body %q: %v", b, err)
		}
		if res.Header.Get("Cache-Control") != "no-store" || res.Header.Get("Pragma") != "no-cache" {
			t.Errorf("token response without no-store: %v", res.Header)
		}
		if strings.Contains(string(b), svc.APIKey) {
			t.Error("the token response echoes the key")
		}
		return res.StatusCode, res.Header, m
	}
	cc := func(id, secret string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
	}
	st, _, m := post(e.b, cc(svc.ID, svc.APIKey), "")
	tok, _ := m["access_token"].(string)
	if st != 200 || tok == "" || m["refresh_token"] != nil {
		t.Fatalf("client_credentials: %d %v", st, m)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(svc.ID+":"+svc.APIKey))
	if st, _, m := post(e.b, url.Values{"grant_type": {"client_credentials"}}, basic); st != 200 {
		t.Errorf("client_credentials with Basic: %d %v", st, m)
	}
	r := e.ca.get(t, e.a.url("/api/x"), "Bearer "+tok)
	if id := auIdentity(t, r.body); r.status != 200 || id["x-auth-user"][0] != "ci-bot" || id["x-auth-method"][0] != "bearer" {
		t.Fatalf("token on A: %d %v", r.status, id)
	}
	// Token rows: RFC 6749 §5.2 errors with one body for every bad client.
	var bodies []string
	for _, tc := range []struct {
		name string
		form url.Values
	}{
		{"wrong key", cc(svc.ID, user.APIKey)},
		{"unknown id", cc("0000000000000000000Z", svc.APIKey)},
		{"a user's key", cc(user.ID, user.APIKey)},
		{"no secret", cc(svc.ID, "")},
		{"near miss", cc(svc.ID, nearMiss(svc.APIKey))},
	} {
		st, h, m := post(e.b, tc.form, "")
		if st != 401 || m["error"] != "invalid_client" || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: %d %v", tc.name, st, m)
		}
		b, _ := json.Marshal(m)
		bodies = append(bodies, string(b))
	}
	for _, b := range bodies[1:] {
		if b != bodies[0] {
			t.Errorf("different bodies: %s vs %s", b, bodies[0])
		}
	}
	// The password grant and Basic refuse a service account.
	if st, _, m := post(e.b, url.Values{"grant_type": {"password"}, "username": {"ci-bot"}, "password": {"anything-at-all"}}, ""); st != 400 || m["error"] != "invalid_grant" {
		t.Errorf("password grant for a service account: %d %v", st, m)
	}
	e.cb.want(t, "Basic for a service account", e.b.url("/api/x"), auBasic("ci-bot", ""), 401)
	// JWT rows: a forged alg=none token naming the key is refused.
	parts := strings.Split(tok, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + parts[1] + "."
	e.cb.want(t, "alg none", e.b.url("/api/x"), "Bearer "+none, 401)
	e.cb.want(t, "tampered signature", e.b.url("/api/x"), "Bearer "+parts[0]+"."+parts[1]+"."+strings.Repeat("A", len(parts[2])), 401)
	// Revocation on A ends the token everywhere, within the bound.
	auWarm(t, e.cb, e.b, e.b.url("/api/x"), "Bearer "+tok)
	e.adm.want(200, "DELETE", "/v1/accounts/acme/users/ci-bot/api-keys/"+svc.ID, e.root, nil)
	for _, g := range []struct {
		c *auClient
		g *gateway
	}{{e.ca, e.a}, {e.cb, e.b}} {
		if _, ok := g.c.until(g.g.url("/api/x"), "Bearer "+tok, 401, auRevokeBound); !ok {
			t.Errorf("%s: the token outlived its key's revocation", g.g.public)
		}
	}
	if st, _, _ := post(e.b, cc(svc.ID, svc.APIKey), ""); st != 401 {
		t.Errorf("revoked key got a token: %d", st)
	}
	// The RFC 8414 metadata offers the grant.
	res, err := c.Get(e.b.url("/.well-known/oauth-authorization-server"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if !strings.Contains(string(b), "client_credentials") {
		t.Errorf("metadata: %s", b)
	}
}

// nearMiss is key with its last character changed (never to itself).
func nearMiss(key string) string {
	last := byte('x')
	if key[len(key)-1] == last {
		last = 'y'
	}
	return key[:len(key)-1] + string(last)
}
