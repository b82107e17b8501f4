package authn_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/store"
)

func TestCacheStatusString(t *testing.T) {
	for st, want := range map[authn.CacheStatus]string{authn.CacheMiss: "miss", authn.CacheHit: "hit", authn.CacheNegative: "negative",
		authn.CacheStale: "stale", authn.CacheRefresh: "refresh", 99: "miss"} {
		if st.String() != want {
			t.Errorf("%d: %q, want %q", st, st.String(), want)
		}
	}
}

// Every credential form succeeds, with the identity DESIGN.md §4 and §5
// describe; the three API key forms share one cache entry.
func TestChainCredentialForms(t *testing.T) {
	e := newEnv(t, envOptions{})
	forms := keyForms(e.key.ID, e.value)
	cases := []struct {
		name string
		h    string
		want authn.Identity
	}{
		{"basic", basic("alice", testPassword), authn.Identity{
			Username: "alice", Account: "acme", UserType: "user", Roles: []string{"ops", "read", "write"},
			RolesHeader: "ops,read,write", Method: authn.MethodBasic, Generation: 1}},
		{"basic_api_key", forms["basic_api_key"], authn.Identity{
			Username: "alice", Account: "acme", UserType: "user", Roles: []string{"read", "write"},
			RolesHeader: "read,write", Method: authn.MethodAPIKey, KeyID: e.key.ID, KeyName: "ci", Generation: 1}},
		{"apikey", forms["apikey"], authn.Identity{
			Username: "alice", Account: "acme", UserType: "user", Roles: []string{"read", "write"},
			RolesHeader: "read,write", Method: authn.MethodAPIKey, KeyID: e.key.ID, KeyName: "ci", Generation: 1}},
		{"bearer_kg", forms["bearer_kg"], authn.Identity{
			Username: "alice", Account: "acme", UserType: "user", Roles: []string{"read", "write"},
			RolesHeader: "read,write", Method: authn.MethodAPIKey, KeyID: e.key.ID, KeyName: "ci", Generation: 1}},
		{"scheme case and spaces", "  bAsIc   " + strings.TrimPrefix(basic("bob", testPassword), "Basic "), authn.Identity{
			Username: "bob", Account: "acme", UserType: "user", Roles: []string{"read"},
			RolesHeader: "read", Method: authn.MethodBasic, Generation: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := e.ok(tc.h)
			if !identityEqual(got, &tc.want) {
				t.Fatalf("identity\n got %+v\nwant %+v", *got, tc.want)
			}
		})
	}
	if n := e.st.lookups.Load(); n != 1 {
		t.Errorf("LookupAPIKey called %d times for three forms of one key, want 1 (one cache entry)", n)
	}
}

func identityEqual(a, b *authn.Identity) bool {
	return a.Username == b.Username && a.Account == b.Account && a.UserType == b.UserType &&
		slices.Equal(a.Roles, b.Roles) && a.RolesHeader == b.RolesHeader && a.Method == b.Method &&
		a.KeyID == b.KeyID && a.KeyName == b.KeyName && a.Generation == b.Generation && a.ExpiresAt.Equal(b.ExpiresAt)
}

func secretOf(t testing.TB, value string) string {
	t.Helper()
	_, s, err := apikey.Parse([]byte(value))
	must(t, err)
	return string(s)
}

