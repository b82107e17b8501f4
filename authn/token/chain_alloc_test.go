//go:build !race

package token_test

import (
	"context"
	"testing"
)

// A Bearer JWT cached by the chain is served without allocating.
func TestChainHitJWTAllocs(t *testing.T) {
	chain, h, basic := jwtChain(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		h    []byte
	}{{"jwt", h}, {"basic", basic}} {
		n := testing.AllocsPerRun(1000, func() {
			if _, err := chain.Authenticate(ctx, tc.h, benchIP); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Fatalf("%s: %v allocations per hit, want 0", tc.name, n)
		}
	}
}
