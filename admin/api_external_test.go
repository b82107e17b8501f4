package admin

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/plugin"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testport"
	"github.com/keygate/keygate/store"
)

// startTestPlugin runs the reference plugin with rules on 127.0.0.1:0.
func startTestPlugin(t *testing.T, rules string) (*plugin.Server, configs.External) {
	t.Helper()
	r, err := plugin.ParseRules([]byte(rules))
	mustOK(t, err)
	s := plugin.New(r, "", nil)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	mustOK(t, err)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	return s, configs.External{Endpoint: "http://" + ln.Addr().String(), Timeout: configs.Duration(300 * time.Millisecond), CacheTTL: configs.Duration(time.Second)}
}

// With the external handler, admin writes are asked of the plugin (action =
// the operation's name, domain = the account in the path), a denial has no
// side effect, an API-key caller cannot write whatever the plugin answers,
// and user/account lifecycle events reach the plugin.
func TestExternalAuthorizerOnAdminWrites(t *testing.T) {
	srv, ext := startTestPlugin(t, `
rules:
  - effect: allow
    domains: [acme, admin]
  - effect: deny
    actions: [deleteUser]
`)
	a, err := authz.NewExternal(ext, authz.Options{})
	mustOK(t, err)
	t.Cleanup(func() { _ = a.Close() })
	out, err := authz.OpenBoltOutbox(filepath.Join(t.TempDir(), "outbox.db"))
	mustOK(t, err)
	t.Cleanup(func() { _ = out.Close() })
	n, err := authz.NewNotifier(ext, out, authz.NotifierOptions{BackoffMin: 10 * time.Millisecond, Idle: 50 * time.Millisecond})
	mustOK(t, err)
	go func() { _ = n.Run(t.Context()) }()

	e := newAPIEnv(t, apiEnvOptions{authorizer: a, notifier: n})
	root := basicAuth("admin", pwRoot)

	// Allowed in acme: create a user; the plugin hears of the principal.
	e.do("POST", "/v1/accounts/acme/users", root, map[string]any{"username": "carol", "password": "carol-Pa55word-long", "roles": []string{"read"}}).want(t, 201)
	// Denied by the plugin in globex, although the global admin may: no
	// side effect.
	e.do("POST", "/v1/accounts/globex/users", root, map[string]any{"username": "dave", "password": "dave-Pa55word-long"}).want(t, 403)
	if _, err := e.st.GetUser(t.Context(), "dave"); err == nil {
		t.Fatal("denied create still created the user")
	}
	// deleteUser is denied everywhere.
	e.do("DELETE", "/v1/accounts/acme/users/carol", root, nil).want(t, 403)
	// An API key cannot write, even though the plugin would allow it.
	k := e.newKey(basicAuth("alice", pwAlice), "/v1/user/api-keys", map[string]any{"name": "ci"})
	e.do("POST", "/v1/user/api-keys", k.bearer(), map[string]any{"name": "x"}).want(t, 403)
	calls := srv.AuthorizeCalls()
	e.do("POST", "/v1/user/api-keys", k.bearer(), map[string]any{"name": "y"}).want(t, 403)
	if srv.AuthorizeCalls() != calls {
		t.Error("the plugin was asked about an API-key write: the rule must hold before it")
	}

	eventually(t, "the plugin hears of carol", func() bool {
		for _, ev := range srv.Events() {
			if ev.Kind == authz.KindPrincipal && ev.Name == "carol" && ev.Op == authz.OpCreate {
				return true
			}
		}
		return false
	})
	if u, err := e.st.GetUser(t.Context(), "carol"); err != nil || u.Account != "acme" {
		t.Fatalf("the denied delete removed carol: %v", err)
	}
}

// A plugin that is down makes admin writes 503, never allowed.
func TestExternalAuthorizerDownOnAdminWrites(t *testing.T) {
	// Nothing listens there; below the ephemeral range (testport), no
	// parallel test's bind(":0") can start listening there either.
	ext := configs.External{Endpoint: "http://" + testport.Addr(t), Timeout: configs.Duration(200 * time.Millisecond), CacheTTL: configs.Duration(time.Second)}
	a, err := authz.NewExternal(ext, authz.Options{})
	mustOK(t, err)
	t.Cleanup(func() { _ = a.Close() })
	e := newAPIEnv(t, apiEnvOptions{authorizer: a})
	r := e.do("POST", "/v1/accounts", basicAuth("admin", pwRoot), map[string]any{"name": "initech"})
	r.want(t, 503)
	if _, err := e.st.GetAccount(t.Context(), "initech"); err == nil {
		t.Fatal("created while the authorizer was down")
	}
	// Reads are not asked of the plugin.
	e.do("GET", "/v1/accounts", basicAuth("admin", pwRoot), nil).want(t, 200)
}