func TestChainFailures(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		// setup prepares the env and returns the Authorization value.
		setup func(e *env) string
		want  error
		// calls is the number of store lookups (LookupAPIKey + GetUser) made.
		calls  int64
		status int
		token  string // WWW-Authenticate error
	}{
		{"wrong password", func(e *env) string { return basic("alice", "Tr0ub4dor&3") },
			authn.ErrInvalidCredentials, 1, 401, ""},
		{"unknown user", func(e *env) string { return basic("mallory", testPassword) },
			authn.ErrInvalidCredentials, 1, 401, ""},
		{"empty password", func(e *env) string { return basic("alice", "") },
			authn.ErrInvalidCredentials, 1, 401, ""},
		{"password of another user", func(e *env) string { return basic("carol", testPassword+"x") },
			authn.ErrInvalidCredentials, 1, 401, ""},
		{"unknown key id", func(e *env) string {
			return "Bearer " + apikey.Format("AAAAAAAAAAAAAAAAAAAA", secretOf(e.t, e.value))
		}, authn.ErrInvalidCredentials, 1, 401, "invalid_token"},
		{"wrong secret", func(e *env) string {
			s, _ := apikey.NewSecret()
			return basic("_api_key", apikey.Format(e.key.ID, s))
		}, authn.ErrInvalidCredentials, 1, 401, ""},
		{"id of A with secret of B", func(e *env) string {
			_, vb := e.newKey("bob", "b", nil, time.Time{})
			return apiKeyHeader(e.key.ID, apikey.Format(e.key.ID, secretOf(e.t, vb)))
		}, authn.ErrInvalidCredentials, 1, 401, ""},
		{"near miss: one secret character changed", func(e *env) string { return "Bearer " + mutate(e.value, len(e.value)-10) },
			apikey.ErrChecksum, 0, 401, "invalid_token"},
		{"near miss: one id character changed", func(e *env) string { return "Bearer " + mutate(e.value, 5) },
			apikey.ErrChecksum, 0, 401, "invalid_token"},
		{"near miss: checksum changed", func(e *env) string { return basic("_api_key", mutate(e.value, len(e.value)-1)) },
			apikey.ErrChecksum, 0, 401, ""},
		{"near miss: two characters swapped", func(e *env) string {
			b := []byte(e.value)
			i := len(b) - 20
			for b[i] == b[i+1] {
				i++
			}
			b[i], b[i+1] = b[i+1], b[i]
			return "Bearer " + string(b)
		}, apikey.ErrChecksum, 0, 401, "invalid_token"},
		{"near miss: truncated", func(e *env) string { return "Bearer " + e.value[:len(e.value)-1] },
			authn.ErrMalformedCredentials, 0, 401, "invalid_token"},
		{"near miss: one character appended", func(e *env) string { return basic("_api_key", e.value+"0") },
			authn.ErrMalformedCredentials, 0, 401, ""},
		{"ApiKey id not the key's", func(e *env) string { return apiKeyHeader("BBBBBBBBBBBBBBBBBBBB", e.value) },
			authn.ErrMalformedCredentials, 0, 401, ""},
		{"expired key", func(e *env) string {
			_, v := e.newKey("alice", "short", []string{"read"}, e.clk.Now().Add(time.Hour))
			e.clk.Advance(2 * time.Hour)
			return "Bearer " + v
		}, authn.ErrInvalidCredentials, 1, 401, "invalid_token"},
		{"revoked key", func(e *env) string {
			_, _, err := e.raw.RevokeAPIKey(ctx, e.key.ID, e.clk.Now())
			must(e.t, err)
			return apiKeyHeader(e.key.ID, e.value)
		}, authn.ErrInvalidCredentials, 1, 401, ""},
		{"disabled user (password)", func(e *env) string {
			_, err := e.raw.UpdateUser(ctx, "alice", store.UserUpdate{State: ptr(store.StateDisabled)})
			must(e.t, err)
			return basic("alice", testPassword)
		}, authn.ErrDisabled, 1, 401, ""},
		{"disabled user (key)", func(e *env) string {
			_, err := e.raw.UpdateUser(ctx, "alice", store.UserUpdate{State: ptr(store.StateDisabled)})
			must(e.t, err)
			return "Bearer " + e.value
		}, authn.ErrDisabled, 1, 401, "invalid_token"},
		{"disabled account (password)", func(e *env) string {
			_, err := e.raw.SetAccountState(ctx, "acme", store.StateDisabled)
			must(e.t, err)
			return basic("bob", testPassword)
		}, authn.ErrDisabled, 1, 401, ""},
		{"disabled account (key)", func(e *env) string {
			_, err := e.raw.SetAccountState(ctx, "acme", store.StateDisabled)
			must(e.t, err)
			return basic("_api_key", e.value)
		}, authn.ErrDisabled, 1, 401, ""},
		{"bearer jwt without token authenticator", func(e *env) string { return "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig" },
			authn.ErrInvalidCredentials, 0, 401, "invalid_token"},
		{"bad base64", func(e *env) string { return "Basic !!!!" },
			authn.ErrMalformedCredentials, 0, 401, ""},
		{"unknown scheme", func(e *env) string { return "Digest x" },
			authn.ErrMalformedCredentials, 0, 401, ""},
		{"no credentials", func(e *env) string { return "" },
			authn.ErrNoCredentials, 0, 401, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			h := tc.setup(e)
			id, err := e.auth(h)
			if id != nil || !errors.Is(err, tc.want) {
				t.Fatalf("got (%v, %v), want error %v", id, err, tc.want)
			}
			if errors.Is(err, authn.ErrUnavailable) {
				t.Fatalf("credential failure reported as unavailable: %v", err)
			}
			if n := e.st.calls(); n != tc.calls {
				t.Errorf("%d store lookups, want %d", n, tc.calls)
			}
			st, code, tok := authn.Status(err)
			if st != tc.status || tok != tc.token || code == "" {
				t.Errorf("Status = %d %q %q, want %d %q", st, code, tok, tc.status, tc.token)
			}
			// A second try is answered from the negative cache (or the
			// parser): no more lookups, same class of error.
			e.cache.Wait()
			_, err2 := e.auth(h)
			if !errors.Is(err2, tc.want) {
				t.Fatalf("second try: %v, want %v", err2, tc.want)
			}
			if n := e.st.calls(); n != tc.calls {
				t.Errorf("second try: %d store lookups in all, want %d (negative cache)", n, tc.calls)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// mutate changes the base62 character at i.
func mutate(s string, i int) string {
	b := []byte(s)
	if b[i] == 'a' {
		b[i] = 'b'
	} else {
		b[i] = 'a'
	}
	return string(b)
}

// An expired key is reported exactly like a wrong secret: same error, same
// status, same code.
func TestChainExpiredLooksLikeWrongSecret(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, v := e.newKey("alice", "short", nil, e.clk.Now().Add(time.Minute))
	e.clk.Advance(time.Hour)
	s, _ := apikey.NewSecret()
	_, errExpired := e.auth("Bearer " + v)
	_, errWrong := e.auth("Bearer " + apikey.Format(e.key.ID, s))
	s1, c1, w1 := authn.Status(errExpired)
	s2, c2, w2 := authn.Status(errWrong)
	if s1 != s2 || c1 != c2 || w1 != w2 || errors.Is(errExpired, authn.ErrExpired) {
		t.Fatalf("expired %d %s %s (%v) vs wrong secret %d %s %s (%v)", s1, c1, w1, errExpired, s2, c2, w2, errWrong)
	}
}

func TestChainKeyExpiresWhileCached(t *testing.T) {
	e := newEnv(t, envOptions{})
	exp := e.clk.Now().Add(30 * time.Second)
	_, v := e.newKey("alice", "short", []string{"read"}, exp)
	id := e.ok("Bearer " + v)
	if !id.ExpiresAt.Equal(exp) {
		t.Fatalf("ExpiresAt %v, want %v", id.ExpiresAt, exp)
	}
	e.clk.Advance(31 * time.Second)
	if _, err := e.auth("Bearer " + v); !errors.Is(err, authn.ErrInvalidCredentials) {
		t.Fatalf("after expiry: %v", err)
	}
}

// Effective roles are key roles ∩ the owner's current roles.
func TestChainKeyRolesFollowOwner(t *testing.T) {
	e := newEnv(t, envOptions{})
	h := "Bearer " + e.value
	if id := e.ok(h); !slices.Equal(id.Roles, []string{"read", "write"}) {
		t.Fatalf("roles %v", id.Roles)
	}
	_, err := e.raw.UpdateUser(context.Background(), "alice", store.UserUpdate{Roles: &[]string{"read", "ghost"}})
	must(t, err)
	e.cache.Invalidate(store.Invalidation{Account: "acme", Username: "alice"})
	id := e.ok(h)
	if !slices.Equal(id.Roles, []string{"ghost", "read"}) || id.RolesHeader != "ghost,read" || id.Generation != 2 {
		t.Fatalf("after role change: %+v", *id)
	}
}

// A cache hit costs no store call; a miss costs one round trip for a key.
func TestChainHitCostsNoStoreCall(t *testing.T) {
	e := newEnv(t, envOptions{})
	forms := keyForms(e.key.ID, e.value)
	forms["basic"] = basic("alice", testPassword)
	for _, h := range forms {
		e.ok(h)
	}
	before, acc := e.st.calls(), e.st.accounts.Load()
	if before != 2 || acc != 1 {
		t.Fatalf("warm-up: %d lookups, %d account reads; want 2 and 1 (account state cached)", before, acc)
	}
	for range 100 {
		for name, h := range forms {
			if _, err := e.auth(h); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
	if n := e.st.calls(); n != before {
		t.Fatalf("%d store lookups on hits", n-before)
	}
}

// A repeated wrong password is refused from the negative cache: no lookup,
// no argon2 — until negative_ttl passes.
func TestChainNegativeCacheStopsRehashing(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, h := range []string{basic("alice", "nope-nope"), basic("nobody", "nope-nope")} {
		before := e.st.users.Load()
		for range 5 {
			if _, err := e.auth(h); !errors.Is(err, authn.ErrInvalidCredentials) {
				t.Fatal(err)
			}
			e.cache.Wait()
		}
		if n := e.st.users.Load() - before; n != 1 {
			t.Fatalf("%d GetUser (hence hashes) for 5 tries, want 1", n)
		}
	}
	e.clk.Advance(testNegTTL + time.Second)
	before := e.st.users.Load()
	_, _ = e.auth(basic("alice", "nope-nope"))
	if n := e.st.users.Load() - before; n != 1 {
		t.Fatalf("after negative_ttl: %d GetUser, want 1", n)
	}
}

// SECURITY.md "cache key": a wrong secret for a cached id neither succeeds
// nor evicts the good entry.
func TestChainWrongSecretForCachedID(t *testing.T) {
	e := newEnv(t, envOptions{})
	good := e.ok("Bearer " + e.value)
	s, _ := apikey.NewSecret()
	bad := apikey.Format(e.key.ID, s)
	for _, h := range keyForms(e.key.ID, bad) {
		if id, err := e.auth(h); id != nil || !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Fatalf("wrong secret: %v %v", id, err)
		}
		e.cache.Wait()
	}
	before := e.st.lookups.Load()
	for _, h := range keyForms(e.key.ID, e.value) {
		id, err := e.auth(h)
		if err != nil || id != good {
			t.Fatalf("good key after wrong secrets: %v %v (want the cached identity)", id, err)
		}
	}
	if n := e.st.lookups.Load() - before; n != 0 {
		t.Fatalf("good entry evicted: %d lookups", n)
	}
}

// Revoking through the store and applying its invalidation stops a cached
// key at once; so do disabling the user or the account.
func TestChainInvalidationStopsCachedCredential(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		change func(e *env) store.Invalidation
		basic  error // wanted for alice's password (nil: still works)
		key    error // wanted for alice's key
	}{
		{"revoke key", func(e *env) store.Invalidation {
			_, _, err := e.raw.RevokeAPIKey(ctx, e.key.ID, e.clk.Now())
			must(e.t, err)
			return store.Invalidation{Account: "acme", Username: "alice", KeyID: e.key.ID}
		}, nil, authn.ErrInvalidCredentials},
		{"disable user", func(e *env) store.Invalidation {
			_, err := e.raw.UpdateUser(ctx, "alice", store.UserUpdate{State: ptr(store.StateDisabled)})
			must(e.t, err)
			return store.Invalidation{Account: "acme", Username: "alice"}
		}, authn.ErrDisabled, authn.ErrDisabled},
		{"change password", func(e *env) store.Invalidation {
			h, err := hasherOnce().Hash("a new password 42")
			must(e.t, err)
			_, err = e.raw.UpdateUser(ctx, "alice", store.UserUpdate{PasswordHash: &h})
			must(e.t, err)
			return store.Invalidation{Account: "acme", Username: "alice"}
		}, authn.ErrInvalidCredentials, nil},
		{"disable account", func(e *env) store.Invalidation {
			_, err := e.raw.SetAccountState(ctx, "acme", store.StateDisabled)
			must(e.t, err)
			return store.Invalidation{Account: "acme"}
		}, authn.ErrDisabled, authn.ErrDisabled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			hb, hk := basic("alice", testPassword), "Bearer "+e.value
			e.ok(hb)
			e.ok(hk)
			inv := tc.change(e)
			// As the wiring does it: account states first, then the cache.
			e.states.Invalidate(inv)
			e.cache.Invalidate(inv)
			for _, c := range []struct {
				h    string
				want error
			}{{hb, tc.basic}, {hk, tc.key}} {
				id, err := e.auth(c.h)
				switch {
				case c.want == nil && err != nil:
					t.Errorf("%.12s…: %v, want success", c.h, err)
				case c.want != nil && (id != nil || !errors.Is(err, c.want)):
					t.Errorf("%.12s…: (%v, %v), want %v", c.h, id, err, c.want)
				}
			}
		})
	}
}

// The invalidations the store publishes reach the account states before the
// cache (AccountStates.WatchFirst), so disabling an account through the
// store stops cached credentials of its users.
func TestChainInvalidationThroughWatch(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.cache.Listen(ctx, e.states.WatchFirst(e.raw), zap.NewNop()) }()
	t.Cleanup(func() { cancel(); <-done })

	hb, hk := basic("bob", testPassword), apiKeyHeader(e.key.ID, e.value)
	e.ok(hb)
	e.ok(hk)
	_, err := e.raw.SetAccountState(context.Background(), "acme", store.StateDisabled)
	must(t, err)
	for _, h := range []string{hb, hk} {
		waitFor(t, func() bool {
			_, err := e.auth(h)
			return errors.Is(err, authn.ErrDisabled)
		})
	}
	_, err = e.raw.SetAccountState(context.Background(), "acme", store.StateEnabled)
	must(t, err)
	for _, h := range []string{hb, hk} {
		waitFor(t, func() bool {
			_, err := e.auth(h)
			return err == nil
		})
	}
}

// waitFor polls cond until it holds (asynchronous delivery), failing after a
// generous bound.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

// flightFrame is the frame of a goroutine running a miss for the chain's
// callers.
const flightFrame = "authn.(*flightGroup).start.func1"

// goroutinesIn counts goroutines whose stack has a frame of fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), fn+"(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// goodHeader is alice's valid Authorization header in form "key" (her API
// key as a Bearer token) or "basic".
func (e *env) goodHeader(form string) string {
	if form == "basic" {
		return basic("alice", testPassword)
	}
	return "Bearer " + e.value
}

// Concurrent misses for one credential make one lookup (singleflight).
func TestChainSingleflight(t *testing.T) {
	for _, form := range []string{"key", "basic"} {
		t.Run(form, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			h := e.goodHeader(form)
			gate := make(chan struct{})
			e.st.gate.Store(&gate)
			const n = 50
			var wg sync.WaitGroup
			errs := make(chan error, n)
			ids := make(chan *authn.Identity, n)
			for range n {
				wg.Go(func() {
					id, err := e.auth(h)
					errs <- err
					ids <- id
				})
			}
			// All callers wait in the chain's miss, the leader's lookup
			// holds at the gate.
			waitFor(t, func() bool { return goroutinesIn("authn.(*Chain).miss") == n })
			if got := e.st.calls(); got != 1 {
				t.Fatalf("%d lookups while %d callers wait, want 1", got, n)
			}
			close(gate)
			wg.Wait()
			close(errs)
			close(ids)
			var first *authn.Identity
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			for id := range ids {
				if first == nil {
					first = id
				}
				if id != first {
					t.Fatal("callers got different identities")
				}
			}
			if got := e.st.calls(); got != 1 {
				t.Fatalf("%d lookups for %d concurrent misses, want 1", got, n)
			}
		})
	}
}

