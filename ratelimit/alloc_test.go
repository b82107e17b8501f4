//go:build !race

package ratelimit

import (
	"net/netip"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
)

// TestAdmittedAllocs: an admitted request allocates nothing, with every
// scope and a route default applying, in process (bolt) and from a lease
// (Redis; the round trip every lease-size requests is amortised out by
// leasing a bucket big enough for the whole run).
func TestAdmittedAllocs(t *testing.T) {
	assign := []store.Limits{
		{Scope: store.ScopeKey, ID: "k1", RateLimit: "fast"},
		{Scope: store.ScopeUser, ID: "alice", RateLimit: "fast"},
		{Scope: store.ScopeAccount, ID: "acme", RateLimit: "fast"},
	}
	id := keyIdent("k1", "alice", "acme")
	addr := netip.MustParseAddr("192.0.2.7")
	t.Run("in process", func(t *testing.T) {
		l := newLimiter(t, boltStore(t, ""), nil, 1, nil, assign...)
		rt := l.Route("api", "fast")
		var h fasthttp.ResponseHeader
		now := t0
		allocs := testing.AllocsPerRun(1000, func() {
			now = now.Add(10 * time.Millisecond)
			d, err := l.Limit(&h, rt, id, addr, now)
			if err != nil {
				t.Fatal(err)
			}
			d.Set(&h)
		})
		if allocs != 0 {
			t.Fatalf("admitted path: %v allocs; want 0", allocs)
		}
	})
	t.Run("no assignment", func(t *testing.T) {
		l := newLimiter(t, boltStore(t, ""), nil, 1, nil)
		var h fasthttp.ResponseHeader
		if a := testing.AllocsPerRun(1000, func() { _, _ = l.Limit(&h, nil, id, addr, t0) }); a != 0 {
			t.Fatalf("%v allocs; want 0", a)
		}
	})
	t.Run("leased", func(t *testing.T) {
		srv := testredis.Start(t)
		s := redisStore(t, srv.Addr(), "kga:")
		l := newLimiter(t, s, s, 1, nil, assign...)
		var h fasthttp.ResponseHeader
		// Take one lease, then spend from it.
		_, _ = l.Limit(&h, nil, id, addr, time.Now())
		b := l.table.Load().scopes[scopeKey]["k1"].rate
		allocs := testing.AllocsPerRun(5, func() {
			if _, err := l.Limit(&h, nil, id, addr, time.Now()); err != nil {
				t.Fatal(err)
			}
		})
		if b.onHand == 0 {
			t.Skip("lease ran out during the measurement")
		}
		if allocs != 0 {
			t.Fatalf("leased admitted path: %v allocs; want 0", allocs)
		}
	})
}

func BenchmarkLimit(b *testing.B) {
	for _, tc := range []struct {
		name   string
		assign []store.Limits
	}{
		{"none", nil},
		{"key+user+account", []store.Limits{
			{Scope: store.ScopeKey, ID: "k1", RateLimit: "fast"},
			{Scope: store.ScopeUser, ID: "alice", RateLimit: "fast"},
			{Scope: store.ScopeAccount, ID: "acme", RateLimit: "fast"},
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := newLimiter(b, boltStore(b, ""), nil, 1, nil, tc.assign...)
			id := keyIdent("k1", "alice", "acme")
			var h fasthttp.ResponseHeader
			now := t0
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(10 * time.Millisecond)
				d, _ := l.Limit(&h, nil, id, netip.Addr{}, now)
				d.Set(&h)
			}
		})
	}
}
