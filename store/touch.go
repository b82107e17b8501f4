package store

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// TouchBatcher batches the last-used times of API keys: Touch is called on
// every request authenticated by an API key, and Run writes what was seen
// with one TouchAPIKeys call per interval, so a key costs at most one write
// per interval however busy it is.
type TouchBatcher struct {
	s        Store
	interval time.Duration
	log      *zap.Logger

	mu      sync.Mutex
	pending map[string]*touchEntry
}

// touchEntry is a pointer so that updating a seen id never assigns to the
// map: a map assignment with an existing string key replaces the stored key
// with the caller's string, which may alias request memory.
type touchEntry struct{ at time.Time }

// NewTouchBatcher returns a batcher that flushes every interval (default 1
// minute). logger defaults to a no-op.
func NewTouchBatcher(s Store, interval time.Duration, logger *zap.Logger) *TouchBatcher {
	if interval <= 0 {
		interval = DefaultTouchInterval
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	return &TouchBatcher{s: s, interval: interval, log: logger, pending: make(map[string]*touchEntry)}
}

// Touch records that key id was used at at. It is safe for concurrent use.
// id may alias memory the caller reuses (a fasthttp request buffer): it is
// copied when first seen in a window. Touching an id already seen in this
// window takes a mutex and a map lookup and allocates nothing.
func (b *TouchBatcher) Touch(id string, at time.Time) {
	b.mu.Lock()
	if e, ok := b.pending[id]; ok {
		if at.After(e.at) {
			e.at = at
		}
		b.mu.Unlock()
		return
	}
	b.pending[strings.Clone(id)] = &touchEntry{at: at}
	b.mu.Unlock()
}

// Pending returns the number of ids waiting for the next flush.
func (b *TouchBatcher) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

// Flush writes what was touched since the last flush in one TouchAPIKeys
// call. If the write fails, the entries are kept for the next flush (merged
// with newer touches) and the error is returned.
func (b *TouchBatcher) Flush(ctx context.Context) error {
	b.mu.Lock()
	batch := b.pending
	if len(batch) == 0 {
		b.mu.Unlock()
		return nil
	}
	b.pending = make(map[string]*touchEntry, len(batch))
	b.mu.Unlock()

	used := make(map[string]time.Time, len(batch))
	for id, e := range batch {
		used[id] = e.at
	}
	err := b.s.TouchAPIKeys(ctx, used)
	if err == nil {
		return nil
	}
	b.mu.Lock()
	for id, e := range batch {
		if cur, ok := b.pending[id]; ok {
			if e.at.After(cur.at) {
				cur.at = e.at
			}
			continue
		}
		b.pending[id] = e
	}
	b.mu.Unlock()
	return err
}

// Run flushes every interval until ctx ends, then flushes once more (with
// a short deadline of its own) and returns nil. Failed flushes are logged
// and retried at the next interval.
func (b *TouchBatcher) Run(ctx context.Context) error {
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushOnExitTimeout)
			defer cancel()
			if err := b.Flush(fctx); err != nil {
				b.log.Warn("writing api key last-used times on exit failed", zap.Int("keys", b.Pending()), zap.Error(err))
			}
			return nil
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, b.interval)
			if err := b.Flush(fctx); err != nil && ctx.Err() == nil {
				b.log.Warn("writing api key last-used times failed; will retry", zap.Int("keys", b.Pending()), zap.Error(err))
			}
			cancel()
		}
	}
}
