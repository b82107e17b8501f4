// Package apikey owns keygate's API key format (DESIGN.md §3): generating
// secrets, formatting and parsing key values, the checksum that lets a
// mistyped or forged value be rejected without a store lookup, and the salted
// hash that is the only thing the store keeps of a secret.
//
// A key value is
//
//	kg_<id>_<secret><checksum>
//
// where id is 1–32 base62 characters assigned by the store, secret is 43
// base62 characters from crypto/rand (256.02 bits), and checksum is the
// CRC-32 (IEEE) of "kg_<id>_<secret>" written as exactly 6 base62 characters,
// most significant first, padded with '0'. Base62 has no '_', so the
// separator after the id is unambiguous.
package apikey

import (
	"crypto/rand"
	"errors"
	"hash/crc32"
)

// Format constants.
const (
	// Prefix starts every key value.
	Prefix = "kg_"
	// MaxIDLen is the longest id a key may carry.
	MaxIDLen = 32
	// SecretLen is the length of a secret in base62 characters:
	// 43 × log2(62) ≈ 256.02 bits.
	SecretLen = 43
	// ChecksumLen is the length of the encoded CRC-32: 62^6 > 2^32.
	ChecksumLen = 6
	// MinLen and MaxLen bound the length of a key value.
	MinLen = len(Prefix) + 1 + 1 + SecretLen + ChecksumLen
	MaxLen = len(Prefix) + MaxIDLen + 1 + SecretLen + ChecksumLen
)

// Sentinel errors returned by Parse. They carry no part of the value, so they
// are safe to log. Both mean the credential is invalid; a caller rejects it
// without touching the store.
var (
	// ErrMalformed: the value does not have the shape of a key (prefix,
	// lengths, alphabet, separator).
	ErrMalformed = errors.New("apikey: malformed key")
	// ErrChecksum: the value has the shape of a key but its checksum does
	// not match: a typo, a truncated copy, or a forgery.
	ErrChecksum = errors.New("apikey: key checksum mismatch")
)

const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// b62 maps a byte to its base62 digit value, or 0xff for bytes outside the
// alphabet.
var b62 = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// IsBase62 reports whether c is in [0-9A-Za-z].
func IsBase62(c byte) bool { return b62[c] != 0xff }

// ValidID reports whether id is a well-formed key id: 1–32 base62 characters.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !IsBase62(id[i]) {
			return false
		}
	}
	return true
}

// NewSecret returns a fresh secret: SecretLen base62 characters drawn from
// crypto/rand. Bytes ≥ 248 are rejected and redrawn, so every character is
// uniform over the 62 symbols (248 = 4 × 62: no modulo bias).
func NewSecret() (string, error) {
	var out [SecretLen]byte
	var buf [64]byte
	n := 0
	for n < len(out) {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", errors.New("apikey: reading random bytes failed")
		}
		for _, b := range buf {
			if b >= 248 {
				continue
			}
			out[n] = alphabet[b%62]
			n++
			if n == len(out) {
				break
			}
		}
	}
	return string(out[:]), nil
}

// Format returns the key value for id and secret. It does not validate them:
// callers pass an id from the store and a secret from NewSecret; anything
// else yields a value Parse rejects.
func Format(id, secret string) string {
	var buf [MaxLen]byte
	return string(AppendFormat(buf[:0], id, secret))
}

// AppendFormat appends the key value for id and secret to dst and returns the
// extended slice, like Format.
func AppendFormat(dst []byte, id, secret string) []byte {
	start := len(dst)
	dst = append(dst, Prefix...)
	dst = append(dst, id...)
	dst = append(dst, '_')
	dst = append(dst, secret...)
	sum := crc32.ChecksumIEEE(dst[start:])
	return appendChecksum(dst, sum)
}

// appendChecksum appends sum as exactly ChecksumLen base62 digits, most
// significant first.
func appendChecksum(dst []byte, sum uint32) []byte {
	var c [ChecksumLen]byte
	v := uint64(sum)
	for i := ChecksumLen - 1; i >= 0; i-- {
		c[i] = alphabet[v%62]
		v /= 62
	}
	return append(dst, c[:]...)
}

// LooksLikeKey reports whether b starts with the key prefix "kg_". It is how
// "Bearer kg_…" is told apart from a JWT; it says nothing about validity.
func LooksLikeKey(b []byte) bool {
	return len(b) >= len(Prefix) && b[0] == 'k' && b[1] == 'g' && b[2] == '_'
}

// Parse checks that value is a well-formed key with a matching checksum and
// returns its id and secret. It does not allocate. The returned slices alias
// value: they are valid only while value is, and must be copied before value
// is reused (for example after a fasthttp handler returns).
//
// It returns ErrMalformed when value does not have the shape of a key and
// ErrChecksum when the checksum does not match; in both cases id and secret
// are nil.
func Parse(value []byte) (id, secret []byte, err error) {
	if len(value) < MinLen || len(value) > MaxLen || !LooksLikeKey(value) {
		return nil, nil, ErrMalformed
	}
	rest := value[len(Prefix):]
	// The id runs to the first '_'; everything after it is a fixed-width
	// secret and checksum.
	n := len(rest) - 1 - SecretLen - ChecksumLen // length the id must have
	if n < 1 || n > MaxIDLen || rest[n] != '_' {
		return nil, nil, ErrMalformed
	}
	// Every byte but the separator must be base62: b62 maps those to 0–61
	// and everything else to 0xff, so OR-ing the table values and testing
	// the top bit checks them all without a branch per byte.
	var acc byte
	for _, c := range rest[:n] {
		acc |= b62[c]
	}
	for _, c := range rest[n+1:] {
		acc |= b62[c]
	}
	if acc&0x80 != 0 {
		return nil, nil, ErrMalformed
	}
	var sum uint64
	for _, c := range rest[len(rest)-ChecksumLen:] {
		sum = sum*62 + uint64(b62[c])
	}
	body := value[:len(value)-ChecksumLen]
	if sum != uint64(crc32.ChecksumIEEE(body)) {
		return nil, nil, ErrChecksum
	}
	return rest[:n], rest[n+1 : n+1+SecretLen], nil
}