// A caller whose context ends while the miss is in flight gets
// ErrUnavailable; the miss itself completes and is cached.
func TestChainCallerContextEnds(t *testing.T) {
	e := newEnv(t, envOptions{})
	gate := make(chan struct{})
	e.st.gate.Store(&gate)
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, err := e.chain.Authenticate(ctx, []byte("Bearer "+e.value), ip1)
		res <- err
	}()
	waitFor(t, func() bool { return e.st.lookups.Load() == 1 })
	if n := goroutinesIn(flightFrame); n != 1 {
		t.Fatalf("%d flights seen in stacks, want 1", n)
	}
	cancel()
	if err := <-res; !errors.Is(err, authn.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want ErrUnavailable wrapping context.Canceled", err)
	}
	close(gate)
	waitFor(t, func() bool { return goroutinesIn(flightFrame) == 0 })
	e.cache.Wait()
	if _, err := e.auth("Bearer " + e.value); err != nil {
		t.Fatal(err)
	}
	if n := e.st.lookups.Load(); n != 1 {
		t.Fatalf("%d lookups, want 1 (the abandoned miss was cached)", n)
	}
}

// A store that cannot answer gives ErrUnavailable (503), never a credential
// failure, and nothing is cached: the credential works once the store is
// back.
func TestChainStoreUnavailable(t *testing.T) {
	e := newEnv(t, envOptions{perIP: 2, perUser: 2})
	hk, hb := "Bearer "+e.value, basic("alice", testPassword)
	e.st.down.Store(true)
	for range 5 { // more than the failure limits: unavailability is not a failure
		for _, h := range []string{hk, hb, basic("nobody", "x"), "Bearer " + apikey.Format("AAAAAAAAAAAAAAAAAAAA", secretOf(t, e.value))} {
			_, err := e.auth(h)
			if !errors.Is(err, authn.ErrUnavailable) || errors.Is(err, authn.ErrInvalidCredentials) {
				t.Fatalf("store down: %v", err)
			}
			if st, code, _ := authn.Status(err); st != http.StatusServiceUnavailable || code != "unavailable" ||
				authn.RetryAfter(err) <= 0 {
				t.Fatalf("Status: %d %s", st, code)
			}
			e.cache.Wait()
		}
	}
	e.st.down.Store(false)
	e.ok(hk)
	e.ok(hb)
}

