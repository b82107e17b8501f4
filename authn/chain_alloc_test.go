//go:build !race

package authn_test

import (
	"context"
	"net/netip"
	"testing"
)

// A cache hit costs no allocation, for every credential form.
func TestChainHitAllocs(t *testing.T) {
	e := newEnv(t, envOptions{perIP: 30, perUser: 10})
	ctx := context.Background()
	for _, f := range hitForms(e) {
		t.Run(f.name, func(t *testing.T) {
			h := []byte(f.h)
			e.ok(f.h)
			n := testing.AllocsPerRun(1000, func() {
				if _, err := e.chain.Authenticate(ctx, h, ip1); err != nil {
					t.Fatal(err)
				}
			})
			if n != 0 {
				t.Fatalf("%v allocations per hit, want 0", n)
			}
		})
	}
}

// A cache hit of a key refused for its allow-list costs no allocation
// either (the allowed hit is one of hitForms).
func TestChainHitAllocsCIDRRefused(t *testing.T) {
	e := newEnv(t, envOptions{perIP: 30, perUser: 10})
	ctx := context.Background()
	k, v := e.cidrKey("cidr", "10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32")
	h := []byte(apiKeyHeader(k.ID, v))
	e.ok(string(h))
	out := netip.MustParseAddr("198.51.100.1")
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := e.chain.Authenticate(ctx, h, out); err == nil {
			t.Fatal("refused address accepted")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per refused hit, want 0", n)
	}
}
