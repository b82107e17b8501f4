package boltstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

func TestRefreshConformance(t *testing.T) {
	storetest.RunRefresh(t, func(t *testing.T, now func() time.Time) store.Driver {
		return open(t, filepath.Join(t.TempDir(), "kg.db"), now)
	})
}

// TestPurgeRefreshTokens: expired tokens and fully expired families go;
// live ones stay usable; a restart keeps them.
func TestPurgeRefreshTokens(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kg.db")
	clock := storetest.NewClock(time.Now().UTC().Truncate(time.Second))
	s := open(t, path, clock.Now)
	now := clock.Now()
	mk := func(fam, v string, life time.Duration) *store.RefreshToken {
		tok := &store.RefreshToken{ID: storetest.RefreshID(v), Family: fam, Username: "alice", Generation: 1,
			IssuedAt: now, ExpiresAt: now.Add(life)}
		if err := s.CreateRefreshToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	short := mk("famA", "a1", time.Minute)
	long := mk("famA", "a2", time.Hour)
	gone := mk("famB", "b1", time.Minute)
	n, err := s.PurgeRefreshTokens(ctx, now.Add(2*time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("PurgeRefreshTokens = %d, %v; want 2", n, err)
	}
	_ = s.Close()
	s = open(t, path, clock.Now)
	for _, tok := range []*store.RefreshToken{short, gone} {
		if _, err := s.UseRefreshToken(ctx, tok.Family, tok.ID, now); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("purged token: %v, want ErrNotFound", err)
		}
	}
	if _, err := s.UseRefreshToken(ctx, long.Family, long.ID, now); err != nil {
		t.Errorf("live token after purge: %v", err)
	}
}
