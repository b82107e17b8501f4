package admin

import (
	"context"
	"errors"
	"testing"

	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/store"
)

// authzFixture holds one key per fixture user, created in the store.
type authzFixture struct {
	keys   map[string]string // username → key id
	values map[string]string // username → key value
}

func (e *apiEnv) seedKeys() *authzFixture {
	e.t.Helper()
	fx := &authzFixture{keys: map[string]string{}, values: map[string]string{}}
	for _, u := range []string{store.AdminUsername, "aadmin", "badmin", "alice", "bob"} {
		secret, err := apikey.NewSecret()
		mustOK(e.t, err)
		h, err := apikey.Hash([]byte(secret))
		mustOK(e.t, err)
		k := &store.APIKey{Name: "seed", Username: u, Hash: h}
		mustOK(e.t, e.st.CreateAPIKey(context.Background(), k))
		fx.keys[u], fx.values[u] = k.ID, apikey.Format(k.ID, secret)
	}
	return fx
}

// authzCtx is what a row of the table sees.
type authzCtx struct {
	e      *apiEnv
	fx     *authzFixture
	caller string // owner username ("" anonymous)
	pw     string
}

type ctx = authzCtx

// The callers of the table, in column order.
var authzCallers = []struct {
	name  string
	owner string // the user the caller acts as ("" for anonymous)
	key   bool   // authenticated by the owner's API key
	pw    string
}{
	{"global_admin", store.AdminUsername, false, pwRoot},
	{"account_admin_A", "aadmin", false, pwAAdmin},
	{"account_admin_B", "badmin", false, pwBAdmin},
	{"user_A", "alice", false, pwAlice},
	{"api_key_of_global_admin", store.AdminUsername, true, pwRoot},
	{"api_key_of_user_A", "alice", true, pwAlice},
	{"anonymous", "", false, ""},
}

func userExists(e *apiEnv, name string) bool {
	_, err := e.st.GetUser(context.Background(), name)
	return err == nil
}

func accountState(e *apiEnv, name string) store.State {
	a, err := e.st.GetAccount(context.Background(), name)
	if errors.Is(err, store.ErrNotFound) {
		return "gone"
	}
	mustOK(e.t, err)
	return a.State
}

func keyRevoked(e *apiEnv, id string) bool { return !e.storeKey(id).RevokedAt.IsZero() }

func keyCount(e *apiEnv, username string) int {
	p, err := e.st.ListAPIKeys(context.Background(), store.KeyFilter{Username: username, Status: store.StatusAll})
	mustOK(e.t, err)
	return len(p.Keys)
}

