package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
)

// Rate limits and quotas against the built binary (issue 19).

const rlPolicies = `rate_limits:
  instances: 2
  policies:
    - {name: hammer, requests: 100, per: 1s, burst: 100}
    - {name: tight, requests: 3, per: 1m}
auth:
  failures:
    per_ip_per_minute: 0
    per_user_per_minute: 0
`

var rlRoot = admBasic("admin", admBootstrapPassword)

// rlSetup creates account acme, user alice and keys named names through the
// admin API of g, and returns the keys' Bearer credentials by name and ids.
func rlSetup(t *testing.T, g *gateway, names ...string) (creds, ids map[string]string) {
	t.Helper()
	a := newAdmClient(t, g)
	a.want(201, "POST", "/v1/accounts", rlRoot, map[string]any{"name": "acme"})
	a.want(201, "POST", "/v1/accounts/acme/users", rlRoot, map[string]any{"username": "alice", "password": "Alice-Pa55word-long", "type": "user"})
	creds, ids = map[string]string{}, map[string]string{}
	for _, n := range names {
		var k struct {
			ID     string `json:"id"`
			APIKey string `json:"api_key"`
		}
		b := a.want(201, "POST", "/v1/accounts/acme/users/alice/api-keys", rlRoot, map[string]any{"name": n})
		if err := json.Unmarshal(b, &k); err != nil {
			t.Fatal(err)
		}
		creds[n], ids[n] = "Bearer "+k.APIKey, k.ID
	}
	return creds, ids
}

