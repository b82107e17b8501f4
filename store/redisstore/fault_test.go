package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
)

// faultTimeout is the per-command timeout of the fault tests.
const faultTimeout = 300 * time.Millisecond

// fixture is an account, a user and a key in a store.
type fixture struct {
	key *store.APIKey
}

func seed(t *testing.T, s *Store) fixture {
	t.Helper()
	ctx := context.Background()
	mustNil(t, s.CreateAccount(ctx, &store.Account{Name: "acme"}))
	mustNil(t, s.CreateUser(ctx, &store.User{Username: "alice", Account: "acme", Roles: []string{"r"}, PasswordHash: "pw"}))
	k := &store.APIKey{Username: "alice", Name: "ci", Hash: []byte("hash")}
	mustNil(t, s.CreateAPIKey(ctx, k))
	return fixture{key: k}
}

// checkUnavailable runs every operation and checks each fails with an error
// wrapping ErrUnavailable, never ErrNotFound, within bound.
func checkUnavailable(t *testing.T, s *Store, f fixture, bound time.Duration) {
	t.Helper()
	ctx := context.Background()
	dis := store.StateDisabled
	ops := []struct {
		name string
		fn   func() error
	}{
		{"Ping", func() error { return s.Ping(ctx) }},
		{"GetAPIKey", func() error { _, err := s.GetAPIKey(ctx, f.key.ID); return err }},
		{"LookupAPIKey", func() error { _, _, err := s.LookupAPIKey(ctx, f.key.ID); return err }},
		{"GetAPIKey unknown", func() error { _, err := s.GetAPIKey(ctx, "0000000000000000000Z"); return err }},
		{"GetUser", func() error { _, err := s.GetUser(ctx, "alice"); return err }},
		{"GetUser unknown", func() error { _, err := s.GetUser(ctx, "nobody"); return err }},
		{"GetAccount", func() error { _, err := s.GetAccount(ctx, "acme"); return err }},
		{"ListAccounts", func() error { _, err := s.ListAccounts(ctx); return err }},
		{"ListUsers", func() error { _, err := s.ListUsers(ctx, "acme"); return err }},
		{"ListAPIKeys", func() error { _, err := s.ListAPIKeys(ctx, store.KeyFilter{}); return err }},
		{"CreateAccount", func() error { return s.CreateAccount(ctx, &store.Account{Name: "new"}) }},
		{"CreateUser", func() error { return s.CreateUser(ctx, &store.User{Username: "bob", Account: "acme"}) }},
		{"UpdateUser", func() error { _, err := s.UpdateUser(ctx, "alice", store.UserUpdate{State: &dis}); return err }},
		{"CreateAPIKey", func() error {
			return s.CreateAPIKey(ctx, &store.APIKey{Username: "alice", Name: "new", Hash: []byte("h")})
		}},
		{"RevokeAPIKey", func() error { _, _, err := s.RevokeAPIKey(ctx, f.key.ID, time.Now()); return err }},
		{"TouchAPIKeys", func() error { return s.TouchAPIKeys(ctx, map[string]time.Time{f.key.ID: time.Now()}) }},
		{"PurgeAPIKeys", func() error { _, err := s.PurgeAPIKeys(ctx, time.Now()); return err }},
		{"SetAccountState", func() error { _, err := s.SetAccountState(ctx, "acme", dis); return err }},
		{"DeleteUser", func() error { return s.DeleteUser(ctx, "alice") }},
		{"DeleteAccount", func() error { return s.DeleteAccount(ctx, "acme") }},
	}
	var wg sync.WaitGroup
	for _, op := range ops {
		wg.Go(func() {
			start := time.Now()
			err := op.fn()
			d := time.Since(start)
			switch {
			case err == nil:
				t.Errorf("%s: no error while Redis is down", op.name)
			case errors.Is(err, store.ErrNotFound):
				t.Errorf("%s: %v: ErrNotFound while Redis is down", op.name, err)
			case !errors.Is(err, store.ErrUnavailable):
				t.Errorf("%s: %v: does not wrap ErrUnavailable", op.name, err)
			case d > bound:
				t.Errorf("%s: took %v, want ≤ %v", op.name, d, bound)
			}
		})
	}
	wg.Wait()
}

// TestServerDown stops Redis mid-run: every call fails fast with
// ErrUnavailable; after a restart the data (AOF) is intact and writes work.
func TestServerDown(t *testing.T) {
	srv := testredis.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	s := newTestStore(t, []string{srv.Addr()}, nil, faultTimeout)
	f := seed(t, s)

	srv.Stop() // connection refused
	// Refused dials fail at once; go-redis retries the dial a few times.
	checkUnavailable(t, s, f, 3*time.Second)

	srv.Restart()
	checkIntact(t, s, f)
}

// TestServerHung freezes Redis (SIGSTOP): commands must give up at the
// configured timeout with ErrUnavailable, then work again after it resumes.
func TestServerHung(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, []string{srv.Addr()}, nil, faultTimeout)
	f := seed(t, s)

	srv.Pause()
	// One command timeout, one retry, and the retry's backoff.
	checkUnavailable(t, s, f, 4*faultTimeout)
	srv.Resume()
	checkIntact(t, s, f)
}

// TestDeadline checks a caller's short deadline wins over the store timeout.
func TestDeadline(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, []string{srv.Addr()}, nil, 5*time.Second)
	f := seed(t, s)
	srv.Pause()
	defer srv.Resume()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := s.LookupAPIKey(ctx, f.key.ID)
	if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) {
		t.Errorf("LookupAPIKey with a hung server = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("LookupAPIKey took %v with a 100ms deadline", d)
	}
}

