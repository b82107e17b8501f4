//go:build !race

package store_test

import (
	"testing"

	"github.com/keygate/keygate/store"
)

// TestFoldUsernameAllocs: the failure limiter's key of an already
// canonical ASCII name costs nothing.
func TestFoldUsernameAllocs(t *testing.T) {
	name := []byte("alice.smith@example.com")
	if n := testing.AllocsPerRun(100, func() { _ = store.FoldUsername(name) }); n != 0 {
		t.Errorf("FoldUsername allocates %v times per call, want 0", n)
	}
}
