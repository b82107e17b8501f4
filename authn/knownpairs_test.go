package authn

import (
	"testing"
	"time"
)

func TestKnownPairs(t *testing.T) {
	k := newKnownPairs()
	now := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	ip1, ip2 := []byte("0123456789abcdef"), []byte("fedcba9876543210")
	k.add(ip1, []byte("alice"), now)
	for _, tc := range []struct {
		name string
		ip   []byte
		user string
		at   time.Time
		want bool
	}{
		{"same pair", ip1, "alice", now.Add(time.Hour), true},
		{"other user", ip1, "bob", now, false},
		{"other address", ip2, "alice", now, false},
		{"prefix of the name", ip1, "alic", now, false},
		{"expired", ip1, "alice", now.Add(knownPairTTL), false},
		{"clock before the login", ip1, "alice", now.Add(-time.Second), false},
	} {
		if got := k.has(tc.ip, []byte(tc.user), tc.at); got != tc.want {
			t.Errorf("%s: has=%v, want %v", tc.name, got, tc.want)
		}
	}
}
