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

func TestLimitsConformance(t *testing.T) {
	storetest.RunLimits(t, func(t *testing.T, now func() time.Time) store.Driver {
		return open(t, filepath.Join(t.TempDir(), "kg.db"), now)
	})
}

// TestQuotaSurvivesRestart: quota usage is in the file, not in memory.
func TestQuotaSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kg.db")
	s := open(t, path, nil)
	c := store.QuotaCounter(store.ScopeKey, "k1", time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	if _, _, err := s.LeaseQuota(ctx, c, 7, 10, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLimits(ctx, &store.Limits{Scope: store.ScopeKey, ID: "k1", Quota: &store.Quota{Requests: 10, Per: store.QuotaDay}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path, nil)
	if u, err := s.QuotaUsed(ctx, c); err != nil || u != 7 {
		t.Fatalf("after restart used = %d, %v; want 7", u, err)
	}
	if l, err := s.GetLimits(ctx, store.ScopeKey, "k1"); err != nil || l.Quota == nil || l.Quota.Requests != 10 {
		t.Fatalf("after restart limits = %+v, %v", l, err)
	}
}

// TestQuotaSweep: counters of past periods are deleted by the periodic purge
// and at open; the current period's counter and its usage stay.
func TestQuotaSweep(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kg.db")
	clock := storetest.NewClock(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	s := open(t, path, clock.Now)
	day := 24 * time.Hour
	lease := func(c string, expires time.Time) {
		t.Helper()
		if _, _, err := s.LeaseQuota(ctx, c, 3, 10, expires); err != nil {
			t.Fatal(err)
		}
	}
	d6 := store.QuotaCounter(store.ScopeKey, "k1", time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	d7 := store.QuotaCounter(store.ScopeKey, "k1", time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC))
	d8 := store.QuotaCounter(store.ScopeKey, "k1", time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC))
	lease(d6, clock.Now().Add(day))
	clock.Advance(day)
	lease(d7, clock.Now().Add(day))
	if n := s.QuotaRecords(); n != 2 {
		t.Fatalf("records before the sweep = %d, want 2", n)
	}
	if _, err := s.PurgeAPIKeys(ctx, clock.Now()); err != nil {
		t.Fatal(err)
	}
	if n := s.QuotaRecords(); n != 1 {
		t.Fatalf("records after the purge = %d, want 1 (the current period)", n)
	}
	if u, err := s.QuotaUsed(ctx, d7); err != nil || u != 3 {
		t.Fatalf("current counter = %d, %v; want 3", u, err)
	}
	// At open: the next day's counter is written, d7 expires, a restart sweeps it.
	clock.Advance(day)
	lease(d8, clock.Now().Add(day))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path, clock.Now)
	if n := s.QuotaRecords(); n != 1 {
		t.Fatalf("records after a restart = %d, want 1", n)
	}
	if u, err := s.QuotaUsed(ctx, d8); err != nil || u != 3 {
		t.Fatalf("current counter after a restart = %d, %v; want 3", u, err)
	}
}
