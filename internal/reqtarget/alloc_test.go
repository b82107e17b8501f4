//go:build !race

package reqtarget

import (
	"testing"
	"time"
)

// TestZeroAlloc: the checks allocate nothing, also on percent-encoded
// UTF-8 and IPv6 hosts.
func TestZeroAlloc(t *testing.T) {
	start := time.Now()
	compatTable()
	t.Logf("compatibility table: %d ranges built in %v", len(compatTable()), time.Since(start))
	paths := [][]byte{[]byte("/api/v2/users/42"), []byte("/caf%C3%A9/%E6%97%A5/x%20y"), []byte("/%EF%BC%8F")}
	hosts := [][]byte{[]byte("Svc.Example.COM.:8443"), []byte("[2001:db8::1]:80")}
	dst := make([]byte, 0, 64)
	n := testing.AllocsPerRun(200, func() {
		for _, p := range paths {
			_, _, _, _ = Split(p)
		}
		for _, h := range hosts {
			out, k, _ := AppendHost(dst[:0], h)
			_ = MatchHost(out[:k], "*.example.com")
		}
	})
	if n != 0 {
		t.Fatalf("%v allocs per run", n)
	}
}
