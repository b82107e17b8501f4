package boltstore

import (
	"testing"
	"time"
)

// FuzzDecodeQuota: a stored quota counter of any bytes decodes without
// panicking to a usage that is never negative, and a written one reads back.
func FuzzDecodeQuota(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add(encodeQuota(7, now.Add(time.Hour)))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02})
	f.Fuzz(func(t *testing.T, v []byte) {
		used, _ := decodeQuota(v, now)
		if used < 0 {
			t.Fatalf("%x: negative usage %d", v, used)
		}
		if u, _ := decodeQuota(encodeQuota(used, now.Add(time.Hour)), now); u != used {
			t.Fatalf("round trip %d → %d", used, u)
		}
	})
}
