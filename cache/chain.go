package cache

import (
	"time"

	"github.com/keygate/keygate/authn"
)

// ForChain returns c as the authn.IdentityCache the authentication chain
// consults. authn cannot import cache (it is the leaf), so the chain sees the
// cache through this view; Key and Status convert one to one (a test checks
// that the Status values agree).
func (c *Cache) ForChain() authn.IdentityCache { return chainView{c} }

type chainView struct{ c *Cache }

func (v chainView) KeyOf(kind byte, a, b []byte) authn.CacheKey {
	return authn.CacheKey(v.c.KeyOf(kind, a, b))
}

func (v chainView) Get(k authn.CacheKey, now time.Time) (*authn.Identity, authn.CacheStatus, error) {
	id, st, reason := v.c.Get(Key(k), now)
	return id, authn.CacheStatus(st), reason
}

func (v chainView) Begin() uint64 { return v.c.Begin() }

func (v chainView) SetPositive(k authn.CacheKey, id *authn.Identity, seq uint64) bool {
	return v.c.SetPositive(Key(k), id, seq)
}

func (v chainView) SetNegative(k authn.CacheKey, reason error, seq uint64) bool {
	return v.c.SetNegative(Key(k), reason, seq)
}

var _ authn.IdentityCache = chainView{}
