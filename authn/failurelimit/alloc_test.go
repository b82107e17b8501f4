//go:build !race

package failurelimit

import "testing"

func TestAllocs(t *testing.T) {
	l := New(30, 100, nil)
	known, unknown := []byte("known"), []byte("unknown")
	l.Fail(known)
	for name, fn := range map[string]func(){
		"Allow known":   func() { l.Allow(known) },
		"Allow unknown": func() { l.Allow(unknown) },
		"Fail known":    func() { l.Fail(known) },
	} {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
}
