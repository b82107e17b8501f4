package e2e

// The admin API and CLI end to end against the built binary, on bolt and on
// a private Redis (issue "Admin API and CLI"; DESIGN.md §5, §6, §8;
// SECURITY.md rows "admin privilege" and "revocation"): every endpoint ×
// every kind of caller, cross-account attempts in path and body with their
// absence of side effects, API-key callers on every write, concurrent
// creates of one key name, expiry rules, bulk revocation, pagination,
// cascade delete, revocation seen by a second instance, and the CLI.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
)

// mxRevocationBound is how soon a second instance must refuse a key revoked
// on the first (DESIGN.md §8: by pub/sub, well before cache.ttl).
const mxRevocationBound = 2 * time.Second

func TestAdminMatrix(t *testing.T) {
	t.Parallel()
	t.Run("bolt", func(t *testing.T) {
		t.Parallel()
		began := time.Now()
		up := startUpstream(t, 0)
		g := startGateway(t, serveOpts{routes: mxRoutes(up.addr), extra: mxExtra})
		started := time.Since(began)
		f := newMxFix(t, g, g)
		t.Logf("gateway started in %v, fixture built in %v", started.Round(time.Millisecond), (time.Since(began) - started).Round(time.Millisecond))
		mxScenario(t, f, nil)
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		began := time.Now()
		r := testredis.Start(t)
		up := startUpstream(t, 0)
		o := serveOpts{routes: mxRoutes(up.addr), extra: mxExtra, store: mxRedisStore(r.Addr())}
		ga := startGateway(t, o)
		gb := startGateway(t, o) // after A: A bootstraps the store
		started := time.Since(began)
		// Writes go to A, read-backs come from B: one store, two instances.
		f := newMxFix(t, ga, gb)
		t.Logf("Redis and 2 gateways started in %v, fixture built in %v", started.Round(time.Millisecond), (time.Since(began) - started).Round(time.Millisecond))
		mxScenario(t, f, gb)
		t.Run("revocation seen by a second instance", func(t *testing.T) { mxTwoInstances(t, f, gb) })
		t.Run("cli", func(t *testing.T) { mxCLI(t, f) })
	})
}

// mxScenario runs everything that does not need a second instance; other,
// when set, is a second gateway on the same store whose proxy must refuse
// what A's API removed.
func mxScenario(t *testing.T, f *mxFix, other *gateway) {
	// A key that expires while the matrix runs, cached on the proxy first
	// (pat's: nothing in the matrix invalidates pat's cache entries).
	short := f.createKey(t, "pat", "short", map[string]any{"expires_in": "4s"})
	shortUntil := time.Now().Add(4 * time.Second)
	for range 2 {
		if st := mxProxy(f.hc, f.g, "/mx/probe", "Bearer "+short.value); st != 200 {
			t.Fatalf("a key with 4 s to live, on the proxy: %d", st)
		}
	}
	t.Run("matrix", func(t *testing.T) { mxMatrix(t, f) })
	t.Run("expiry", func(t *testing.T) {
		mxExpiry(t, f)
		// The cached key stopped at its expiry (cache.ttl is 60 s), and
		// the listings call it expired.
		time.Sleep(time.Until(shortUntil) + 100*time.Millisecond)
		if st := mxProxy(f.hc, f.g, "/mx/probe", "Bearer "+short.value); st != 401 {
			t.Errorf("an expired key (cached before) answers %d on the proxy", st)
		}
		if s := f.keyStatus(t, "pat", short.id); s != "expired" {
			t.Errorf("an expired key's status: %s", s)
		}
		var p mxKeyPage
		f.rbGet(t, "/v1/api-keys?status=expired&username=pat", &p)
		if len(p.APIKeys) != 1 || p.APIKeys[0].ID != short.id {
			t.Errorf("status=expired lists %+v", p.APIKeys)
		}
		f.rbGet(t, "/v1/api-keys?username=pat&name=short", &p)
		if len(p.APIKeys) != 0 {
			t.Errorf("the default (active) listing shows an expired key: %+v", p.APIKeys)
		}
	})
	t.Run("concurrent creates", func(t *testing.T) { mxConcurrentCreates(t, f, other) })
	t.Run("bulk revoke", func(t *testing.T) { mxBulk(t, f) })
	t.Run("pagination", func(t *testing.T) { mxPagination(t, f) })
	t.Run("cascade delete", func(t *testing.T) { mxCascade(t, f, other) })
}

// The callers of the table, in column order.
type mxCaller struct {
	name  string
	owner string // "" anonymous
	key   bool   // authenticates with the owner's seed key
}

var mxCallers = [8]mxCaller{
	{"global_admin", "root", false},
	{"account_admin_A", "aadmin", false},
	{"account_admin_B", "badmin", false},
	{"user_A", "alice", false},
	{"api_key_of_global_admin", "root", true},
	{"api_key_of_account_admin_A", "aadmin", true},
	{"api_key_of_user_A", "alice", true},
	{"anonymous", "", false},
}

// mxCell is one caller × action.
type mxCell struct {
	t      *testing.T
	f      *mxFix
	caller mxCaller
	// ok: the cell must succeed and change something; its setup then
	// makes (or takes from a pool) a target of its own, so the shared
	// fixture stays as it was.
	ok  bool
	n   int
	tgt map[string]string
}

// owner is the caller's user, alice for the anonymous caller.
func (c *mxCell) owner() string {
	if c.caller.owner == "" {
		return "alice"
	}
	return c.caller.owner
}

func (c *mxCell) auth() string {
	switch {
	case c.caller.owner == "":
		return ""
	case c.caller.key:
		return "Bearer " + c.f.keys[c.caller.owner].value
	}
	return admBasic(c.caller.owner, c.f.pw[c.caller.owner])
}

// freshUser creates a user for a cell that must succeed and returns its
// name; otherwise it returns fallback (a fixture user the refused request
// must leave alone).
func (c *mxCell) freshUser(account, typ, fallback string) string {
	if !c.ok {
		return fallback
	}
	name := fmt.Sprintf("tmp%d", c.n)
	c.f.createUser(c.t, name, account, typ, []string{"read"})
	return name
}

// poolUser is freshUser for rows whose changes do not get in each other's
// way (roles, type, password; disable then delete): one user of account
// per pool and caller, created on first use (argon2 is slow).
func (c *mxCell) poolUser(pool, account, fallback string) string {
	if !c.ok {
		return fallback
	}
	key := pool + "/" + c.caller.name
	if name, ok := c.f.pool[key]; ok {
		return name
	}
	name := fmt.Sprintf("pool%d", c.n)
	c.f.createUser(c.t, name, account, "user", []string{"read"})
	c.f.pool[key] = name
	return name
}

func (c *mxCell) freshAccount(fallback string) string {
	if !c.ok {
		return fallback
	}
	name := fmt.Sprintf("acct%d", c.n)
	c.f.client(c.t, c.f.g).want(201, "POST", "/v1/accounts", c.f.root, map[string]any{"name": name})
	return name
}

// freshKey creates a key of owner (always: keys are cheap).
func (c *mxCell) freshKey(owner, name string) string {
	return c.f.createKey(c.t, owner, name, nil).id
}

// mxRow is one action of the table. want holds the status of each caller
// (mxCallers order); a negative status means that status with no side
// effect (a bulk request reporting errors).
type mxRow struct {
	name   string
	method string
	path   func(c *mxCell) string
	body   func(c *mxCell) any
	setup  func(c *mxCell)
	// effect reports whether the write's side effect happened, read back
	// as the bootstrap admin (through the second instance with Redis);
	// nil for reads.
	effect func(c *mxCell) bool
	// check inspects a successful response.
	check func(c *mxCell, body []byte)
	want  [8]int
}

