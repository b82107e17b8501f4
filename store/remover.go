package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"go.uber.org/zap"
)

// Defaults of the Remover.
const (
	DefaultRetention     = 7 * 24 * time.Hour
	DefaultPurgeInterval = time.Hour
	DefaultTouchInterval = time.Minute
	flushOnExitTimeout   = 5 * time.Second
)

// Remover purges API keys that have been revoked or expired for longer than
// the retention (DESIGN.md §5, api_keys.retention).
type Remover struct {
	s         KeyPurger
	retention time.Duration
	interval  time.Duration
	now       func() time.Time
	log       *zap.Logger
	owner     string

	// FirstDelay postpones the first purge after Run starts (0: at once).
	// A purge walks every key in the store: serve sets a random minute or
	// two so that a restart does not add it to the start-up load, and a
	// fleet restarted together does not walk the store at once.
	FirstDelay time.Duration
}

// Leaser takes the lease called name for ttl, unless another owner holds
// it, and reports whether it did. The Remover takes one per purge so that
// one instance, not every instance sharing a store (Redis), walks the store
// each interval; a store one process owns (bolt) always grants it.
type Leaser interface {
	TryLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
}

// KeyPurger is what the Remover needs of a store (every Driver has it).
type KeyPurger interface {
	PurgeAPIKeys(ctx context.Context, before time.Time) (int, error)
	Leaser
}

// PurgeLease is the Leaser lease the Remover takes.
const PurgeLease = "purge-api-keys"

// NewRemover returns a Remover that purges keys out of use for longer than
// retention (default 7 days) every interval (default 1 hour). now defaults
// to time.Now and logger to a no-op.
func NewRemover(s KeyPurger, retention, interval time.Duration, now func() time.Time, logger *zap.Logger) *Remover {
	if retention <= 0 {
		retention = DefaultRetention
	}
	if interval <= 0 {
		interval = DefaultPurgeInterval
	}
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	return &Remover{s: s, retention: retention, interval: interval, now: now, log: logger, owner: hex.EncodeToString(id[:])}
}

// RunOnce purges the keys revoked or expired before now-retention and
// returns how many went.
func (r *Remover) RunOnce(ctx context.Context) (int, error) {
	return r.s.PurgeAPIKeys(ctx, r.now().Add(-r.retention))
}

// RunShared purges like RunOnce, unless another instance sharing the store
// holds the purge lease (it purged within this interval): then it does
// nothing and ran is false. The lease is never released: it lapses 90% of an interval after
// it was taken, so at most one instance purges per interval.
func (r *Remover) RunShared(ctx context.Context) (n int, ran bool, err error) {
	got, err := r.s.TryLease(ctx, PurgeLease, r.owner, r.interval-r.interval/10)
	if err != nil || !got {
		return 0, false, err
	}
	n, err = r.RunOnce(ctx)
	return n, true, err
}

// Run purges after FirstDelay and then every interval until ctx ends; it
// then returns nil. Errors are logged and retried at the next interval.
func (r *Remover) Run(ctx context.Context) error {
	if r.FirstDelay > 0 {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.FirstDelay):
		}
	}
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		n, _, err := r.RunShared(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.Warn("purging expired and revoked api keys failed", zap.Error(err))
		case n > 0:
			r.log.Info("purged expired and revoked api keys", zap.Int("count", n), zap.Duration("retention", r.retention))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
