//go:build !race

package authz_test

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

// The hot paths do not allocate: the native rule (counted or not) and an
// external decision served from a warm cache with a pooled Request.
// (ristretto's Get hands a full 64-slot access stripe to its policy once in
// 64 calls and allocates a new one: below one allocation per call, see
// BenchmarkExternalWarmCache.)
func TestAllocs(t *testing.T) {
	n := authz.NewNative(authz.Options{})
	var uncounted *authz.Native
	_, endpoint := startPlugin(t, testRules, "")
	ext := newExternal(t, externalCfg(endpoint, "", 5*time.Second, time.Hour), authz.Options{})
	id := ident("alice", "acme", "dev", "ops")
	roles := []string{"ops"}
	method, path := []byte("GET"), []byte("/v1/orders/42")
	ctx := context.Background()
	pooled := func(a authz.Authorizer) func() {
		return func() {
			r := authz.AcquireRequest()
			r.Identity, r.Domain = id, id.Account
			r.AddRouteAction(method, "api", path)
			r.AddRouteAction(method, "api", path)
			if _, err := a.Authorize(ctx, r); err != nil {
				t.Fatal(err)
			}
			authz.ReleaseRequest(r)
		}
	}
	pooled(ext)()
	ext.WaitCache()

	cases := []struct {
		name string
		fn   func()
	}{
		{"Native.Allow", func() { n.Allow(id, roles) }},
		{"Native.Allow anonymous", func() { n.Allow(nil, roles) }},
		{"nil Native.Allow", func() { uncounted.Allow(id, roles) }},
		{"External.Authorize warm", pooled(ext)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if a := testing.AllocsPerRun(1000, tc.fn); a != 0 {
				t.Fatalf("%v allocations per call", a)
			}
		})
	}
}
