package principal

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/store"
)

// Bounds of AccountStates.
const (
	// DefaultAccountTTL is how long an account state is trusted without an
	// invalidation.
	DefaultAccountTTL = time.Minute
	// maxAccounts bounds the map; past it, it is emptied.
	maxAccounts = 100000
	// accountTimeout bounds one GetAccount of AccountStates (the same
	// bound as the authenticators' own store calls).
	accountTimeout = 3 * time.Second
)

// AccountStates is an authn.AccountStates: a small in-memory map of account
// states, filled from Store.GetAccount on first need (one call per account
// for concurrent askers), dropped by the account's invalidations, by a
// flush, and after a TTL. It is safe for concurrent use.
//
// It must see every invalidation before the identity cache does, or a miss
// racing an account's disable could be re-cached as enabled: wrap the store
// given to cache.Listen with WatchFirst.
type AccountStates struct {
	s       store.Store
	ttl     time.Duration
	now     func() time.Time
	timeout time.Duration
	sf      singleflight.Group

	mu    sync.RWMutex
	m     map[string]accountState
	epoch uint64 // bumped by every invalidation (under mu)
}

type accountState struct {
	enabled bool
	until   int64 // unix ns
}

// NewAccountStates returns account states read from s and trusted for ttl
// (≤ 0: DefaultAccountTTL). now is the clock (nil: time.Now).
func NewAccountStates(s store.Store, ttl time.Duration, now func() time.Time) *AccountStates {
	if ttl <= 0 {
		ttl = DefaultAccountTTL
	}
	if now == nil {
		now = time.Now
	}
	return &AccountStates{s: s, ttl: ttl, now: now, timeout: accountTimeout, m: make(map[string]accountState)}
}

// Enabled reports whether account exists and is enabled. It costs a store
// round trip only when the state is not known or older than the TTL. Errors
// wrap the store's (store.ErrUnavailable, context errors).
func (a *AccountStates) Enabled(ctx context.Context, account string) (bool, error) {
	t := a.now().UnixNano()
	a.mu.RLock()
	st, ok := a.m[account]
	a.mu.RUnlock()
	if ok && t < st.until {
		return st.enabled, nil
	}
	ch := a.sf.DoChan(account, func() (any, error) {
		a.mu.RLock()
		epoch := a.epoch
		a.mu.RUnlock()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.timeout)
		defer cancel()
		acc, err := a.s.GetAccount(ctx, account)
		var enabled bool
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return false, err
		default:
			enabled = acc.State == store.StateEnabled
		}
		a.mu.Lock()
		// An invalidation during the read may have made it stale: use it
		// for this answer, but do not keep it.
		if a.epoch == epoch {
			if len(a.m) >= maxAccounts {
				clear(a.m)
			}
			a.m[account] = accountState{enabled: enabled, until: a.now().Add(a.ttl).UnixNano()}
		}
		a.mu.Unlock()
		return enabled, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return false, r.Err
		}
		return r.Val.(bool), nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// Invalidate applies a store invalidation: a flush, or one naming nothing
// but a key, drops every state; one naming an account drops that account's.
// Invalidations naming only a user leave account states alone.
func (a *AccountStates) Invalidate(inv store.Invalidation) {
	a.mu.Lock()
	a.epoch++
	switch {
	case inv.Flush || (inv.Account == "" && inv.Username == ""):
		clear(a.m)
	case inv.Account != "":
		delete(a.m, inv.Account)
	}
	a.mu.Unlock()
}

// Flush drops every state.
func (a *AccountStates) Flush() { a.Invalidate(store.Invalidation{Flush: true}) }

// Len returns the number of states held.
func (a *AccountStates) Len() int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return len(a.m)
}

// Subscriber is the states' place in the store's invalidation fan-out: each
// invalidation drops what it names, and a subscription that starts or ends
// (invalidations may have been missed) drops every state.
func (a *AccountStates) Subscriber() store.Subscriber {
	return store.Subscriber{Name: "account states", Apply: a.Invalidate, Reset: a.Flush}
}

// WatchFirst returns s with its Watch changed so that every invalidation is
// applied to a before being passed on, and a is flushed whenever the
// subscription starts or ends (store.WatchThrough with Subscriber). Give it
// to cache.Listen:
//
//	go c.Listen(ctx, states.WatchFirst(s), logger)
func (a *AccountStates) WatchFirst(s store.Store) store.Store {
	return store.WatchThrough(s, a.Subscriber())
}

// StoreAccounts is an authn.AccountStates that asks the store every time:
// the fallback of the authenticators when no cached AccountStates is given.
func StoreAccounts(s store.Store) authn.AccountStates { return storeAccounts{s} }

// storeAccounts asks the store every time (no AccountStates given).
type storeAccounts struct{ s store.Store }

func (sa storeAccounts) Enabled(ctx context.Context, account string) (bool, error) {
	acc, err := sa.s.GetAccount(ctx, account)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return acc.State == store.StateEnabled, nil
}

var _ authn.AccountStates = (*AccountStates)(nil)
