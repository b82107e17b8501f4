package authz_test

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

// BenchmarkNativeAllow is the proxy's hot path with the native handler.
func BenchmarkNativeAllow(b *testing.B) {
	n := authz.NewNative(authz.Options{})
	id := ident("alice", "acme", "admin", "dev", "ops", "reader")
	roles := []string{"billing", "ops"}
	b.ReportAllocs()
	for b.Loop() {
		if !n.Allow(id, roles) {
			b.Fatal("denied")
		}
	}
}

// BenchmarkExternalWarmCache: every tuple is in the decision cache; no I/O.
func BenchmarkExternalWarmCache(b *testing.B) {
	_, endpoint := startPlugin(b, testRules, testSecret)
	ext := newExternal(b, externalCfg(endpoint, testSecret, 5*time.Second, time.Hour), authz.Options{MaxEntries: 10_000})
	id := ident("alice", "acme")
	method, path := []byte("GET"), []byte("/v1/orders/42")
	ctx := context.Background()
	var now time.Time // zero: the authorizer reads its clock
	authorize := func() authz.Decision {
		r := authz.AcquireRequest()
		r.Identity, r.Domain, r.Now = id, id.Account, now
		r.AddRouteAction(method, "api", path)
		d, err := ext.Authorize(ctx, r)
		if err != nil {
			b.Fatal(err)
		}
		authz.ReleaseRequest(r)
		return d
	}
	authorize()
	ext.WaitCache()
	if !authorize().Cached {
		b.Fatal("not cached")
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			authorize()
		}
	})
	b.Run("serial, Request.Now set", func(b *testing.B) {
		now = time.Now()
		defer func() { now = time.Time{} }()
		b.ReportAllocs()
		for b.Loop() {
			authorize()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				authorize()
			}
		})
	})
}

// BenchmarkExternalMiss: a plugin round trip over loopback (cache disabled).
func BenchmarkExternalMiss(b *testing.B) {
	_, endpoint := startPlugin(b, testRules, testSecret)
	ext := newExternal(b, externalCfg(endpoint, testSecret, 5*time.Second, 0), authz.Options{})
	req := request(ident("alice", "acme"), act("GET", "api:/v1/orders/42"))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ext.Authorize(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
