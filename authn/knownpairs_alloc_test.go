//go:build !race

package authn

import (
	"testing"
	"time"
)

// knownPairs.add runs on a cache refresh (a served hit): no allocation.
func TestKnownPairsNoAlloc(t *testing.T) {
	k := newKnownPairs()
	now := time.Now()
	ip, user := []byte("0123456789abcdef"), []byte("alice")
	if n := testing.AllocsPerRun(100, func() {
		k.add(ip, user, now)
		k.has(ip, user, now)
	}); n != 0 {
		t.Fatalf("%v allocations per add+has", n)
	}
}