func mxFixed(p string) func(*mxCell) string { return func(*mxCell) string { return p } }
func mxBody(v any) func(*mxCell) any        { return func(*mxCell) any { return v } }
func mxTgt(format, key string) func(*mxCell) string {
	return func(c *mxCell) string { return fmt.Sprintf(format, c.tgt[key]) }
}

// Statuses by column: G AA BA UA KG KAA KUA anon.
var (
	mxAnyone    = [8]int{200, 200, 200, 200, 200, 200, 200, 200}
	mxAnyCaller = [8]int{200, 200, 200, 200, 200, 200, 200, 401}
	// A write only a password caller of any type may make.
	mxSelfWrite = func(s int) [8]int { return [8]int{s, s, s, s, 403, 403, 403, 401} }
	// The columns after the admins' on every admin endpoint: the user of A
	// and the three API keys 403, the anonymous caller 401.
	mxRest = [5]int{403, 403, 403, 403, 401}
)

// mxW builds a want row from the three admin columns and mxRest.
func mxW(g, aa, ba int) [8]int {
	return [8]int{g, aa, ba, mxRest[0], mxRest[1], mxRest[2], mxRest[3], mxRest[4]}
}

func mxRows() []mxRow {
	userState := func(account, key string) func(c *mxCell) bool {
		return func(c *mxCell) bool {
			u := c.f.user(c.t, account, c.tgt[key])
			return u != nil && u.State == "disabled"
		}
	}
	userGone := func(account, key string) func(c *mxCell) bool {
		return func(c *mxCell) bool { return c.f.user(c.t, account, c.tgt[key]) == nil }
	}
	keyRevoked := func(owner, key string) func(c *mxCell) bool {
		return func(c *mxCell) bool { return c.f.keyStatus(c.t, owner, c.tgt[key]) == "revoked" }
	}
	hasKey := func(owner string) func(c *mxCell) bool {
		return func(c *mxCell) bool { return len(c.f.keysNamed(c.t, owner, c.tgt["name"])) > 0 }
	}
	keyName := func(prefix string) func(c *mxCell) {
		return func(c *mxCell) { c.tgt["name"] = fmt.Sprintf("%s%d", prefix, c.n) }
	}
	named := func(c *mxCell) any { return map[string]any{"name": c.tgt["name"]} }
	newUser := func(account, typ string, roles ...string) (func(c *mxCell), func(c *mxCell) any, func(c *mxCell) bool) {
		setup := func(c *mxCell) { c.tgt["u"] = fmt.Sprintf("new%d", c.n) }
		body := func(c *mxCell) any {
			return map[string]any{"username": c.tgt["u"], "password": "New-Pa55word-matrix", "type": typ, "roles": roles}
		}
		return setup, body, func(c *mxCell) bool { return c.f.user(c.t, account, c.tgt["u"]) != nil }
	}
	// keysOf checks every key of a 200 listing belongs to account
	// (account admins are confined to theirs) and shows no value or hash.
	keysOf := func(c *mxCell, body []byte) {
		var p mxKeyPage
		if err := json.Unmarshal(body, &p); err != nil {
			c.t.Fatalf("listing: %v %s", err, body)
		}
		if bytes.Contains(body, []byte("kg_")) || bytes.Contains(bytes.ToLower(body), []byte(`hash"`)) {
			c.t.Errorf("a listing shows a key value or a hash: %s", body)
		}
		scope := ""
		switch c.caller.owner {
		case "aadmin", "alice":
			scope = "acme"
		case "badmin":
			scope = "globex"
		}
		for _, k := range p.APIKeys {
			if scope != "" && k.Account != scope {
				c.t.Errorf("%s sees key %s of account %s", c.caller.name, k.ID, k.Account)
			}
		}
	}
	bulkShape := func(c *mxCell, body []byte) {
		var b struct {
			Invalidated           []string          `json:"invalidated"`
			PreviouslyInvalidated []string          `json:"previously_invalidated"`
			ErrorCount            int               `json:"error_count"`
			Errors                []json.RawMessage `json:"errors"`
		}
		if err := json.Unmarshal(body, &b); err != nil || b.Invalidated == nil || b.PreviouslyInvalidated == nil || b.Errors == nil {
			c.t.Fatalf("bulk answer: %v %s", err, body)
		}
		if b.ErrorCount != len(b.Errors) {
			c.t.Errorf("error_count %d, %d errors", b.ErrorCount, len(b.Errors))
		}
		if c.ok && (len(b.Invalidated) != 1 || b.ErrorCount != 0) {
			c.t.Errorf("bulk: want one key invalidated: %s", body)
		}
		if !c.ok && len(b.Invalidated) != 0 {
			c.t.Errorf("bulk out of scope invalidated keys: %s", body)
		}
	}
	createUserA, bodyUserA, effUserA := newUser("acme", "user", "read")
	createUserB, bodyUserB, effUserB := newUser("globex", "user", "read")
	createAdmin, bodyAdmin, effAdmin := newUser("admin", "admin")
	createAA, bodyAA, effAA := newUser("acme", "account_admin", "read")
	createOps, bodyOps, effOps := newUser("acme", "user", "ops")
	createAdminInA, bodyAdminInA, effAdminInA := newUser("acme", "admin")

	return []mxRow{
		// Anyone.
		{name: "healthz", method: "GET", path: mxFixed("/healthz"), want: mxAnyone},
		{name: "readyz", method: "GET", path: mxFixed("/readyz"), want: mxAnyone},
		{name: "metrics", method: "GET", path: mxFixed("/metrics"), want: mxAnyone},
		{name: "openapi", method: "GET", path: mxFixed("/openapi.json"), want: mxAnyone},

		// /v1/user…
		{name: "get self", method: "GET", path: mxFixed("/v1/user"), want: mxAnyCaller,
			check: func(c *mxCell, body []byte) {
				var id struct{ Username, Method string }
				_ = json.Unmarshal(body, &id)
				wantMethod := "basic"
				if c.caller.key {
					wantMethod = "api_key"
				}
				if id.Username != c.caller.owner || id.Method != wantMethod {
					c.t.Errorf("self: %s", body)
				}
			}},
		{name: "list own keys", method: "GET", path: mxFixed("/v1/user/api-keys"), want: mxAnyCaller,
			check: func(c *mxCell, body []byte) {
				var p mxKeyPage
				_ = json.Unmarshal(body, &p)
				for _, k := range p.APIKeys {
					if k.Username != c.caller.owner {
						c.t.Errorf("own keys of %s list %s's key", c.caller.owner, k.Username)
					}
				}
				keysOf(c, body)
			}},
		{name: "create own key", method: "POST", path: mxFixed("/v1/user/api-keys"),
			setup: keyName("own"), body: named,
			effect: func(c *mxCell) bool { return len(c.f.keysNamed(c.t, c.owner(), c.tgt["name"])) > 0 },
			want:   mxSelfWrite(201)},
		{name: "get own key", method: "GET",
			path: func(c *mxCell) string { return "/v1/user/api-keys/" + c.f.keys[c.owner()].id }, want: mxAnyCaller},
		{name: "get B's key as own", method: "GET",
			path: func(c *mxCell) string { return "/v1/user/api-keys/" + c.f.keys["bob"].id },
			want: [8]int{404, 404, 404, 404, 404, 404, 404, 401}},
		{name: "revoke B's key as own", method: "DELETE",
			setup:  func(c *mxCell) { c.tgt["id"] = c.f.keys["bob"].id },
			path:   mxTgt("/v1/user/api-keys/%s", "id"),
			effect: keyRevoked("bob", "id"),
			want:   mxSelfWrite(404)},

		// Accounts.
		{name: "list accounts", method: "GET", path: mxFixed("/v1/accounts"), want: mxW(200, 403, 403),
			check: func(c *mxCell, body []byte) {
				if !bytes.Contains(body, []byte(`"acme"`)) || !bytes.Contains(body, []byte(`"globex"`)) {
					c.t.Errorf("accounts: %s", body)
				}
			}},
		{name: "create account", method: "POST", path: mxFixed("/v1/accounts"),
			setup: func(c *mxCell) { c.tgt["a"] = fmt.Sprintf("made%d", c.n) },
			body:  func(c *mxCell) any { return map[string]any{"name": c.tgt["a"]} },
			effect: func(c *mxCell) bool {
				return c.f.accountState(c.t, c.tgt["a"]) != "gone"
			},
			want: mxW(201, 403, 403)},
		{name: "get account A", method: "GET", path: mxFixed("/v1/accounts/acme"), want: mxW(200, 200, 404)},
		{name: "get account B", method: "GET", path: mxFixed("/v1/accounts/globex"), want: mxW(200, 404, 200)},
		{name: "get a missing account", method: "GET", path: mxFixed("/v1/accounts/nosuch"), want: mxW(404, 404, 404)},
		{name: "disable account A", method: "PATCH",
			setup: func(c *mxCell) { c.tgt["a"] = c.freshAccount("acme") },
			path:  mxTgt("/v1/accounts/%s", "a"), body: mxBody(map[string]any{"state": "disabled"}),
			effect: func(c *mxCell) bool { return c.f.accountState(c.t, c.tgt["a"]) == "disabled" },
			want:   mxW(200, 403, 404)},
		{name: "delete account B", method: "DELETE",
			setup:  func(c *mxCell) { c.tgt["a"] = c.freshAccount("globex") },
			path:   mxTgt("/v1/accounts/%s", "a"),
			effect: func(c *mxCell) bool { return c.f.accountState(c.t, c.tgt["a"]) == "gone" },
			want:   mxW(204, 404, 403)},
		{name: "disable account admin", method: "PATCH", path: mxFixed("/v1/accounts/admin"),
			body:   mxBody(map[string]any{"state": "disabled"}),
			effect: func(c *mxCell) bool { return c.f.accountState(c.t, "admin") != "enabled" },
			want:   mxW(403, 404, 404)},
		{name: "delete account admin", method: "DELETE", path: mxFixed("/v1/accounts/admin"),
			effect: func(c *mxCell) bool { return c.f.accountState(c.t, "admin") == "gone" },
			want:   mxW(403, 404, 404)},

		// Users.
		{name: "list users of A", method: "GET", path: mxFixed("/v1/accounts/acme/users"), want: mxW(200, 200, 404),
			check: func(c *mxCell, body []byte) {
				if bytes.Contains(body, []byte(`"globex"`)) || !bytes.Contains(body, []byte(`"alice"`)) {
					c.t.Errorf("users of acme: %s", body)
				}
			}},
		{name: "list users of B", method: "GET", path: mxFixed("/v1/accounts/globex/users"), want: mxW(200, 404, 200)},
		{name: "create user in A", method: "POST", path: mxFixed("/v1/accounts/acme/users"),
			setup: createUserA, body: bodyUserA, effect: effUserA, want: mxW(201, 201, 404)},
		{name: "create user in B", method: "POST", path: mxFixed("/v1/accounts/globex/users"),
			setup: createUserB, body: bodyUserB, effect: effUserB, want: mxW(201, 404, 201)},
		{name: "create account admin in A", method: "POST", path: mxFixed("/v1/accounts/acme/users"),
			setup: createAA, body: bodyAA, effect: effAA, want: mxW(201, 201, 404)},
		{name: "create global admin", method: "POST", path: mxFixed("/v1/accounts/admin/users"),
			setup: createAdmin, body: bodyAdmin, effect: effAdmin, want: mxW(201, 404, 404)},
		{name: "create user with a role the caller lacks", method: "POST", path: mxFixed("/v1/accounts/acme/users"),
			setup: createOps, body: bodyOps, effect: effOps, want: mxW(201, 403, 404)},
		{name: "create a global admin in A", method: "POST", path: mxFixed("/v1/accounts/acme/users"),
			setup: createAdminInA, body: bodyAdminInA, effect: effAdminInA, want: mxW(422, 403, 404)},
		{name: "get user of B", method: "GET", path: mxFixed("/v1/accounts/globex/users/bob"), want: mxW(200, 404, 200)},
		{name: "get user of B under A's path", method: "GET", path: mxFixed("/v1/accounts/acme/users/bob"), want: mxW(404, 404, 404)},
		{name: "get a global admin", method: "GET", path: mxFixed("/v1/accounts/admin/users/admin"), want: mxW(200, 404, 404)},
		{name: "disable user of B", method: "PATCH",
			setup: func(c *mxCell) { c.tgt["u"] = c.poolUser("b", "globex", "bob") },
			path:  mxTgt("/v1/accounts/globex/users/%s", "u"), body: mxBody(map[string]any{"state": "disabled"}),
			effect: userState("globex", "u"), want: mxW(200, 404, 200)},
		{name: "disable user of B under A's path", method: "PATCH",
			setup: func(c *mxCell) { c.tgt["u"] = "bob" },
			path:  mxFixed("/v1/accounts/acme/users/bob"), body: mxBody(map[string]any{"state": "disabled"}),
			effect: userState("globex", "u"), want: mxW(404, 404, 404)},
		{name: "delete user of B", method: "DELETE",
			setup:  func(c *mxCell) { c.tgt["u"] = c.poolUser("b", "globex", "bob") },
			path:   mxTgt("/v1/accounts/globex/users/%s", "u"),
			effect: userGone("globex", "u"), want: mxW(204, 404, 204)},
		{name: "delete user of B under A's path", method: "DELETE",
			setup:  func(c *mxCell) { c.tgt["u"] = "bob" },
			path:   mxFixed("/v1/accounts/acme/users/bob"),
			effect: userGone("globex", "u"), want: mxW(404, 404, 404)},
		{name: "grant a held role", method: "PATCH",
			setup: func(c *mxCell) { c.tgt["u"] = c.poolUser("a", "acme", "alice") },
			path:  mxTgt("/v1/accounts/acme/users/%s", "u"), body: mxBody(map[string]any{"roles": []string{"read", "write"}}),
			effect: func(c *mxCell) bool { return slices.Contains(c.f.user(c.t, "acme", c.tgt["u"]).Roles, "write") },
			want:   mxW(200, 200, 404)},
		{name: "grant a role not held", method: "PATCH",
			setup: func(c *mxCell) { c.tgt["u"] = c.poolUser("a", "acme", "alice") },
			path:  mxTgt("/v1/accounts/acme/users/%s", "u"), body: mxBody(map[string]any{"roles": []string{"read", "ops"}}),
			effect: func(c *mxCell) bool { return slices.Contains(c.f.user(c.t, "acme", c.tgt["u"]).Roles, "ops") },
			want:   mxW(200, 403, 404)},
		{name: "promote to account admin", method: "PATCH",
			setup: func(c *mxCell) { c.tgt["u"] = c.poolUser("a", "acme", "alice") },
			path:  mxTgt("/v1/accounts/acme/users/%s", "u"), body: mxBody(map[string]any{"type": "account_admin"}),
			effect: func(c *mxCell) bool { return c.f.user(c.t, "acme", c.tgt["u"]).Type == "account_admin" },
			want:   mxW(200, 200, 404)},
		{name: "promote a user of A to global admin", method: "PATCH",
			setup: func(c *mxCell) { c.tgt["u"] = "alice" },
			path:  mxFixed("/v1/accounts/acme/users/alice"), body: mxBody(map[string]any{"type": "admin"}),
			effect: func(c *mxCell) bool { return c.f.user(c.t, "acme", "alice").Type == "admin" },
			want:   mxW(422, 403, 404)},
		{name: "demote account admin of A (own type for A's admin)", method: "PATCH",
			setup: func(c *mxCell) {
				c.tgt["u"] = c.poolUser("a", "acme", "aadmin")
				if c.ok {
					c.f.client(c.t, c.f.g).want(200, "PATCH", "/v1/accounts/acme/users/"+c.tgt["u"], c.f.root, map[string]any{"type": "account_admin"})
				}
			},
			path: mxTgt("/v1/accounts/acme/users/%s", "u"), body: mxBody(map[string]any{"type": "user"}),
			effect: func(c *mxCell) bool { return c.f.user(c.t, "acme", c.tgt["u"]).Type == "user" },
			want:   mxW(200, 403, 404)},
		{name: "reset a user's password", method: "PATCH",
			setup: func(c *mxCell) { c.tgt["u"] = c.poolUser("a", "acme", "alice") },
			path:  mxTgt("/v1/accounts/acme/users/%s", "u"),
			body:  func(c *mxCell) any { return map[string]any{"password": fmt.Sprintf("Reset-Pa55word-%d", c.n)} },
			effect: func(c *mxCell) bool {
				if c.ok {
					return c.f.authOK(c.t, c.tgt["u"], fmt.Sprintf("Reset-Pa55word-%d", c.n))
				}
				return !c.f.authOK(c.t, "alice", c.f.pw["alice"]) // cached: no argon2
			},
			want: mxW(200, 200, 404)},
		{name: "reset the password of a user with a role the caller lacks", method: "PATCH",
			setup: func(c *mxCell) {
				c.tgt["u"] = c.poolUser("a", "acme", "olga")
				if c.ok {
					c.f.client(c.t, c.f.g).want(200, "PATCH", "/v1/accounts/acme/users/"+c.tgt["u"], c.f.root, map[string]any{"roles": []string{"ops"}})
				}
			},
			path: mxTgt("/v1/accounts/acme/users/%s", "u"),
			body: func(c *mxCell) any { return map[string]any{"password": fmt.Sprintf("Reset-Pa55word-%d", c.n)} },
			effect: func(c *mxCell) bool {
				if c.ok {
					return c.f.authOK(c.t, c.tgt["u"], fmt.Sprintf("Reset-Pa55word-%d", c.n))
				}
				// olga never authenticated: her old password is checked
				// once, at the end of the table (argon2 is slow).
				return false
			},
			want: mxW(200, 403, 404)},
		{name: "delete a global admin", method: "DELETE",
			setup:  func(c *mxCell) { c.tgt["u"] = c.freshUser("admin", "admin", "admin") },
			path:   mxTgt("/v1/accounts/admin/users/%s", "u"),
			effect: userGone("admin", "u"), want: mxW(204, 404, 404)},

		// A user's keys.
		{name: "list keys of a user of A", method: "GET", path: mxFixed("/v1/accounts/acme/users/alice/api-keys"),
			want: mxW(200, 200, 404), check: keysOf},
		{name: "list keys of a user of B", method: "GET", path: mxFixed("/v1/accounts/globex/users/bob/api-keys"),
			want: mxW(200, 404, 200), check: keysOf},
		{name: "create key for a user of A", method: "POST", path: mxFixed("/v1/accounts/acme/users/alice/api-keys"),
			setup: keyName("x"), body: named, effect: hasKey("alice"), want: mxW(201, 201, 404)},
		{name: "create key for a user of B", method: "POST", path: mxFixed("/v1/accounts/globex/users/bob/api-keys"),
			setup: keyName("x"), body: named, effect: hasKey("bob"), want: mxW(201, 404, 201)},
		{name: "create key for a global admin", method: "POST", path: mxFixed("/v1/accounts/admin/users/admin/api-keys"),
			setup: keyName("x"), body: named,
			effect: func(c *mxCell) bool { return len(c.f.keysNamed(c.t, "admin", c.tgt["name"])) > 0 },
			want:   mxW(201, 404, 404)},
		{name: "get key of B", method: "GET",
			path: func(c *mxCell) string { return "/v1/accounts/globex/users/bob/api-keys/" + c.f.keys["bob"].id },
			want: mxW(200, 404, 200)},
		{name: "get key of B under A's user", method: "GET",
			path: func(c *mxCell) string { return "/v1/accounts/acme/users/alice/api-keys/" + c.f.keys["bob"].id },
			want: mxW(404, 404, 404)},
		{name: "create key with a role the caller lacks", method: "POST", path: mxFixed("/v1/accounts/acme/users/olga/api-keys"),
			setup: keyName("x"), body: named, effect: hasKey("olga"), want: mxW(201, 403, 404)},
		// (Olga's, not alice's: a revocation drops every cached entry of
		// the owner, and alice's password would cost argon2 again.)
		{name: "revoke key of a user of A", method: "DELETE",
			setup:  func(c *mxCell) { c.tgt["id"] = c.freshKey("olga", fmt.Sprintf("r%d", c.n)) },
			path:   mxTgt("/v1/accounts/acme/users/olga/api-keys/%s", "id"),
			effect: keyRevoked("olga", "id"), want: mxW(200, 200, 404)},
		{name: "revoke key of a user of B", method: "DELETE",
			setup:  func(c *mxCell) { c.tgt["id"] = c.freshKey("bob", fmt.Sprintf("r%d", c.n)) },
			path:   mxTgt("/v1/accounts/globex/users/bob/api-keys/%s", "id"),
			effect: keyRevoked("bob", "id"), want: mxW(200, 404, 200)},
		{name: "revoke key of B under A's user", method: "DELETE",
			setup:  func(c *mxCell) { c.tgt["id"] = c.freshKey("bob", fmt.Sprintf("r%d", c.n)) },
			path:   mxTgt("/v1/accounts/acme/users/alice/api-keys/%s", "id"),
			effect: keyRevoked("bob", "id"), want: mxW(404, 404, 404)},
		{name: "revoke a global admin's key", method: "DELETE",
			setup:  func(c *mxCell) { c.tgt["id"] = c.freshKey("root", fmt.Sprintf("r%d", c.n)) },
			path:   mxTgt("/v1/accounts/admin/users/root/api-keys/%s", "id"),
			effect: keyRevoked("root", "id"), want: mxW(200, 404, 404)},

		// Search and bulk revocation.
		{name: "search keys", method: "GET", path: mxFixed("/v1/api-keys?status=all"), want: mxW(200, 200, 200), check: keysOf},
		{name: "search keys of B", method: "GET", path: mxFixed("/v1/api-keys?account=globex"), want: mxW(200, 404, 200), check: keysOf},
		{name: "search keys by B's username", method: "GET", path: mxFixed("/v1/api-keys?username=bob"), want: mxW(200, 200, 200),
			check: func(c *mxCell, body []byte) {
				keysOf(c, body)
				var p mxKeyPage
				_ = json.Unmarshal(body, &p)
				if c.caller.owner == "aadmin" && len(p.APIKeys) != 0 {
					c.t.Errorf("account admin of A finds B's keys: %s", body)
				}
				if c.caller.owner != "aadmin" && len(p.APIKeys) == 0 {
					c.t.Errorf("no keys of bob: %s", body)
				}
			}},
		{name: "bulk revoke B's key by id", method: "DELETE", path: mxFixed("/v1/api-keys"),
			setup:  func(c *mxCell) { c.tgt["id"] = c.freshKey("bob", fmt.Sprintf("b%d", c.n)) },
			body:   func(c *mxCell) any { return map[string]any{"ids": []string{c.tgt["id"]}} },
			effect: keyRevoked("bob", "id"), check: func(c *mxCell, body []byte) {
				bulkShape(c, body)
				if c.caller.owner == "aadmin" && !bytes.Contains(body, []byte(`"code":"not_found"`)) {
					c.t.Errorf("out-of-scope id not reported not_found: %s", body)
				}
			},
			want: mxW(200, -200, 200)},
		{name: "bulk revoke naming account B", method: "DELETE", path: mxFixed("/v1/api-keys"),
			setup: func(c *mxCell) {
				c.tgt["name"] = fmt.Sprintf("bulk%d", c.n)
				c.tgt["id"] = c.freshKey("bob", c.tgt["name"])
			},
			body:   func(c *mxCell) any { return map[string]any{"account": "globex", "name": c.tgt["name"]} },
			effect: keyRevoked("bob", "id"), check: bulkShape,
			want: mxW(200, 404, 200)},
		{name: "bulk revoke naming B's user", method: "DELETE", path: mxFixed("/v1/api-keys"),
			setup: func(c *mxCell) {
				c.tgt["name"] = fmt.Sprintf("bulk%d", c.n)
				c.tgt["id"] = c.freshKey("bob", c.tgt["name"])
			},
			body:   func(c *mxCell) any { return map[string]any{"username": "bob", "name": c.tgt["name"]} },
			effect: keyRevoked("bob", "id"), check: bulkShape,
			want: mxW(200, -200, 200)},
		{name: "bulk revoke a global admin's key", method: "DELETE", path: mxFixed("/v1/api-keys"),
			setup:  func(c *mxCell) { c.tgt["id"] = c.freshKey("root", fmt.Sprintf("b%d", c.n)) },
			body:   func(c *mxCell) any { return map[string]any{"ids": []string{c.tgt["id"]}} },
			effect: keyRevoked("root", "id"), check: bulkShape,
			want: mxW(200, -200, -200)},

		// Near the end: it changes the callers' passwords (the fixture
		// follows), which costs argon2 once per caller.
		{name: "change own password", method: "PUT", path: mxFixed("/v1/user/password"),
			setup: func(c *mxCell) { c.tgt["new"] = fmt.Sprintf("Changed-Pa55word-%d", c.n) },
			body: func(c *mxCell) any {
				return map[string]any{"current": c.f.pw[c.owner()], "new": c.tgt["new"]}
			},
			effect: func(c *mxCell) bool {
				if c.ok {
					if c.f.authOK(c.t, c.owner(), c.tgt["new"]) {
						c.f.pw[c.owner()] = c.tgt["new"]
						return true
					}
					return false
				}
				return !c.f.authOK(c.t, c.owner(), c.f.pw[c.owner()])
			},
			want: mxSelfWrite(204)},
		// Last: revoking a key drops every cached entry of its owner, so
		// the callers' passwords would cost argon2 again in later rows.
		{name: "revoke own key", method: "DELETE",
			setup: func(c *mxCell) {
				if c.ok {
					c.tgt["id"] = c.freshKey(c.owner(), fmt.Sprintf("mine%d", c.n))
				} else {
					c.tgt["id"] = c.f.keys[c.owner()].id // the key it authenticates with
				}
			},
			path:   mxTgt("/v1/user/api-keys/%s", "id"),
			effect: func(c *mxCell) bool { return c.f.keyStatus(c.t, c.owner(), c.tgt["id"]) == "revoked" },
			want:   mxSelfWrite(200)},
	}
}

