// Package password hashes and verifies user passwords with argon2id
// (golang.org/x/crypto/argon2), stored as PHC strings:
//
//	$argon2id$v=19$m=65536,t=2,p=1$<salt>$<hash>
//
// where salt and hash are standard base64 without padding. A Hasher bounds how
// many hashes run at once (auth.max_hash_concurrency), so a flood of wrong
// passwords cannot take more than that many cores, and it verifies unknown
// users against a fake hash so that an unknown user and a wrong password cost
// the same.
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Errors. None of them ever contains a password or a hash.
var (
	// ErrMalformedHash: a stored PHC string could not be parsed, or is not
	// argon2id version 19.
	ErrMalformedHash = errors.New("password: malformed password hash")
	// ErrUnsafeParams: parameters (in a stored hash or given to Validate)
	// are outside the limits below, e.g. memory > 1 GiB or t > 100. A stored
	// hash with such parameters is refused rather than computed, so a
	// tampered record cannot be used to exhaust memory or CPU.
	ErrUnsafeParams = errors.New("password: argon2 parameters out of bounds")
	// ErrBusy: the caller's context ended while waiting for a free hashing
	// slot (or had already ended). The error also wraps ctx.Err().
	// Authenticators report it as authn.ErrUnavailable (503), never as a
	// wrong password.
	ErrBusy = errors.New("password: hashing capacity exhausted")
)

// Params are argon2id parameters.
type Params struct {
	// Memory in KiB.
	Memory      uint32
	Iterations  uint32
	Parallelism uint8
	// SaltLen and KeyLen are in bytes.
	SaltLen, KeyLen uint32
}

// DefaultParams: m=64 MiB, t=2, p=1, 16-byte salt, 32-byte key.
//
// OWASP's argon2id minimums are m=19 MiB, t=2, p=1 (or m=46 MiB, t=1). We
// spend more memory than the minimum because keygate hashes a password once
// per credential per cache lifetime (results are cached) and
// auth.max_hash_concurrency defaults to 2 on a 2-core machine: at most
// 2 × 64 MiB = 128 MiB is ever held by hashing, and each hash costs roughly
// 50–150 ms of one core. p=1 keeps one hash on one core, so the concurrency
// limit is also the CPU limit.
var DefaultParams = Params{Memory: 64 * 1024, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}

// Limits on parameters, for stored hashes and for Hasher configuration.
const (
	MaxMemory     = 1 << 20 // KiB (1 GiB)
	MaxIterations = 100
	MinSaltLen    = 8
	MaxSaltLen    = 64
	MinKeyLen     = 16
	MaxKeyLen     = 128
	// maxPHCLen bounds the string ParsePHC will look at.
	maxPHCLen = 512
)

// Validate reports whether p is within the limits: Iterations 1–100,
// Parallelism ≥ 1, Memory between 8×Parallelism KiB and 1 GiB, SaltLen 8–64,
// KeyLen 16–128. The error wraps ErrUnsafeParams and names the field.
func (p Params) Validate() error {
	switch {
	case p.Iterations < 1 || p.Iterations > MaxIterations:
		return fmt.Errorf("%w: iterations must be 1..%d", ErrUnsafeParams, MaxIterations)
	case p.Parallelism < 1:
		return fmt.Errorf("%w: parallelism must be at least 1", ErrUnsafeParams)
	case p.Memory < 8*uint32(p.Parallelism) || p.Memory > MaxMemory:
		return fmt.Errorf("%w: memory must be %d..%d KiB", ErrUnsafeParams, 8*uint32(p.Parallelism), MaxMemory)
	case p.SaltLen < MinSaltLen || p.SaltLen > MaxSaltLen:
		return fmt.Errorf("%w: salt length must be %d..%d bytes", ErrUnsafeParams, MinSaltLen, MaxSaltLen)
	case p.KeyLen < MinKeyLen || p.KeyLen > MaxKeyLen:
		return fmt.Errorf("%w: key length must be %d..%d bytes", ErrUnsafeParams, MinKeyLen, MaxKeyLen)
	}
	return nil
}

// Hasher hashes and verifies passwords with fixed parameters and a bound on
// concurrent hashes. It is safe for concurrent use.
type Hasher struct {
	p   Params
	sem chan struct{}
	// fakePHC is verified by VerifyUnknown: the current params, a random
	// salt and a random key that matches no password.
	fakePHC string

	// Test hooks (nil in production): onWait runs when a caller is about to
	// block for a slot; onHash(true/false) runs around each argon2 call.
	onWait func()
	onHash func(start bool)
}

