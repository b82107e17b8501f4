package authn_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/redisstore"
)

func newRedisStore(t testing.TB, clk *clock) (*testredis.Server, store.Store) {
	t.Helper()
	// AOF with fsync on every write: the data survives Stop (SIGKILL) and
	// Restart.
	srv := testredis.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	rs, err := redisstore.New(configs.Redis{Addrs: []string{srv.Addr()}, Timeout: configs.Duration(time.Second)},
		redisstore.Options{Now: clk.Now})
	must(t, err)
	t.Cleanup(func() { _ = rs.Close() })
	return srv, rs
}

// DESIGN.md §8 and SECURITY.md "store down", against a real Redis that is
// killed and restarted: cached identities keep working within
// store.outage_grace, uncached credentials get ErrUnavailable (never
// invalid, never success), a revoked key never comes back, and everything
// works again after the restart.
func TestChainRedisOutage(t *testing.T) {
	clk := newClock()
	srv, rs := newRedisStore(t, clk)
	e := newEnvOn(t, clk, rs, envOptions{perIP: 3, perUser: 3})
	ctx := context.Background()
	hk, hb := "Bearer "+e.value, basic("alice", testPassword)
	k2, v2 := e.newKey("alice", "doomed", nil, time.Time{})
	hk2 := apiKeyHeader(k2.ID, v2)
	e.ok(hk2)

	// Revoke k2 through the store; its invalidation reaches this instance.
	_, _, err := rs.RevokeAPIKey(ctx, k2.ID, clk.Now())
	must(t, err)
	inv := store.Invalidation{Account: "acme", Username: "alice", KeyID: k2.ID}
	e.states.Invalidate(inv)
	e.cache.Invalidate(inv)

	idk, idb := e.ok(hk), e.ok(hb)
	clk.Advance(testTTL + time.Second) // past cache.ttl: stale, within the grace
	srv.Stop()

	for name, h := range map[string]string{"key": hk, "password": hb} {
		id, err := e.auth(h)
		if err != nil || (id != idk && id != idb) {
			t.Fatalf("cached %s during outage: %v %v", name, id, err)
		}
	}
	s, _ := apikey.NewSecret()
	uncached := map[string]string{
		"uncached user":          basic("bob", testPassword),
		"wrong password":         basic("alice", "not it"),
		"unknown key":            "Bearer " + apikey.Format("AAAAAAAAZZZZZZZZZZZZ", s),
		"wrong secret":           apiKeyHeader(e.key.ID, apikey.Format(e.key.ID, s)),
		"revoked while cached":   hk2,
		"revoked, another forms": "Bearer " + v2,
	}
	for range 4 { // beyond the failure limits (3): unavailability is not a failure
		for name, h := range uncached {
			id, err := e.auth(h)
			if id != nil || !errors.Is(err, authn.ErrUnavailable) || errors.Is(err, authn.ErrInvalidCredentials) {
				t.Fatalf("%s during outage: (%v, %v), want ErrUnavailable", name, id, err)
			}
		}
	}

	clk.Advance(testGrace) // past the grace: cached identities stop too
	if _, err := e.auth(hk); !errors.Is(err, authn.ErrUnavailable) {
		t.Fatalf("past the grace: %v", err)
	}

	srv.Restart()
	waitFor(t, func() bool { _, err := e.auth(basic("bob", testPassword)); return err == nil })
	e.ok(hk)
	e.ok(hb)
	for _, h := range []string{hk2, "Bearer " + v2} {
		if id, err := e.auth(h); id != nil || !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Fatalf("revoked key after restart: %v %v", id, err)
		}
	}
	if _, err := e.auth(basic("alice", "not it")); !errors.Is(err, authn.ErrInvalidCredentials) {
		t.Fatalf("wrong password after restart: %v", err)
	}
}

// The whole chain against Redis for each form (miss then hit).
func TestChainRedisForms(t *testing.T) {
	clk := newClock()
	_, rs := newRedisStore(t, clk)
	e := newEnvOn(t, clk, rs, envOptions{})
	forms := keyForms(e.key.ID, e.value)
	forms["basic"] = basic("alice", testPassword)
	for name, h := range forms {
		id := e.ok(h)
		if id.Username != "alice" {
			t.Fatalf("%s: %+v", name, *id)
		}
	}
	if n := e.st.calls(); n != 2 {
		t.Fatalf("%d lookups, want 2", n)
	}
}
