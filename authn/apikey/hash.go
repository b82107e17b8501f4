package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
)

// Hash layout: a random salt followed by SHA-256(salt || secret). A 256-bit
// random secret needs no slow hash: salted SHA-256 is enough (DESIGN.md §3).
const (
	SaltLen = 16
	HashLen = SaltLen + sha256.Size // 48
)

// stackLen is how much salt+secret is hashed from a stack array with
// sha256.Sum256; longer inputs are streamed (also without allocating).
const stackLen = SaltLen + 64

// fakeHash is a valid-shape hash matching no known secret: random salt and
// random digest, made once per process. It sits alone in padded storage so
// no frequently written data shares its cache lines: verifying against it
// must cost what verifying against a stored hash costs.
var fakeHash = func() []byte {
	b := fakeHashStore.b[:]
	if _, err := rand.Read(b); err != nil {
		// crypto/rand does not fail on supported platforms (Go ≥ 1.24
		// crashes the program instead); keep a fixed non-zero value anyway.
		copy(b, "keygate-apikey-fake-hash-0123456789abcdef-xyzw")
	}
	return b
}()

var fakeHashStore struct {
	_ [64]byte
	b [HashLen]byte
	_ [64]byte
}

// FakeHash returns a hash of the right shape that matches no secret. Verify a
// presented secret against it when the key id is unknown, so an unknown id
// and a wrong secret cost the same. The slice is shared: do not modify it.
func FakeHash() []byte { return fakeHash[:HashLen:HashLen] }

// Hash returns a new salted hash of secret: 16 random salt bytes followed by
// SHA-256(salt || secret), 48 bytes in all. The result does not alias secret.
func Hash(secret []byte) ([]byte, error) {
	out := make([]byte, HashLen)
	if _, err := rand.Read(out[:SaltLen]); err != nil {
		return nil, errors.New("apikey: reading random salt failed")
	}
	sum := digest(out[:SaltLen], secret)
	copy(out[SaltLen:], sum[:])
	return out, nil
}

// Verify reports whether secret matches hash (made by Hash). It does not
// allocate and takes the same time whatever the outcome: the digest is
// compared with crypto/subtle, and a hash of the wrong length is replaced by
// FakeHash so the same work is still done before returning false.
func Verify(hash, secret []byte) bool {
	h, shapeOK := hash, 1
	if len(hash) != HashLen {
		h, shapeOK = fakeHash, 0
	}
	sum := digest(h[:SaltLen], secret)
	return subtle.ConstantTimeCompare(sum[:], h[SaltLen:HashLen])&shapeOK == 1
}

// digest returns SHA-256(salt || secret) without allocating.
func digest(salt, secret []byte) [sha256.Size]byte {
	if len(salt)+len(secret) <= stackLen {
		var buf [stackLen]byte
		n := copy(buf[:], salt)
		n += copy(buf[n:], secret)
		sum := sha256.Sum256(buf[:n])
		clear(buf[:])
		return sum
	}
	d := sha256.New()
	d.Write(salt)
	d.Write(secret)
	var sum [sha256.Size]byte
	d.Sum(sum[:0])
	return sum
}