// mxMatrix runs every caller against every action: the status, then (for
// writes) the side effect read back as the bootstrap admin, and exactly one
// audit line.
func mxMatrix(t *testing.T, f *mxFix) {
	rows := mxRows()
	began := time.Now()
	cells := 0
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			for ci, caller := range mxCallers {
				want := row.want[ci]
				if want == 0 {
					continue
				}
				status, noEffect := want, false
				if want < 0 {
					status, noEffect = -want, true
				}
				wantEffect := row.effect != nil && status < 300 && !noEffect
				cells++
				t.Run(caller.name, func(t *testing.T) {
					c := &mxCell{t: t, f: f, caller: caller, ok: wantEffect, n: f.next(), tgt: map[string]string{}}
					if row.setup != nil {
						row.setup(c)
					}
					var body any
					if row.body != nil {
						body = row.body(c)
					}
					path := row.path(c)
					logMark := len(f.g.stderr.String())
					got, _, b := f.client(t, f.g).do(row.method, path, c.auth(), body)
					if got != status {
						t.Fatalf("%s %s as %s: status %d, want %d; body %s", row.method, path, caller.name, got, status, b)
					}
					if got >= 400 && errorCode(b) == "" {
						t.Errorf("error without a code: %s", b)
					}
					if got < 300 && row.check != nil {
						row.check(c, b)
					}
					if row.effect == nil {
						return
					}
					if eff := row.effect(c); eff != wantEffect {
						t.Errorf("%s %s as %s (status %d): side effect %v, want %v", row.method, path, caller.name, got, eff, wantEffect)
					}
					// One audit line per write, whatever the outcome.
					n := 0
					for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
						n = mxAuditLines(f.g.stderr.String()[logMark:])
						if n >= 1 || time.Now().After(deadline) {
							break
						}
					}
					if n != 1 {
						t.Errorf("%d audit lines for %s %s, want 1", n, row.method, path)
					}
				})
			}
		})
	}
	t.Logf("%d rows × %d callers: %d cells in %v", len(rows), len(mxCallers), cells, time.Since(began).Round(time.Millisecond))
	// The refused password resets left olga's password alone.
	if !f.authOK(t, "olga", f.pw["olga"]) {
		t.Error("olga's password was changed by a refused reset")
	}
	// The log never holds a password.
	logs := mxLogs(f.g)
	for name, pw := range f.pw {
		if strings.Contains(logs, pw) {
			t.Errorf("the log contains %s's password", name)
		}
	}
}

