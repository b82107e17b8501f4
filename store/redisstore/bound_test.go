package redisstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
)

// TestHungTimeBound (issue 13 item 6): with Redis frozen (SIGSTOP), a call
// gives up after one store timeout, not two. A MULTI/EXEC or pipeline took
// 2× the timeout before boundHook (go-redis arms its read deadline per
// read); GetUser is two round trips and shares one timeout. The caller's
// context has a later deadline (as keyauth's 3 s with a 1 s store timeout).
func TestHungTimeBound(t *testing.T) {
	const timeout = 400 * time.Millisecond
	const slack = 150 * time.Millisecond
	srv := testredis.Start(t)
	s := newTestStore(t, []string{srv.Addr()}, nil, timeout)
	f := seed(t, s)
	srv.Pause()
	defer srv.Resume()
	tests := []struct {
		name string
		fn   func(ctx context.Context) error
	}{
		{"LookupAPIKey (MULTI/EXEC)", func(ctx context.Context) error { _, _, err := s.LookupAPIKey(ctx, f.key.ID); return err }},
		{"GetUser (two round trips)", func(ctx context.Context) error { _, err := s.GetUser(ctx, "alice"); return err }},
		{"GetAccount", func(ctx context.Context) error { _, err := s.GetAccount(ctx, "acme"); return err }},
		{"TouchAPIKeys (pipeline)", func(ctx context.Context) error {
			return s.TouchAPIKeys(ctx, map[string]time.Time{f.key.ID: time.Now()})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 2 { // a pooled connection, then a fresh one
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				began := time.Now()
				err := tc.fn(ctx)
				took := time.Since(began)
				cancel()
				if !errors.Is(err, store.ErrUnavailable) {
					t.Fatalf("round %d: %v, want ErrUnavailable", round, err)
				}
				if took > timeout+slack {
					t.Errorf("round %d: gave up after %v, want ≤ %v + %v", round, took, timeout, slack)
				}
			}
		})
	}
}
