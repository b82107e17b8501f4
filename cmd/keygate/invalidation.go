package main

import "github.com/keygate/keygate/store"

// invalidationSubscribers is the one list of everything a store invalidation
// reaches, in the order it is applied; the identity cache comes last, as the
// function cache.Listen gives to the store's Watch (buildChain wraps the
// store with store.WatchThrough over this list).
//
// The order matters: whatever a request reads while it rebuilds an identity
// after a cache miss must be invalidated before the identity cache lets the
// request miss, or the rebuilt identity (or decision) is computed from the
// state before the change and cached after the invalidation that should
// have dropped it, until its TTL:
//
//  1. account states: a miss checks its account's state; were the cache
//     dropped first, a miss racing an account's disable could read the old
//     "enabled" and re-cache the identity as enabled. A subscription that
//     starts or ends flushes them (invalidations may have been missed).
//  2. the external authorizer's decision cache: a request whose identity was
//     just rebuilt must not find an allow cached for the user or domain
//     before the change. Lost invalidations are bounded by its TTL and by
//     the user generation in its keys.
//  3. the rate-limit assignments (a reload; they read no identity).
//  4. the identity cache (cache.Listen: marks every entry stale when the
//     subscription is lost).
//
// A new consumer of invalidations goes here, in its place, not into
// another wrapper of the store.
func (g *gateway) invalidationSubscribers() []store.Subscriber {
	subs := []store.Subscriber{g.states.Subscriber()}
	if g.external != nil {
		subs = append(subs, store.Subscriber{Name: "authz decisions", Apply: g.external.Invalidate})
	}
	// Upstream credentials: only their own invalidations reach them (and
	// only them), so the place in the order does not matter.
	if g.ucred != nil {
		subs = append(subs, g.ucred.Subscriber())
	}
	if g.limiter != nil {
		subs = append(subs, g.limiter.Subscriber())
	}
	return subs
}
