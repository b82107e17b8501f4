package authn

// The types of the credential cache (package cache) that the Chain shares
// with it. They live here because authn is the leaf of the import graph
// (DESIGN.md §2): cache imports authn for Identity, never the reverse.

// CacheKey identifies a credential in the cache. It is a 128-bit keyed MAC
// (SipHash-2-4-128 under a random per-cache key) of the domain-separated
// credential, never the secret itself: a heap dump or a debugger shows no
// password or key value, and keys of one process mean nothing in another.
//
// Hi indexes the ristretto map (a uint64 key: ristretto does no hashing of its
// own); Lo is kept in the entry and compared on every hit, so two credentials
// must agree on all 128 bits to share an entry. SipHash is a PRF: without the
// per-cache key nobody can choose a credential whose Hi lands on another's
// entry, so such collisions are 2^-64 accidents; even then a Set for the
// other credential does not replace the entry (ristretto's ShouldUpdate hook
// compares Lo) and a Get for it misses without touching it.
type CacheKey struct{ Hi, Lo uint64 }

// Credential kinds, the domain-separation byte of IdentityCache.KeyOf.
// Callers may use other values; two kinds never share keys.
const (
	CacheKindBasic  byte = 'b' // a = username, b = password
	CacheKindAPIKey byte = 'k' // a = key id or nil, b = the whole key value (it contains the key id)
	CacheKindBearer byte = 't' // a = the token's signature part, b = nil (Chain.bearerKey binds the rest)
)

// CacheStatus is the outcome of IdentityCache.Get.
type CacheStatus uint8

// Cache statuses.
const (
	// CacheMiss: nothing usable is cached; look the credential up.
	CacheMiss CacheStatus = iota
	// CacheHit: a valid, fresh identity; serve it.
	CacheHit
	// CacheNegative: the credential was recently found invalid; reject it
	// with the returned reason without touching the store.
	CacheNegative
	// CacheStale: a valid identity (no invalidation touched it, the
	// credential has not expired) that must be revalidated: it is past
	// cache.ttl, or the invalidation subscription was lost since it was
	// cached. Refresh it from the store; if the store is unavailable it may
	// be served (outage grace).
	CacheStale
	// CacheRefresh: a CacheHit in the last tenth of its TTL, or marked for
	// revalidation (cache.MarkRevalidate), returned to one caller per entry:
	// serve it, and revalidate the credential in the background so a busy
	// credential never waits for its lookup (or its password hash) when the
	// entry expires. The entry's own bounds do not move: if the refresh
	// fails or is slow, it expires at its TTL as any other.
	CacheRefresh
)

// String returns the status name.
func (s CacheStatus) String() string {
	switch s {
	case CacheHit:
		return "hit"
	case CacheNegative:
		return "negative"
	case CacheStale:
		return "stale"
	case CacheRefresh:
		return "refresh"
	default:
		return "miss"
	}
}
