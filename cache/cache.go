// Package cache is keygate's L1 of authenticated identities: a ristretto
// cache keyed by a MAC of the credential, holding positive entries (the
// Identity a credential authenticates as) and negative entries (why it does
// not), with generation-based invalidation and the listener that applies the
// store's invalidations (DESIGN.md §1, §8).
//
// # Use on the request path
//
//	k := c.KeyOf(authn.CacheKindAPIKey, nil, value)
//	id, st, reason := c.Get(k, now)      // 0 allocations
//	switch st {
//	case authn.CacheHit:      serve id
//	case authn.CacheNegative: reject with reason
//	case authn.CacheMiss, authn.CacheStale:
//	    s := c.Begin()                   // BEFORE the store lookup
//	    id, err := lookup()              // singleflight per credential
//	    switch {
//	    case err == nil:                 c.SetPositive(k, id, s)
//	    case store unavailable && st == authn.CacheStale: serve the stale id (outage grace)
//	    case store unavailable:          503, cache nothing
//	    default (credential invalid):    c.SetNegative(k, err, s)
//	    }
//	}
//
// # Invalidation without scanning
//
// Entries are keyed by a MAC and cannot be enumerated by user, so nothing is
// scanned. A global sequence is incremented by every invalidation; each
// username, each account and each API key id that authenticated has a
// counter holding the sequence number of the last invalidation that named
// it; a Flush records its number in flushSeq. An entry stores the sequence
// its lookup began at (Begin) and is valid only while no counter it depends
// on has moved past it. An invalidation that lands while the store lookup is
// in flight therefore makes the entry dead on arrival.
//
// Invalidation is per credential (DESIGN.md §13): an entry made from an API
// key depends on its key's counter, its owner's and its account's; any other
// entry (password, token) on its user's and account's only. An invalidation
// naming a key (store.Invalidation.KeyOnly) moves that key's counter alone,
// so revoking or changing key K drops every form of K (they share one entry:
// the MAC covers the key value, see KindAPIKey) and nothing else of its
// owner's; one naming a user moves the user's counter, which every
// credential of the user depends on, tokens included. A positive hit costs
// four atomic loads (key, user, account, flush) and two for the marks;
// an entry without a key points at a counter that never moves. A negative
// entry dies on any invalidation at all (one load), so a password reset or a
// re-enabled user never waits for negative_ttl after an invalidation.
//
// # Revalidation after a lost subscription
//
// When the store re-establishes a lost invalidation subscription it first
// delivers what was missed (replayed from its invalidation log), then
// store.Invalidation{Revalidate: true}: MarkRevalidate. Nothing is dropped:
// a marked entry is revalidated by its next request (in the background while
// it is fresh; first, and served if that fails because the store is not
// ready yet, once it is past cache.ttl, within its outage grace). Entries the
// replayed invalidations named are dead before the mark, so a key revoked
// while the subscription was down never comes back. When the store cannot
// replay (its log no longer reaches back to the last invalidation seen, or
// was lost), it delivers a Flush.
//
// Every time decision is made from the entry's own timestamps and the time
// the caller passes to Get; entries are stored without a ristretto TTL.
// ristretto checks an item's TTL against time.Now() on every hit, which would
// double the cost of a hit (a clock read is the most expensive thing on the
// path) and mix the wall clock into decisions the tests drive with a fake
// clock. Memory stays bounded by MaxEntries: a dead entry is overwritten by
// the refresh of its credential or evicted by the LFU policy.
//
// Entries that fail the checks are not deleted on Get: the caller's refresh
// overwrites them in place (an update keeps the entry's admission in the
// TinyLFU policy, a delete would make the refreshed Set compete for admission
// again), and eviction reclaims the rest. Deleting would also put a blocking
// channel send and an allocation on the request path.
package cache

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/store"
)

// *Cache is the credential cache of the authentication chain as it is.
var _ authn.IdentityCache = (*Cache)(nil)

