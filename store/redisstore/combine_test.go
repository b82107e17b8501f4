package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
)

// commandCalls is INFO commandstats' calls for cmd (e.g. "exec").
func commandCalls(t *testing.T, s *Store, cmd string) int {
	t.Helper()
	info, err := s.c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.Atoi(v[:strings.IndexByte(v, ',')])
			return n
		}
	}
	return 0
}

// TestLookupCombined runs many concurrent lookups of existing, missing and
// revoked keys (combined into shared round trips) and checks every caller
// gets its own answer, and that calls were in fact combined.
func TestLookupCombined(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, []string{srv.Addr()}, nil, 0)
	ids := loadKeys(t, s, loadUsers(t, s, 4), 25)
	ctx := context.Background()
	revoked := ids[3]
	if _, _, err := s.RevokeAPIKey(ctx, revoked, time.Now()); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // id -> owner
	for _, id := range ids {
		k, err := s.GetAPIKey(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = k.Username
	}
	tag := ids[0][:tagLen]
	missing := []string{
		tag + strings.Repeat("A", keySufLen),          // right owner, no such key
		strings.Repeat("Z", tagLen) + ids[0][tagLen:], // no such owner
		"short", // not an id this store makes
	}
	execBefore := commandCalls(t, s, "exec")

	const workers, rounds = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*2)
	lookups := 0
	for w := range workers {
		wg.Add(1)
		lookups += rounds
		go func() {
			defer wg.Done()
			for i := range rounds {
				id := ids[(w*rounds+i)%len(ids)]
				if i%5 == 4 {
					id = missing[(w+i)%len(missing)]
				}
				k, u, err := s.LookupAPIKey(ctx, id)
				owner, exists := want[id]
				switch {
				case !exists:
					if !errors.Is(err, store.ErrNotFound) {
						errs <- fmt.Errorf("LookupAPIKey(%q) = %w, want ErrNotFound", id, err)
					}
				case err != nil:
					errs <- fmt.Errorf("LookupAPIKey(%q): %w", id, err)
				case k.ID != id || k.Username != owner || u.Username != owner || u.Account != "bench":
					errs <- fmt.Errorf("LookupAPIKey(%q) = key %s of %s, user %s: another caller's answer", id, k.ID, k.Username, u.Username)
				case (id == revoked) == k.RevokedAt.IsZero():
					errs <- fmt.Errorf("LookupAPIKey(%q) revoked at %v", id, k.RevokedAt)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Invalid ids never reach Redis; every other lookup is in one EXEC,
	// alone or with others.
	execs := commandCalls(t, s, "exec") - execBefore
	t.Logf("%d lookups in %d transactions", lookups, execs)
	if execs <= 0 || execs >= lookups {
		t.Errorf("%d lookups took %d transactions: calls were not combined", lookups, execs)
	}
	s.lookups.mu.Lock()
	defer s.lookups.mu.Unlock()
	if s.lookups.inFlight != 0 || len(s.lookups.pending) != 0 {
		t.Errorf("after the load: %d in flight, %d pending", s.lookups.inFlight, len(s.lookups.pending))
	}
}

// TestLookupCombinedFaults: with Redis frozen, callers queued behind busy
// round trips give up at their own deadline; every call fails as
// ErrUnavailable (never ErrNotFound); after Redis resumes, lookups work
// and no slot was leaked.
func TestLookupCombinedFaults(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, []string{srv.Addr()}, nil, 2*time.Second)
	f := seed(t, s)
	srv.Pause()
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()

	var wg sync.WaitGroup
	type result struct {
		d   time.Duration
		err error
	}
	results := make(chan result, 3*defaultLookupInFlight)
	for range cap(results) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, _, err := s.LookupAPIKey(ctx, f.key.ID)
			results <- result{time.Since(start), err}
		}()
	}
	wg.Wait()
	close(results)
	for r := range results {
		if !errors.Is(r.err, store.ErrUnavailable) || errors.Is(r.err, store.ErrNotFound) {
			t.Errorf("lookup against a frozen Redis = %v, want ErrUnavailable", r.err)
		}
		if r.d > time.Second {
			t.Errorf("lookup with a 150ms deadline took %v", r.d)
		}
	}
	srv.Resume()
	resumed = true
	deadline := time.Now().Add(5 * time.Second)
	for {
		k, _, err := s.LookupAPIKey(context.Background(), f.key.ID)
		if err == nil {
			if k.ID != f.key.ID {
				t.Fatalf("after resume: key %s, want %s", k.ID, f.key.ID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lookups still failing 5s after resume: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The frozen round trips end at the store timeout; then every slot is
	// free again.
	deadline = time.Now().Add(5 * time.Second)
	for {
		s.lookups.mu.Lock()
		inFlight, pending := s.lookups.inFlight, len(s.lookups.pending)
		s.lookups.mu.Unlock()
		if inFlight == 0 && pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slots leaked: %d in flight, %d pending", inFlight, pending)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTryLease: two instances sharing Redis; the lease goes to one owner
// until it lapses, and Removers on both purge once between them.
func TestTryLease(t *testing.T) {
	srv := testredis.Start(t)
	a := newTestStore(t, []string{srv.Addr()}, nil, 0)
	b, err := New(configs.Redis{Addrs: []string{srv.Addr()}, KeyPrefix: a.prefix}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ctx := context.Background()
	for _, step := range []struct {
		s     *Store
		owner string
		ttl   time.Duration
		want  bool
	}{
		{a, "A", 200 * time.Millisecond, true},
		{b, "B", 200 * time.Millisecond, false},
		{a, "A", 200 * time.Millisecond, false}, // not re-entrant: held until it lapses
	} {
		got, err := step.s.TryLease(ctx, "test", step.owner, step.ttl)
		if err != nil || got != step.want {
			t.Errorf("TryLease(%s) = %v, %v; want %v", step.owner, got, err, step.want)
		}
	}
	if _, err := a.TryLease(ctx, "test", "A", 0); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("TryLease with ttl 0 = %v, want ErrInvalid", err)
	}
	time.Sleep(300 * time.Millisecond)
	if got, err := b.TryLease(ctx, "test", "B", time.Second); err != nil || !got {
		t.Errorf("TryLease after the lease lapsed = %v, %v; want true", got, err)
	}

	// Two Removers, one store each, one revoked key long past retention:
	// the first purges it, the second skips (the lease is held).
	f := seed(t, a)
	if _, _, err := a.RevokeAPIKey(ctx, f.key.ID, time.Now().Add(-30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	ra := store.NewRemover(a, time.Hour, time.Hour, nil, nil)
	rb := store.NewRemover(b, time.Hour, time.Hour, nil, nil)
	if n, ran, err := ra.RunShared(ctx); err != nil || !ran || n != 1 {
		t.Errorf("first Remover: RunShared = %d, %v, %v; want 1, true, nil", n, ran, err)
	}
	if n, ran, err := rb.RunShared(ctx); err != nil || ran || n != 0 {
		t.Errorf("second Remover: RunShared = %d, %v, %v; want 0, false, nil", n, ran, err)
	}
	srv.Stop()
	if _, ran, err := rb.RunShared(ctx); !errors.Is(err, store.ErrUnavailable) || ran {
		t.Errorf("RunShared with Redis down = ran %v, %v; want ErrUnavailable", ran, err)
	}
}
