package admin

import (
	"context"
	"net/netip"
	"testing"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/principal"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/store"
)

// caller is the in-process Caller for a fixture user, as the web UI builds
// it after a password login.
func (e *apiEnv) caller(username string) Caller {
	e.t.Helper()
	u, err := e.st.GetUser(context.Background(), username)
	mustOK(e.t, err)
	return Caller{Identity: principal.UserIdentity(u, authn.MethodBasic), User: u,
		IP: netip.MustParseAddr("127.0.0.1"), Via: "ui"}
}

// An in-process operation answers as its JSON route does: the same status
// codes and error codes for the same caller and input, and the same audit
// line (plus via=ui).
func TestOpsMatchJSONAPI(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	ctx := context.Background()
	past := "2020-01-01T00:00:00Z"
	tests := []struct {
		name     string
		auth     string
		user     string
		method   string
		path     string
		body     any
		op       func(c Caller) (any, string) // answer, error code ("" ok)
		wantCode string
	}{
		{"own key created", asAlice, "alice", "POST", "/v1/user/api-keys", map[string]any{"name": "k-json"},
			func(c Caller) (any, string) {
				out, err := e.ops.CreateOwnKey(ctx, c, adminapi.CreateKey{Name: "k-op"})
				return out, codeOf(err)
			}, ""},
		{"expiry in the past", asAlice, "alice", "POST", "/v1/user/api-keys", map[string]any{"name": "p", "expires_at": past},
			func(c Caller) (any, string) {
				_, err := e.ops.CreateOwnKey(ctx, c, adminapi.CreateKey{Name: "p", ExpiresAt: &past})
				return nil, codeOf(err)
			}, "invalid"},
		{"role not held", asAlice, "alice", "POST", "/v1/user/api-keys", map[string]any{"name": "r", "roles": []string{"write"}},
			func(c Caller) (any, string) {
				roles := []string{"write"}
				_, err := e.ops.CreateOwnKey(ctx, c, adminapi.CreateKey{Name: "r", Roles: &roles})
				return nil, codeOf(err)
			}, "unknown_role"},
		{"account admin, other account", asAAdmin, "aadmin", "GET", "/v1/accounts/globex/users", nil,
			func(c Caller) (any, string) {
				_, err := e.ops.ListUsers(ctx, c, "globex")
				return nil, codeOf(err)
			}, "not_found"},
		{"account admin creates an account", asAAdmin, "aadmin", "POST", "/v1/accounts", map[string]any{"name": "x"},
			func(c Caller) (any, string) {
				_, err := e.ops.CreateAccount(ctx, c, adminapi.CreateAccount{Name: "x"})
				return nil, codeOf(err)
			}, "forbidden"},
		{"user lists accounts", asAlice, "alice", "GET", "/v1/accounts", nil,
			func(c Caller) (any, string) {
				_, err := e.ops.ListAccounts(ctx, c)
				return nil, codeOf(err)
			}, "forbidden"},
		{"wrong current password", asAlice, "alice", "PUT", "/v1/user/password", map[string]any{"current": "nope-nope-nope", "new": "whatever-Pa55-long"},
			func(c Caller) (any, string) {
				cur, nw := "nope-nope-nope", "whatever-Pa55-long"
				return nil, codeOf(e.ops.ChangePassword(ctx, c, adminapi.ChangePassword{Current: &cur, New: &nw}))
			}, "invalid_current_password"},
		{"admin creates a user", asRoot, store.AdminUsername, "POST", "/v1/accounts/acme/users",
			map[string]any{"username": "carol", "password": "carol-Pa55word-long", "roles": []string{"read"}},
			func(c Caller) (any, string) {
				pw := "dave-Pa55word-long"
				out, err := e.ops.CreateUser(ctx, c, "acme", adminapi.CreateUser{Username: "Dave", Password: &pw, Roles: []string{"read"}})
				if err == nil && out.Username != "dave" {
					t.Errorf("created %q, want the canonical dave", out.Username)
				}
				return out, codeOf(err)
			}, ""},
		{"taken username", asAAdmin, "aadmin", "POST", "/v1/accounts/acme/users",
			map[string]any{"username": "bob", "password": "bob2-Pa55word-long"},
			func(c Caller) (any, string) {
				pw := "bob2-Pa55word-long"
				_, err := e.ops.CreateUser(ctx, c, "acme", adminapi.CreateUser{Username: "bob", Password: &pw})
				return nil, codeOf(err)
			}, "conflict"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.auth, tc.body)
			if r.code() != tc.wantCode {
				t.Fatalf("JSON API: %d %s, want code %q", r.status, r.body, tc.wantCode)
			}
			jsonLines := e.audit.Len()
			out, code := tc.op(e.caller(tc.user))
			if code != tc.wantCode {
				t.Fatalf("operation: code %q, want %q", code, tc.wantCode)
			}
			if tc.wantCode == "" && out == nil {
				t.Fatal("operation: no answer")
			}
			if tc.method == "GET" {
				return
			}
			// Writes: one audit line each, with the same fields but via.
			all := e.audit.All()
			if len(all) != jsonLines+1 {
				t.Fatalf("%d audit lines after the operation, want %d", len(all), jsonLines+1)
			}
			api, op := all[jsonLines-1].ContextMap(), all[jsonLines].ContextMap()
			if op["via"] != "ui" {
				t.Errorf("operation's audit line has via=%v, want ui", op["via"])
			}
			for _, f := range []string{"action", "actor", "actor_account", "result", "status", "client"} {
				if api[f] != op[f] {
					t.Errorf("audit %s: JSON %v, operation %v", f, api[f], op[f])
				}
			}
		})
	}
}

