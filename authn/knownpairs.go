package authn

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"time"
)

// knownPairs remembers, per (client address, username), when a password
// last verified from that address. It is the one way a fresh password gets
// checked while its address is over its failure budget (see
// Chain.verifyOverIPBudget): a user who logged in from an address before is
// a neighbour behind the same NAT, not a spray.
//
// The table is fixed-size (memory does not grow with the number of clients):
// a pair whose slot is taken over is forgotten, which only sends that user
// back to waiting for the address's Retry-After. A false match needs a
// 64-bit collision of a keyed hash.
type knownPairs struct {
	seed  maphash.Seed
	mu    [knownStripes]sync.Mutex
	slots [knownSlots]knownSlot
}

const (
	knownSlots   = 1 << 14
	knownStripes = 64
	// knownPairTTL is how long a successful login keeps its pair known.
	knownPairTTL = 24 * time.Hour
)

type knownSlot struct {
	h  uint64
	at int64 // unix ns of the last success
}

func newKnownPairs() *knownPairs { return &knownPairs{seed: maphash.MakeSeed()} }

func (k *knownPairs) hash(ipKey, username []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(k.seed)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(ipKey)))
	h.Write(n[:])
	h.Write(ipKey)
	h.Write(username)
	sum := h.Sum64()
	if sum == 0 {
		sum = 1 // 0 marks an empty slot
	}
	return sum
}

// add records a successful login of username from ipKey at now.
func (k *knownPairs) add(ipKey, username []byte, now time.Time) {
	h := k.hash(ipKey, username)
	i := h & (knownSlots - 1)
	mu := &k.mu[i%knownStripes]
	mu.Lock()
	k.slots[i] = knownSlot{h: h, at: now.UnixNano()}
	mu.Unlock()
}

// has reports whether username logged in from ipKey within knownPairTTL.
func (k *knownPairs) has(ipKey, username []byte, now time.Time) bool {
	h := k.hash(ipKey, username)
	i := h & (knownSlots - 1)
	mu := &k.mu[i%knownStripes]
	mu.Lock()
	s := k.slots[i]
	mu.Unlock()
	d := now.UnixNano() - s.at
	return s.h == h && d >= 0 && d < int64(knownPairTTL)
}