// mxExpiry: expires_at in the past or beyond api_keys.max_lifetime is 422
// (and creates nothing); expires_in works; no expiry means the cap.
func mxExpiry(t *testing.T, f *mxFix) {
	a := f.client(t, f.g)
	path := f.userPath("alice") + "/api-keys"
	now := time.Now().UTC()
	for _, c := range []struct {
		name string
		body map[string]any
	}{
		{"past", map[string]any{"expires_at": now.Add(-time.Minute).Format(time.RFC3339)}},
		{"beyond max_lifetime (at)", map[string]any{"expires_at": now.Add(mxMaxLifetime + time.Hour).Format(time.RFC3339)}},
		{"beyond max_lifetime (in)", map[string]any{"expires_in": "721h"}},
		{"negative expires_in", map[string]any{"expires_in": "-1h"}},
		{"zero expires_in", map[string]any{"expires_in": "0s"}},
		{"garbage expires_in", map[string]any{"expires_in": "soon"}},
		{"garbage expires_at", map[string]any{"expires_at": "tomorrow"}},
		{"both", map[string]any{"expires_at": now.Add(time.Hour).Format(time.RFC3339), "expires_in": "1h"}},
	} {
		c.body["name"] = "exp-bad"
		b := a.want(422, "POST", path, f.root, c.body)
		if errorCode(b) == "" {
			t.Errorf("%s: no error code: %s", c.name, b)
		}
	}
	if ks := f.keysNamed(t, "alice", "exp-bad"); len(ks) != 0 {
		t.Errorf("a refused expiry created keys: %+v", ks)
	}
	expiresAt := func(b []byte) time.Time {
		var k struct {
			ExpiresAt *time.Time `json:"expires_at"`
		}
		if err := json.Unmarshal(b, &k); err != nil || k.ExpiresAt == nil {
			t.Fatalf("no expires_at: %v %s", err, b)
		}
		return *k.ExpiresAt
	}
	near := func(what string, got, want time.Time) {
		if d := got.Sub(want); d < -5*time.Second || d > 5*time.Second {
			t.Errorf("%s: expires_at %v, want about %v", what, got, want)
		}
	}
	before := time.Now()
	near("expires_in 24h", expiresAt(a.want(201, "POST", path, f.root, map[string]any{"name": "exp-in", "expires_in": "24h"})), before.Add(24*time.Hour))
	near("expires_in at the cap", expiresAt(a.want(201, "POST", path, f.root, map[string]any{"name": "exp-cap", "expires_in": "719h"})), before.Add(719*time.Hour))
	at := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	if got := expiresAt(a.want(201, "POST", path, f.root, map[string]any{"name": "exp-at", "expires_at": at.Format(time.RFC3339)})); !got.Equal(at) {
		t.Errorf("expires_at %v, want %v", got, at)
	}
	near("default (max_lifetime)", expiresAt(a.want(201, "POST", path, f.root, map[string]any{"name": "exp-default"})), time.Now().Add(mxMaxLifetime))
	// The listing reports them active.
	for _, name := range []string{"exp-in", "exp-cap", "exp-at", "exp-default"} {
		ks := f.keysNamed(t, "alice", name)
		if len(ks) != 1 || ks[0].Status != "active" || ks[0].ExpiresAt == nil {
			t.Errorf("%s: %+v", name, ks)
		}
	}
}

