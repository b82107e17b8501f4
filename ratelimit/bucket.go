package ratelimit

import (
	"context"
	"time"

	"sync"

	"github.com/keygate/keygate/store"
)

// bucket is one rate-limit budget: a key's, a user's, an account's, or one
// caller's on a route.
type bucket struct {
	mu  sync.Mutex
	pol *Policy
	id  string // store name: policy:scope:id (shared mode)

	g   gcra // the whole budget (no leaser) or, in an outage, the instance's share
	out gcra // outage share when a leaser is in use

	// Shared (leaser) state.
	onHand        int64 // leased units not yet spent
	remote        int64 // units the store had left after the last lease
	leasedAt      int64 // Unix ns of the lease onHand came from
	blockedUntil  int64 // the store said nothing is left until then
	degradedUntil int64 // the store failed: local share until then
	lastUsed      int64
}

// result is what one take decided.
type result struct {
	ok                      bool
	remaining, reset, retry int64 // units; ns; ns
	degraded                bool  // decided without the store
}

// take admits one request at now. lz is the shared store (nil: local).
func (b *bucket) take(lz *leaser, now int64) result {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lastUsed = now
	p := b.pol
	if lz == nil {
		ok, rem, reset, retry := b.g.take(now, p.interval, p.Burst)
		return result{ok: ok, remaining: rem, reset: reset, retry: retry}
	}
	if b.onHand > 0 && now-b.leasedAt < int64(leaseTTL) {
		b.onHand--
		return b.leased(now)
	}
	if now < b.degradedUntil {
		return b.outage(now)
	}
	if now < b.blockedUntil {
		return result{remaining: 0, reset: b.blockedUntil - now + p.interval*(p.Burst-1), retry: b.blockedUntil - now}
	}
	// Stale units go back before new ones are taken.
	if b.onHand > 0 {
		lz.giveBack(b.id, p.interval, b.onHand)
		b.onHand = 0
	}
	granted, remote, retry, err := lz.lease(b.id, p, p.lease)
	switch {
	case err != nil:
		b.degradedUntil = now + int64(outageRetry)
		return b.outage(now)
	case granted == 0:
		b.blockedUntil = now + int64(retry)
		return result{retry: int64(retry), reset: int64(retry) + p.interval*(p.Burst-1)}
	}
	b.onHand, b.leasedAt, b.remote = granted-1, now, remote
	return b.leased(now)
}

// leased is the result of a unit spent from a lease: remaining is what the
// store had left at the lease (refilled since at the policy's rate, capped
// at the burst) plus the units still on hand; an estimate, since other
// instances lease meanwhile.
func (b *bucket) leased(now int64) result {
	p := b.pol
	rem := min(b.remote+(now-b.leasedAt)/p.interval, p.Burst) + b.onHand
	rem = min(rem, p.Burst)
	return result{ok: true, remaining: rem, reset: p.interval * (p.Burst - rem)}
}

func (b *bucket) outage(now int64) result {
	p := b.pol
	ok, rem, reset, retry := b.out.take(now, p.outInterval, p.outBurst)
	return result{ok: ok, remaining: rem, reset: reset, retry: retry, degraded: true}
}

// give returns the unit of an admitted take whose request another scope
// refused, so a refused request spends nothing.
func (b *bucket) give(lz *leaser, r result) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case lz == nil:
		b.g.give(b.pol.interval)
	case r.degraded:
		b.out.give(b.pol.outInterval)
	default:
		b.onHand++
	}
}

// sweep gives back leased units older than leaseTTL; it reports whether the
// bucket is idle and full (it may be forgotten).
func (b *bucket) sweep(lz *leaser, now int64) (idle bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if lz != nil && b.onHand > 0 && now-b.leasedAt >= int64(leaseTTL) {
		lz.giveBack(b.id, b.pol.interval, b.onHand)
		b.onHand = 0
	}
	return b.onHand == 0 && b.g.tat <= now && b.out.tat <= now && b.blockedUntil <= now && now-b.lastUsed > int64(time.Minute)
}

// returnAll gives back every leased unit (shutdown).
func (b *bucket) returnAll(lz *leaser) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if lz != nil && b.onHand > 0 {
		lz.giveBack(b.id, b.pol.interval, b.onHand)
		b.onHand = 0
	}
}

// leaser wraps the store's RateLeaser with a per-call deadline.
type leaser struct {
	s       store.RateLeaser
	timeout time.Duration
	errs    func()
}

func (lz *leaser) lease(id string, p *Policy, n int64) (granted, remaining int64, retry time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), lz.timeout)
	defer cancel()
	granted, remaining, retry, err = lz.s.LeaseRate(ctx, id, time.Duration(p.interval), p.Burst, n)
	if err != nil && lz.errs != nil {
		lz.errs()
	}
	return granted, remaining, retry, err
}

func (lz *leaser) giveBack(id string, interval, n int64) {
	ctx, cancel := context.WithTimeout(context.Background(), lz.timeout)
	defer cancel()
	if err := lz.s.ReturnRate(ctx, id, time.Duration(interval), n); err != nil && lz.errs != nil {
		lz.errs()
	}
}
