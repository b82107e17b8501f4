package authn

import (
	"bytes"
	"hash/maphash"
)

// tokenSeed keys the whole-token check of bearerKey: random per process,
// never shown.
var tokenSeed = maphash.MakeSeed()

// bearerKey is the cache key of a Bearer token (a JWS: header.payload.sig).
//
// The MAC of the other forms (SipHash-2-4-128, IdentityCache.KeyOf) costs
// ~0.75 ns a byte; over a whole ~370-byte JWT it was half the cost of a hit.
// Here it runs over the signature part alone (43 bytes for HS256), and the
// whole token is bound to the entry by a 64-bit keyed hash (maphash, AES
// based on amd64, several times cheaper per byte) folded into Lo, which the
// cache compares on every hit:
//
//	Hi = SipHash_hi(sig)    Lo = SipHash_lo(sig) ^ maphash(seed, token)
//
// Why no other token can hit a cached identity:
//   - A token with another signature part needs a SipHash collision on Hi
//     and Lo under the cache's secret 128-bit key: SipHash is a PRF, so this
//     is a 2^-64 accident per guess, as for every other form.
//   - A token with the same signature part but any other byte (another
//     header or payload, padding, case) needs maphash(seed, token') ==
//     maphash(seed, token) for a seed drawn at start-up and never
//     observable: neither value leaves the process, no response or timing
//     depends on one hash bit more than on a whole-key miss, so the attacker
//     has no oracle to search with and each guess costs a request
//     (a 2^-64 chance). And even that would only reach the identity the
//     signature was issued for: the signature part is itself the output of
//     the issuer's key over header.payload, so holding it is holding the
//     token, which already authenticates as that identity until its exp.
//   - Nothing changes for what a cache entry promises: the entry was made
//     by verifying the exact token (signature, alg, iss, aud, exp) and dies
//     at its exp, its TTL or on invalidation, as before.
//
// A value without '.' (not a JWS: refused on the miss path) is keyed by the
// whole value, with the same binding.
func (c *Chain) bearerKey(tok []byte) CacheKey {
	sig := tok
	if i := bytes.LastIndexByte(tok, '.'); i >= 0 {
		sig = tok[i+1:]
	}
	k := c.cache.KeyOf(CacheKindBearer, sig, nil)
	k.Lo ^= maphash.Bytes(tokenSeed, tok)
	return k
}