// mxConcurrentCreates: 10 concurrent creates of one key name (split between
// the two instances when there are two) give exactly one 201 and nine 409,
// and one key.
func mxConcurrentCreates(t *testing.T, f *mxFix, other *gateway) {
	const n = 10
	bases := []string{"http://" + f.g.admin}
	if other != nil {
		bases = append(bases, "http://"+other.admin)
	}
	path := f.userPath("alice") + "/api-keys"
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts = map[int]int{}
		errs   []error
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			status, b, err := mxSend(f.hc, bases[i%len(bases)], "POST", path, f.root, map[string]any{"name": "race"})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			counts[status]++
			if status != 201 && status != 409 {
				errs = append(errs, fmt.Errorf("status %d: %s", status, b))
			}
			if status == 409 && errorCode(b) != "conflict" {
				errs = append(errs, fmt.Errorf("409 with code %q", errorCode(b)))
			}
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if counts[201] != 1 || counts[409] != n-1 {
		t.Errorf("concurrent creates of one name: %v, want one 201 and %d 409", counts, n-1)
	}
	if ks := f.keysNamed(t, "alice", "race"); len(ks) != 1 {
		t.Errorf("%d keys named race, want 1: %+v", len(ks), ks)
	}
}

// mxBulk: the answer's shape, ids already revoked, unknown and malformed,
// duplicates; a filter revokes every match and only within the caller's
// account.
func mxBulk(t *testing.T, f *mxFix) {
	a := f.client(t, f.g)
	type bulk struct {
		Invalidated           []string `json:"invalidated"`
		PreviouslyInvalidated []string `json:"previously_invalidated"`
		ErrorCount            int      `json:"error_count"`
		Errors                []struct {
			ID, Code, Message string
		} `json:"errors"`
	}
	decode := func(b []byte) bulk {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil {
			t.Fatalf("bulk answer: %v %s", err, b)
		}
		var keys []string
		for k := range raw {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"error_count", "errors", "invalidated", "previously_invalidated"}) {
			t.Errorf("bulk answer fields %v: %s", keys, b)
		}
		for _, k := range []string{"errors", "invalidated", "previously_invalidated"} {
			if string(raw[k]) == "null" {
				t.Errorf("%s is null, want []: %s", k, b)
			}
		}
		var out bulk
		_ = json.Unmarshal(b, &out)
		return out
	}
	k1 := f.createKey(t, "bob", "shape1", nil).id
	k2 := f.createKey(t, "bob", "shape2", nil).id
	a.want(200, "DELETE", f.userPath("bob")+"/api-keys/"+k2, f.root, nil)
	const unknown = "AAAAAAAAAAAAAAAAAAAAAA"
	res := decode(a.want(200, "DELETE", "/v1/api-keys", f.root, map[string]any{"ids": []string{k1, k2, unknown, "not/an-id", k1}}))
	if !slices.Equal(res.Invalidated, []string{k1}) || !slices.Equal(res.PreviouslyInvalidated, []string{k2}) || res.ErrorCount != 2 || len(res.Errors) != 2 {
		t.Errorf("bulk by ids: %+v", res)
	}
	for _, e := range res.Errors {
		if e.Code != "not_found" || e.ID == "" || e.Message == "" {
			t.Errorf("bulk error entry %+v", e)
		}
	}
	if s := f.keyStatus(t, "bob", k1); s != "revoked" {
		t.Errorf("k1 %s after bulk revoke", s)
	}
	// Again: everything previously invalidated.
	res = decode(a.want(200, "DELETE", "/v1/api-keys", f.root, map[string]any{"ids": []string{k1, k2}}))
	if len(res.Invalidated) != 0 || len(res.PreviouslyInvalidated) != 2 || res.ErrorCount != 0 {
		t.Errorf("bulk again: %+v", res)
	}
	// Nothing named: 422.
	a.want(422, "DELETE", "/v1/api-keys", f.root, map[string]any{})

	// A filter by name over two accounts, as the account admin of A: only
	// A's keys go; B's stays active.
	ka1 := f.createKey(t, "alice", "shared", nil).id
	ka2 := f.createKey(t, "aadmin", "shared", nil).id
	kb := f.createKey(t, "bob", "shared", nil).id
	res = decode(a.want(200, "DELETE", "/v1/api-keys", admBasic("aadmin", f.pw["aadmin"]), map[string]any{"name": "shared"}))
	got := slices.Sorted(slices.Values(res.Invalidated))
	if want := slices.Sorted(slices.Values([]string{ka1, ka2})); !slices.Equal(got, want) || res.ErrorCount != 0 {
		t.Errorf("account admin bulk by name: %+v, want %v invalidated", res, want)
	}
	if s := f.keyStatus(t, "bob", kb); s != "active" {
		t.Errorf("B's key is %s after A's admin bulk-revoked by name", s)
	}
	// The global admin's filter spans accounts.
	res = decode(a.want(200, "DELETE", "/v1/api-keys", f.root, map[string]any{"name": "shared"}))
	if !slices.Equal(res.Invalidated, []string{kb}) || len(res.PreviouslyInvalidated) != 2 {
		t.Errorf("global bulk by name: %+v", res)
	}
	// A bulk-revoked key is refused by the proxy.
	k := f.createKey(t, "bob", "proxy-bulk", nil)
	if st := mxProxy(f.hc, f.g, "/mx/probe", "Bearer "+k.value); st != 200 {
		t.Fatalf("fresh key on the proxy: %d", st)
	}
	a.want(200, "DELETE", "/v1/api-keys", f.root, map[string]any{"ids": []string{k.id}})
	if d, last, ok := mxUntil(f.hc, f.g, "Bearer "+k.value, 401, mxRevocationBound); !ok {
		t.Errorf("bulk-revoked key still answered %d after %v", last, d)
	}
}

