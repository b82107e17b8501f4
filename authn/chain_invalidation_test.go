package authn_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/store"
)

// apply hands inv to the account states, then the cache, as the wiring does
// (AccountStates.WatchFirst before cache.Invalidate).
func (e *env) apply(inv store.Invalidation) {
	e.states.Invalidate(inv)
	e.cache.Invalidate(inv)
}

// Issue 13 item 7, DESIGN.md §13: invalidation is per credential. Revoking
// key K1 drops every form of K1 and nothing else of its owner's: during a
// store outage that follows, the owner's password and other key are still
// served from the cache (no store call), while K1 is not (it is not cached
// any more, and the store cannot answer: 503, never 200). A user-level
// invalidation then drops every credential of the user.
func TestChainKeyInvalidationPerCredential(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, envOptions{perIP: 100, perUser: 100})
	k2, v2 := e.newKey("alice", "second", []string{"read"}, time.Time{})
	k1Forms := keyForms(e.key.ID, e.value)
	others := map[string]string{
		"password":          basic("alice", testPassword),
		"other key":         "Bearer " + v2,
		"other key, ApiKey": apiKeyHeader(k2.ID, v2),
		"other user":        basic("bob", testPassword),
	}
	ids := map[string]*authn.Identity{}
	for name, h := range others {
		ids[name] = e.ok(h)
	}
	for _, h := range k1Forms {
		e.ok(h)
	}

	// What the store publishes for a revocation: the key, naming its owner.
	_, _, err := e.raw.RevokeAPIKey(ctx, e.key.ID, e.clk.Now())
	must(t, err)
	e.apply(store.Invalidation{KeyID: e.key.ID, Username: "alice"})
	e.st.down.Store(true)

	before := e.st.calls()
	for name, h := range others {
		if id, err := e.auth(h); err != nil || id != ids[name] {
			t.Errorf("%s after K1's revocation, store down: (%v, %v), want the cached identity", name, id, err)
		}
	}
	if e.st.calls() != before {
		t.Errorf("cached credentials of K1's owner cost %d store calls, want 0", e.st.calls()-before)
	}
	for form, h := range k1Forms {
		if id, err := e.auth(h); id != nil || !errors.Is(err, authn.ErrUnavailable) {
			t.Errorf("revoked K1 (%s), store down: (%v, %v), want ErrUnavailable", form, id, err)
		}
	}
	e.st.down.Store(false)
	for form, h := range k1Forms {
		if id, err := e.auth(h); id != nil || !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Errorf("revoked K1 (%s), store up: (%v, %v), want ErrInvalidCredentials", form, id, err)
		}
	}

	// User level: every credential of alice goes, bob's stays.
	e.apply(store.Invalidation{Username: "alice"})
	e.st.down.Store(true)
	for name, h := range others {
		id, err := e.auth(h)
		if name == "other user" {
			if err != nil || id != ids[name] {
				t.Errorf("%s after alice's user-level invalidation: (%v, %v)", name, id, err)
			}
			continue
		}
		if id != nil || !errors.Is(err, authn.ErrUnavailable) {
			t.Errorf("%s after a user-level invalidation, store down: (%v, %v), want ErrUnavailable", name, id, err)
		}
	}
}

