package proxy

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"slices"
	"sync/atomic"
)

// Request ids (DESIGN.md §4's X-Request-Id when the client sent none valid)
// only have to be unique and not guessable: they correlate log lines and
// answers, and a client may choose its own. Fresh randomness per request
// (a getrandom call) is more than that needs.
//
// An id is AES-128 of a 128-bit counter under a key drawn once per process:
//   - unique within the process: AES under one key is a permutation of
//     128-bit blocks and the counter never repeats (2^64 ids before its low
//     half wraps, and the high half is a random per-process value);
//   - unique across processes and restarts as random 128-bit values are: a
//     fresh key per process makes the outputs of two processes independent;
//   - not guessable: without the key the outputs of a block cipher on known
//     inputs are indistinguishable from random ones, so seeing any number of
//     ids says nothing about the next one (a plain counter under a random
//     prefix would give the next id away).
//
// One atomic add and one AES block (hardware AES where the CPU has it), no
// allocation, no system call.
type ridSource struct {
	block cipher.Block
	hi    uint64
	ctr   atomic.Uint64
}

func newRIDSource() *ridSource {
	var seed [32]byte
	_, _ = rand.Read(seed[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	b, err := aes.NewCipher(seed[:16])
	if err != nil {
		panic("proxy: request id cipher: " + err.Error()) // a 16-byte key is always valid
	}
	r := &ridSource{block: b, hi: binary.LittleEndian.Uint64(seed[16:24])}
	r.ctr.Store(binary.LittleEndian.Uint64(seed[24:32]))
	return r
}

// rids is the process's request id source.
var rids = newRIDSource()

// appendNewRequestID appends a new request id: 32 hex characters.
func appendNewRequestID(dst []byte, s *scratch) []byte {
	binary.LittleEndian.PutUint64(s.rnd[:8], rids.ctr.Add(1))
	binary.LittleEndian.PutUint64(s.rnd[8:], rids.hi)
	rids.block.Encrypt(s.rnd[:], s.rnd[:])
	return appendHex16(dst, &s.rnd)
}

// hexPairs[b] is b in two lower-case hex digits.
var hexPairs = func() (t [256][2]byte) {
	const digits = "0123456789abcdef"
	for i := range t {
		t[i] = [2]byte{digits[i>>4], digits[i&15]}
	}
	return t
}()

// appendHex16 appends b in lower-case hex: hex.AppendEncode's output, one
// table load and one two-byte store per byte and no bounds checks in the
// loop (it is on every request).
func appendHex16(dst []byte, b *[16]byte) []byte {
	n := len(dst)
	dst = slices.Grow(dst, 32)[:n+32]
	out := (*[32]byte)(dst[n:])
	for i, v := range b {
		out[2*i], out[2*i+1] = hexPairs[v][0], hexPairs[v][1]
	}
	return dst
}
