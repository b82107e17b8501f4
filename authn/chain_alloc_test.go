//go:build !race

package authn_test

import (
	"context"
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