// mxPagination walks 5 keys 2 at a time, by the user's listing and by the
// search: every key exactly once, no page over the limit.
func mxPagination(t *testing.T, f *mxFix) {
	a := f.client(t, f.g)
	var want []string
	for i := range 5 {
		want = append(want, f.createKey(t, "pat", fmt.Sprintf("page%d", i), nil).id)
	}
	slices.Sort(want)
	for _, base := range []string{f.userPath("pat") + "/api-keys?limit=2", "/v1/api-keys?username=pat&limit=2"} {
		var seen []string
		var sizes []int
		cursor := ""
		for page := 0; ; page++ {
			if page > 5 {
				t.Fatalf("%s: the cursor walk does not end (pages %v)", base, sizes)
			}
			path := base
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			var p mxKeyPage
			if err := json.Unmarshal(a.want(200, "GET", path, f.root, nil), &p); err != nil {
				t.Fatal(err)
			}
			if len(p.APIKeys) > 2 {
				t.Errorf("%s: page of %d keys over limit 2", path, len(p.APIKeys))
			}
			sizes = append(sizes, len(p.APIKeys))
			for _, k := range p.APIKeys {
				seen = append(seen, k.ID)
			}
			if p.NextCursor == "" {
				break
			}
			if p.NextCursor == cursor {
				t.Fatalf("%s: the cursor does not move", path)
			}
			cursor = p.NextCursor
		}
		slices.Sort(seen)
		if !slices.Equal(seen, want) {
			t.Errorf("%s: walked %v (pages %v), want each of %v once", base, seen, sizes, want)
		}
		t.Logf("%s: pages %v", base, sizes)
	}
	a.want(400, "GET", f.userPath("pat")+"/api-keys?limit=0", f.root, nil)
	a.want(400, "GET", "/v1/api-keys?status=bogus", f.root, nil)
	a.want(400, "GET", "/v1/api-keys?frob=1", f.root, nil)
}

