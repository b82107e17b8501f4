package cache

import (
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
)

func BenchmarkKeyOf(b *testing.B) {
	c := newTestCache(b, Config{})
	cases := []struct {
		name string
		a, p []byte
	}{
		// Basic: "alice" + a 25-byte password, 30 bytes.
		{"basic_30B", []byte("alice"), []byte("correct-horse-battery-stp")},
		// API key: id + value kg_<id>_<secret 43><checksum 6>, about 70 bytes.
		{"apikey_70B", []byte("7Hq2mZ0aPz"), []byte("kg_7Hq2mZ0aPz_4fJ9xQ2pL8vR1nT6wY3kB7cM0dH5sG2eA9uZ4iO1qXyZ0ab")},
		{"bearer_jwt_400B", make([]byte, 400), nil},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.a) + len(tc.p)))
			b.ReportAllocs()
			var k authn.CacheKey
			for b.Loop() {
				k = c.KeyOf(authn.CacheKindAPIKey, tc.a, tc.p)
			}
			_ = k
		})
	}
}

func benchCache(b *testing.B, n int) (*Cache, []authn.CacheKey, time.Time) {
	clk := newClock()
	c := newTestCache(b, Config{MaxEntries: 100_000, Now: clk.Now})
	keys := make([]authn.CacheKey, n)
	for i := range keys {
		keys[i] = c.KeyOf(authn.CacheKindBasic, fmt.Appendf(nil, "user%d", i), []byte("pw"))
		c.SetPositive(keys[i], ident(fmt.Sprintf("user%d", i), "acme"), c.Begin())
		c.Wait()
	}
	for _, k := range keys {
		if _, st, _ := c.Get(k, clk.Now()); st != authn.CacheHit {
			b.Fatalf("fixture: %v", st)
		}
	}
	return c, keys, clk.Now()
}

func BenchmarkGetHit(b *testing.B) {
	c, keys, now := benchCache(b, 1)
	b.ReportAllocs()
	for b.Loop() {
		_, _, _ = c.Get(keys[0], now)
	}
}

// BenchmarkGetHitParallel reads 1024 cached credentials from all Ps, as a
// busy gateway does (one hot key would measure one shard's RWMutex).
func BenchmarkGetHitParallel(b *testing.B) {
	c, keys, now := benchCache(b, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			_, _, _ = c.Get(keys[i&1023], now)
			i++
		}
	})
}

func BenchmarkGetMiss(b *testing.B) {
	c, _, now := benchCache(b, 1)
	k := c.KeyOf(authn.CacheKindBasic, []byte("nobody"), []byte("pw"))
	b.ReportAllocs()
	for b.Loop() {
		_, _, _ = c.Get(k, now)
	}
}

// BenchmarkMissPath is a whole miss as the caller does it: KeyOf, Get,
// Begin, SetPositive (without the store lookup).
func BenchmarkSetPositive(b *testing.B) {
	c, keys, _ := benchCache(b, 1)
	id := ident("user0", "acme")
	b.ReportAllocs()
	for b.Loop() {
		c.SetPositive(keys[0], id, c.Begin())
	}
}