// New returns a Hasher using p and running at most maxConcurrent hashes at a
// time (values below 1 mean 1). Zero fields of p take DefaultParams' values;
// fields still outside the limits of Validate are clamped to the nearest
// limit, so a Hasher never writes a hash it would refuse to verify. Config
// loading should call p.Validate first to report bad values.
func New(p Params, maxConcurrent int) *Hasher {
	p = normalise(p)
	if maxConcurrent < 1 {
		maxConcurrent = 1
	}
	h := &Hasher{p: p, sem: make(chan struct{}, maxConcurrent)}
	salt := randomBytes(p.SaltLen)
	key := randomBytes(p.KeyLen)
	h.fakePHC = encodePHC(p, salt, key)
	return h
}

func normalise(p Params) Params {
	d := DefaultParams
	if p.Memory == 0 {
		p.Memory = d.Memory
	}
	if p.Iterations == 0 {
		p.Iterations = d.Iterations
	}
	if p.Parallelism == 0 {
		p.Parallelism = d.Parallelism
	}
	if p.SaltLen == 0 {
		p.SaltLen = d.SaltLen
	}
	if p.KeyLen == 0 {
		p.KeyLen = d.KeyLen
	}
	p.Iterations = min(p.Iterations, MaxIterations)
	p.Memory = min(max(p.Memory, 8*uint32(p.Parallelism)), MaxMemory)
	p.SaltLen = min(max(p.SaltLen, MinSaltLen), MaxSaltLen)
	p.KeyLen = min(max(p.KeyLen, MinKeyLen), MaxKeyLen)
	return p
}

// randomBytes returns n bytes from crypto/rand. crypto/rand.Read never fails
// on supported platforms (Go ≥ 1.24 aborts the program instead).
func randomBytes(n uint32) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// Params returns the parameters new hashes are made with.
func (h *Hasher) Params() Params { return h.p }

// Hash returns the PHC string of a new argon2id hash of pw with a random salt.
// It waits for a free hashing slot without limit.
func (h *Hasher) Hash(pw string) (string, error) {
	if err := h.acquire(context.Background()); err != nil {
		return "", err
	}
	defer h.release()
	salt := randomBytes(h.p.SaltLen)
	key := h.key([]byte(pw), salt, h.p)
	return encodePHC(h.p, salt, key), nil
}

// hashBytes is Hash for a password the caller owns and wipes afterwards: pw
// is hashed in place, never copied. Waiting for a slot ends with ctx (the
// error wraps ErrBusy).
func (h *Hasher) hashBytes(ctx context.Context, pw []byte) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	salt := randomBytes(h.p.SaltLen)
	key := h.key(pw, salt, h.p)
	return encodePHC(h.p, salt, key), nil
}

// Verify reports whether pw matches the stored PHC string. needsRehash is
// true when pw matches and phc was made with parameters other than the
// Hasher's: the caller should store a new Hash(pw).
//
// A malformed phc returns an error wrapping ErrMalformedHash, parameters out
// of bounds one wrapping ErrUnsafeParams, both before any hashing. When ctx
// ends while waiting for a slot the error wraps ErrBusy and ctx.Err(). The
// comparison is constant-time.
func (h *Hasher) Verify(ctx context.Context, phc, pw string) (ok, needsRehash bool, err error) {
	p, salt, want, err := ParsePHC(phc)
	if err != nil {
		return false, false, err
	}
	if err := h.acquire(ctx); err != nil {
		return false, false, err
	}
	defer h.release()
	got := h.key([]byte(pw), salt, p)
	ok = subtle.ConstantTimeCompare(got, want) == 1
	return ok, ok && p != h.p, nil
}

// VerifyUnknown does the work of a failed Verify for a user that does not
// exist: it parses and verifies pw against a fake hash made at New with the
// current params, so that an unknown user and a wrong password take the same
// time and the same hashing slot. It returns nil, or an error wrapping
// ErrBusy when ctx ends while waiting for a slot.
func (h *Hasher) VerifyUnknown(ctx context.Context, pw string) error {
	_, _, err := h.Verify(ctx, h.fakePHC, pw)
	return err
}

func (h *Hasher) key(pw, salt []byte, p Params) []byte {
	if h.onHash != nil {
		h.onHash(true)
		defer h.onHash(false)
	}
	return argon2.IDKey(pw, salt, p.Iterations, p.Memory, p.Parallelism, p.KeyLen)
}

// acquire takes a hashing slot, waiting until one is free or ctx ends.
func (h *Hasher) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrBusy, err)
	}
	select {
	case h.sem <- struct{}{}:
		return nil
	default:
	}
	if h.onWait != nil {
		h.onWait()
	}
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
	}
}

func (h *Hasher) release() { <-h.sem }

var b64 = base64.RawStdEncoding.Strict()