// Within store.outage_grace a cached identity past cache.ttl is served when
// the store is unavailable; past the grace it is not.
func TestChainOutageGrace(t *testing.T) {
	e := newEnv(t, envOptions{})
	hk, hb := "Bearer "+e.value, basic("alice", testPassword)
	idk, idb := e.ok(hk), e.ok(hb)
	e.clk.Advance(testTTL + time.Second) // stale
	e.st.down.Store(true)
	if id, err := e.auth(hk); err != nil || id != idk {
		t.Fatalf("stale key within grace: %v %v", id, err)
	}
	if id, err := e.auth(hb); err != nil || id != idb {
		t.Fatalf("stale password within grace: %v %v", id, err)
	}
	// An uncached credential: 503.
	if _, err := e.auth(basic("bob", testPassword)); !errors.Is(err, authn.ErrUnavailable) {
		t.Fatalf("uncached: %v", err)
	}
	e.clk.Advance(testGrace)
	if _, err := e.auth(hk); !errors.Is(err, authn.ErrUnavailable) {
		t.Fatalf("past grace: %v", err)
	}
	// Back: revalidated and fresh again.
	e.st.down.Store(false)
	e.ok(hk)
	before := e.st.calls()
	e.ok(hk)
	if e.st.calls() != before {
		t.Fatal("not fresh after revalidation")
	}
}

