package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

func TestRemoverRunOnce(t *testing.T) {
	s, clock := newBolt(t)
	ctx := context.Background()
	ids := seed(t, s, 3)
	day := 24 * time.Hour
	// ids[0] revoked now, ids[1] revoked 8 days in, ids[2] stays active.
	if _, _, err := s.RevokeAPIKey(ctx, ids[0], clock.Now()); err != nil {
		t.Fatal(err)
	}
	r := store.NewRemover(s, 7*day, time.Hour, clock.Now, nil)
	for _, step := range []struct {
		advance time.Duration
		revoke  string
		want    int
		gone    []string
	}{
		{0, "", 0, nil},
		{7 * day, "", 0, nil}, // exactly at retention: kept
		{time.Second, ids[1], 1, []string{ids[0]}},
		{7*day + time.Second, "", 1, []string{ids[1]}},
		{365 * day, "", 0, nil},
	} {
		clock.Advance(step.advance)
		if step.revoke != "" {
			if _, _, err := s.RevokeAPIKey(ctx, step.revoke, clock.Now()); err != nil {
				t.Fatal(err)
			}
		}
		n, err := r.RunOnce(ctx)
		if err != nil || n != step.want {
			t.Errorf("after %v: RunOnce = %d, %v; want %d", step.advance, n, err, step.want)
		}
		for _, id := range step.gone {
			if _, err := s.GetAPIKey(ctx, id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("key %s not purged: %v", id, err)
			}
		}
	}
	if _, err := s.GetAPIKey(ctx, ids[2]); err != nil {
		t.Errorf("active key purged: %v", err)
	}
}

func TestRemoverRun(t *testing.T) {
	s, clock := newBolt(t)
	ctx := context.Background()
	f := &flaky{Store: s, failing: true}
	ids := seed(t, s, 2)
	for _, id := range ids {
		if _, _, err := s.RevokeAPIKey(ctx, id, clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(30 * 24 * time.Hour)
	r := store.NewRemover(f, 0, 5*time.Millisecond, clock.Now, nil)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()

	time.Sleep(20 * time.Millisecond) // failing rounds are retried, not fatal
	f.setFailing(false)
	deadline := time.Now().Add(2 * time.Second)
	for {
		page, err := s.ListAPIKeys(ctx, store.KeyFilter{Status: store.StatusAll})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Keys) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run did not purge: %d keys left", len(page.Keys))
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestRemoverFirstDelay: Run waits FirstDelay before its first purge, and
// returns at once when its context ends during the wait.
func TestRemoverFirstDelay(t *testing.T) {
	s, clock := newBolt(t)
	ctx := context.Background()
	ids := seed(t, s, 1)
	if _, _, err := s.RevokeAPIKey(ctx, ids[0], clock.Now()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * 24 * time.Hour)
	r := store.NewRemover(s, 0, time.Hour, clock.Now, nil)
	r.FirstDelay = 300 * time.Millisecond
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- r.Run(rctx) }()
	for {
		_, err := s.GetAPIKey(ctx, ids[0])
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("not purged 5s after Run started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(start); d < r.FirstDelay {
		t.Errorf("purged %v after Run started, before FirstDelay %v", d, r.FirstDelay)
	}
	cancel()
	<-done //nolint:errcheck // Run ends with the context: its error is the cancellation

	r2 := store.NewRemover(s, 0, time.Hour, clock.Now, nil)
	r2.FirstDelay = time.Hour
	rctx2, cancel2 := context.WithCancel(ctx)
	go func() { done <- r2.Run(rctx2) }()
	cancel2()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return when its context ended during FirstDelay")
	}
}

// leasing grants each lease name to the first owner only (the shape of
// redisstore's SET NX; the Redis side is tested in redisstore).
type leasing struct {
	store.Store
	holder map[string]string
	err    error
}

func (l *leasing) TryLease(_ context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if l.err != nil {
		return false, l.err
	}
	if ttl <= 0 {
		return false, errors.New("ttl must be positive")
	}
	if h, ok := l.holder[name]; ok && h != owner {
		return false, nil
	}
	l.holder[name] = owner
	return true, nil
}

// TestRemoverRunShared: with a Leaser store, the instance holding the lease
// purges and the others skip; a lease error purges nothing and is returned.
func TestRemoverRunShared(t *testing.T) {
	s, clock := newBolt(t)
	ctx := context.Background()
	ids := seed(t, s, 2)
	for _, id := range ids {
		if _, _, err := s.RevokeAPIKey(ctx, id, clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(30 * 24 * time.Hour)
	l := &leasing{Store: s, holder: map[string]string{}}
	a := store.NewRemover(l, 0, time.Hour, clock.Now, nil)
	b := store.NewRemover(l, 0, time.Hour, clock.Now, nil)
	for _, step := range []struct {
		name string
		r    *store.Remover
		err  error
		n    int
		ran  bool
	}{
		{"lease error", a, errors.New("redis down"), 0, false},
		{"first instance", a, nil, 2, true},
		{"second instance", b, nil, 0, false},
		{"holder again", a, nil, 0, true},
	} {
		l.err = step.err
		n, ran, err := step.r.RunShared(ctx)
		if n != step.n || ran != step.ran || (err != nil) != (step.err != nil) {
			t.Errorf("%s: RunShared = %d, %v, %v; want %d, %v, error %v", step.name, n, ran, err, step.n, step.ran, step.err)
		}
	}
	if l.holder[store.PurgeLease] == "" {
		t.Errorf("lease %q never taken", store.PurgeLease)
	}
}