// The key value appears in the creation answer only; the listing,
// revocation and search run the JSON handlers' filters.
func TestOpsKeyLifecycle(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	ctx := context.Background()
	alice := e.caller("alice")
	k, err := e.ops.CreateOwnKey(ctx, alice, adminapi.CreateKey{Name: "ci", Description: "<b>x</b>"})
	if err != nil {
		t.Fatal(err)
	}
	if k.APIKey == "" || k.Encoded == "" {
		t.Fatal("no key value in the creation answer")
	}
	// The key works through the same chain.
	id, aerr := e.chain.Authenticate(ctx, []byte("Bearer "+k.APIKey), netip.MustParseAddr("127.0.0.1"))
	if aerr != nil || id.Username != "alice" {
		t.Fatalf("the created key: %v %v", id, aerr)
	}
	page, err := e.ops.ListOwnKeys(ctx, alice, KeyQuery{})
	if err != nil || len(page.APIKeys) != 1 || page.APIKeys[0].Status != store.KeyActive {
		t.Fatalf("active list: %+v %v", page, err)
	}
	if _, err := e.ops.ListOwnKeys(ctx, alice, KeyQuery{Status: "bogus"}); codeOf(err) != "bad_request" {
		t.Fatalf("bad status: %v", err)
	}
	rk, err := e.ops.RevokeOwnKey(ctx, alice, k.ID)
	if err != nil || rk.Status != store.KeyRevoked {
		t.Fatalf("revoke: %+v %v", rk, err)
	}
	page, _ = e.ops.ListOwnKeys(ctx, alice, KeyQuery{})
	if len(page.APIKeys) != 0 {
		t.Fatalf("revoked key still listed as active: %+v", page)
	}
	page, _ = e.ops.ListOwnKeys(ctx, alice, KeyQuery{Status: "all"})
	if len(page.APIKeys) != 1 {
		t.Fatalf("status=all: %+v", page)
	}
	// Another user's key id is 404 (not theirs), via the same handler.
	if _, err := e.ops.RevokeOwnKey(ctx, e.caller("bob"), k.ID); codeOf(err) != "not_found" {
		t.Fatalf("bob revoking alice's key: %v", err)
	}
	// An account admin revokes by name in their account only.
	res, err := e.ops.BulkRevoke(ctx, e.caller("aadmin"), adminapi.BulkRevoke{Name: "ci", Account: "globex"})
	if codeOf(err) != "not_found" {
		t.Fatalf("bulk revoke in another account: %+v %v", res, err)
	}
	// No caller: refused before any handler.
	if _, err := e.ops.ListOwnKeys(ctx, Caller{}, KeyQuery{}); codeOf(err) != "unauthorized" {
		t.Fatalf("no caller: %v", err)
	}
}

func codeOf(e *httpx.Error) string {
	if e == nil {
		return ""
	}
	return e.Code
}
