//go:build !race

package hdr

import "testing"

func TestNoAllocs(t *testing.T) {
	v := []byte(" Bearer ")
	if n := testing.AllocsPerRun(100, func() { _ = EqualFold(TrimOWS(v), "bearer") }); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}
