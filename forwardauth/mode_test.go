package forwardauth

import "testing"

// mode dispatches on the name's length: the five names it counts must have
// five lengths, or one of them would never be counted.
func TestModeNameLengthsDistinct(t *testing.T) {
	seen := map[int][]byte{}
	for _, n := range origNames {
		if o, ok := seen[len(n)]; ok {
			t.Fatalf("%s and %s have the same length", o, n)
		}
		seen[len(n)] = n
	}
}
