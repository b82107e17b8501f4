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
