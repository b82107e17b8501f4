package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

func TestEndedSessionsConformance(t *testing.T) {
	srv := testredis.Start(t)
	storetest.RunSessions(t, func(t *testing.T, now func() time.Time) store.EndedSessions {
		return newTestStore(t, []string{srv.Addr()}, now, 0)
	})
}

// TestEndedSessionExpires: the record carries its end as a TTL (Redis
// drops it).
func TestEndedSessionExpires(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, []string{srv.Addr()}, nil, 0)
	ctx := context.Background()
	if err := s.EndSession(ctx, "sid1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ttl, err := s.c.PTTL(ctx, s.endedSessionKey("sid1")).Result()
	if err != nil || ttl <= 0 || ttl > time.Hour+time.Second {
		t.Fatalf("PTTL = %v, %v; want ≤ 1h", ttl, err)
	}
}
