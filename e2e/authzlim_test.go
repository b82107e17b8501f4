package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// e2eLongPassword passes the password policy of the admin API.
const e2eLongPassword = "svc-Pa55word-long-enough"

// startPlugin runs `keygate authz-plugin-example` with rules.
func startPlugin(t *testing.T, rules string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	p := startProc(t, nil, "authz-plugin-example", "--listen", addr, "--rules", path)
	waitHTTP(t, p, "http://"+addr+"/healthz", nil)
	return addr
}

func externalAuthzYAML(pluginAddr string) string {
	return fmt.Sprintf("authorization:\n  handler: external\n  external:\n    endpoint: \"http://%s\"\n    timeout: 500ms\n    cache_ttl: 1s\n", pluginAddr)
}

// Issue 12.2 against the binary and the real plugin: the admin API asks
// about the canonical path ("svc%2Dbot" is judged as "svc-bot"), and bulk
// revoke asks about each key in its own account.
func TestAuthzLimAdminCanonicalPathAndBulkDomains(t *testing.T) {
	t.Parallel()
	pluginAddr := startPlugin(t, `rules:
  - effect: allow
    types: [admin]
  - effect: deny
    targets: ["admin:/v1/accounts/acme/users/svc-bot", "admin:/v1/accounts/acme/users/svc-bot/**"]
  - effect: deny
    domains: [globex]
    actions: [revokeApiKey]
`)
	echoAddr := startEchoProc(t)
	g := startGateway(t, serveOpts{routes: echoRoute("pub", "/", echoAddr), extra: externalAuthzYAML(pluginAddr)})
	a := newAdmClient(t, g)
	root := admBasic("admin", admBootstrapPassword)
	for _, acc := range []string{"acme", "globex"} {
		a.want(201, "POST", "/v1/accounts", root, map[string]any{"name": acc})
	}
	a.want(201, "POST", "/v1/accounts/acme/users", root, map[string]any{"username": "svc-bot", "password": e2eLongPassword})
	a.want(201, "POST", "/v1/accounts/acme/users", root, map[string]any{"username": "alice", "password": e2eLongPassword})
	a.want(201, "POST", "/v1/accounts/globex/users", root, map[string]any{"username": "bob", "password": e2eLongPassword})

	for _, path := range []string{
		"/v1/accounts/acme/users/svc-bot/api-keys",
		"/v1/accounts/acme/users/svc%2Dbot/api-keys",
		"/v1/accounts/acme/users/svc%2dbot/api-keys",
		"/v1/accounts/%61cme/users/%73vc-bot/api-keys",
	} {
		if st, _, body := a.do("POST", path, root, map[string]any{"name": "ci"}); st != 403 {
			t.Errorf("POST %s: %d %s, want 403 (the plugin denies svc-bot)", path, st, body)
		}
	}
	if st, _, body := a.do("DELETE", "/v1/accounts/acme/users/svc%2Dbot", root, nil); st != 403 {
		t.Errorf("DELETE svc%%2Dbot: %d %s", st, body)
	}

	var ka, kb struct{ ID string }
	decodeJSON(t, a.want(201, "POST", "/v1/accounts/acme/users/alice/api-keys", root, map[string]any{"name": "a"}), &ka)
	decodeJSON(t, a.want(201, "POST", "/v1/accounts/globex/users/bob/api-keys", root, map[string]any{"name": "b"}), &kb)
	var out struct {
		Invalidated []string `json:"invalidated"`
		ErrorCount  int      `json:"error_count"`
		Errors      []struct {
			ID   string `json:"id"`
			Code string `json:"code"`
		} `json:"errors"`
	}
	decodeJSON(t, a.want(200, "DELETE", "/v1/api-keys", root, map[string]any{"ids": []string{ka.ID, kb.ID}}), &out)
	if len(out.Invalidated) != 1 || out.Invalidated[0] != ka.ID || out.ErrorCount != 1 ||
		out.Errors[0].ID != kb.ID || out.Errors[0].Code != "forbidden" {
		t.Fatalf("bulk revoke across accounts: %+v", out)
	}
	// The globex key is still active; the acme key is revoked.
	var got struct{ Status string }
	decodeJSON(t, a.want(200, "GET", "/v1/accounts/globex/users/bob/api-keys/"+kb.ID, root, nil), &got)
	if got.Status != "active" {
		t.Fatalf("globex key status %q after a denied bulk revoke", got.Status)
	}
	decodeJSON(t, a.want(200, "GET", "/v1/accounts/acme/users/alice/api-keys/"+ka.ID, root, nil), &got)
	if got.Status != "revoked" {
		t.Fatalf("acme key status %q", got.Status)
	}
}

