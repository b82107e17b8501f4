//go:build !race

package authn

import "testing"

func TestParseAuthorizationAllocs(t *testing.T) {
	for _, f := range forms {
		h := []byte(f.h)
		var c Credentials
		if n := testing.AllocsPerRun(100, func() { _ = ParseAuthorization(h, &c) }); n != 0 {
			t.Errorf("%s: %v allocations per parse, want 0", f.name, n)
		}
	}
}
