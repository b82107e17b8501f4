package cache

import (
	"encoding/binary"
	"math/bits"

	"github.com/keygate/keygate/authn"
)

// KeyOf derives the cache key of a credential made of kind and the two parts a
// and b. The MAC input is kind, len(a) and len(b) (a 16-byte header) followed
// by a and b, so the encoding is injective: ("x:", "y") and ("x", ":y") give
// different keys, as do different kinds.
//
// KeyOf does not allocate and does not retain a or b: fasthttp buffers may be
// passed directly.
func (c *Cache) KeyOf(kind byte, a, b []byte) authn.CacheKey {
	return keyOf(c.k0, c.k1, kind, a, b)
}

func keyOf(k0, k1 uint64, kind byte, a, b []byte) authn.CacheKey {
	// SipHash-2-4 with 128-bit output (Aumasson and Bernstein, reference
	// siphash.c with outlen 16) over hdr || a || b, hdr being the two words
	// kind<<56|len(a) and len(b). Written out with locals so that the state
	// stays in registers; key_test.go checks it against a plain streaming
	// implementation, itself checked against the reference vectors.
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d ^ 0xee
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	total := uint64(16 + len(a) + len(b))

	m := uint64(kind)<<56 | uint64(len(a))
	v3 ^= m
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= m
	m = uint64(len(b))
	v3 ^= m
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= m

	for len(a) >= 8 {
		m = binary.LittleEndian.Uint64(a)
		v3 ^= m
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= m
		a = a[8:]
	}
	// The tail of a (0..7 bytes) continues with the head of b.
	var t uint64
	nt := uint(len(a))
	for i, c := range a {
		t |= uint64(c) << (8 * uint(i))
	}
	if nt > 0 {
		need := 8 - nt
		if uint(len(b)) < need {
			need = uint(len(b))
		}
		for i := uint(0); i < need; i++ {
			t |= uint64(b[i]) << (8 * (nt + i))
		}
		nt += need
		b = b[need:]
		if nt == 8 {
			v3 ^= t
			v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
			v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
			v0 ^= t
			t, nt = 0, 0
		}
	}
	for len(b) >= 8 {
		m = binary.LittleEndian.Uint64(b)
		v3 ^= m
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= m
		b = b[8:]
	}
	for i, c := range b { // b is empty here unless nt == 0
		t |= uint64(c) << (8 * (nt + uint(i)))
	}

	m = t | total<<56
	v3 ^= m
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= m

	v2 ^= 0xee
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	hi := v0 ^ v1 ^ v2 ^ v3
	v1 ^= 0xdd
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	lo := v0 ^ v1 ^ v2 ^ v3
	return authn.CacheKey{Hi: hi, Lo: lo}
}

// sipRound is one SipRound (inlined by the compiler).
func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13) ^ v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16) ^ v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21) ^ v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17) ^ v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}
