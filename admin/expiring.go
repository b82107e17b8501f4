package admin

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/keygate/keygate/store"
)

// ExpiringKeys is the gauge keygate_api_keys_expiring: the active API keys
// that expire within api_keys.expiry_warning, counted by Run every interval
// with a walk over ListAPIKeys (a scrape never waits for the store). It is
// -1 until the first count.
type ExpiringKeys struct {
	st       store.Store
	window   time.Duration
	interval time.Duration
	now      func() time.Time
	log      *zap.Logger
	count    atomic.Int64
	desc     *prometheus.Desc
}

// NewExpiringKeys returns the gauge for keys expiring within window,
// recounted every interval.
func NewExpiringKeys(st store.Store, window, interval time.Duration, now func() time.Time, log *zap.Logger) *ExpiringKeys {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = zap.NewNop()
	}
	x := &ExpiringKeys{st: st, window: window, interval: interval, now: now, log: log,
		desc: prometheus.NewDesc("keygate_api_keys_expiring",
			"Active API keys expiring within api_keys.expiry_warning (recounted periodically; -1 until the first count).", nil, nil)}
	x.count.Store(-1)
	return x
}

// Describe implements prometheus.Collector.
func (x *ExpiringKeys) Describe(ch chan<- *prometheus.Desc) { ch <- x.desc }

// Collect implements prometheus.Collector.
func (x *ExpiringKeys) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(x.desc, prometheus.GaugeValue, float64(x.count.Load()))
}

// Count counts the keys now and updates the gauge.
func (x *ExpiringKeys) Count(ctx context.Context) (int64, error) {
	f := store.KeyFilter{Status: store.KeyActive, ExpiresBefore: x.now().Add(x.window), Limit: store.MaxPageLimit}
	var n int64
	for {
		page, err := x.st.ListAPIKeys(ctx, f)
		if err != nil {
			return 0, err
		}
		n += int64(len(page.Keys))
		if page.NextCursor == "" {
			break
		}
		f.Cursor = page.NextCursor
	}
	x.count.Store(n)
	return n, nil
}

// Run counts at once and then every interval until ctx ends. A failed
// count keeps the last value.
func (x *ExpiringKeys) Run(ctx context.Context) {
	t := time.NewTicker(x.interval)
	defer t.Stop()
	for {
		c, cancel := context.WithTimeout(ctx, time.Minute)
		if _, err := x.Count(c); err != nil && ctx.Err() == nil {
			x.log.Warn("counting expiring api keys failed", zap.Error(err))
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

var _ prometheus.Collector = (*ExpiringKeys)(nil)
