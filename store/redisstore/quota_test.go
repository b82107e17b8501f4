package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
)

// TestLeaseRate: the shared GCRA grants at most the burst at once, answers
// how long until a unit is back, refills at the policy's rate, and takes
// back returned units.
func TestLeaseRate(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, []string{srv.Addr()}, nil, 0)
	ctx := context.Background()
	const iv = 100 * time.Millisecond // 10/s
	steps := []struct {
		n, wantG, wantRem int64
	}{{4, 4, 1}, {4, 1, 0}, {1, 0, 0}}
	for i, st := range steps {
		g, rem, retry, err := s.LeaseRate(ctx, "b1", iv, 5, st.n)
		if err != nil || g != st.wantG || rem != st.wantRem {
			t.Fatalf("step %d: lease(%d) = %d, %d, %v, %v; want %d, %d", i, st.n, g, rem, retry, err, st.wantG, st.wantRem)
		}
		if g == 0 && (retry <= 0 || retry > iv) {
			t.Fatalf("step %d: retry after %v; want (0, %v]", i, retry, iv)
		}
	}
	// Giving back 3 makes 3 available again at once.
	if err := s.ReturnRate(ctx, "b1", iv, 3); err != nil {
		t.Fatal(err)
	}
	if g, _, _, err := s.LeaseRate(ctx, "b1", iv, 5, 5); err != nil || g < 3 || g > 4 {
		t.Fatalf("after a return of 3: granted %d, %v", g, err)
	}
	// Refill at the rate.
	time.Sleep(3 * iv)
	if g, _, _, err := s.LeaseRate(ctx, "b1", iv, 5, 10); err != nil || g < 2 || g > 4 {
		t.Fatalf("after 3 intervals: granted %d, %v; want about 3", g, err)
	}
	// The key expires once the bucket would be full.
	if ttl := s.c.PTTL(ctx, s.rateKey("b1")).Val(); ttl <= 0 || ttl > 5*iv+2*time.Second {
		t.Fatalf("bucket key TTL %v", ttl)
	}
}