// Config configures a Cache.
type Config struct {
	// MaxEntries bounds the number of entries (positive and negative).
	MaxEntries int64
	// TTL is how long a positive entry is served without revalidation
	// (cache.ttl).
	TTL time.Duration
	// NegativeTTL is how long a negative entry is served (cache.negative_ttl);
	// 0 disables negative caching.
	NegativeTTL time.Duration
	// OutageGrace is how long past TTL a positive entry is kept so that it can
	// be served while the store is unavailable (store.outage_grace).
	OutageGrace time.Duration
	// Now is the clock used by Set and the counter sweeper (default time.Now).
	// Get takes the time from its caller.
	Now func() time.Time
}

// Cache is the L1 of authenticated identities. It is safe for concurrent use.
type Cache struct {
	cfg    Config
	k0, k1 uint64
	rc     *ristretto.Cache[uint64, *entry]

	// Sequence numbers (see the package comment).
	seq      atomic.Uint64 // number of the last invalidation (or mark)
	flushSeq atomic.Uint64 // number of the last flush
	staleSeq atomic.Uint64 // number of the last MarkStale
	revalSeq atomic.Uint64 // number of the last MarkRevalidate

	users, accounts, keys *counterTable
	// noKey is the key counter of entries not made from an API key: it
	// never moves, so a hit checks four counters without a branch.
	noKey counter

	hits, misses  stripedCounter
	invalidations prometheus.Counter

	// Listen's reconnect backoff (tests shorten it).
	backoffMin, backoffMax time.Duration

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// entry is what ristretto stores. It is immutable once built: a refresh
// replaces the whole entry.
type entry struct {
	lo  uint64 // low half of the Key, compared on every hit
	seq uint64 // Begin() of the lookup that produced it
	id  *authn.Identity
	// reason is why a negative entry (id == nil) is negative.
	reason          error
	user, acct, key *counter
	// Times in unix ns. expiresAt 0: the credential never expires.
	freshUntil, staleUntil, expiresAt int64
	// refreshAt: from then on (until freshUntil) the first Get returns
	// Refresh (refreshing records that one did).
	refreshAt  int64
	refreshing atomic.Bool
}

// New builds a Cache and starts its counter sweeper (stopped by Close). reg
// receives keygate_cache_hits_total, keygate_cache_misses_total,
// keygate_invalidations_total and keygate_cache_entries; nil registers
// nothing.
func New(cfg Config, reg prometheus.Registerer) (*Cache, error) {
	switch {
	case cfg.MaxEntries < 1:
		return nil, fmt.Errorf("cache: max_entries must be at least 1 (got %d)", cfg.MaxEntries)
	case cfg.TTL <= 0:
		return nil, fmt.Errorf("cache: ttl must be positive (got %s)", cfg.TTL)
	case cfg.NegativeTTL < 0:
		return nil, fmt.Errorf("cache: negative_ttl must not be negative (got %s)", cfg.NegativeTTL)
	case cfg.OutageGrace < 0:
		return nil, fmt.Errorf("cache: outage_grace must not be negative (got %s)", cfg.OutageGrace)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var seed [16]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("cache: key: %w", err)
	}
	c := &Cache{
		cfg: cfg,
		k0:  binary.LittleEndian.Uint64(seed[:8]),
		k1:  binary.LittleEndian.Uint64(seed[8:]),
		// Each positive entry refers to one user, one account and at most
		// one key counter; counters outlive their entries by the sweep
		// delay, hence the slack.
		users:    newCounterTable(2*cfg.MaxEntries + 1024),
		accounts: newCounterTable(2*cfg.MaxEntries + 1024),
		keys:     newCounterTable(2*cfg.MaxEntries + 1024),
		invalidations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keygate_invalidations_total",
			Help: "Cache invalidations applied (from the store's pub/sub or local writes).",
		}),
		backoffMin: 100 * time.Millisecond,
		backoffMax: 30 * time.Second,
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, *entry]{
		NumCounters:        10 * cfg.MaxEntries,
		MaxCost:            cfg.MaxEntries,
		BufferItems:        64,
		IgnoreInternalCost: true,
		// Never let one credential's Set replace another credential's entry
		// (same Hi, different Lo), nor an older lookup replace a newer one.
		ShouldUpdate: func(cur, prev *entry) bool {
			return cur.lo == prev.lo && cur.seq >= prev.seq
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c.rc = rc
	if reg != nil {
		entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_cache_entries",
			Help: "Entries in the credential cache (positive and negative).",
		}, func() float64 { return float64(c.Len()) })
		hits := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keygate_cache_hits_total",
			Help: "Credential cache lookups answered from the cache (positive or negative).",
		}, c.hits.value)
		misses := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keygate_cache_misses_total",
			Help: "Credential cache lookups that needed the store (miss or stale).",
		}, c.misses.value)
		for _, col := range []prometheus.Collector{hits, misses, c.invalidations, entries} {
			if err := reg.Register(col); err != nil {
				rc.Close()
				return nil, fmt.Errorf("cache: metrics: %w", err)
			}
		}
	}
	go c.sweeper()
	return c, nil
}

