package principal

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

func TestAccountStatesCache(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s := f.states
	enabled := func(name string) bool {
		t.Helper()
		ok, err := s.Enabled(ctx, name)
		must(t, err)
		return ok
	}
	first := enabled("acme")
	if !first || !enabled("acme") || f.st.accounts.Load() != 1 {
		t.Fatalf("want one read for two asks, got %d", f.st.accounts.Load())
	}
	if enabled("nope") || f.st.accounts.Load() != 2 {
		t.Fatal("unknown account")
	}
	_, err := f.st.SetAccountState(ctx, "acme", store.StateDisabled)
	must(t, err)
	// Without an invalidation the state is trusted until the TTL.
	if !enabled("acme") {
		t.Fatal("re-read without invalidation")
	}
	s.Invalidate(store.Invalidation{Username: "alice"}) // user only: kept
	if !enabled("acme") || f.st.accounts.Load() != 2 {
		t.Fatal("user invalidation dropped the account state")
	}
	s.Invalidate(store.Invalidation{Account: "acme", Username: "alice"})
	if enabled("acme") || f.st.accounts.Load() != 3 {
		t.Fatal("account invalidation not applied")
	}
	_, err = f.st.SetAccountState(ctx, "acme", store.StateEnabled)
	must(t, err)
	f.clk.Advance(time.Minute)
	if !enabled("acme") || f.st.accounts.Load() != 4 {
		t.Fatal("state outlived its TTL")
	}
	for _, inv := range []store.Invalidation{{Flush: true}, {KeyID: "x"}} {
		s.Invalidate(inv)
		if s.Len() != 0 {
			t.Fatalf("%+v kept %d states", inv, s.Len())
		}
	}
}

// A state read while an invalidation lands is used for that answer but not
// kept.
func TestAccountStatesInvalidationDuringRead(t *testing.T) {
	f := newFixture(t)
	f.st.onGetAccount = func() { f.states.Invalidate(store.Invalidation{Account: "acme"}) }
	if ok, err := f.states.Enabled(context.Background(), "acme"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if f.states.Len() != 0 {
		t.Fatal("state read across an invalidation was kept")
	}
}

func TestAccountStatesErrorsNotCached(t *testing.T) {
	f := newFixture(t)
	f.st.down.Store(true)
	if _, err := f.states.Enabled(context.Background(), "acme"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatal(err)
	}
	f.st.down.Store(false)
	if ok, err := f.states.Enabled(context.Background(), "acme"); !ok || err != nil {
		t.Fatal(ok, err)
	}
}

func TestAccountStatesConcurrent(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			for range 50 {
				if i%5 == 0 {
					f.states.Invalidate(store.Invalidation{Account: "acme"})
				}
				if ok, err := f.states.Enabled(context.Background(), "acme"); !ok || err != nil {
					t.Error(ok, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// WatchFirst applies each invalidation to the states before passing it on,
// and flushes them when the subscription ends.
func TestWatchFirst(t *testing.T) {
	f := newFixture(t)
	ws := &scriptedWatch{Store: f.st}
	w := f.states.WatchFirst(ws)
	ws.during = func() {
		// Subscribed: fill the state, then deliver.
		if _, err := f.states.Enabled(context.Background(), "acme"); err != nil {
			t.Error(err)
		}
	}
	var seen []int
	err := w.Watch(context.Background(), func(inv store.Invalidation) {
		seen = append(seen, f.states.Len())
	})
	if !errors.Is(err, errWatchEnded) {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != 0 {
		t.Fatalf("fn saw %v states held, want [0] (dropped before fn)", seen)
	}
	if _, err := f.states.Enabled(context.Background(), "acme"); err != nil {
		t.Fatal(err)
	}
	ws.during = nil
	ws.invs = nil
	_ = w.Watch(context.Background(), func(store.Invalidation) {})
	if f.states.Len() != 0 {
		t.Fatal("not flushed around Watch")
	}
}

var errWatchEnded = errors.New("subscription lost")

// scriptedWatch delivers one account invalidation synchronously, then
// reports a lost subscription.
type scriptedWatch struct {
	store.Store
	during func()
	invs   []store.Invalidation
}

func (s *scriptedWatch) Watch(ctx context.Context, fn func(store.Invalidation)) error {
	if s.during != nil {
		s.during()
		fn(store.Invalidation{Account: "acme"})
	}
	return errWatchEnded
}
