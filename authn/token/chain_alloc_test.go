//go:build !race

package token_test

import (
	"context"
	"testing"
)

// A Bearer JWT cached by the chain is served without allocating.
func TestChainHitJWTAllocs(t *testing.T) {
	chain, h := jwtChain(t)
	ctx := context.Background()
	n := testing.AllocsPerRun(1000, func() {
		if _, err := chain.Authenticate(ctx, h, benchIP); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per hit, want 0", n)
	}
}