// Begin returns the current invalidation sequence. Take it BEFORE the store
// lookup whose result will be passed to SetPositive or SetNegative: any
// invalidation that happens after Begin makes that entry dead on arrival.
func (c *Cache) Begin() uint64 { return c.seq.Load() }

// Get looks k up at time now. It returns the cached identity (CacheHit,
// CacheRefresh, CacheStale), the cached rejection reason (CacheNegative), or
// nothing (CacheMiss); the statuses are authn's, described there. The Identity is
// shared and read-only. Get does not allocate (see BenchmarkGetHit for
// ristretto's amortised bookkeeping).
func (c *Cache) Get(k authn.CacheKey, now time.Time) (*authn.Identity, authn.CacheStatus, error) {
	e, ok := c.rc.Get(k.Hi)
	if !ok || e.lo != k.Lo {
		// A different credential with the same Hi is a miss; its entry is
		// left alone.
		c.misses.inc(k.Hi)
		return nil, authn.CacheMiss, nil
	}
	t := now.UnixNano()
	if e.id == nil {
		// Negative: dies on any invalidation and after NegativeTTL.
		if c.seq.Load() > e.seq || t >= e.freshUntil {
			c.misses.inc(k.Hi)
			return nil, authn.CacheMiss, nil
		}
		c.hits.inc(k.Hi)
		return nil, authn.CacheNegative, e.reason
	}
	if c.flushSeq.Load() > e.seq || e.key.last.Load() > e.seq || e.user.last.Load() > e.seq ||
		e.acct.last.Load() > e.seq || (e.expiresAt != 0 && t >= e.expiresAt) {
		c.misses.inc(k.Hi)
		return nil, authn.CacheMiss, nil
	}
	if t < e.freshUntil && c.staleSeq.Load() <= e.seq {
		c.hits.inc(k.Hi)
		if (t >= e.refreshAt || c.revalSeq.Load() > e.seq) && !e.refreshing.Load() && e.refreshing.CompareAndSwap(false, true) {
			return e.id, authn.CacheRefresh, nil
		}
		return e.id, authn.CacheHit, nil
	}
	c.misses.inc(k.Hi)
	if t < e.staleUntil {
		return e.id, authn.CacheStale, nil
	}
	return nil, authn.CacheMiss, nil
}

// SetPositive caches id for k. s is the Begin() taken before the lookup that
// produced id. id is shared from now on and must not be modified. It reports
// whether the entry was handed to ristretto: like every ristretto Set, a new
// entry becomes visible asynchronously (microseconds later, after the
// admission policy) and may be refused by that policy; replacing an existing
// entry for the same credential is immediate. Callers cover concurrent misses
// with a singleflight; a refused Set only means another miss later.
//
// The entry is fresh for TTL, then Stale for OutageGrace, and never outlives
// id.ExpiresAt.
func (c *Cache) SetPositive(k authn.CacheKey, id *authn.Identity, s uint64) bool {
	if id == nil {
		return false
	}
	nowT := c.cfg.Now()
	now := nowT.UnixNano()
	e := &entry{
		lo:         k.Lo,
		seq:        s,
		id:         id,
		freshUntil: now + int64(c.cfg.TTL),
		staleUntil: now + int64(c.cfg.TTL+c.cfg.OutageGrace),
		refreshAt:  now + int64(c.cfg.TTL-c.cfg.TTL/10),
	}
	if !id.ExpiresAt.IsZero() {
		if !id.ExpiresAt.After(nowT) {
			return false
		}
		e.expiresAt = id.ExpiresAt.UnixNano()
		if e.expiresAt < e.freshUntil {
			// The credential itself expires first: nothing to refresh.
			e.refreshAt = math.MaxInt64
		}
		e.freshUntil = min(e.freshUntil, e.expiresAt)
		e.staleUntil = min(e.staleUntil, e.expiresAt)
	}
	e.user = c.counterFor(c.users, id.Username, now)
	e.acct = c.counterFor(c.accounts, id.Account, now)
	e.key = &c.noKey
	if id.KeyID != "" {
		e.key = c.counterFor(c.keys, id.KeyID, now)
	}
	return c.rc.Set(k.Hi, e, 1)
}

