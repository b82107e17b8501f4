package admin

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/plugin"
	"github.com/keygate/keygate/configs"
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
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	mustOK(t, err)
	ext := configs.External{Endpoint: "http://" + ln.Addr().String(), Timeout: configs.Duration(200 * time.Millisecond), CacheTTL: configs.Duration(time.Second)}
	ln.Close()
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
