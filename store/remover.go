package store

import (
	"context"
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
	s         Store
	retention time.Duration
	interval  time.Duration
	now       func() time.Time
	log       *zap.Logger
}

// NewRemover returns a Remover that purges keys out of use for longer than
// retention (default 7 days) every interval (default 1 hour). now defaults
// to time.Now and logger to a no-op.
func NewRemover(s Store, retention, interval time.Duration, now func() time.Time, logger *zap.Logger) *Remover {
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
	return &Remover{s: s, retention: retention, interval: interval, now: now, log: logger}
}

// RunOnce purges the keys revoked or expired before now-retention and
// returns how many went.
func (r *Remover) RunOnce(ctx context.Context) (int, error) {
	return r.s.PurgeAPIKeys(ctx, r.now().Add(-r.retention))
}

// Run purges once at start and then every interval until ctx ends; it then
// returns nil. Errors are logged and retried at the next interval.
func (r *Remover) Run(ctx context.Context) error {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		n, err := r.RunOnce(ctx)
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
