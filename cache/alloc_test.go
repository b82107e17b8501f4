//go:build !race

package cache

import (
	"runtime"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
)

// The hit path, the miss path, negative hits and key derivation do not
// allocate. (ristretto's Get records the access in a striped ring; one Get in
// 64 hands a full 64-slot stripe to the policy and allocates a new one, 512 B:
// 8 B/op amortised, below one allocation per call. See BenchmarkGetHit.)
func TestAllocs(t *testing.T) {
	clk := newClock()
	c := newTestCache(t, Config{Now: clk.Now})
	e := &env{t: t, c: c, clk: clk}
	hit := e.setPos("alice:pw", ident("alice", "acme"))
	neg := e.setNeg("alice:bad", errBadSecret)
	keyHit := e.setPos("alice:k1", identKey("alice", "acme", "k1"))
	miss := e.key("bob:pw")
	now := clk.Now()
	user, pw := []byte("alice"), []byte("correct horse battery staple")

	cases := []struct {
		name string
		fn   func()
	}{
		{"Get hit", func() { _, _, _ = c.Get(hit, now) }},
		{"Get negative", func() { _, _, _ = c.Get(neg, now) }},
		{"Get miss", func() { _, _, _ = c.Get(miss, now) }},
		{"Get stale", func() { _, _, _ = c.Get(hit, now.Add(testTTL)) }},
		{"Get hit, api key entry", func() { _, _, _ = c.Get(keyHit, now) }},
		{"KeyOf", func() { _ = c.KeyOf(authn.CacheKindBasic, user, pw) }},
		{"Begin", func() { _ = c.Begin() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tc.fn); n != 0 {
				t.Fatalf("%v allocations per call", n)
			}
		})
	}
	if _, st, _ := c.Get(hit, time.Unix(0, clk.ns.Load())); st != authn.CacheHit {
		t.Fatalf("fixture: %v", st)
	}
}

// AllocsPerRun rounds down; this states ristretto's amortised cost exactly:
// at most one 512-byte stripe per 64 Gets (fewer when the policy is busy and
// drops the batch, reusing the stripe).
func TestGetAmortisedAllocs(t *testing.T) {
	clk := newClock()
	c := newTestCache(t, Config{Now: clk.Now})
	e := &env{t: t, c: c, clk: clk}
	hit := e.setPos("alice:pw", ident("alice", "acme"))
	now := clk.Now()
	const runs = 64 * 1000
	for range 1000 { // warm the stripe pool
		_, _, _ = c.Get(hit, now)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		_, _, _ = c.Get(hit, now)
	}
	runtime.ReadMemStats(&after)
	// + 64: stripes recreated after a GC empties the sync.Pool, and other
	// goroutines (ristretto's, the runtime's) allocating meanwhile.
	if n := after.Mallocs - before.Mallocs; n > runs/64+64 {
		t.Fatalf("%d allocations for %d Gets (bound %d)", n, runs, runs/64+64)
	} else {
		t.Logf("%d allocations for %d Gets", n, runs)
	}
}
