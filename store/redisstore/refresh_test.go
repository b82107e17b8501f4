package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

func TestRefreshConformance(t *testing.T) {
	srv := testredis.Start(t)
	storetest.RunRefresh(t, func(t *testing.T, now func() time.Time) store.Driver {
		return newTestStore(t, []string{srv.Addr()}, now, 0)
	})
}

func TestRefreshConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster in -short mode")
	}
	c := testredis.StartCluster(t, 3)
	storetest.RunRefresh(t, func(t *testing.T, now func() time.Time) store.Driver {
		return newTestStore(t, c.Addrs(), now, 0)
	})
}

// TestRefreshKeysExpire: every record of a family carries a TTL (Redis drops
// it), and all of them share the family's hash tag.
func TestRefreshKeysExpire(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, []string{srv.Addr()}, nil, 0)
	ctx := context.Background()
	now := time.Now()
	tok := &store.RefreshToken{ID: storetest.RefreshID("v"), Family: "famX", Username: "alice", Generation: 1,
		IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateRefreshToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	keys, err := s.c.Keys(ctx, s.prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 {
		t.Errorf("keys = %q, want token, family, members, user index", keys)
	}
	for _, k := range keys {
		ttl, err := s.c.PTTL(ctx, k).Result()
		if err != nil || ttl <= 0 || ttl > time.Hour+time.Second {
			t.Errorf("PTTL(%s) = %v, %v; want ≤ 1h", k, ttl, err)
		}
	}
}

func TestLimitsConformance(t *testing.T) {
	srv := testredis.Start(t)
	storetest.RunLimits(t, func(t *testing.T, now func() time.Time) store.Driver {
		return newTestStore(t, []string{srv.Addr()}, now, 0)
	})
}