// The plugin is asked about the path the router acts on, decoded and
// escaped one way (issue 12.2): "svc%2Dbot" is judged as "svc-bot", however
// the client spells it, and the domain is the decoded account.
func TestExternalAuthorizerCanonicalPath(t *testing.T) {
	_, ext := startTestPlugin(t, `
rules:
  - effect: allow
    domains: [acme, globex, admin]
  - effect: deny
    targets: ["admin:/v1/accounts/acme/users/svc-bot", "admin:/v1/accounts/acme/users/svc-bot/**"]
`)
	a, err := authz.NewExternal(ext, authz.Options{})
	mustOK(t, err)
	t.Cleanup(func() { _ = a.Close() })
	e := newAPIEnv(t, apiEnvOptions{authorizer: a})
	root := basicAuth("admin", pwRoot)
	e.addUser("svc-bot", "acme", store.TypeUser, pwAlice, "read")
	for _, tc := range []struct {
		name, method, path string
		want               int
	}{
		{"plain", "POST", "/v1/accounts/acme/users/svc-bot/api-keys", 403},
		{"encoded hyphen", "POST", "/v1/accounts/acme/users/svc%2Dbot/api-keys", 403},
		{"encoded letters", "POST", "/v1/accounts/acme/users/%73vc-b%6Ft/api-keys", 403},
		{"encoded account", "POST", "/v1/accounts/%61cme/users/svc%2dbot/api-keys", 403},
		{"update encoded", "PATCH", "/v1/accounts/acme/users/svc%2Dbot", 403},
		{"delete encoded", "DELETE", "/v1/accounts/acme/users/svc%2Dbot", 403},
		{"another user is allowed", "POST", "/v1/accounts/acme/users/alice/api-keys", 201},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body map[string]any
			switch tc.method {
			case "POST":
				body = map[string]any{"name": "k-" + strings.ReplaceAll(tc.name, " ", "-")}
			case "PATCH":
				body = map[string]any{"roles": []string{}}
			}
			e.do(tc.method, tc.path, root, body).want(t, tc.want)
		})
	}
	if u, err := e.st.GetUser(t.Context(), "svc-bot"); err != nil || len(u.Roles) != 1 {
		t.Fatalf("svc-bot changed by a denied write: %v %v", u, err)
	}
	for _, tc := range []struct{ raw, want string }{
		{"/v1/accounts/acme/users/svc%2Dbot/api-keys", "/v1/accounts/acme/users/svc-bot/api-keys"},
		{"/v1/accounts/a%2Fb/users", "/v1/accounts/a%2Fb/users"},
		{"/v1/accounts/a%20b", "/v1/accounts/a%20b"},
		{"/debug/pprof/", "/debug/pprof/"},
		{"/", "/"},
	} {
		if got, ok := canonicalPath(tc.raw); !ok || got != tc.want {
			t.Errorf("canonicalPath(%q) = %q, %v; want %q", tc.raw, got, ok, tc.want)
		}
	}
	for _, raw := range []string{"/v1//x", "/v1/%2e%2e/x", "/v1/%zz"} {
		if _, ok := canonicalPath(raw); ok {
			t.Errorf("canonicalPath(%q) accepted", raw)
		}
	}
}

// Bulk revoke asks about each key in its own account, as the revocation of
// that key (issue 12.2): a rule denying revocations in globex holds even
// when the bulk call is made from another account.
func TestExternalAuthorizerBulkRevokePerKeyDomain(t *testing.T) {
	_, ext := startTestPlugin(t, `
rules:
  - effect: allow
    domains: [acme, globex, admin]
  - effect: deny
    domains: [globex]
    actions: [revokeApiKey]
`)
	a, err := authz.NewExternal(ext, authz.Options{})
	mustOK(t, err)
	t.Cleanup(func() { _ = a.Close() })
	e := newAPIEnv(t, apiEnvOptions{authorizer: a})
	root := basicAuth("admin", pwRoot)
	ka := e.newKey(root, "/v1/accounts/acme/users/alice/api-keys", map[string]any{"name": "a"})
	kb := e.newKey(basicAuth("bob", pwBob), "/v1/user/api-keys", map[string]any{"name": "b"})
	// One key: denied in its domain.
	e.do("DELETE", "/v1/accounts/globex/users/bob/api-keys/"+kb.ID, root, nil).want(t, 403)
	// Bulk, by ids and by filter: the globex key is refused the same way.
	var out struct {
		Invalidated []string `json:"invalidated"`
		ErrorCount  int      `json:"error_count"`
		Errors      []struct {
			ID, Code string
		} `json:"errors"`
	}
	e.do("DELETE", "/v1/api-keys", root, map[string]any{"ids": []string{ka.ID, kb.ID}}).want(t, 200).decode(t, &out)
	if len(out.Invalidated) != 1 || out.Invalidated[0] != ka.ID || out.ErrorCount != 1 ||
		out.Errors[0].ID != kb.ID || out.Errors[0].Code != "forbidden" {
		t.Fatalf("bulk by ids: %+v", out)
	}
	e.do("DELETE", "/v1/api-keys", root, map[string]any{"account": "globex"}).want(t, 200).decode(t, &out)
	if len(out.Invalidated) != 0 || out.ErrorCount != 1 || out.Errors[0].Code != "forbidden" {
		t.Fatalf("bulk by account: %+v", out)
	}
	if !e.storeKey(kb.ID).RevokedAt.IsZero() {
		t.Fatal("the globex key was revoked")
	}
	if e.storeKey(ka.ID).RevokedAt.IsZero() {
		t.Fatal("the acme key was not revoked")
	}
}
