package cache

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
)

// eventually polls cond until it holds (deliveries through Watch are
// asynchronous). The 10 s cap only turns a hang into a failure.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: never happened", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Listen against the real embedded store: writes that revoke access reach
// the cache through Store.Watch, and a store that goes away leaves cached
// identities Stale (servable under the outage policy), not dead.
func TestListenBoltstore(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "keygate.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	for _, a := range []string{"acme", "other"} {
		if err := st.CreateAccount(ctx, &store.Account{Name: a}); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []struct{ name, account string }{{"alice", "acme"}, {"bob", "acme"}, {"carol", "other"}, {"probe", "other"}} {
		if err := st.CreateUser(ctx, &store.User{Username: u.name, Account: u.account, Type: store.TypeUser, //nolint:gosec // test data, not a real credential
			Roles: []string{"r"}, PasswordHash: "$argon2id$fake"}); err != nil {
			t.Fatal(err)
		}
	}
	key := &store.APIKey{Name: "ci", Username: "alice", Roles: []string{"r"}, Hash: []byte("salted-hash")}
	key2 := &store.APIKey{Name: "ci2", Username: "alice", Roles: []string{"r"}, Hash: []byte("salted-hash-2")}
	for _, k := range []*store.APIKey{key, key2} {
		if err := st.CreateAPIKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}

	clk := newClock()
	c := newTestCache(t, Config{Now: clk.Now})
	c.backoffMin, c.backoffMax = time.Millisecond, 4*time.Millisecond
	e := &env{t: t, c: c, clk: clk}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Listen(lctx, st, nil)
	}()
	t.Cleanup(func() { cancel(); <-done })

	// Wait until the subscription is live: a write for probe reaches us.
	probe := e.setPos("probe:pw", ident("probe", "other"))
	hash := "$argon2id$probe"
	eventually(t, "subscription", func() bool {
		if _, err := st.UpdateUser(ctx, "probe", store.UserUpdate{PasswordHash: &hash}); err != nil {
			t.Fatal(err)
		}
		_, st, _ := e.get(probe)
		return st == authn.CacheMiss
	})

	newPW := "$argon2id$new" //nolint:gosec // test data, not a real credential
	disabled := store.StateDisabled
	steps := []struct {
		name  string
		write func() error
		dead  []string // credentials whose entries must die
		alive []string // credentials whose entries must stay
	}{
		{
			name: "password change",
			write: func() error {
				_, err := st.UpdateUser(ctx, "alice", store.UserUpdate{PasswordHash: &newPW})
				return err
			},
			dead:  []string{"alice:pw", "alice:apikey", "alice:apikey2"},
			alive: []string{"bob:pw", "carol:pw"},
		},
		{
			// Per credential (DESIGN.md §13): the owner's password and
			// other key stay cached.
			name: "key revocation",
			write: func() error {
				_, _, err := st.RevokeAPIKey(ctx, key.ID, time.Now())
				return err
			},
			dead:  []string{"alice:apikey"},
			alive: []string{"alice:pw", "alice:apikey2", "bob:pw", "carol:pw"},
		},
		{
			name: "user disabled",
			write: func() error {
				_, err := st.UpdateUser(ctx, "bob", store.UserUpdate{State: &disabled})
				return err
			},
			dead:  []string{"bob:pw"},
			alive: []string{"alice:pw", "carol:pw"},
		},
		{
			name: "account disabled",
			write: func() error {
				_, err := st.SetAccountState(ctx, "acme", store.StateDisabled)
				return err
			},
			dead:  []string{"alice:pw", "alice:apikey2", "bob:pw"},
			alive: []string{"carol:pw"},
		},
	}
	owners := map[string]*struct{ user, account, keyID string }{
		"alice:pw": {"alice", "acme", ""}, "alice:apikey": {"alice", "acme", key.ID},
		"alice:apikey2": {"alice", "acme", key2.ID},
		"bob:pw":        {"bob", "acme", ""}, "carol:pw": {"carol", "other", ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			keys := map[string]authn.CacheKey{}
			for cred, o := range owners {
				keys[cred] = e.setPos(cred, identKey(o.user, o.account, o.keyID))
				if _, st, _ := e.get(keys[cred]); st != authn.CacheHit {
					t.Fatalf("%s: %v before the write", cred, st)
				}
			}
			if err := s.write(); err != nil {
				t.Fatal(err)
			}
			for _, cred := range s.dead {
				eventually(t, cred+" invalidated", func() bool {
					_, st, _ := e.get(keys[cred])
					return st == authn.CacheMiss
				})
			}
			for _, cred := range s.alive {
				if _, st, _ := e.get(keys[cred]); st != authn.CacheHit {
					t.Fatalf("%s: %v, want hit", cred, st)
				}
			}
		})
	}

	t.Run("store goes away", func(t *testing.T) {
		k := e.setPos("carol:pw", ident("carol", "other"))
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		// Watch fails and keeps failing: the entry must be revalidated but
		// stays servable for the outage grace.
		eventually(t, "marked stale", func() bool {
			_, st, _ := e.get(k)
			return st == authn.CacheStale
		})
		clk.Advance(testTTL + testGrace)
		if _, st, _ := e.get(k); st != authn.CacheMiss {
			t.Fatalf("after the outage grace: %v", st)
		}
	})
}
