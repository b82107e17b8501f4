//go:build chaos

package e2e

import (
	"fmt"
	"testing"
)

// chaosFigure logs one figure of a fault scenario in a fixed shape
// ("CHAOS <scenario> <name>=<value> ...") so `make chaos` can list them
// and the README table can be refreshed from its output.
func chaosFigure(t *testing.T, scenario string, kv ...any) {
	t.Helper()
	s := "CHAOS " + scenario
	for i := 0; i+1 < len(kv); i += 2 {
		s += fmt.Sprintf(" %v=%v", kv[i], kv[i+1])
	}
	t.Log(s)
}