// SetNegative caches that k is invalid for NegativeTTL; reason is returned by
// Get with Negative. s is the Begin() taken before the lookup. A reason that
// says the store could not answer (store.ErrUnavailable, a context deadline
// or cancellation) is never cached: a timeout is not "invalid". With negative
// caching disabled, SetNegative still removes a positive entry for k, so a
// credential the store just refused cannot be served stale later.
func (c *Cache) SetNegative(k authn.CacheKey, reason error, s uint64) bool {
	if reason == nil || errors.Is(reason, store.ErrUnavailable) ||
		errors.Is(reason, context.DeadlineExceeded) || errors.Is(reason, context.Canceled) {
		return false
	}
	if c.cfg.NegativeTTL == 0 {
		c.Delete(k)
		return false
	}
	now := c.cfg.Now().UnixNano()
	e := &entry{
		lo:         k.Lo,
		seq:        s,
		reason:     reason,
		freshUntil: now + int64(c.cfg.NegativeTTL),
	}
	e.staleUntil = e.freshUntil
	return c.rc.Set(k.Hi, e, 1)
}

// Delete removes k's entry, if the entry is k's.
func (c *Cache) Delete(k authn.CacheKey) {
	if e, ok := c.rc.Get(k.Hi); ok && e.lo == k.Lo {
		c.rc.Del(k.Hi)
	}
}

// Invalidate applies an invalidation from the store (Store.Watch's fn),
// with the scopes of store.Invalidation:
//   - Flush, or an invalidation naming nothing, drops everything;
//   - Revalidate marks every entry for revalidation (MarkRevalidate);
//   - KeyID kills the entries made from that API key, and only those (the
//     Username beside it names the owner and is not used);
//   - otherwise Username kills that user's entries, Account that account's
//     (both when both are set).
//
// Every invalidation also kills every negative entry. Invalidate does not
// block; it may be called from any goroutine.
func (c *Cache) Invalidate(inv store.Invalidation) {
	c.invalidations.Inc()
	switch {
	case inv.All():
		storeMax(&c.flushSeq, c.seq.Add(1))
	case inv.Revalidate:
		c.MarkRevalidate()
	case inv.KeyOnly():
		c.keys.bump(inv.KeyID, c.seq.Add(1))
	default:
		n := c.seq.Add(1)
		if inv.Username != "" {
			c.users.bump(inv.Username, n)
		}
		if inv.Account != "" {
			c.accounts.bump(inv.Account, n)
		}
	}
}

// MarkStale makes every entry cached so far Stale: it must be revalidated
// with the store before it is served as fresh, and may still be served while
// the store is unavailable, within its outage grace. Listen applies it when
// Watch itself returns: invalidations may have been missed and not
// replayed, but the outage policy must keep cached identities working
// (DESIGN.md §8). Negative entries die.
func (c *Cache) MarkStale() {
	n := c.seq.Add(1)
	storeMax(&c.staleSeq, n)
}