func encodePHC(p Params, salt, key []byte) string {
	var sb strings.Builder
	sb.Grow(48 + b64.EncodedLen(len(salt)) + b64.EncodedLen(len(key)))
	sb.WriteString("$argon2id$v=19$m=")
	sb.WriteString(strconv.FormatUint(uint64(p.Memory), 10))
	sb.WriteString(",t=")
	sb.WriteString(strconv.FormatUint(uint64(p.Iterations), 10))
	sb.WriteString(",p=")
	sb.WriteString(strconv.FormatUint(uint64(p.Parallelism), 10))
	sb.WriteByte('$')
	sb.WriteString(b64.EncodeToString(salt))
	sb.WriteByte('$')
	sb.WriteString(b64.EncodeToString(key))
	return sb.String()
}

// ParsePHC parses an argon2id PHC string of exactly the form
// "$argon2id$v=19$m=<KiB>,t=<iterations>,p=<parallelism>$<salt>$<hash>"
// (salt and hash in standard base64 without padding; numbers in decimal
// without sign or leading zeros). Params.SaltLen and KeyLen are the decoded
// lengths. The returned slices are newly allocated.
//
// Errors wrap ErrMalformedHash, or ErrUnsafeParams when the parameters are
// outside the limits of Params.Validate. It never panics.
func ParsePHC(s string) (p Params, salt, hash []byte, err error) {
	bad := func(what string) (Params, []byte, []byte, error) {
		return Params{}, nil, nil, fmt.Errorf("%w: %s", ErrMalformedHash, what)
	}
	if len(s) > maxPHCLen {
		return bad("too long")
	}
	rest, ok := strings.CutPrefix(s, "$argon2id$")
	if !ok {
		return bad("not an argon2id PHC string")
	}
	ver, rest, ok := strings.Cut(rest, "$")
	if !ok || ver != "v=19" {
		return bad("version must be v=19")
	}
	params, rest, ok := strings.Cut(rest, "$")
	if !ok {
		return bad("missing parameters")
	}
	saltB64, hashB64, ok := strings.Cut(rest, "$")
	if !ok || strings.IndexByte(hashB64, '$') >= 0 {
		return bad("want 5 '$'-separated fields")
	}
	m, params, ok := cutParam(params, "m=", ",", MaxMemory)
	if !ok {
		return bad("bad m parameter")
	}
	t, params, ok := cutParam(params, "t=", ",", MaxIterations)
	if !ok {
		return bad("bad t parameter")
	}
	par, params, ok := cutParam(params, "p=", "", 255)
	if !ok || params != "" {
		return bad("bad p parameter")
	}
	if par > 255 {
		return Params{}, nil, nil, fmt.Errorf("%w: parallelism must be 1..255", ErrUnsafeParams)
	}
	// encoding/base64 skips '\r' and '\n'; the PHC form has none, so
	// check the alphabet first.
	if !isB64(saltB64) || !isB64(hashB64) {
		return bad("bad base64 character")
	}
	salt, err = b64.DecodeString(saltB64)
	if err != nil || len(salt) == 0 {
		return bad("bad salt encoding")
	}
	hash, err = b64.DecodeString(hashB64)
	if err != nil || len(hash) == 0 {
		return bad("bad hash encoding")
	}
	p = Params{
		Memory:      uint32(m), //nolint:gosec // bounded by cutParam (MaxMemory, MaxIterations) and by the decoded lengths
		Iterations:  uint32(t), //nolint:gosec // bounded by cutParam (MaxMemory, MaxIterations) and by the decoded lengths
		Parallelism: uint8(par),
		SaltLen:     uint32(len(salt)), //nolint:gosec // bounded by cutParam (MaxMemory, MaxIterations) and by the decoded lengths
		KeyLen:      uint32(len(hash)), //nolint:gosec // bounded by cutParam (MaxMemory, MaxIterations) and by the decoded lengths
	}
	if err := p.Validate(); err != nil {
		return Params{}, nil, nil, err
	}
	return p, salt, hash, nil
}

// cutParam reads "<name><decimal><sep>" from the start of s (sep "" means the
// number runs to the end of s) and returns the number and what follows. A
// number above limit fails, as do signs, leading zeros, and more than 10
// digits.
func cutParam(s, name, sep string, limit uint64) (n uint64, rest string, ok bool) {
	s, ok = strings.CutPrefix(s, name)
	if !ok {
		return 0, "", false
	}
	num := s
	if sep != "" {
		num, rest, ok = strings.Cut(s, sep)
		if !ok {
			return 0, "", false
		}
	}
	if len(num) == 0 || len(num) > 10 || (len(num) > 1 && num[0] == '0') {
		return 0, "", false
	}
	for i := 0; i < len(num); i++ {
		c := num[i]
		if c < '0' || c > '9' {
			return 0, "", false
		}
		n = n*10 + uint64(c-'0')
	}
	if n > limit {
		// Well-formed but out of bounds: return a value just above the
		// limit so the caller reports ErrUnsafeParams, not a malformed hash.
		return limit + 1, rest, true
	}
	return n, rest, true
}

// isB64 reports whether s uses only the standard base64 alphabet, no padding.
func isB64(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}
