package main

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/principal"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
)

// oneInvalidation runs subscribed (the subscription is up), delivers inv to
// Watch's fn, then reports a lost subscription.
type oneInvalidation struct {
	store.Store
	subscribed func()
	inv        store.Invalidation
}

var errSubscriptionLost = errors.New("subscription lost")

func (s oneInvalidation) Watch(_ context.Context, fn func(store.Invalidation)) error {
	s.subscribed()
	fn(s.inv)
	return errSubscriptionLost
}

// TestInvalidationSubscribers: the fan-out lists the account states first,
// then the external authorizer's decisions (only with that handler), and
// the identity cache (the fn of the Watch) sees an invalidation only after
// the account states dropped the account it names.
func TestInvalidationSubscribers(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "kg.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.CreateAccount(ctx, &store.Account{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	// The plugin is never called: only the decision cache's Invalidate runs.
	ext, err := authz.NewExternal(configs.External{Endpoint: "http://127.0.0.1:9", Timeout: configs.Duration(time.Second),
		CacheTTL: configs.Duration(time.Minute)}, authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ext.Close() })

	tests := []struct {
		name     string
		external *authz.External
		want     []string
	}{
		{"native authorizer", nil, []string{"account states"}},
		{"external authorizer", ext, []string{"account states", "authz decisions"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := &gateway{states: principal.NewAccountStates(st, time.Hour, nil), external: tc.external}
			subs := g.invalidationSubscribers()
			names := make([]string, len(subs))
			for i, s := range subs {
				names[i] = s.Name
			}
			if !slices.Equal(names, tc.want) {
				t.Fatalf("invalidation fan-out = %q, want %q", names, tc.want)
			}

			// Once subscribed (the start flushed the states), the state of
			// acme is read and held; the invalidation naming acme must have
			// dropped it when the identity cache (fn) gets it.
			subscribed := func() {
				if on, err := g.states.Enabled(ctx, "acme"); err != nil || !on {
					t.Errorf("Enabled(acme) = %v, %v", on, err)
				}
				if g.states.Len() != 1 {
					t.Errorf("states held = %d, want 1", g.states.Len())
				}
			}
			held := -1
			w := store.WatchThrough(oneInvalidation{Store: st, subscribed: subscribed, inv: store.Invalidation{Account: "acme"}}, subs...)
			if err := w.Watch(ctx, func(store.Invalidation) { held = g.states.Len() }); !errors.Is(err, errSubscriptionLost) {
				t.Fatalf("Watch = %v", err)
			}
			if held != 0 {
				t.Errorf("the identity cache got the invalidation while %d account state(s) were still held, want 0", held)
			}
		})
	}
}