func checkIntact(t *testing.T, s *Store, f fixture) {
	t.Helper()
	ctx := context.Background()
	// The pool may still hold dead connections: allow a moment.
	deadline := time.Now().Add(5 * time.Second)
	for s.Ping(ctx) != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	k, u, err := s.LookupAPIKey(ctx, f.key.ID)
	if err != nil {
		t.Fatalf("LookupAPIKey after recovery: %v", err)
	}
	if k.Name != "ci" || string(k.Hash) != "hash" || !k.RevokedAt.IsZero() || u.Username != "alice" || u.Generation != 1 {
		t.Errorf("after recovery key=%+v user=%+v", k, u)
	}
	if a, err := s.GetAccount(ctx, "acme"); err != nil || a.State != store.StateEnabled {
		t.Errorf("account after recovery = %+v, %v", a, err)
	}
	for _, n := range []string{"new", "bob"} {
		// Failed writes left nothing behind.
		if _, err := s.GetAccount(ctx, n); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetAccount(%q) after failed create = %v", n, err)
		}
	}
	k2 := &store.APIKey{Username: "alice", Name: "after", Hash: []byte("h2")}
	mustNil(t, s.CreateAPIKey(ctx, k2))
	mustNil(t, s.CreateUser(ctx, &store.User{Username: "bob", Account: "acme"}))
	if _, already, err := s.RevokeAPIKey(ctx, f.key.ID, time.Now()); err != nil || already {
		t.Errorf("RevokeAPIKey after recovery = %v, already=%v", err, already)
	}
	page, err := s.ListAPIKeys(ctx, store.KeyFilter{Status: store.StatusAll})
	if err != nil || len(page.Keys) != 2 {
		t.Errorf("ListAPIKeys after recovery = %+v, %v", page, err)
	}
}

// TestWatchReconnect kills Redis under a Watch: once it is back, the
// watcher gets Invalidation{Flush: true} (this Redis keeps no data across a
// restart, so the invalidation log is gone and nothing proves that no
// invalidation was missed: the gap → flush fallback) and then regular
// messages again.
func TestWatchReconnect(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, []string{srv.Addr()}, nil, faultTimeout)
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan store.Invalidation, 1024)
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, func(inv store.Invalidation) { ch <- inv })
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Watch returned %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Watch did not return after cancel")
		}
	}()
	probe := func(what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for i := 0; time.Now().Before(deadline); i++ {
			name := fmt.Sprintf("%s-%d", what, i)
			s.publish(ctx, store.Invalidation{Account: name})
			timer := time.After(100 * time.Millisecond)
			for {
				select {
				case inv := <-ch:
					if inv.Flush {
						t.Errorf("%s: unexpected Flush", what)
					}
					if inv.Account == name {
						return
					}
					continue
				case <-timer:
				}
				break
			}
		}
		t.Fatalf("%s: no invalidation delivered", what)
	}
	probe("before")
	for round := range 2 {
		srv.Stop()
		time.Sleep(300 * time.Millisecond) // the watcher notices and retries
		srv.Restart()
		select {
		case inv := <-ch:
			if !inv.Flush {
				t.Fatalf("round %d: first delivery after reconnect = %+v, want Flush", round, inv)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: no Flush after the subscription came back", round)
		}
		probe(fmt.Sprintf("after-%d", round))
	}
}

// TestWatchHungServer freezes Redis under a Watch long enough for the health
// check to notice; after it resumes, nothing was missed (the log still holds
// the watcher's position), so Revalidate is delivered, not a Flush.
func TestWatchHungServer(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, []string{srv.Addr()}, nil, faultTimeout)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan store.Invalidation, 1024)
	go func() { _ = s.Watch(ctx, func(inv store.Invalidation) { ch <- inv }) }()
	time.Sleep(200 * time.Millisecond)
	srv.Pause()
	time.Sleep(healthInterval + 3*faultTimeout)
	srv.Resume()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case inv := <-ch:
			if inv.Flush {
				t.Fatal("Flush after a hung subscription recovered with its data")
			}
			if inv.Revalidate {
				return
			}
		case <-deadline:
			t.Fatal("no Revalidate after a hung subscription recovered")
		}
	}
}

// TestWatchSkipsMalformed publishes garbage on the channel: Watch skips it
// and keeps delivering.
func TestWatchSkipsMalformed(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, []string{srv.Addr()}, nil, faultTimeout)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan store.Invalidation, 1024)
	go func() { _ = s.Watch(ctx, func(inv store.Invalidation) { ch <- inv }) }()
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		mustNil(t, s.c.Publish(ctx, s.kChannel, "{not json").Err())
		mustNil(t, s.c.Publish(ctx, s.kChannel, `{"key_id":"K`+fmt.Sprint(i)+`"}`).Err())
		select {
		case inv := <-ch:
			if inv.KeyID == "" || inv.Flush {
				t.Fatalf("delivered %+v", inv)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing delivered")
		}
	}
}

// TestWatchStartsWhileDown starts Watch with Redis down: once Redis is up
// the subscription is made and a Flush is delivered first.
func TestWatchStartsWhileDown(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, []string{srv.Addr()}, nil, faultTimeout)
	srv.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan store.Invalidation, 1024)
	go func() { _ = s.Watch(ctx, func(inv store.Invalidation) { ch <- inv }) }()
	time.Sleep(300 * time.Millisecond)
	srv.Restart()
	select {
	case inv := <-ch:
		if !inv.Flush {
			t.Fatalf("first delivery = %+v, want Flush", inv)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no Flush once Redis came up")
	}
}