// TestAPIAuthorization runs every caller against every action and checks
// the status and, from the store, that a refused request changed nothing
// (and an accepted write did change something). A negative status means
// "this status, and no side effect" (a bulk request reporting errors).
func TestAPIAuthorization(t *testing.T) {
	rows := []struct {
		name   string
		method string
		path   func(c ctx) string
		body   func(c ctx) any
		// effect reports whether the action's side effect happened; nil
		// for reads.
		effect func(c ctx) bool
		want   [7]int
	}{
		{"get self", "GET", fixed("/v1/user"), nil, nil,
			[7]int{200, 200, 200, 200, 200, 200, 401}},
		{"change own password", "PUT", fixed("/v1/user/password"),
			func(c ctx) any { return map[string]string{"current": c.pw, "new": "Brand-new-Passw0rd"} },
			func(c ctx) bool {
				if c.caller == "" {
					return false
				}
				ok, _, _ := apiTestHasher.Verify(context.Background(), mustUser(c.e, c.caller).PasswordHash, "Brand-new-Passw0rd")
				return ok
			},
			[7]int{204, 204, 204, 204, 403, 403, 401}},
		{"list own keys", "GET", fixed("/v1/user/api-keys"), nil, nil,
			[7]int{200, 200, 200, 200, 200, 200, 401}},
		{"create own key", "POST", fixed("/v1/user/api-keys"), body(map[string]any{"name": "new"}),
			func(c ctx) bool { return c.caller != "" && keyCount(c.e, c.caller) == 2 },
			[7]int{201, 201, 201, 201, 403, 403, 401}},
		{"get own key", "GET", func(c ctx) string { return "/v1/user/api-keys/" + c.fx.keys[or(c.caller, "alice")] }, nil, nil,
			[7]int{200, 200, 200, 200, 200, 200, 401}},
		{"revoke own key", "DELETE", func(c ctx) string { return "/v1/user/api-keys/" + c.fx.keys[or(c.caller, "alice")] }, nil,
			func(c ctx) bool { return keyRevoked(c.e, c.fx.keys[or(c.caller, "alice")]) },
			[7]int{200, 200, 200, 200, 403, 403, 401}},
		{"get another user's key as own", "GET", func(c ctx) string { return "/v1/user/api-keys/" + c.fx.keys["bob"] }, nil, nil,
			[7]int{404, 404, 404, 404, 404, 404, 401}},
		{"revoke another user's key as own", "DELETE", func(c ctx) string { return "/v1/user/api-keys/" + c.fx.keys["bob"] }, nil,
			func(c ctx) bool { return keyRevoked(c.e, c.fx.keys["bob"]) },
			[7]int{404, 404, 404, 404, 403, 403, 401}},

		{"list accounts", "GET", fixed("/v1/accounts"), nil, nil,
			[7]int{200, 403, 403, 403, 403, 403, 401}},
		{"create account", "POST", fixed("/v1/accounts"), body(map[string]any{"name": "initech"}),
			func(c ctx) bool { return accountState(c.e, "initech") != "gone" },
			[7]int{201, 403, 403, 403, 403, 403, 401}},
		{"get account A", "GET", fixed("/v1/accounts/acme"), nil, nil,
			[7]int{200, 200, 404, 403, 403, 403, 401}},
		{"disable account A", "PATCH", fixed("/v1/accounts/acme"), body(map[string]any{"state": "disabled"}),
			func(c ctx) bool { return accountState(c.e, "acme") == store.StateDisabled },
			[7]int{200, 403, 404, 403, 403, 403, 401}},
		{"delete account B", "DELETE", fixed("/v1/accounts/globex"), nil,
			func(c ctx) bool { return accountState(c.e, "globex") == "gone" },
			[7]int{204, 404, 403, 403, 403, 403, 401}},
		{"disable account admin", "PATCH", fixed("/v1/accounts/admin"), body(map[string]any{"state": "disabled"}),
			func(c ctx) bool { return accountState(c.e, "admin") != store.StateEnabled },
			[7]int{403, 404, 404, 403, 403, 403, 401}},
		{"delete account admin", "DELETE", fixed("/v1/accounts/admin"), nil,
			func(c ctx) bool { return accountState(c.e, "admin") == "gone" },
			[7]int{403, 404, 404, 403, 403, 403, 401}},

		{"list users of A", "GET", fixed("/v1/accounts/acme/users"), nil, nil,
			[7]int{200, 200, 404, 403, 403, 403, 401}},
		{"create user in A", "POST", fixed("/v1/accounts/acme/users"),
			body(map[string]any{"username": "carl", "password": "Carl-Pa55word-long", "roles": []string{"read"}}),
			func(c ctx) bool { return userExists(c.e, "carl") },
			[7]int{201, 201, 404, 403, 403, 403, 401}},
		{"create user in B (path)", "POST", fixed("/v1/accounts/globex/users"),
			body(map[string]any{"username": "carl", "password": "Carl-Pa55word-long"}),
			func(c ctx) bool { return userExists(c.e, "carl") },
			[7]int{201, 404, 201, 403, 403, 403, 401}},
		{"create global admin in admin", "POST", fixed("/v1/accounts/admin/users"),
			body(map[string]any{"username": "carl", "password": "Carl-Pa55word-long", "type": "admin"}),
			func(c ctx) bool { return userExists(c.e, "carl") },
			[7]int{201, 404, 404, 403, 403, 403, 401}},
		{"create user with a role the caller lacks", "POST", fixed("/v1/accounts/acme/users"),
			body(map[string]any{"username": "carl", "password": "Carl-Pa55word-long", "roles": []string{"ops"}}),
			func(c ctx) bool { return userExists(c.e, "carl") },
			[7]int{201, 403, 404, 403, 403, 403, 401}},
		{"get user of B", "GET", fixed("/v1/accounts/globex/users/bob"), nil, nil,
			[7]int{200, 404, 200, 403, 403, 403, 401}},
		{"get user of B under A's path", "GET", fixed("/v1/accounts/acme/users/bob"), nil, nil,
			[7]int{404, 404, 404, 403, 403, 403, 401}},
		{"disable user of B", "PATCH", fixed("/v1/accounts/globex/users/bob"), body(map[string]any{"state": "disabled"}),
			func(c ctx) bool { return mustUser(c.e, "bob").State == store.StateDisabled },
			[7]int{200, 404, 200, 403, 403, 403, 401}},
		{"disable user of B under A's path", "PATCH", fixed("/v1/accounts/acme/users/bob"), body(map[string]any{"state": "disabled"}),
			func(c ctx) bool { return mustUser(c.e, "bob").State == store.StateDisabled },
			[7]int{404, 404, 404, 403, 403, 403, 401}},
		{"delete user of B", "DELETE", fixed("/v1/accounts/globex/users/bob"), nil,
			func(c ctx) bool { return !userExists(c.e, "bob") },
			[7]int{204, 404, 204, 403, 403, 403, 401}},
		{"grant a held role", "PATCH", fixed("/v1/accounts/acme/users/alice"), body(map[string]any{"roles": []string{"read", "write"}}),
			func(c ctx) bool { return len(mustUser(c.e, "alice").Roles) == 2 },
			[7]int{200, 200, 404, 403, 403, 403, 401}},
		{"grant a role not held", "PATCH", fixed("/v1/accounts/acme/users/alice"), body(map[string]any{"roles": []string{"read", "ops"}}),
			func(c ctx) bool { return len(mustUser(c.e, "alice").Roles) == 2 },
			[7]int{200, 403, 404, 403, 403, 403, 401}},
		{"promote to account admin", "PATCH", fixed("/v1/accounts/acme/users/alice"), body(map[string]any{"type": "account_admin"}),
			func(c ctx) bool { return mustUser(c.e, "alice").Type == store.TypeAccountAdmin },
			[7]int{200, 200, 404, 403, 403, 403, 401}},
		{"change own type (account admin)", "PATCH", fixed("/v1/accounts/acme/users/aadmin"), body(map[string]any{"type": "user"}),
			func(c ctx) bool { return mustUser(c.e, "aadmin").Type == store.TypeUser },
			[7]int{200, 403, 404, 403, 403, 403, 401}},
		{"reset another's password", "PATCH", fixed("/v1/accounts/acme/users/alice"), body(map[string]any{"password": "Reset-Passw0rd-long"}),
			func(c ctx) bool {
				ok, _, _ := apiTestHasher.Verify(context.Background(), mustUser(c.e, "alice").PasswordHash, "Reset-Passw0rd-long")
				return ok
			},
			[7]int{200, 200, 404, 403, 403, 403, 401}},
		{"delete the last global admin", "DELETE", fixed("/v1/accounts/admin/users/admin"), nil,
			func(c ctx) bool { return !userExists(c.e, "admin") },
			[7]int{409, 404, 404, 403, 403, 403, 401}},
		{"demote the last global admin", "PATCH", fixed("/v1/accounts/admin/users/admin"), body(map[string]any{"type": "account_admin"}),
			func(c ctx) bool { return mustUser(c.e, "admin").Type != store.TypeAdmin },
			[7]int{409, 404, 404, 403, 403, 403, 401}},

		{"list keys of a user of B", "GET", fixed("/v1/accounts/globex/users/bob/api-keys"), nil, nil,
			[7]int{200, 404, 200, 403, 403, 403, 401}},
		{"create key for a user of B", "POST", fixed("/v1/accounts/globex/users/bob/api-keys"), body(map[string]any{"name": "x"}),
			func(c ctx) bool { return keyCount(c.e, "bob") == 2 },
			[7]int{201, 404, 201, 403, 403, 403, 401}},
		{"create key for user A", "POST", fixed("/v1/accounts/acme/users/alice/api-keys"),
			body(map[string]any{"name": "x"}),
			func(c ctx) bool { return keyCount(c.e, "alice") == 2 },
			[7]int{201, 201, 404, 403, 403, 403, 401}},
		{"get key of B", "GET", func(c ctx) string { return "/v1/accounts/globex/users/bob/api-keys/" + c.fx.keys["bob"] }, nil, nil,
			[7]int{200, 404, 200, 403, 403, 403, 401}},
		{"revoke key of B", "DELETE", func(c ctx) string { return "/v1/accounts/globex/users/bob/api-keys/" + c.fx.keys["bob"] }, nil,
			func(c ctx) bool { return keyRevoked(c.e, c.fx.keys["bob"]) },
			[7]int{200, 404, 200, 403, 403, 403, 401}},
		{"revoke key of B under A's user", "DELETE", func(c ctx) string { return "/v1/accounts/acme/users/alice/api-keys/" + c.fx.keys["bob"] }, nil,
			func(c ctx) bool { return keyRevoked(c.e, c.fx.keys["bob"]) },
			[7]int{404, 404, 404, 403, 403, 403, 401}},
		{"revoke a global admin's key", "DELETE", func(c ctx) string { return "/v1/accounts/admin/users/admin/api-keys/" + c.fx.keys["admin"] }, nil,
			func(c ctx) bool { return keyRevoked(c.e, c.fx.keys["admin"]) },
			[7]int{200, 404, 404, 403, 403, 403, 401}},

		{"search keys", "GET", fixed("/v1/api-keys"), nil, nil,
			[7]int{200, 200, 200, 403, 403, 403, 401}},
		{"search keys of B", "GET", fixed("/v1/api-keys?account=globex"), nil, nil,
			[7]int{200, 404, 200, 403, 403, 403, 401}},
		{"bulk revoke B's key by id", "DELETE", fixed("/v1/api-keys"),
			func(c ctx) any { return map[string]any{"ids": []string{c.fx.keys["bob"]}} },
			func(c ctx) bool { return keyRevoked(c.e, c.fx.keys["bob"]) },
			[7]int{200, -200, 200, 403, 403, 403, 401}},
		{"bulk revoke account B", "DELETE", fixed("/v1/api-keys"), body(map[string]any{"account": "globex"}),
			func(c ctx) bool { return keyRevoked(c.e, c.fx.keys["bob"]) },
			[7]int{200, 404, 200, 403, 403, 403, 401}},
		{"bulk revoke by username of B", "DELETE", fixed("/v1/api-keys"), body(map[string]any{"username": "bob"}),
			func(c ctx) bool { return keyRevoked(c.e, c.fx.keys["bob"]) },
			[7]int{200, -200, 200, 403, 403, 403, 401}},
	}
	// Cells that must change something get a fresh server each; all the
	// others (reads, refusals, bulk requests that only report errors)
	// share one, which they must leave as it was: the effect checks after
	// each cell show they did.
	shared := newAPIEnv(t, apiEnvOptions{})
	sharedFx := shared.seedKeys()
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			for ci, caller := range authzCallers {
				want := row.want[ci]
				status, noEffect := want, false
				if want < 0 {
					status, noEffect = -want, true
				}
				wantEffect := row.effect != nil && status < 300 && !noEffect
				t.Run(caller.name, func(t *testing.T) {
					e, fx := shared, sharedFx
					if wantEffect {
						e = newAPIEnv(t, apiEnvOptions{})
						fx = e.seedKeys()
					} else {
						prev := e.t
						e.t = t
						defer func() { e.t = prev }()
					}
					audits := e.audit.FilterMessage("admin audit").Len()
					c := ctx{e: e, fx: fx, caller: caller.owner, pw: caller.pw}
					auth := ""
					switch {
					case caller.key:
						auth = "Bearer " + fx.values[caller.owner]
					case caller.owner != "":
						auth = basicAuth(caller.owner, caller.pw)
					}
					var b any
					if row.body != nil {
						b = row.body(c)
					}
					r := e.do(row.method, row.path(c), auth, b)
					if r.status != status {
						t.Fatalf("%s %s as %s: status %d, want %d; body %s", row.method, row.path(c), caller.name, r.status, status, r.body)
					}
					if r.status >= 400 && r.code() == "" {
						t.Errorf("error without a code: %s", r.body)
					}
					if row.effect != nil {
						if got := row.effect(c); got != wantEffect {
							t.Errorf("side effect %v, want %v (status %d)", got, wantEffect, r.status)
						}
						if n := e.audit.FilterMessage("admin audit").Len() - audits; n != 1 {
							t.Errorf("%d audit lines for a write, want 1", n)
						}
					}
				})
			}
		})
	}
}

func fixed(p string) func(authzCtx) string { return func(authzCtx) string { return p } }

func body(v any) func(authzCtx) any { return func(authzCtx) any { return v } }

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func mustUser(e *apiEnv, name string) *store.User {
	e.t.Helper()
	u, err := e.st.GetUser(context.Background(), name)
	if err != nil {
		e.t.Fatalf("user %s: %v", name, err)
	}
	return u
}