// Issue 13 item 5: after a re-established subscription the store delivers
// what was missed, then Revalidate. Entries are not dropped: fresh ones are
// served and revalidated in the background, so with the store not ready yet
// cached credentials are still served (and nobody waits); entries past
// cache.ttl are revalidated first and, the store not answering, served from
// the cache within the outage grace. A key whose revocation was replayed
// before the mark is refused even while the store cannot answer.
func TestChainRevalidateAfterResubscription(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, envOptions{perIP: 100, perUser: 100})
	k2, v2 := e.newKey("alice", "revoked-meanwhile", nil, time.Time{})
	hk, hb, hRevoked := "Bearer "+e.value, basic("alice", testPassword), apiKeyHeader(k2.ID, v2)
	idk, idb := e.ok(hk), e.ok(hb)
	e.ok(hRevoked)

	// Missed while the subscription was down, replayed, then the mark.
	_, _, err := e.raw.RevokeAPIKey(ctx, k2.ID, e.clk.Now())
	must(t, err)
	e.apply(store.Invalidation{KeyID: k2.ID, Username: "alice", Pos: "1-1"})
	e.apply(store.Invalidation{Revalidate: true})

	// The store is not ready yet (Redis restarting).
	e.st.down.Store(true)
	before := e.st.calls()
	for range 3 {
		if id, err := e.auth(hk); err != nil || id != idk {
			t.Fatalf("marked key, store not ready: (%v, %v), want the cached identity", id, err)
		}
		if id, err := e.auth(hb); err != nil || id != idb {
			t.Fatalf("marked password, store not ready: (%v, %v), want the cached identity", id, err)
		}
	}
	// Each was revalidated once, in the background.
	waitFor(t, func() bool { return e.st.calls() >= before+2 })
	if id, err := e.auth(hRevoked); id != nil || !errors.Is(err, authn.ErrUnavailable) {
		t.Fatalf("key revoked during the subscription outage, store not ready: (%v, %v), want ErrUnavailable", id, err)
	}
	// Past cache.ttl: revalidated first; the store not answering, the entry
	// is served within the grace.
	e.clk.Advance(testTTL + time.Second)
	before = e.st.calls()
	if id, err := e.auth(hk); err != nil || id != idk {
		t.Fatalf("marked key past the ttl, store not ready: (%v, %v), want the cached identity", id, err)
	}
	if e.st.calls() == before {
		t.Fatal("entry past the ttl served without trying to revalidate it")
	}

	// The store answers: revalidated, then fresh (no store call).
	e.st.down.Store(false)
	e.ok(hk)
	e.ok(hb)
	before = e.st.calls()
	e.ok(hk)
	e.ok(hb)
	if e.st.calls() != before {
		t.Fatal("not fresh after revalidation")
	}
	if id, err := e.auth(hRevoked); id != nil || !errors.Is(err, authn.ErrInvalidCredentials) {
		t.Fatalf("revoked key once the store answers: (%v, %v)", id, err)
	}

	// A mark while the store answers: served at once, replaced by the
	// background revalidation's result.
	idk = e.ok(hk)
	e.apply(store.Invalidation{Revalidate: true})
	if id, err := e.auth(hk); err != nil || id != idk {
		t.Fatalf("marked key, store up: (%v, %v), want the cached identity at once", id, err)
	}
	waitFor(t, func() bool {
		e.cache.Wait()
		id, err := e.auth(hk)
		return err == nil && id != idk
	})
}

// The same through Listen and the real store's Watch: a key revocation
// published by the store leaves the owner's password and other key cached.
func TestChainKeyInvalidationThroughWatch(t *testing.T) {
	e := newEnv(t, envOptions{perIP: 100, perUser: 100})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.cache.Listen(ctx, e.states.WatchFirst(e.raw), zap.NewNop()) }()
	t.Cleanup(func() { cancel(); <-done })

	k2, v2 := e.newKey("alice", "second", nil, time.Time{})
	hk, hk2, hb := "Bearer "+e.value, apiKeyHeader(k2.ID, v2), basic("alice", testPassword)
	e.ok(hk2)
	e.ok(hb)
	e.ok(hk)
	_, _, err := e.raw.RevokeAPIKey(context.Background(), e.key.ID, e.clk.Now())
	must(t, err)
	waitFor(t, func() bool {
		_, err := e.auth(hk)
		return errors.Is(err, authn.ErrInvalidCredentials)
	})
	before := e.st.calls()
	for _, h := range []string{hk2, hb} {
		if _, err := e.auth(h); err != nil {
			t.Fatalf("owner's other credential after the key's revocation: %v", err)
		}
	}
	if e.st.calls() != before {
		t.Fatalf("owner's other credentials were evicted: %d store calls", e.st.calls()-before)
	}
}
