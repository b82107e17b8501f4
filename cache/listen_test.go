package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/store"
)

// watchStore implements only Store.Watch (the seam Listen uses); every other
// method is the nil embedded interface and panics if called. Each Watch call
// hands its fn to the test through subs and returns when the test sends an
// error (or nil) on fail, or when ctx ends.
type watchStore struct {
	store.Store
	subs chan func(store.Invalidation)
	fail chan error
}

func (s *watchStore) Watch(ctx context.Context, fn func(store.Invalidation)) error {
	s.subs <- fn
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-s.fail:
		return err
	}
}

func TestListen(t *testing.T) {
	clk := newClock()
	c := newTestCache(t, Config{Now: clk.Now})
	c.backoffMin, c.backoffMax = time.Millisecond, 4*time.Millisecond
	e := &env{t: t, c: c, clk: clk}
	ws := &watchStore{subs: make(chan func(store.Invalidation), 1), fail: make(chan error)}
	core, logs := observer.New(zapcore.WarnLevel)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Listen(ctx, ws, zap.New(core))
	}()
	subscribe := func() func(store.Invalidation) {
		t.Helper()
		select {
		case fn := <-ws.subs:
			return fn
		case <-time.After(10 * time.Second):
			t.Fatal("Listen did not (re)subscribe")
			return nil
		}
	}
	expect := func(step string, k authn.CacheKey, want authn.CacheStatus) {
		t.Helper()
		if _, st, _ := e.get(k); st != want {
			t.Fatalf("%s: %v, want %v", step, st, want)
		}
	}

	fn := subscribe()
	alice := e.setPos("alice:pw", ident("alice", "acme"))
	bob := e.setPos("bob:pw", ident("bob", "acme"))
	neg := e.setNeg("carol:bad", errBadSecret)

	fn(store.Invalidation{Username: "alice"})
	expect("delivered invalidation", alice, authn.CacheMiss)
	expect("other user untouched", bob, authn.CacheHit)
	expect("negative entry dies on any invalidation", neg, authn.CacheMiss)
	if got := counterValue(c.invalidations); got != 1 {
		t.Fatalf("invalidations_total %v, want 1", got)
	}
	// The store re-established its subscription and replayed what was
	// missed: entries are marked for revalidation, not dropped.
	fn(store.Invalidation{Revalidate: true})
	expect("revalidate after a resubscription: refreshed in the background", bob, authn.CacheRefresh)
	expect("served to the others meanwhile", bob, authn.CacheHit)
	bob = e.setPos("bob:pw", ident("bob", "acme"))
	expect("revalidated", bob, authn.CacheHit)

	steps := []struct {
		name string
		err  error
	}{
		{"watch error", errors.New("connection reset")},
		{"watch returns nil before ctx ends", nil},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			k := e.setPos("bob:pw", ident("bob", "acme"))
			expect("before", k, authn.CacheHit)
			before := logs.Len()
			ws.fail <- s.err
			fn = subscribe()
			// Lost subscription: revalidate before serving fresh, but keep
			// serving during an outage (Stale, not Miss).
			expect("after lost subscription", k, authn.CacheStale)
			if logs.Len() <= before {
				t.Fatal("no warning logged")
			}
			// The new subscription delivers.
			k = e.setPos("bob:pw", ident("bob", "acme"))
			expect("refreshed", k, authn.CacheHit)
			fn(store.Invalidation{Flush: true})
			expect("flush on the new subscription", k, authn.CacheMiss)
		})
	}

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Listen did not return after cancel")
	}
}

// Listen returns when ctx ends during the backoff.
func TestListenCancelDuringBackoff(t *testing.T) {
	c := newTestCache(t, Config{})
	c.backoffMin, c.backoffMax = time.Hour, time.Hour
	ws := &watchStore{subs: make(chan func(store.Invalidation), 1), fail: make(chan error)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Listen(ctx, ws, nil)
	}()
	<-ws.subs
	ws.fail <- errors.New("down")
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Listen did not return")
	}
}
