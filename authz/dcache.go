package authz

import (
	"hash/maphash"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/store"
)

// decisionCache caches the plugin's answer per (principal, generation,
// domain, action, target) tuple.
//
// # Invalidation without scanning
//
// A global sequence is incremented by every invalidation. Usernames and
// domains hash into fixed tables of epochs (epochSlots each); an invalidation
// naming a user or a domain stores its sequence number in that slot, a flush
// in flushSeq. An entry records the sequence at which its plugin call began
// and is valid only while its user slot, its domain slot and flushSeq are not
// past it. So an invalidation that lands during the plugin call makes the
// answer dead on arrival, and nothing is ever scanned or deleted. Two names
// sharing a slot only cost a spurious miss. The tables are fixed-size: no
// growth, no lock, no sweeper.
//
// Invalidating an account also drops the decisions of its users acting in
// another domain.
//
// A role, type, password or state change bumps the user's generation, which
// is part of the key: the identity rebuilt after it misses the cache even if
// the invalidation was lost. Entries expire after the TTL, judged by the clock
// the caller passes (no ristretto TTL: ristretto reads the wall clock on every
// hit). Memory is bounded by ristretto's MaxCost.
type decisionCache struct {
	seed maphash.Seed
	rc   *ristretto.Cache[uint64, *decision]
	ttl  int64 // ns

	seq, flushSeq atomic.Uint64
	users         [epochSlots]atomic.Uint64
	domains       [epochSlots]atomic.Uint64
}

const epochSlots = 4096 // power of two

// decision is one cached answer; immutable once stored.
type decision struct {
	principal, domain, action, target string
	gen                               uint64
	seq                               uint64 // sequence when the call began
	expires                           int64  // unix ns
	allowed                           bool
}

func newDecisionCache(maxEntries int64, ttl time.Duration) (*decisionCache, error) {
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, *decision]{
		NumCounters:        10 * maxEntries,
		MaxCost:            maxEntries,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, err
	}
	return &decisionCache{seed: maphash.MakeSeed(), rc: rc, ttl: int64(ttl)}, nil
}

func (c *decisionCache) close() { c.rc.Close() }

// begin returns the sequence to pass to set for a plugin call starting now.
func (c *decisionCache) begin() uint64 { return c.seq.Load() }

// tupleKey identifies one tuple in the cache: the ristretto key and the
// epoch slots of its user and domain.
type tupleKey struct {
	key               uint64
	userSlot, domSlot uint64
	// acctSlot is the slot of the principal's own account when it differs
	// from the domain (an admin acting in another account): invalidating
	// that account drops the principal's decisions too.
	acctSlot uint64
}

// keyOf hashes a tuple. The user and domain hashes double as epoch slots.
func (c *decisionCache) keyOf(id *authn.Identity, domain string, a *Action) tupleKey {
	hu := maphash.String(c.seed, id.Username)
	hd := maphash.String(c.seed, domain)
	k := mix(hu, hd)
	k = mix(k, maphash.String(c.seed, a.Action))
	k = mix(k, maphash.String(c.seed, a.Target))
	k = mix(k, id.Generation)
	t := tupleKey{key: k, userSlot: hu & (epochSlots - 1), domSlot: hd & (epochSlots - 1)}
	t.acctSlot = t.domSlot
	if id.Account != domain {
		t.acctSlot = c.slot(id.Account)
	}
	return t
}

// mix combines two 64-bit hashes (order matters). Collisions only cost a
// miss or an overwrite: every hit compares the full tuple.
func mix(h, v uint64) uint64 {
	h ^= v + 0x9e3779b97f4a7c15 + (h << 6) + (h >> 2)
	h *= 0xbf58476d1ce4e5b9
	return h ^ (h >> 31)
}

func (c *decisionCache) slot(s string) uint64 {
	return maphash.String(c.seed, s) & (epochSlots - 1)
}

// get returns the cached answer for one tuple at now (unix ns).
func (c *decisionCache) get(id *authn.Identity, domain string, a *Action, now int64) (allowed, ok bool) {
	k := c.keyOf(id, domain, a)
	d, found := c.rc.Get(k.key)
	if !found || d == nil {
		return false, false
	}
	switch {
	case now >= d.expires,
		d.gen != id.Generation,
		d.principal != id.Username, d.domain != domain,
		d.action != a.Action, d.target != a.Target,
		d.seq < c.flushSeq.Load(),
		d.seq < c.users[k.userSlot].Load(),
		d.seq < c.domains[k.domSlot].Load(),
		d.seq < c.domains[k.acctSlot].Load():
		return false, false
	}
	return d.allowed, true
}

// set stores an answer obtained by a call that began at seq.
func (c *decisionCache) set(id *authn.Identity, domain string, a *Action, allowed bool, seq uint64, now int64) {
	d := &decision{
		principal: strings.Clone(id.Username),
		domain:    strings.Clone(domain),
		action:    strings.Clone(a.Action),
		target:    strings.Clone(a.Target),
		gen:       id.Generation,
		seq:       seq,
		expires:   now + c.ttl,
		allowed:   allowed,
	}
	c.rc.Set(c.keyOf(id, domain, a).key, d, 1)
}

// invalidate applies a store invalidation. KeyID alone changes nothing here:
// decisions are per principal, and a revoked key no longer authenticates.
func (c *decisionCache) invalidate(inv store.Invalidation) {
	if !inv.Flush && inv.Username == "" && inv.Account == "" {
		return
	}
	n := c.seq.Add(1)
	if inv.Flush {
		storeMax(&c.flushSeq, n)
	}
	if inv.Username != "" {
		storeMax(&c.users[c.slot(inv.Username)], n)
	}
	if inv.Account != "" {
		storeMax(&c.domains[c.slot(inv.Account)], n)
	}
}

// storeMax raises v to n unless it is already past it (invalidations may
// race; the larger number must win).
func storeMax(v *atomic.Uint64, n uint64) {
	for {
		old := v.Load()
		if old >= n || v.CompareAndSwap(old, n) {
			return
		}
	}
}
