package main

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/ratelimit"
	"github.com/keygate/keygate/store"
)

// buildLimiter builds the rate limiter and quotas (issue 19) on the store:
// shared through leases when the store is a store.RateLeaser (Redis), in
// process otherwise (bolt). Its assignments reload on every invalidation
// (invalidationSubscribers) and every 30 s; Run gives back leased units at
// shutdown.
func (g *gateway) buildLimiter(ctx context.Context, reg prometheus.Registerer) error {
	ls, ok := g.store.(store.LimitStore)
	if !ok {
		return fmt.Errorf("the %s store keeps no rate-limit assignments or quotas", g.cfg.Store.Driver)
	}
	lz, _ := g.store.(store.RateLeaser)
	l, err := ratelimit.New(ratelimit.Options{
		Config:     g.cfg.RateLimits,
		Store:      ls,
		Leaser:     lz,
		Registerer: reg,
		Logger:     g.log.Named("ratelimit"),
	})
	if err != nil {
		return err
	}
	g.limiter = l
	g.bg.Add(1)
	go func() { defer g.bg.Done(); l.Run(ctx) }()
	return nil
}