// mxCascade: deleting an account removes its users and their keys, and the
// proxy (of every instance) refuses the key; recreating the account brings
// nothing back.
func mxCascade(t *testing.T, f *mxFix, other *gateway) {
	a := f.client(t, f.g)
	a.want(201, "POST", "/v1/accounts", f.root, map[string]any{"name": "doomed"})
	f.createUser(t, "dora", "doomed", "account_admin", []string{"read"})
	k := f.createKey(t, "dora", "k", nil)
	k2 := f.createKey(t, "dora", "k2", nil)
	gws := []*gateway{f.g}
	if other != nil {
		gws = append(gws, other)
	}
	for _, g := range gws { // warm the caches
		for range 2 {
			if st := mxProxy(f.hc, g, "/mx/probe", "Bearer "+k.value); st != 200 {
				t.Fatalf("dora's key on %s: %d", g.public, st)
			}
		}
	}
	a.want(204, "DELETE", "/v1/accounts/doomed", f.root, nil)
	for _, g := range gws {
		if d, last, ok := mxUntil(f.hc, g, "Bearer "+k.value, 401, mxRevocationBound); !ok {
			t.Errorf("key of a deleted account still answers %d on %s after %v", last, g.public, d)
		} else {
			t.Logf("key of the deleted account refused on %s after %v", g.public, d)
		}
	}
	if st := f.accountState(t, "doomed"); st != "gone" {
		t.Errorf("account after delete: %s", st)
	}
	a.want(404, "GET", "/v1/accounts/doomed/users/dora", f.root, nil)
	a.want(404, "GET", "/v1/accounts/doomed/users/dora/api-keys/"+k.id, f.root, nil)
	if ks := f.keysNamed(t, "dora", "k"); len(ks) != 0 {
		t.Errorf("dora's keys after the cascade: %+v", ks)
	}
	var p mxKeyPage
	if f.rbGet(t, "/v1/api-keys?status=all&account=doomed", &p) == 200 && len(p.APIKeys) != 0 {
		t.Errorf("keys of the deleted account: %+v", p.APIKeys)
	}
	// Recreated: empty, and the old key stays dead.
	a.want(201, "POST", "/v1/accounts", f.root, map[string]any{"name": "doomed"})
	b := a.want(200, "GET", "/v1/accounts/doomed/users", f.root, nil)
	if bytes.Contains(b, []byte("dora")) {
		t.Errorf("a recreated account has the old users: %s", b)
	}
	for _, v := range []string{k.value, k2.value} {
		if st := mxProxy(f.hc, f.g, "/mx/probe", "Bearer "+v); st != 401 {
			t.Errorf("old key on a recreated account: %d", st)
		}
	}
}

// mxTwoInstances: a key created through A's API works on B's proxy (and is
// cached there); revoked through A's API, B refuses it within the bound.
func mxTwoInstances(t *testing.T, f *mxFix, b *gateway) {
	a := f.client(t, f.g)
	var delays []time.Duration
	for i := range 3 {
		k := f.createKey(t, "bob", fmt.Sprintf("multi%d", i), nil)
		auth := "Bearer " + k.value
		if i == 1 {
			auth = "ApiKey " + k.encoded
		}
		for range 3 { // the first fills B's cache, the others hit it
			if st := mxProxy(f.hc, b, "/mx/probe", auth); st != 200 {
				t.Fatalf("key created on A, on B's proxy: %d", st)
			}
		}
		var began time.Time
		switch i {
		case 2: // bulk, through A
			began = time.Now()
			a.want(200, "DELETE", "/v1/api-keys", f.root, map[string]any{"ids": []string{k.id}})
		default:
			began = time.Now()
			a.want(200, "DELETE", f.userPath("bob")+"/api-keys/"+k.id, f.root, nil)
		}
		answered := time.Since(began)
		d, last, ok := mxUntil(f.hc, b, auth, 401, 5*time.Second)
		total := answered + d
		t.Logf("revocation %d: A answered in %v, B refused %v later (%v after the request)", i, answered.Round(time.Microsecond), d.Round(time.Microsecond), total.Round(time.Microsecond))
		if !ok {
			t.Fatalf("B still answers %d %v after the revocation on A", last, total)
		}
		if total > mxRevocationBound {
			t.Errorf("B refused the revoked key after %v, bound %v", total, mxRevocationBound)
		}
		delays = append(delays, total)
		// B's own API agrees.
		var kj mxKeyJSON
		if f.rbGet(t, f.userPath("bob")+"/api-keys/"+k.id, &kj); kj.Status != "revoked" {
			t.Errorf("B's API shows the key %s", kj.Status)
		}
	}
	t.Logf("revocation delays (A's request to B's first 401): %v", delays)

	// SECURITY.md "revocation": disabling the owner, or the owner's
	// account, on A stops the owner's keys cached on B.
	a.want(201, "POST", "/v1/accounts", f.root, map[string]any{"name": "multi"})
	f.createUser(t, "mona", "multi", "user", []string{"read"})
	k1 := f.createKey(t, "mona", "k1", nil)
	k2 := f.createKey(t, "mona", "k2", nil)
	for _, step := range []struct {
		what, path string
		k          mxKey
	}{
		{"disable the user", f.userPath("mona"), k1},
		{"disable the account", "/v1/accounts/multi", k2},
	} {
		auth := "Bearer " + step.k.value
		for range 2 {
			if st := mxProxy(f.hc, b, "/mx/probe", auth); st != 200 {
				t.Fatalf("%s: key on B before: %d", step.what, st)
			}
		}
		began := time.Now()
		a.want(200, "PATCH", step.path, f.root, map[string]any{"state": "disabled"})
		answered := time.Since(began)
		d, last, ok := mxUntil(f.hc, b, auth, 401, 5*time.Second)
		total := answered + d
		t.Logf("%s on A: B refused the cached key %v after the request", step.what, total.Round(time.Microsecond))
		if !ok || total > mxRevocationBound {
			t.Errorf("%s on A: B answers %d after %v (bound %v)", step.what, last, total, mxRevocationBound)
		}
		if step.what == "disable the user" {
			a.want(200, "PATCH", step.path, f.root, map[string]any{"state": "enabled"})
		}
	}
}