// MarkRevalidate marks every entry cached so far for revalidation, the
// store.Invalidation.Revalidate a store delivers once it has re-established a
// lost subscription and replayed every invalidation missed meanwhile: what
// is still cached is as current as any fresh entry, but whatever the store
// could not publish at all (a write whose publish failed) is caught sooner
// than cache.ttl. A fresh marked entry is served and returned once as
// Refresh (revalidated in the background, nobody waits: a Redis restart
// costs cached clients neither a 503 nor a lookup's latency, and while the
// store is not ready the entry simply stays); one past cache.ttl is Stale as
// before (revalidated first, served while the store is unavailable, within
// its outage grace). Negative entries die.
func (c *Cache) MarkRevalidate() {
	n := c.seq.Add(1)
	storeMax(&c.revalSeq, n)
}

// Clear drops every entry and every counter.
func (c *Cache) Clear() {
	c.resetCounters(c.users)
	c.resetCounters(c.accounts)
	c.resetCounters(c.keys)
	c.rc.Clear()
}

// Wait blocks until the Sets made so far have been applied (tests).
func (c *Cache) Wait() { c.rc.Wait() }

// Len returns the number of entries admitted (live or not yet reclaimed).
func (c *Cache) Len() int64 { return c.rc.MaxCost() - c.rc.RemainingCost() }

// Counters returns the number of user and account invalidation counters held.
func (c *Cache) Counters() (users, accounts int64) {
	return c.users.len(), c.accounts.len()
}

// KeyCounters returns the number of API key invalidation counters held.
func (c *Cache) KeyCounters() int64 { return c.keys.len() }

// Close stops the sweeper and releases the cache. Get misses and Sets are
// dropped afterwards. Close is idempotent.
func (c *Cache) Close() {
	c.closeOnce.Do(func() {
		close(c.stop)
		<-c.done
		c.rc.Close()
	})
}

// counterFor returns name's counter in t, creating it if needed, and records
// that an entry made at now refers to it.
//
// A new counter starts at the current sequence, not 0: an invalidation of a
// name without a counter touches nothing, so an entry whose lookup began
// before that invalidation must still come out dead. Starting at the current
// sequence kills it (and, conservatively, any entry of a new counter whose
// lookup overlapped any invalidation: one extra miss).
//
// The table is bounded: at t.max counters, it is emptied and everything is
// flushed (entries referring to dropped counters would no longer see
// invalidations of their names). Counters are only created by positive Sets,
// i.e. by successful authentications, so a flood of random credentials
// creates none; the sweeper keeps the table near the number of names seen
// within TTL + OutageGrace.
func (c *Cache) counterFor(t *counterTable, name string, now int64) *counter {
	sh := t.shard(name)
	for {
		sh.mu.Lock()
		if ctr := sh.m[name]; ctr != nil {
			ctr.used = max(ctr.used, now)
			sh.mu.Unlock()
			return ctr
		}
		if t.n.Load() < t.max {
			ctr := &counter{used: now}
			ctr.last.Store(c.seq.Load())
			sh.m[name] = ctr
			t.n.Add(1)
			sh.mu.Unlock()
			return ctr
		}
		sh.mu.Unlock()
		c.resetCounters(t)
	}
}

// resetCounters empties t and flushes. The flush number is taken after the
// table is emptied, under its locks: an entry whose Begin() is at or after
// the flush got its counters from the new table.
func (c *Cache) resetCounters(t *counterTable) {
	t.lockAll()
	t.clearLocked()
	storeMax(&c.flushSeq, c.seq.Add(1))
	t.unlockAll()
}

// sweepAfter is how long after its last Set a counter is kept: no entry
// referring to it can be served after TTL + OutageGrace; the extra minute
// absorbs a caller clock (Get's now) running behind cfg.Now.
func (c *Cache) sweepAfter() time.Duration { return c.cfg.TTL + c.cfg.OutageGrace + time.Minute }

// sweep drops counters unused for sweepAfter as of now.
func (c *Cache) sweep(now time.Time) int {
	before := now.Add(-c.sweepAfter()).UnixNano()
	return c.users.sweep(before) + c.accounts.sweep(before) + c.keys.sweep(before)
}

func (c *Cache) sweeper() {
	defer close(c.done)
	every := min(max((c.cfg.TTL+c.cfg.OutageGrace)/2, time.Second), time.Minute)
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-tk.C:
			c.sweep(c.cfg.Now())
		case <-c.stop:
			return
		}
	}
}