// Issue 12.3: auth: optional routes give anonymous callers the same rules
// (no identity holds no role; the plugin is asked too), Connection:
// Authorization no longer turns alice anonymous, and the injected identity
// headers still win over the client's.
func TestAuthzLimOptionalRoutes(t *testing.T) {
	t.Parallel()
	echoAddr := startEchoProc(t)
	dir := t.TempDir()
	storeYAML := auBoltFixture(t, dir, func(s auStore) {
		s.account("acme")
		s.user("alice", "acme", "", "dev")
		s.user("olga", "acme", "", "ops")
	})
	up := fmt.Sprintf("[\"http://%s\"]", echoAddr)
	routes := "  - name: opt-ops\n    path_prefix: /ops\n    upstreams: " + up + "\n    auth: optional\n    roles: [ops]\n" +
		"  - name: opt\n    path_prefix: /\n    upstreams: " + up + "\n    auth: optional\n"
	g := startGateway(t, serveOpts{routes: routes, store: storeYAML})
	alice := "Authorization: " + auBasic("alice", auPassword)
	olga := "Authorization: " + auBasic("olga", auPassword)
	req := func(path string, lines ...string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: x\r\n" + strings.Join(append(lines, ""), "\r\n") + "\r\n"
	}
	for _, tc := range []struct {
		name     string
		raw      string
		want     int
		wantUser string // X-Auth-User upstream ("-": none)
	}{
		{"anonymous, route with roles", req("/ops/x"), 401, ""},
		{"alice without the role", req("/ops/x", alice), 403, ""},
		{"olga with the role", req("/ops/x", olga), 200, "olga"},
		{"anonymous, route without roles", req("/open"), 200, "-"},
		{"alice, route without roles", req("/open", alice), 200, "alice"},
		{"Connection: Authorization, alice stays alice", req("/open", alice, "Connection: Authorization"), 200, "alice"},
		{"Connection: Authorization on a route with roles", req("/ops/x", alice, "Connection: keep-alive, Authorization"), 403, ""},
		{"Connection: Authorization, olga allowed", req("/ops/x", olga, "Connection: Authorization"), 200, "olga"},
		{"spoofed identity named in Connection", req("/open", alice, "X-Auth-User: admin", "X_Auth_Roles: ops",
			"Connection: X-Auth-User, Authorization, X-Auth-Roles"), 200, "alice"},
		{"anonymous spoofing identity", req("/open", "X-Auth-User: admin", "Connection: X-Auth-User"), 200, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r rawResponse
			// A password's first check may meet the hashing limit: retry 503.
			for i := 0; i < 50; i++ {
				if r = rawDo(t, g.public, tc.raw); r.status != 503 {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			if tc.want == 401 && len(r.header.Values("WWW-Authenticate")) == 0 {
				t.Fatal("401 without challenges")
			}
			if tc.want != 200 {
				return
			}
			ids := auIdentity(t, r.body)
			if len(ids["authorization"]) != 0 {
				t.Fatalf("Authorization forwarded: %v", ids)
			}
			switch got := ids["x-auth-user"]; {
			case tc.wantUser == "-" && len(got) != 0:
				t.Fatalf("anonymous request carried X-Auth-User %v upstream", got)
			case tc.wantUser != "-" && (len(got) != 1 || got[0] != tc.wantUser):
				t.Fatalf("X-Auth-User upstream %v, want [%s]", got, tc.wantUser)
			}
			if tc.wantUser == "alice" {
				if roles := ids["x-auth-roles"]; len(roles) != 1 || roles[0] != "dev" {
					t.Fatalf("X-Auth-Roles upstream %v, want [dev]", roles)
				}
			}
		})
	}

	// Issue 20.4: with the native handler every route-role decision is
	// counted, the anonymous callers' too (7 allowed, 3 refused above).
	for series, want := range map[string]float64{
		`keygate_authz_decisions_total{handler="native",result="allow"}`: 7,
		`keygate_authz_decisions_total{handler="native",result="deny"}`:  3,
	} {
		if got := auMetric(t, g, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}

	// The external plugin decides for anonymous callers too.
	pluginAddr := startPlugin(t, `rules:
  - effect: allow
    types: [anonymous]
    targets: ["opt:/pub/**"]
  - effect: allow
    principals: [alice]
`)
	g2 := startGateway(t, serveOpts{routes: "  - name: opt\n    path_prefix: /\n    upstreams: " + up + "\n    auth: optional\n",
		store: auBoltFixture(t, t.TempDir(), func(s auStore) {
			s.account("acme")
			s.user("alice", "acme", "", "dev")
		}),
		extra: externalAuthzYAML(pluginAddr)})
	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/pub/a", "", 200},
		{"/private/a", "", 401},
		{"/private/a", alice, 200},
	} {
		var lines []string
		if tc.auth != "" {
			lines = append(lines, tc.auth)
		}
		var r rawResponse
		for i := 0; i < 50; i++ {
			if r = rawDo(t, g2.public, req(tc.path, lines...)); r.status != 503 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if r.status != tc.want {
			t.Errorf("external, %s (auth %v): %d, want %d: %s", tc.path, tc.auth != "", r.status, tc.want, r.body)
		}
	}
	// With the external handler the plugin's decisions are counted; the
	// route roles it comes after are not (no native series).
	for series, want := range map[string]float64{
		`keygate_authz_decisions_total{handler="external",result="allow"}`: 2,
		`keygate_authz_decisions_total{handler="external",result="deny"}`:  1,
		`keygate_authz_decisions_total{handler="native",result="allow"}`:   -1,
	} {
		if got := auMetric(t, g2, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// Issue 12.6: many concurrent wrong passwords never get more checks than the
// limit, per address (proxy and token endpoint) and per user (the address
// from X-Forwarded-For behind a trusted proxy). Checks are seen in the
// metrics: every check of a wrong password is one result="invalid" (proxy)
// or result="invalid_grant" (token endpoint).
func TestAuthzLimConcurrentGuessesAgainstTheBinary(t *testing.T) {
	t.Parallel()
	echoAddr := startEchoProc(t)
	const perIP, perUser, n = 8, 5, 64
	g := startGateway(t, serveOpts{
		routes: fmt.Sprintf("  - name: api\n    path_prefix: /\n    upstreams: [\"http://%s\"]\n    auth: required\n", echoAddr),
		store: auBoltFixture(t, t.TempDir(), func(s auStore) {
			s.account("acme")
			s.user("alice", "acme", "")
		}),
		extra: fmt.Sprintf("trusted_proxies: [\"127.0.0.1\"]\nauth:\n  max_hash_concurrency: 2\n  failures:\n    per_ip_per_minute: %d\n    per_user_per_minute: %d\n", perIP, perUser),
	})
	c := newAuClient(30 * time.Second)
	defer c.close()
	flood := func(send func(i int) int) map[int]int {
		var mu sync.Mutex
		statuses := map[int]int{}
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				st := send(i)
				mu.Lock()
				statuses[st]++
				mu.Unlock()
			})
		}
		wg.Wait()
		return statuses
	}

	// Per address: distinct unknown users (the fake hash) from one client.
	st := flood(func(i int) int {
		r, err := c.do(g.url("/x"), auBasic(fmt.Sprintf("nobody%d", i), "guess"), "X-Forwarded-For", "203.0.113.10")
		if err != nil {
			return 0
		}
		return r.status
	})
	checks := auMetric(t, g, `keygate_auth_attempts_total{method="basic",result="invalid"}`)
	t.Logf("per address: statuses %v, checks %v (limit %d)", st, checks, perIP)
	if checks > perIP || st[401] > perIP || st[401]+st[429]+st[503] != n {
		t.Fatalf("per address: %v checks, statuses %v; limit %d", checks, st, perIP)
	}

	// Per user: alice's password from many addresses.
	st = flood(func(i int) int {
		r, err := c.do(g.url("/x"), auBasic("alice", fmt.Sprintf("guess%d", i)), "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1))
		if err != nil {
			return 0
		}
		return r.status
	})
	after := auMetric(t, g, `keygate_auth_attempts_total{method="basic",result="invalid"}`)
	t.Logf("per user: statuses %v, checks %v (limit %d)", st, after-checks, perUser)
	if after-checks > perUser || st[401] > perUser || st[401]+st[429]+st[503] != n {
		t.Fatalf("per user: %v checks, statuses %v; limit %d", after-checks, st, perUser)
	}

	// Token endpoint, one address (its client address comes from every
	// X-Forwarded-For line, as the proxy's).
	st = flood(func(i int) int {
		form := fmt.Sprintf("grant_type=password&username=ghost%d&password=guess", i)
		req, _ := http.NewRequest("POST", g.url("/oauth/token"), strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Add("X-Forwarded-For", "192.0.2.1")
		req.Header.Add("X-Forwarded-For", "203.0.113.77")
		resp, err := c.c.Do(req)
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	})
	grants := auMetric(t, g, `keygate_token_requests_total{grant_type="password",result="invalid_grant"}`)
	t.Logf("token endpoint: statuses %v, checks %v (limit %d)", st, grants, perIP)
	if grants > perIP || st[400] > perIP || st[400]+st[429]+st[503] != n {
		t.Fatalf("token endpoint: %v checks, statuses %v; limit %d", grants, st, perIP)
	}
	// The token endpoint's client is the rightmost hop over both lines
	// (it read only the first line before: 192.0.2.1).
	logs := g.stderr.String()
	if !strings.Contains(logs, `"event":"token_failure"`) ||
		strings.Contains(logs, `"client_ip":"192.0.2.1"`) || !strings.Contains(logs, `"client_ip":"203.0.113.77"`) {
		t.Fatalf("token endpoint client address: audit lines do not name 203.0.113.77 alone:\n%s", logs)
	}
}

// Issue 13.8: a revoked key reused from one address, again and again, is
// 401 and spends no failure budget: valid credentials from the same
// address, cached and uncached, API key and password, keep getting 200.
func TestAuthzLimRevokedKeyDoesNotLockOut(t *testing.T) {
	t.Parallel()
	echoAddr := startEchoProc(t)
	const rounds = 25
	var revoked, cachedKey, disabledPw string
	freshKeys := make([]string, rounds)
	storeYAML := auBoltFixture(t, t.TempDir(), func(s auStore) {
		s.account("acme")
		s.user("alice", "acme", "")
		s.user("dave", "acme", "")
		s.updateUser("dave", store.UserUpdate{State: ptrTo(store.StateDisabled)})
		disabledPw = auBasic("dave", auPassword)
		id, v := s.key("alice", "old")
		s.revoke(id)
		revoked = auAPIKey(id, v)
		_, v = s.key("alice", "cached")
		cachedKey = "Bearer " + v
		for i := range rounds {
			_, v := s.key("alice", fmt.Sprintf("fresh%d", i))
			freshKeys[i] = "Bearer " + v
			s.user(fmt.Sprintf("user%d", i), "acme", "")
		}
	})
	g := startGateway(t, serveOpts{
		routes: fmt.Sprintf("  - name: api\n    path_prefix: /\n    upstreams: [\"http://%s\"]\n    auth: required\n", echoAddr),
		store:  storeYAML,
		// Small budgets: the old behaviour locked the address out after 3.
		extra: "auth:\n  failures:\n    per_ip_per_minute: 3\n    per_user_per_minute: 3\n",
	})
	c := newAuClient(10 * time.Second)
	defer c.close()
	cachedPw := auBasic("alice", auPassword)
	auWarm(t, c, g, g.url("/x"), cachedKey)
	auWarm(t, c, g, g.url("/x"), cachedPw)
	var other atomic.Int64
	ok200 := 0
	for i := range rounds {
		for _, bad := range []string{revoked, disabledPw} {
			if r := c.get(t, g.url("/x"), bad); r.status != 401 {
				t.Fatalf("round %d: refused credential answered %d, want 401", i, r.status)
			}
		}
		for _, h := range []string{cachedKey, cachedPw, freshKeys[i], auBasic(fmt.Sprintf("user%d", i), auPassword)} {
			r := c.get(t, g.url("/x"), h)
			switch r.status {
			case 200:
				ok200++
			case 503: // hashing capacity under the parallel e2e load: not a lock-out
				other.Add(1)
			default:
				t.Fatalf("round %d: valid credential answered %d: %s", i, r.status, r.body)
			}
		}
		time.Sleep(40 * time.Millisecond)
	}
	if limited := auMetric(t, g, `keygate_auth_attempts_total{method="api_key",result="rate_limited"}`) +
		auMetric(t, g, `keygate_auth_attempts_total{method="basic",result="rate_limited"}`); limited > 0 {
		t.Fatalf("%v requests rate limited", limited)
	}
	t.Logf("%d valid requests answered 200 (%d 503) while a revoked key and a disabled user's password were reused %d times each", ok200, other.Load(), rounds)
	// The budget is intact: real guesses are still limited.
	for i := range 3 {
		if r := c.get(t, g.url("/x"), auBasic("mallory", fmt.Sprintf("g%d", i))); r.status != 401 && r.status != 503 {
			t.Fatalf("guess %d: %d", i, r.status)
		}
	}
	if r := c.get(t, g.url("/x"), auBasic("mallory", "g3")); r.status != 429 {
		t.Fatalf("4th guess: %d, want 429", r.status)
	}
}

// Issue 13.11: forwarding headers from a peer that is not in
// trusted_proxies are counted and logged once per peer.
func TestAuthzLimUntrustedForwardedWarning(t *testing.T) {
	t.Parallel()
	echoAddr := startEchoProc(t)
	g := startGateway(t, serveOpts{routes: echoRoute("pub", "/", echoAddr)})
	c := newAuClient(5 * time.Second)
	defer c.close()
	for range 5 {
		c.want(t, "with XFF", g.url("/x"), "", 200)
		r := c.get(t, g.url("/x"), "", "X-Forwarded-For", "203.0.113.9")
		if r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
		if got := decodeEcho(t, r.body).Headers["X-Forwarded-For"]; len(got) != 1 || got[0] != "127.0.0.1" {
			t.Fatalf("untrusted XFF passed: %v", got)
		}
		c.get(t, g.url("/x"), "", "Forwarded", "for=203.0.113.9")
	}
	if n := auMetric(t, g, "keygate_untrusted_forwarded_total"); n != 10 {
		t.Fatalf("keygate_untrusted_forwarded_total = %v, want 10", n)
	}
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(g.stderr.String(), "not in trusted_proxies") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(g.stderr.String(), "not in trusted_proxies"); n != 1 {
		t.Fatalf("%d warnings for one peer, want 1:\n%s", n, g.stderr.String())
	}
	if !strings.Contains(g.stderr.String(), `"peer":"127.0.0.1"`) {
		t.Fatalf("warning does not name the peer:\n%s", g.stderr.String())
	}
}

func ptrTo[T any](v T) *T { return &v }

func decodeJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}