// mxCLI drives `keygate account|user|key` against the Redis-backed gateway.
func mxCLI(t *testing.T, f *mxFix) {
	url := "KEYGATE_ADMIN_URL=http://" + f.g.admin
	admin := []string{url, "KEYGATE_USERNAME=admin", "KEYGATE_PASSWORD=" + admBootstrapPassword}
	mustRun := func(env []string, stdin string, args ...string) (string, string) {
		t.Helper()
		code, stdout, stderr := mxRunRetry(t, env, stdin, args...)
		if code != 0 {
			t.Fatalf("keygate %v: exit %d\n%s%s", args, code, stdout, stderr)
		}
		return stdout, stderr
	}
	stdout, _ := mustRun(admin, "", "account", "create", "clico")
	if !strings.Contains(stdout, "clico") || !strings.Contains(stdout, "enabled") {
		t.Errorf("account create: %s", stdout)
	}
	// The new user's password comes from stdin (one line when not a terminal).
	const carlPW = "Carl-Pa55word-cli-long"
	stdout, _ = mustRun(admin, carlPW+"\n", "user", "create", "carl", "--account", "clico", "--roles", "read,write")
	if !strings.Contains(stdout, "carl") || !strings.Contains(stdout, "read,write") || strings.Contains(stdout, carlPW) {
		t.Errorf("user create: %s", stdout)
	}
	if !f.authOK(t, "carl", carlPW) {
		t.Fatal("the password given on stdin does not authenticate carl")
	}
	carl := []string{url, "KEYGATE_USERNAME=carl", "KEYGATE_PASSWORD=" + carlPW}

	stdout, stderr := mustRun(carl, "", "key", "create", "ci", "-o", "json", "--expires-in", "24h", "--roles", "read")
	var k struct {
		ID, Name, APIKey, Encoded string
		Roles                     []string
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(stdout), &raw); err != nil {
		t.Fatalf("key create -o json: %v\n%s", err, stdout)
	}
	k.ID, _ = raw["id"].(string)
	k.APIKey, _ = raw["api_key"].(string)
	if k.ID == "" || !strings.HasPrefix(k.APIKey, "kg_") || raw["expires_at"] == nil {
		t.Fatalf("key create -o json: %s", stdout)
	}
	if n := strings.Count(stdout, k.APIKey); n != 1 {
		t.Errorf("the key value appears %d times on stdout, want once", n)
	}
	if !strings.Contains(stderr, "cannot be shown again") || strings.Contains(stderr, k.APIKey) {
		t.Errorf("key create stderr: %q", stderr)
	}
	if st := mxProxy(f.hc, f.g, "/mx/probe", "Bearer "+k.APIKey); st != 200 {
		t.Errorf("the CLI's key on the proxy: %d", st)
	}
	// The table form prints the value once too, the warning on stderr.
	stdout, stderr = mustRun(carl, "", "key", "create", "ci2")
	if strings.Count(stdout, "kg_") != 1 || !strings.Contains(stderr, "WARNING") {
		t.Errorf("key create (table):\n%s\n%s", stdout, stderr)
	}

	stdout, _ = mustRun(carl, "", "key", "list")
	if !strings.HasPrefix(stdout, "ID") || !strings.Contains(stdout, k.ID) || !strings.Contains(stdout, "active") || strings.Contains(stdout, "kg_") {
		t.Errorf("key list:\n%s", stdout)
	}
	stdout, _ = mustRun(admin, "", "key", "list", "--account", "clico")
	if !strings.Contains(stdout, k.ID) || strings.Contains(stdout, "kg_") {
		t.Errorf("key list --account:\n%s", stdout)
	}

	stdout, _ = mustRun(carl, "", "key", "revoke", k.ID)
	if !strings.Contains(stdout, "revoked") {
		t.Errorf("key revoke: %s", stdout)
	}
	if d, last, ok := mxUntil(f.hc, f.g, "Bearer "+k.APIKey, 401, mxRevocationBound); !ok {
		t.Errorf("key revoked by the CLI still answers %d after %v", last, d)
	}
	stdout, _ = mustRun(carl, "", "key", "list")
	if strings.Contains(stdout, k.ID) {
		t.Errorf("key list shows a revoked key by default:\n%s", stdout)
	}
	stdout, _ = mustRun(carl, "", "key", "list", "--status", "all")
	if !strings.Contains(stdout, k.ID) || !strings.Contains(stdout, "revoked") {
		t.Errorf("key list --status all:\n%s", stdout)
	}
	// Bulk, by name, as the admin.
	stdout, _ = mustRun(admin, "", "key", "revoke", "--bulk", "--account", "clico", "--name", "ci2")
	if !strings.Contains(stdout, "revoked") {
		t.Errorf("key revoke --bulk:\n%s", stdout)
	}

	// Exit 1 with the server's message.
	code, stdout, stderr := mxRunRetry(t, admin, "", "account", "create", "clico")
	if code != 1 || !strings.Contains(stderr, "already exists") || !strings.Contains(stderr, "409") {
		t.Errorf("duplicate account: exit %d\n%s%s", code, stdout, stderr)
	}
	code, _, stderr = mxRunRetry(t, carl, "", "account", "create", "other")
	if code != 1 || !strings.Contains(stderr, "403") {
		t.Errorf("account create as a user: exit %d\n%s", code, stderr)
	}
	stdout, _ = mustRun(carl, "", "key", "create", "reader", "-o", "json")
	raw = nil
	if err := json.Unmarshal([]byte(stdout), &raw); err != nil {
		t.Fatalf("key create -o json: %v\n%s", err, stdout)
	}
	reader, _ := raw["api_key"].(string)
	keyEnv := []string{url, "KEYGATE_API_KEY=" + reader}
	code, _, stderr = mxRunRetry(t, keyEnv, "", "key", "create", "bykey")
	if code != 1 || !strings.Contains(stderr, "403") {
		t.Errorf("key create by API key: exit %d\n%s", code, stderr)
	}
	// Exit 2: usage.
	for _, args := range [][]string{
		{"key", "create"},
		{"user", "create", "dave"},                       // no --account
		{"user", "create", "dave", "--account", "clico"}, // no password on stdin
		{"key", "list", "--password=hunter2-hunter2"},    // secrets never in flags
		{"account", "frobnicate"},                        // unknown verb
		{"key", "list", "-o", "yaml"},                    // bad output
		{"key", "create", "x", "--expires-in", "1h", "--expires-at", "2030-01-01T00:00:00Z"},
	} {
		code, stdout, stderr := mxRun(t, admin, "", args...)
		if code != 2 {
			t.Errorf("keygate %v: exit %d, want 2\n%s%s", args, code, stdout, stderr)
		}
	}
	if f.exists(t, "/v1/accounts/clico/users/dave") {
		t.Error("a usage error created a user")
	}
	// Exit 3: authentication.
	code, _, _ = mxRunRetry(t, []string{url, "KEYGATE_USERNAME=admin", "KEYGATE_PASSWORD=wrong-wrong-wrong"}, "", "account", "list")
	if code != 3 {
		t.Errorf("wrong password: exit %d, want 3", code)
	}
	code, _, stderr = mxRun(t, []string{url}, "", "account", "list") // no credentials, no terminal
	if code != 3 {
		t.Errorf("no credentials: exit %d, want 3\n%s", code, stderr)
	}
	code, _, _ = mxRunRetry(t, []string{url, "KEYGATE_API_KEY=kg_nope_nope"}, "", "user", "whoami")
	if code != 3 {
		t.Errorf("bad API key: exit %d, want 3", code)
	}
	// Nothing the CLI printed or the gateway logged holds a secret.
	if logs := mxLogs(f.g); strings.Contains(logs, carlPW) || strings.Contains(logs, k.APIKey) {
		t.Error("the gateway log contains a secret")
	}
}