// A stale entry whose credential was revoked meanwhile is not served: the
// revalidation refuses it (and replaces the entry).
func TestChainStaleRevoked(t *testing.T) {
	e := newEnv(t, envOptions{})
	hk := "Bearer " + e.value
	e.ok(hk)
	_, _, err := e.raw.RevokeAPIKey(context.Background(), e.key.ID, e.clk.Now())
	must(t, err)
	e.clk.Advance(testTTL + time.Second) // stale, invalidation lost
	if _, err := e.auth(hk); !errors.Is(err, authn.ErrInvalidCredentials) {
		t.Fatalf("revoked while stale: %v", err)
	}
	e.cache.Wait()
	e.st.down.Store(true)
	if id, err := e.auth(hk); id != nil || err == nil {
		t.Fatalf("revoked key came back during an outage: %v", id)
	}
}

func TestChainRateLimit(t *testing.T) {
	t.Run("per ip", func(t *testing.T) {
		e := newEnv(t, envOptions{perIP: 3})
		good := basic("bob", testPassword)
		e.ok("Bearer " + e.value) // cached before the attack
		fails := []string{basic("x1", "p"), basic("x2", "p"), "Bearer " + mutate(e.value, len(e.value)-1)}
		for _, h := range fails {
			if _, err := e.auth(h); !errors.Is(err, authn.ErrInvalidCredentials) && !errors.Is(err, authn.ErrMalformedCredentials) {
				t.Fatalf("%v", err)
			}
		}
		calls := e.st.calls()
		_, err := e.auth(good)
		var rl *authn.RateLimitedError
		if !errors.As(err, &rl) || rl.Scope != "ip" || rl.RetryAfter < time.Second || rl.RetryAfter > time.Minute+time.Second {
			t.Fatalf("4th try: %v", err)
		}
		if st, code, _ := authn.Status(err); st != http.StatusTooManyRequests || code != "rate_limited" || authn.RetryAfter(err) != rl.RetryAfter {
			t.Fatalf("Status %d %s", st, code)
		}
		if e.st.calls() != calls {
			t.Fatal("a limited attempt reached the store")
		}
		// A cached credential is not a guess: still served.
		if _, err := e.auth("Bearer " + e.value); err != nil {
			t.Fatalf("cached credential from a limited IP: %v", err)
		}
		// Other clients are not limited.
		if _, err := e.chain.Authenticate(context.Background(), []byte(good), netip.MustParseAddr("198.51.100.7")); err != nil {
			t.Fatal(err)
		}
		// IPv6: one /64 is one client.
		a1, a2 := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
		for range 3 {
			_, _ = e.chain.Authenticate(context.Background(), []byte(basic("y", "p")), a1)
		}
		if _, err := e.chain.Authenticate(context.Background(), []byte(basic("carol", testPassword)), a2); !errors.As(err, &rl) {
			t.Fatalf("same /64: %v", err)
		}
		e.clk.Advance(2 * time.Minute)
		if _, err := e.auth(good); err != nil {
			t.Fatalf("after the window: %v", err)
		}
	})
	t.Run("stale is not a guess", func(t *testing.T) {
		e := newEnv(t, envOptions{perIP: 2})
		hk := "Bearer " + e.value
		e.ok(hk)
		e.clk.Advance(testTTL + time.Second) // stale
		for _, h := range []string{basic("x1", "p"), basic("x2", "p")} {
			_, _ = e.auth(h)
		}
		if _, err := e.auth(basic("bob", testPassword)); !errors.Is(err, authn.ErrRateLimited) {
			t.Fatalf("limited IP, uncached: %v", err)
		}
		before := e.st.lookups.Load()
		if _, err := e.auth(hk); err != nil {
			t.Fatalf("limited IP, stale entry: %v", err)
		}
		if e.st.lookups.Load() != before+1 {
			t.Fatal("stale entry not revalidated")
		}
	})
	t.Run("per user", func(t *testing.T) {
		e := newEnv(t, envOptions{perUser: 2})
		for i := range 2 {
			ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
			if _, err := e.chain.Authenticate(context.Background(), []byte(basic("alice", "guess")), ip); !errors.Is(err, authn.ErrInvalidCredentials) {
				t.Fatal(err)
			}
		}
		_, err := e.chain.Authenticate(context.Background(), []byte(basic("alice", testPassword)), netip.MustParseAddr("203.0.113.99"))
		var rl *authn.RateLimitedError
		if !errors.As(err, &rl) || rl.Scope != "user" {
			t.Fatalf("3rd try for alice: %v", err)
		}
		if _, err := e.auth(basic("bob", testPassword)); err != nil {
			t.Fatalf("bob: %v", err)
		}
	})
	t.Run("negative hits count", func(t *testing.T) {
		e := newEnv(t, envOptions{perIP: 3})
		h := basic("alice", "guess")
		for range 3 {
			_, _ = e.auth(h)
			e.cache.Wait()
		}
		var rl *authn.RateLimitedError
		if _, err := e.auth(h); !errors.As(err, &rl) {
			t.Fatalf("4th repeat: %v", err)
		}
		if n := e.st.users.Load(); n != 1 {
			t.Fatalf("%d GetUser", n)
		}
	})
	t.Run("unavailable and disabled methods do not count", func(t *testing.T) {
		e := newEnv(t, envOptions{perIP: 1, methods: []authn.Method{authn.MethodBasic}})
		e.st.down.Store(true)
		_, _ = e.auth(basic("alice", testPassword))
		_, _ = e.auth(basic("alice", testPassword))
		e.st.down.Store(false)
		_, _ = e.auth("Bearer " + e.value)
		if _, err := e.auth(basic("alice", testPassword)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestChainMethods(t *testing.T) {
	cases := []struct {
		methods    []authn.Method
		basic, key bool // accepted
	}{
		{methods: []authn.Method{authn.MethodBasic}, basic: true},
		{methods: []authn.Method{authn.MethodAPIKey}, key: true},
		{methods: []authn.Method{authn.MethodBearer}},
		{methods: nil, basic: true, key: true},
	}
	for _, tc := range cases {
		t.Run(methodsName(tc.methods), func(t *testing.T) {
			e := newEnv(t, envOptions{methods: tc.methods})
			try := func(h string, want bool) {
				t.Helper()
				before := e.st.calls()
				_, err := e.auth(h)
				if want != (err == nil) {
					t.Errorf("%.14s…: %v, want accepted=%v", h, err, want)
				}
				if !want && !errors.Is(err, authn.ErrInvalidCredentials) {
					t.Errorf("%.14s…: %v, want ErrInvalidCredentials", h, err)
				}
				if !want && e.st.calls() != before {
					t.Errorf("%.14s…: a disabled method reached the store", h)
				}
			}
			try(basic("alice", testPassword), tc.basic)
			for _, h := range keyForms(e.key.ID, e.value) {
				try(h, tc.key)
			}
			try("Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", false)
		})
	}
}

func methodsName(ms []authn.Method) string {
	if len(ms) == 0 {
		return "default"
	}
	var s []string
	for _, m := range ms {
		s = append(s, m.String())
	}
	return strings.Join(s, "+")
}

func TestNewChainRejectsUnknown(t *testing.T) {
	if _, err := authn.NewChain(authn.ChainConfig{Methods: []authn.Method{authn.MethodNone}}); err == nil {
		t.Error("method none accepted")
	}
	if _, err := authn.NewChain(authn.ChainConfig{Authenticators: map[authn.CredKind]authn.Authenticator{9: nil}}); err == nil {
		t.Error("kind 9 accepted")
	}
}

// A chain without a cache authenticates every request from the store.
func TestChainWithoutCache(t *testing.T) {
	e := newEnv(t, envOptions{})
	c, err := authn.NewChain(authn.ChainConfig{Authenticators: map[authn.CredKind]authn.Authenticator{
		authn.KindAPIKey: fakeAuth{},
	}})
	must(t, err)
	for range 3 {
		id, err := c.Authenticate(context.Background(), []byte("Bearer "+e.value), ip1)
		if err != nil || id.KeyID != e.key.ID {
			t.Fatal(id, err)
		}
	}
	// Two credentials never share a flight.
	_, v2 := e.newKey("bob", "two", nil, time.Time{})
	id, err := c.Authenticate(context.Background(), []byte("Bearer "+v2), ip1)
	if err != nil || id.KeyID == e.key.ID {
		t.Fatal(id, err)
	}
}

// fakeAuth returns an identity naming the presented key id; other errors
// map as the chain says.
type fakeAuth struct{ err error }

func (f fakeAuth) Authenticate(_ context.Context, c *authn.Credentials) (*authn.Identity, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &authn.Identity{Username: "u", KeyID: string(c.KeyID), Method: authn.MethodAPIKey}, nil
}

// Whatever an authenticator returns, the chain never turns an unknown error
// into "invalid", and never reports a credential failure as unavailable.
func TestChainNormalisesAuthenticatorErrors(t *testing.T) {
	e := newEnv(t, envOptions{})
	cases := []struct {
		err  error
		want error
		code int
	}{
		{authn.ErrNotResponsible, authn.ErrInvalidCredentials, 401},
		{errors.New("boom"), authn.ErrUnavailable, 503},
		{context.DeadlineExceeded, authn.ErrUnavailable, 503},
		{store.ErrUnavailable, authn.ErrUnavailable, 503},
		{authn.ErrExpired, authn.ErrExpired, 401},
		{authn.ErrForbidden, authn.ErrForbidden, 403},
	}
	for _, tc := range cases {
		c, err := authn.NewChain(authn.ChainConfig{Authenticators: map[authn.CredKind]authn.Authenticator{
			authn.KindAPIKey: fakeAuth{err: tc.err},
		}})
		must(t, err)
		_, got := c.Authenticate(context.Background(), []byte(basic("_api_key", e.value)), ip1)
		if !errors.Is(got, tc.want) {
			t.Errorf("%v: got %v, want %v", tc.err, got, tc.want)
		}
		if st, _, _ := authn.Status(got); st != tc.code {
			t.Errorf("%v: status %d, want %d", tc.err, st, tc.code)
		}
	}
	// nil, nil is not a success.
	c, _ := authn.NewChain(authn.ChainConfig{Authenticators: map[authn.CredKind]authn.Authenticator{
		authn.KindAPIKey: nilAuth{},
	}})
	if id, err := c.Authenticate(context.Background(), []byte("Bearer "+e.value), ip1); id != nil || !errors.Is(err, authn.ErrInvalidCredentials) {
		t.Errorf("nil identity: %v %v", id, err)
	}
}

type nilAuth struct{}

func (nilAuth) Authenticate(context.Context, *authn.Credentials) (*authn.Identity, error) {
	return nil, nil
}

func TestStatus(t *testing.T) {
	rl := &authn.RateLimitedError{RetryAfter: 7 * time.Second, Scope: "ip"}
	cases := []struct {
		err    error
		status int
		code   string
		tok    string
		retry  time.Duration
	}{
		{nil, 200, "", "", 0},
		{authn.ErrNoCredentials, 401, "unauthorized", "", 0},
		{authn.ErrMalformedCredentials, 401, "invalid_credentials", "", 0},
		{authn.ErrInvalidCredentials, 401, "invalid_credentials", "", 0},
		{authn.ErrExpired, 401, "invalid_credentials", "", 0},
		{authn.ErrDisabled, 401, "invalid_credentials", "", 0},
		{&authn.TokenError{Err: authn.ErrExpired}, 401, "invalid_credentials", "invalid_token", 0},
		{&authn.TokenError{Err: authn.ErrMalformedCredentials}, 401, "invalid_credentials", "invalid_token", 0},
		{authn.ErrForbidden, 403, "forbidden", "", 0},
		{rl, 429, "rate_limited", "", 7 * time.Second},
		{authn.ErrUnavailable, 503, "unavailable", "", authn.UnavailableRetryAfter},
		{errors.Join(authn.ErrUnavailable, authn.ErrInvalidCredentials), 503, "unavailable", "", authn.UnavailableRetryAfter},
		{errors.New("x"), 500, "internal", "", 0},
	}
	for _, tc := range cases {
		st, code, tok := authn.Status(tc.err)
		if st != tc.status || code != tc.code || tok != tc.tok || authn.RetryAfter(tc.err) != tc.retry {
			t.Errorf("Status(%v) = %d %q %q retry %v", tc.err, st, code, tok, authn.RetryAfter(tc.err))
		}
	}
	if !errors.Is(rl, authn.ErrRateLimited) {
		t.Error("RateLimitedError does not wrap ErrRateLimited")
	}
}

// One audit line per failure, naming the user or key id and the client, and
// never the password, the secret or the key value.
func TestChainAuditLog(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	e := newEnv(t, envOptions{logger: zap.New(core)})
	s, _ := apikey.NewSecret()
	wrongKey := apikey.Format(e.key.ID, s)
	headers := []string{basic("alice", "hunter2-secret"), "Bearer " + wrongKey, basic("_api_key", mutate(e.value, 20))}
	for _, h := range headers {
		if _, err := e.auth(h); err == nil {
			t.Fatal("accepted")
		}
	}
	e.ok(basic("alice", testPassword)) // success: no line
	entries := logs.All()
	if len(entries) != len(headers) {
		t.Fatalf("%d audit lines, want %d", len(entries), len(headers))
	}
	for i, en := range entries {
		f := en.ContextMap()
		if f["event"] != "auth_failure" || f["client_ip"] != ip1.String() || f["reason"] == "" {
			t.Errorf("line %d: %v", i, f)
		}
		var all strings.Builder
		all.WriteString(en.Message)
		for k, v := range f {
			all.WriteString(k + "=" + toString(v) + " ")
		}
		for _, secret := range []string{"hunter2", s, e.value, wrongKey, secretOf(t, e.value), testPassword, headers[i]} {
			if strings.Contains(all.String(), secret) {
				t.Errorf("line %d leaks a secret: %s", i, all.String())
			}
		}
	}
	if f := entries[0].ContextMap(); f["username"] != "alice" || f["method"] != "basic" {
		t.Errorf("basic line: %v", f)
	}
	if f := entries[1].ContextMap(); f["key_id"] != e.key.ID || f["method"] != "api_key" {
		t.Errorf("key line: %v", f)
	}
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

func TestChainMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	e := newEnv(t, envOptions{reg: reg, hitSample: 1})
	e.ok(basic("alice", testPassword)) // miss
	e.ok(basic("alice", testPassword)) // hit
	e.ok("Bearer " + e.value)          // miss
	_, _ = e.auth(basic("alice", "bad"))
	_, _ = e.auth("Basic !!")
	e.st.down.Store(true)
	_, _ = e.auth(basic("bob", testPassword))

	text := metricsText(t, reg)
	for _, want := range []string{
		`keygate_auth_attempts_total{method="basic",result="success"} 2`,
		`keygate_auth_attempts_total{method="api_key",result="success"} 1`,
		`keygate_auth_attempts_total{method="basic",result="invalid"} 1`,
		`keygate_auth_attempts_total{method="none",result="malformed"} 1`,
		`keygate_auth_attempts_total{method="basic",result="unavailable"} 1`,
		`keygate_auth_duration_seconds_count{cache="hit",method="basic"} 1`,
		`keygate_auth_duration_seconds_count{cache="miss",method="basic"} 3`,
		`keygate_auth_duration_seconds_count{cache="miss",method="api_key"} 1`,
		`keygate_auth_duration_seconds_count{cache="none",method="none"} 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}

// Hits are timed one in HitSampleEvery (default 64), counted every time;
// the help text says so.
func TestChainHitSampling(t *testing.T) {
	for _, tc := range []struct {
		sample, every int
	}{{0, authn.DefaultHitSampleEvery}, {8, 8}} {
		reg := prometheus.NewPedanticRegistry()
		e := newEnv(t, envOptions{reg: reg, hitSample: tc.sample})
		h := basic("alice", testPassword)
		e.ok(h) // miss
		const hits = 1024
		for range hits {
			e.ok(h)
		}
		mfs, err := reg.Gather()
		must(t, err)
		var observed, attempts uint64
		var help string
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				switch {
				case mf.GetName() == "keygate_auth_duration_seconds" && labels["method"] == "basic" && labels["cache"] == "hit":
					observed = m.GetHistogram().GetSampleCount()
					help = mf.GetHelp()
				case mf.GetName() == "keygate_auth_attempts_total" && labels["method"] == "basic" && labels["result"] == "success":
					attempts = uint64(m.GetCounter().GetValue())
				}
			}
		}
		if attempts != hits+1 {
			t.Errorf("1 in %d: attempts = %d, want %d", tc.every, attempts, hits+1)
		}
		// Each pooled state keeps its own count: at most hits/every, and
		// some (the race detector's sync.Pool drops states: maybe none).
		if observed == 0 && !raceEnabled || observed > hits/uint64(tc.every) { //nolint:gosec // bounded by the test's own values
			t.Errorf("1 in %d: %d of %d hits observed", tc.every, observed, hits)
		}
		if want := fmt.Sprintf("one hit in %d is observed", tc.every); !strings.Contains(help, want) {
			t.Errorf("help %q does not say %q", help, want)
		}
	}
	if _, err := authn.NewChain(authn.ChainConfig{HitSampleEvery: 1<<20 + 1}); err == nil {
		t.Error("sampling 1 in 2^20+1 accepted")
	}
}

// Mixed concurrent traffic with invalidations landing: no races (-race), no
// wrong answers.
func TestChainConcurrentMixed(t *testing.T) {
	e := newEnv(t, envOptions{})
	good := []string{basic("alice", testPassword), basic("bob", testPassword), "Bearer " + e.value, apiKeyHeader(e.key.ID, e.value)}
	s, _ := apikey.NewSecret()
	bad := []string{basic("alice", "no"), basic("zed", "no"), "Bearer " + apikey.Format(e.key.ID, s), "Bearer " + mutate(e.value, 9)}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				if g == 0 && i%20 == 0 {
					e.cache.Invalidate(store.Invalidation{Account: "acme", Username: "alice"})
				}
				if id, err := e.auth(good[(g+i)%len(good)]); err != nil || id == nil {
					t.Errorf("good credential: %v", err)
					return
				}
				if id, err := e.auth(bad[(g+i)%len(bad)]); err == nil || id != nil || errors.Is(err, authn.ErrUnavailable) {
					t.Errorf("bad credential: %v %v", id, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestParseMethod(t *testing.T) {
	for _, m := range []authn.Method{authn.MethodBasic, authn.MethodAPIKey, authn.MethodBearer} {
		if got, err := authn.ParseMethod(m.String()); got != m || err != nil {
			t.Errorf("%s: %v %v", m, got, err)
		}
	}
	for _, s := range []string{"", "none", "Basic", "apikey"} {
		if _, err := authn.ParseMethod(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// A flood of rate-limited refusals writes one audit line per client (and
// per Basic username) per window, carrying how many were left out; every
// refusal is still counted, and failures that checked a credential are
// still one line each.
func TestChainAuditRateLimited(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	reg := prometheus.NewRegistry()
	e := newEnv(t, envOptions{logger: zap.New(core), perIP: 2, perUser: 1000, reg: reg})
	type line struct {
		reason  string
		leftOut any
	}
	lines := func() []line {
		var out []line
		for _, en := range logs.TakeAll() {
			f := en.ContextMap()
			out = append(out, line{f["reason"].(string), f["rate_limited_not_logged"]})
		}
		return out
	}
	wrong := basic("alice", "not-the-password")
	for range 2 { // spends the IP's budget: two real failures, two lines
		if _, err := e.auth(wrong); !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Fatalf("want invalid credentials, got %v", err)
		}
	}
	if got := lines(); len(got) != 2 || got[0].leftOut != nil {
		t.Fatalf("real failures: %+v, want two lines without rate_limited_not_logged", got)
	}
	const flood = 50
	for range flood {
		if _, err := e.auth(wrong); !errors.Is(err, authn.ErrRateLimited) {
			t.Fatalf("want rate limited, got %v", err)
		}
	}
	got := lines()
	if len(got) != 1 || got[0].leftOut != int64(0) || !strings.Contains(got[0].reason, "too many failed attempts") {
		t.Fatalf("flood of %d refusals: %+v, want one line with rate_limited_not_logged=0", flood, got)
	}
	// Another client is limited on its own and gets its own line.
	ip2 := netip.MustParseAddr("198.51.100.7")
	if _, err := e.chain.Authenticate(context.Background(), []byte(wrong), ip2); err == nil {
		t.Fatal("accepted")
	}
	if got := lines(); len(got) != 1 {
		t.Fatalf("a second client: %d lines, want 1", len(got))
	}
	// After the window, the next refusal is logged with the count left out.
	e.clk.Advance(11 * time.Second)
	if _, err := e.auth(wrong); !errors.Is(err, authn.ErrRateLimited) {
		t.Fatalf("want rate limited, got %v", err)
	}
	if got := lines(); len(got) != 1 || got[0].leftOut != int64(flood-1) {
		t.Fatalf("after the window: %+v, want one line with rate_limited_not_logged=%d", got, flood-1)
	}
	// The metric counts every refusal.
	text := metricsText(t, reg)
	if want := fmt.Sprintf(`keygate_auth_attempts_total{method="basic",result="rate_limited"} %d`, flood+1); !strings.Contains(text, want+"\n") {
		t.Errorf("missing %s in\n%s", want, text)
	}
}

// metricsText is reg's metrics in the text exposition format.
func metricsText(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	must(t, err)
	var sb strings.Builder
	for _, mf := range mfs {
		_, err := expfmt.MetricFamilyToText(&sb, mf)
		must(t, err)
	}
	return sb.String()
}

// In the last tenth of its TTL a cached credential is served at once while
// one background lookup revalidates it: nobody waits for the lookup (or the
// password hash) when a busy credential's entry would have expired, and
// what the refresh finds applies from the next request.
func TestChainRefreshAhead(t *testing.T) {
	for _, form := range []string{"key", "basic"} {
		t.Run(form, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			h := e.goodHeader(form)
			e.ok(h)
			e.cache.Wait()
			if n := e.st.calls(); n != 1 {
				t.Fatalf("%d lookups after the first request, want 1", n)
			}
			e.clk.Advance(testTTL - testTTL/20)
			gate := make(chan struct{})
			e.st.gate.Store(&gate)
			served := make(chan error, 1)
			go func() { _, err := e.auth(h); served <- err }()
			select {
			case err := <-served:
				if err != nil {
					t.Fatalf("request in the refresh window: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a request in the refresh window waited for the refresh")
			}
			waitFor(t, func() bool { return e.st.calls() == 2 }) // the refresh, held at the gate
			e.ok(h)                                              // served from the cache, no second refresh
			if n := e.st.calls(); n != 2 {
				t.Fatalf("%d lookups, want 2 (one refresh)", n)
			}
			close(gate)
			waitFor(t, func() bool { return goroutinesIn(flightFrame) == 0 })
			e.cache.Wait()

			// Past the first entry's TTL: the refreshed entry serves.
			e.clk.Advance(testTTL / 2)
			e.ok(h)
			if n := e.st.calls(); n != 2 {
				t.Fatalf("%d lookups after the first TTL, want 2 (refreshed entry)", n)
			}

			// The next refresh finds the credential gone: the request that
			// started it is served (the entry was valid), the next refused.
			if form == "key" {
				if _, _, err := e.raw.RevokeAPIKey(context.Background(), e.key.ID, e.clk.Now()); err != nil {
					t.Fatal(err)
				}
			} else {
				must(t, e.raw.DeleteUser(context.Background(), "alice"))
			}
			e.clk.Advance(testTTL/2 - testTTL/20) // the refreshed entry's last tenth
			e.ok(h)
			waitFor(t, func() bool { return e.st.calls() == 3 && goroutinesIn(flightFrame) == 0 })
			e.cache.Wait()
			if _, err := e.auth(h); !errors.Is(err, authn.ErrInvalidCredentials) && !errors.Is(err, authn.ErrDisabled) {
				t.Fatalf("after a refresh found the credential gone: %v, want a refusal", err)
			}
		})
	}
}