// hammer sends requests with authz to the gateways' /x from workers
// goroutines for d and counts the answers by status.
func hammer(t *testing.T, gs []*gateway, authz string, workers int, d time.Duration) (counts map[int]int64, elapsed time.Duration) {
	t.Helper()
	var mu sync.Mutex
	counts = map[int]int64{}
	var bad atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			c := newAuClient(5 * time.Second)
			defer c.close()
			g := gs[w%len(gs)]
			local := map[int]int64{}
			for time.Since(start) < d {
				r, err := c.do(g.url("/x"), authz)
				if err != nil {
					local[0]++
					continue
				}
				local[r.status]++
				if r.status == 429 && (r.header.Get("Retry-After") == "" || errorCode(r.body) != "rate_limited" ||
					!strings.HasPrefix(r.header.Get("RateLimit"), `"hammer";r=`)) {
					bad.Store(fmt.Sprintf("429 without Retry-After, RateLimit or the JSON error: %v %s", r.header, r.body))
				}
			}
			mu.Lock()
			for k, v := range local {
				counts[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if b := bad.Load(); b != nil {
		t.Fatal(b)
	}
	return counts, time.Since(start)
}

// TestRateLimitTwoInstancesOneRedis hammers one key through two instances
// sharing one Redis for a fixed period: together they admit no more than
// the stated bound (burst + rate·T + instances·lease, see package ratelimit)
// and at least 90% of the limit; then Redis stops mid-run and each
// instance keeps enforcing its share: never unlimited, never refusing all.
func TestRateLimitTwoInstancesOneRedis(t *testing.T) {
	srv := testredis.Start(t)
	up := startEchoProc(t)
	routes := fmt.Sprintf("  - name: api\n    path_prefix: /\n    upstreams: [\"http://%s\"]\n    auth: required\n", up)
	gs := []*gateway{
		startGateway(t, serveOpts{routes: routes, store: auRedisYAML(srv.Addr()), extra: rlPolicies}),
		startGateway(t, serveOpts{routes: routes, store: auRedisYAML(srv.Addr()), extra: rlPolicies}),
	}
	creds, ids := rlSetup(t, gs[0], "k")
	newAdmClient(t, gs[0]).want(200, "PATCH", "/v1/accounts/acme/users/alice/api-keys/"+ids["k"], rlRoot, map[string]any{"rate_limit": "hammer"})
	// Both instances have the assignment (invalidation → reload) once one
	// answers with the policy's header.
	c := newAuClient(5 * time.Second)
	defer c.close()
	for _, g := range gs {
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(c.get(t, g.url("/x"), creds["k"]).header.Get("RateLimit-Policy"), `"hammer";q=100;w=1`) {
			if time.Now().After(deadline) {
				t.Fatal("the assignment did not reach an instance")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(1200 * time.Millisecond) // the burst refills

	counts, elapsed := hammer(t, gs, creds["k"], 8, 3*time.Second)
	const rate, burst, lease, instances = 100.0, 100.0, 6.0, 2.0 // lease: clamp(rate·250ms/4, 1, burst/4)
	limit := burst + rate*elapsed.Seconds()
	bound := limit + instances*lease
	got := float64(counts[200])
	t.Logf("admitted %v of %d in %v; limit %.0f, stated bound %.0f (+%.1f%%); %.1f%% of the limit",
		got, counts[200]+counts[429], elapsed, limit, bound, 100*(bound/limit-1), 100*got/limit)
	if got > bound || got < 0.9*limit || counts[429] == 0 {
		t.Fatalf("admitted %v; want within [%.0f, %.0f]; counts %v", got, 0.9*limit, bound, counts)
	}
	if v := auMetric(t, gs[0], `keygate_rate_limited_total{scope="key"}`) + auMetric(t, gs[1], `keygate_rate_limited_total{scope="key"}`); v != float64(counts[429]) {
		t.Errorf("keygate_rate_limited_total{scope=key} = %v; want %d", v, counts[429])
	}

	// Redis stops: cached identities keep working (store.outage_grace) and
	// each instance enforces 1/instances of the policy on its own.
	srv.Stop()
	time.Sleep(200 * time.Millisecond)
	counts, elapsed = hammer(t, gs, creds["k"], 8, 2*time.Second)
	share := burst/instances + rate/instances*elapsed.Seconds() // per instance
	t.Logf("store down: %v in %v (per-instance share %.0f each)", counts, elapsed, share)
	if float64(counts[200]) > 2*share+2*lease+5 || counts[200] < int64(share) || counts[429] == 0 {
		t.Fatalf("during the outage admitted %d; want about 2×%.0f (never unlimited, never none)", counts[200], share)
	}
}

// TestRateLimitUserSharedByTwoKeys: a user's limit holds across all of the
// user's keys; the route's default applies per key on top.
func TestRateLimitUserSharedByTwoKeys(t *testing.T) {
	up := startEchoProc(t)
	routes := fmt.Sprintf("  - name: api\n    path_prefix: /\n    upstreams: [\"http://%s\"]\n    auth: required\n", up)
	g := startGateway(t, serveOpts{routes: routes, extra: rlPolicies})
	creds, _ := rlSetup(t, g, "k1", "k2")
	a := newAdmClient(t, g)
	a.want(200, "PATCH", "/v1/accounts/acme/users/alice", rlRoot, map[string]any{"rate_limit": "tight"})
	c := newAuClient(5 * time.Second)
	defer c.close()
	want := []int{200, 200, 200, 429, 429}
	for i, w := range want {
		k := []string{"k1", "k2"}[i%2]
		r := c.get(t, g.url("/x"), creds[k])
		if r.status != w {
			t.Fatalf("request %d with %s: %d %s; want %d", i, k, r.status, r.body, w)
		}
		if w == 200 && r.header.Get("RateLimit") != fmt.Sprintf(`"tight";r=%d;t=%d`, 2-i, 20*(i+1)) {
			t.Errorf("request %d: RateLimit %q", i, r.header.Get("RateLimit"))
		}
		if w == 429 && (r.header.Get("Retry-After") == "" || errorCode(r.body) != "rate_limited") {
			t.Errorf("request %d: 429 without Retry-After or code: %v %s", i, r.header, r.body)
		}
	}
}

// TestRateLimitHeadersOnUpstreamFailure: a request the limiter admitted
// and the upstream then failed (502: nothing listens) still reports what it
// spent, as a 200 does; the limit then refuses with 429.
func TestRateLimitHeadersOnUpstreamFailure(t *testing.T) {
	dead := freeAddr(t) // nothing listens there
	routes := fmt.Sprintf("  - name: api\n    path_prefix: /\n    upstreams: [\"http://%s\"]\n    auth: none\n    rate_limit: tight\n    timeout: 2s\n", dead)
	g := startGateway(t, serveOpts{routes: routes, extra: rlPolicies})
	c := newAuClient(5 * time.Second)
	defer c.close()
	for i, want := range []int{502, 502, 502, 429} {
		r := c.get(t, g.url("/x"), "")
		if r.status != want {
			t.Fatalf("request %d: %d %s; want %d", i, r.status, r.body, want)
		}
		if want == 502 {
			if got, exp := r.header.Get("RateLimit"), fmt.Sprintf(`"tight";r=%d;t=%d`, 2-i, 20*(i+1)); got != exp {
				t.Errorf("request %d (502): RateLimit %q, want %q", i, got, exp)
			}
			if got := r.header.Get("RateLimit-Policy"); got != `"tight";q=3;w=60` {
				t.Errorf("request %d (502): RateLimit-Policy %q", i, got)
			}
		} else if r.header.Get("Retry-After") == "" || errorCode(r.body) != "rate_limited" {
			t.Errorf("request %d: 429 without Retry-After or code: %v %s", i, r.header, r.body)
		}
	}
}

// TestQuotaSurvivesRestart: quota usage is in the store; after a restart on
// the same store (bolt file, Redis) the key has spent what it spent.
func TestQuotaSurvivesRestart(t *testing.T) {
	up := startEchoProc(t)
	routes := fmt.Sprintf("  - name: api\n    path_prefix: /\n    upstreams: [\"http://%s\"]\n    auth: required\n", up)
	srv := testredis.Start(t)
	stores := map[string]string{
		"bolt":  fmt.Sprintf("  driver: bolt\n  bolt:\n    path: %q", filepath.Join(t.TempDir(), "kg.db")),
		"redis": auRedisYAML(srv.Addr()),
	}
	for name, storeYAML := range stores {
		t.Run(name, func(t *testing.T) {
			g := startGateway(t, serveOpts{routes: routes, store: storeYAML, extra: rlPolicies})
			creds, ids := rlSetup(t, g, "q")
			keyPath := "/v1/accounts/acme/users/alice/api-keys/" + ids["q"]
			newAdmClient(t, g).want(200, "PATCH", keyPath, rlRoot, map[string]any{"quota": map[string]any{"requests": 5, "per": "day"}})
			c := newAuClient(5 * time.Second)
			defer c.close()
			// The assignment reaches the limiter through the invalidation
			// (asynchronously): requests before it are not counted. Count
			// those answered under the quota (its RateLimit-Policy).
			counted := 0
			for deadline := time.Now().Add(5 * time.Second); counted < 3; {
				r := c.get(t, g.url("/x"), creds["q"])
				if r.status != 200 {
					t.Fatalf("request: %d %s", r.status, r.body)
				}
				if r.header.Get("RateLimit-Policy") == `"quota-day";q=5;w=86400` {
					counted++
				} else if time.Now().After(deadline) {
					t.Fatal("the quota did not reach the limiter")
				}
			}
			g.sigterm()
			if code := g.wait(10 * time.Second); code != 0 {
				t.Fatalf("exit %d", code)
			}
			g = startGateway(t, serveOpts{routes: routes, store: storeYAML, extra: rlPolicies})
			var k struct {
				Quota struct{ Used, Remaining int64 } `json:"quota"`
			}
			if err := json.Unmarshal(newAdmClient(t, g).want(200, "GET", keyPath, rlRoot, nil), &k); err != nil {
				t.Fatal(err)
			}
			if k.Quota.Used != 3 || k.Quota.Remaining != 2 {
				t.Fatalf("after restart: %+v; want used 3, remaining 2", k.Quota)
			}
			for i, w := range []int{200, 200, 429} {
				r := c.get(t, g.url("/x"), creds["q"])
				if r.status != w || (w == 429 && errorCode(r.body) != "quota_exceeded") {
					t.Fatalf("after restart, request %d: %d %s; want %d", i, r.status, r.body, w)
				}
				if w == 429 && r.header.Get("Retry-After") == "" {
					t.Fatal("quota_exceeded without Retry-After")
				}
			}
		})
	}
}
