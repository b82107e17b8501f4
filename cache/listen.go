package cache

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/store"
)

// errWatchReturned stands for a Watch that returned nil before ctx ended.
var errWatchReturned = errors.New("watch returned before its context ended")

// Listen applies s's invalidations (Store.Watch with Invalidate) until ctx
// ends, then returns. Run it in its own goroutine.
//
// A store re-establishes a subscription it lost by itself (redisstore does)
// and then delivers the invalidations missed meanwhile, replayed from its
// invalidation log, followed by store.Invalidation{Revalidate: true}: the
// entries they did not name are marked Stale, not dropped, so a Redis
// restart does not turn cached credentials into 503s while the store is not
// ready yet. When it cannot replay, it delivers a Flush.
//
// When Watch itself returns before ctx ends, this Watch's position in the log
// is gone, so every cached entry is marked Stale (MarkStale), and again right
// before each resubscription (entries cached during the backoff are covered
// too); Watch is retried with jittered exponential backoff (100 ms doubling
// to 30 s, reset after a subscription that lasted longer than the maximum).
// Marking stale rather than flushing keeps the outage policy: while the store
// is unreachable a stale identity may still be served for
// store.outage_grace; as soon as the store answers, every entry is
// revalidated before being served as fresh. An invalidation lost in that
// path is bounded by cache.ttl (SECURITY.md "lost invalidation").
func (c *Cache) Listen(ctx context.Context, s store.Store, logger *zap.Logger) {
	if logger == nil {
		logger = zap.NewNop()
	}
	backoff := c.backoffMin
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.MarkStale()
		}
		start := time.Now()
		err := s.Watch(ctx, c.Invalidate)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errWatchReturned
		}
		c.MarkStale()
		if time.Since(start) > c.backoffMax {
			backoff = c.backoffMin
		}
		// Full jitter in [backoff/2, backoff).
		wait := backoff/2 + rand.N(backoff/2+1) //nolint:gosec // jitter, not a secret
		logger.Warn("cache: invalidation subscription lost; cached entries will be revalidated",
			zap.Error(err), zap.Duration("retry_in", wait), zap.Int("attempt", attempt+1))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, c.backoffMax)
	}
}
