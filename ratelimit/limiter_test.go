package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
	"github.com/keygate/keygate/store/redisstore"
)

var testPolicies = []configs.RatePolicy{
	{Name: "tight", Requests: 3, Per: configs.Duration(time.Minute)},
	{Name: "loose", Requests: 100, Per: configs.Duration(time.Minute)},
	{Name: "fast", Requests: 200, Per: configs.Duration(time.Second), Burst: 200},
}

func boltStore(t testing.TB, path string) *boltstore.Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "kg.db")
	}
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func redisStore(t testing.TB, addr, prefix string) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(configs.Redis{Addrs: []string{addr}, KeyPrefix: prefix, Timeout: configs.Duration(200 * time.Millisecond)}, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newLimiter(t testing.TB, ls store.LimitStore, lz store.RateLeaser, instances int, reg prometheus.Registerer, assign ...store.Limits) *Limiter {
	t.Helper()
	ctx := context.Background()
	for i := range assign {
		if err := ls.SetLimits(ctx, &assign[i]); err != nil {
			t.Fatal(err)
		}
	}
	l, err := New(Options{Config: configs.RateLimits{Policies: testPolicies, Instances: instances}, Store: ls, Leaser: lz, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	return l
}

func keyIdent(key, user, account string) *authn.Identity {
	return &authn.Identity{Username: user, Account: account, KeyID: key, Method: authn.MethodAPIKey}
}

var t0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

// TestScopes: a user's limit is shared by the user's keys, an account's by
// its users; every applicable limit is enforced; a refused request spends
// nothing; the headers name the tightest limit.
func TestScopes(t *testing.T) {
	tests := []struct {
		name   string
		assign []store.Limits
		route  string
		calls  []*authn.Identity
		want   []string // "" admitted, else the error code
		hdr    string   // RateLimit-Policy of the first call
	}{
		{
			name:   "user limit shared by two keys",
			assign: []store.Limits{{Scope: store.ScopeUser, ID: "alice", RateLimit: "tight"}},
			calls:  []*authn.Identity{keyIdent("k1", "alice", "acme"), keyIdent("k2", "alice", "acme"), keyIdent("k1", "alice", "acme"), keyIdent("k2", "alice", "acme"), keyIdent("k3", "bob", "acme")},
			want:   []string{"", "", "", "rate_limited", ""},
			hdr:    `"tight";q=3;w=60`,
		},
		{
			name:   "account limit shared by its users",
			assign: []store.Limits{{Scope: store.ScopeAccount, ID: "acme", RateLimit: "tight"}},
			calls:  []*authn.Identity{keyIdent("k1", "alice", "acme"), keyIdent("", "bob", "acme"), keyIdent("k3", "carol", "acme"), keyIdent("k4", "dave", "acme"), keyIdent("k5", "erin", "other")},
			want:   []string{"", "", "", "rate_limited", ""},
			hdr:    `"tight";q=3;w=60`,
		},
		{
			name: "tightest reported, refusal by one spends nothing in the others",
			assign: []store.Limits{
				{Scope: store.ScopeKey, ID: "k1", RateLimit: "loose"},
				{Scope: store.ScopeUser, ID: "alice", RateLimit: "tight"},
			},
			calls: []*authn.Identity{keyIdent("k1", "alice", "a"), keyIdent("k1", "alice", "a"), keyIdent("k1", "alice", "a"), keyIdent("k1", "alice", "a"), keyIdent("k1", "alice", "a")},
			want:  []string{"", "", "", "rate_limited", "rate_limited"},
			hdr:   `"tight";q=3;w=60`,
		},
		{
			name:  "route default per caller",
			route: "tight",
			calls: []*authn.Identity{keyIdent("k1", "alice", "a"), keyIdent("k1", "alice", "a"), keyIdent("k1", "alice", "a"), keyIdent("k1", "alice", "a"), keyIdent("k2", "alice", "a"), nil},
			want:  []string{"", "", "", "rate_limited", "", ""},
			hdr:   `"tight";q=3;w=60`,
		},
		{
			name:   "quota",
			assign: []store.Limits{{Scope: store.ScopeKey, ID: "k1", Quota: &store.Quota{Requests: 2, Per: store.QuotaDay}}},
			calls:  []*authn.Identity{keyIdent("k1", "alice", "a"), keyIdent("k1", "alice", "a"), keyIdent("k1", "alice", "a"), keyIdent("k2", "alice", "a")},
			want:   []string{"", "", "quota_exceeded", ""},
			hdr:    `"quota-day";q=2;w=86400`,
		},
		{
			name:  "nothing applies: no headers",
			calls: []*authn.Identity{keyIdent("k1", "alice", "a")},
			want:  []string{""},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			l := newLimiter(t, boltStore(t, ""), nil, 1, reg, tc.assign...)
			rt := l.Route("api", tc.route)
			addr := netip.MustParseAddr("192.0.2.1")
			for i, id := range tc.calls {
				var h fasthttp.ResponseHeader
				d, err := l.Limit(&h, rt, id, addr, t0.Add(time.Duration(i)*time.Millisecond))
				d.Set(&h)
				code := ""
				var he interface{ Error() string }
				if err != nil {
					he = err
					code = map[error]string{ErrRateLimited: "rate_limited", ErrQuotaExceeded: "quota_exceeded"}[err]
					if code == "" {
						t.Fatalf("call %d: %v", i, he)
					}
					if len(h.Peek("Retry-After")) == 0 {
						t.Errorf("call %d: 429 without Retry-After", i)
					}
				}
				if code != tc.want[i] {
					t.Fatalf("call %d (%+v): %q; want %q", i, id, code, tc.want[i])
				}
				if i == 0 {
					if got := string(h.Peek("RateLimit-Policy")); got != tc.hdr {
						t.Errorf("RateLimit-Policy = %q; want %q", got, tc.hdr)
					}
					if tc.hdr != "" && !strings.Contains(string(h.Peek("RateLimit")), ";r=") {
						t.Errorf("RateLimit = %q", h.Peek("RateLimit"))
					}
				}
			}
		})
	}
}

// TestHeaderSyntax: the RateLimit field is "name";r=R;t=T with the tightest
// remaining count.
func TestHeaderSyntax(t *testing.T) {
	l := newLimiter(t, boltStore(t, ""), nil, 1, nil, store.Limits{Scope: store.ScopeKey, ID: "k1", RateLimit: "tight"})
	id := keyIdent("k1", "alice", "a")
	var h fasthttp.ResponseHeader
	d, err := l.Limit(&h, nil, id, netip.Addr{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	d.Set(&h)
	if got := string(h.Peek("RateLimit")); got != `"tight";r=2;t=20` {
		t.Fatalf("RateLimit = %q", got)
	}
	_, _ = l.Limit(&h, nil, id, netip.Addr{}, t0)
	_, _ = l.Limit(&h, nil, id, netip.Addr{}, t0)
	h.Reset()
	_, err = l.Limit(&h, nil, id, netip.Addr{}, t0)
	if !errors.Is(err, ErrRateLimited) || string(h.Peek("Retry-After")) != "20" || string(h.Peek("RateLimit")) != `"tight";r=0;t=60` {
		t.Fatalf("refusal: %v Retry-After=%q RateLimit=%q", err, h.Peek("Retry-After"), h.Peek("RateLimit"))
	}
}

// TestQuotaSurvivesRestart: quota usage is in the store; a new Limiter (a
// restarted keygate) on the same store sees it, on both drivers.
func TestQuotaSurvivesRestart(t *testing.T) {
	srv := testredis.Start(t)
	path := filepath.Join(t.TempDir(), "kg.db")
	drivers := map[string]func(t *testing.T, restart bool) store.LimitStore{
		"bolt": func(t *testing.T, restart bool) store.LimitStore {
			if restart {
				return boltStore(t, path)
			}
			s := boltStore(t, path)
			return s
		},
		"redis": func(t *testing.T, _ bool) store.LimitStore { return redisStore(t, srv.Addr(), "kgq:") },
	}
	for name, open := range drivers {
		t.Run(name, func(t *testing.T) {
			ls := open(t, false)
			l := newLimiter(t, ls, nil, 1, nil, store.Limits{Scope: store.ScopeKey, ID: "k1", Quota: &store.Quota{Requests: 5, Per: store.QuotaMonth}})
			id := keyIdent("k1", "alice", "a")
			for i := range 3 {
				if _, err := l.Limit(&fasthttp.ResponseHeader{}, nil, id, netip.Addr{}, time.Now()); err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
			}
			l.Close() // graceful stop: leased units go back
			if c, ok := ls.(interface{ Close() error }); ok && name == "bolt" {
				_ = c.Close()
			}
			ls = open(t, true)
			st, err := QuotaStatus(context.Background(), ls, store.ScopeKey, "k1", &store.Quota{Requests: 5, Per: store.QuotaMonth}, time.Now())
			if err != nil || st.Used != 3 || st.Remaining != 2 {
				t.Fatalf("status after restart = %+v, %v; want used 3", st, err)
			}
			l2 := newLimiter(t, ls, nil, 1, nil)
			admitted := 0
			for range 5 {
				if _, err := l2.Limit(&fasthttp.ResponseHeader{}, nil, id, netip.Addr{}, time.Now()); err == nil {
					admitted++
				}
			}
			if admitted != 2 {
				t.Fatalf("after restart admitted %d; want the 2 left", admitted)
			}
		})
	}
}

// TestSharedAcrossInstances: two limiters on one Redis hammer one key for a
// fixed period; together they admit no more than the stated bound and at
// least 90% of the limit.
func TestSharedAcrossInstances(t *testing.T) {
	srv := testredis.Start(t)
	p := Compile(testPolicies[2], 2) // 200/s, burst 200
	const period = 2 * time.Second
	var ls [2]*Limiter
	for i := range ls {
		s := redisStore(t, srv.Addr(), "kgs:")
		ls[i] = newLimiter(t, s, s, 2, nil)
	}
	if err := ls[0].ls.SetLimits(context.Background(), &store.Limits{Scope: store.ScopeKey, ID: "k1", RateLimit: "fast"}); err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if err := l.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	id := keyIdent("k1", "alice", "a")
	var admitted atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			l := ls[i%2]
			var h fasthttp.ResponseHeader
			for time.Since(start) < period {
				if _, err := l.Limit(&h, nil, id, netip.Addr{}, time.Now()); err == nil {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	limit := float64(p.Burst) + elapsed.Seconds()*float64(p.Requests)
	bound := limit + float64(2*p.lease) // stated: burst + T/interval + instances*lease
	got := float64(admitted.Load())
	t.Logf("admitted %v in %v; limit %.0f, bound %.0f (lease %d): %.2f%% of the limit", got, elapsed, limit, bound, p.lease, 100*got/limit)
	if got > bound || got < 0.9*limit {
		t.Fatalf("admitted %v; want in [%.0f, %.0f]", got, 0.9*limit, bound)
	}
}

// TestStoreOutage: Redis stopped mid-run: each instance keeps enforcing its
// share (1/instances), never unlimited, never refusing everyone.
func TestStoreOutage(t *testing.T) {
	srv := testredis.Start(t)
	s := redisStore(t, srv.Addr(), "kgo:")
	reg := prometheus.NewRegistry()
	l := newLimiter(t, s, s, 2, reg, store.Limits{Scope: store.ScopeKey, ID: "k1", RateLimit: "loose"},
		store.Limits{Scope: store.ScopeUser, ID: "alice", Quota: &store.Quota{Requests: 1000, Per: store.QuotaDay}})
	id := keyIdent("k1", "alice", "a")
	if _, err := l.Limit(&fasthttp.ResponseHeader{}, nil, id, netip.Addr{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	admitted := 0
	for range 300 {
		if _, err := l.Limit(&fasthttp.ResponseHeader{}, nil, id, netip.Addr{}, time.Now()); err == nil {
			admitted++
		}
	}
	// loose is 100/min; lease units on hand plus the outage share of 50.
	if admitted < 40 || admitted > 100 {
		t.Fatalf("admitted %d of 300 during the outage; want about the instance's share (50)", admitted)
	}
	if testutil.ToFloat64(l.storeErrs) == 0 {
		t.Fatal("store errors not counted")
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := newLimiter(t, boltStore(t, ""), nil, 1, reg, store.Limits{Scope: store.ScopeUser, ID: "alice", RateLimit: "tight", Quota: &store.Quota{Requests: 1, Per: store.QuotaDay}})
	id := keyIdent("k1", "alice", "a")
	for range 3 {
		_, _ = l.Limit(&fasthttp.ResponseHeader{}, nil, id, netip.Addr{}, t0)
	}
	want := `
# HELP keygate_rate_limited_total Requests refused with 429 by a rate limit (scope key, user, account, route) or a quota (scope quota).
# TYPE keygate_rate_limited_total counter
keygate_rate_limited_total{scope="account"} 0
keygate_rate_limited_total{scope="key"} 0
keygate_rate_limited_total{scope="quota"} 2
keygate_rate_limited_total{scope="route"} 0
keygate_rate_limited_total{scope="user"} 0
# HELP keygate_quotas Quotas assigned, by scope.
# TYPE keygate_quotas gauge
keygate_quotas{scope="account"} 0
keygate_quotas{scope="key"} 0
keygate_quotas{scope="user"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "keygate_rate_limited_total", "keygate_quotas"); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentNeverOverAdmits: many goroutines on one key at one instant
// get exactly the burst between them, for a rate limit and for a quota.
func TestConcurrentNeverOverAdmits(t *testing.T) {
	l := newLimiter(t, boltStore(t, ""), nil, 1, nil,
		store.Limits{Scope: store.ScopeUser, ID: "alice", RateLimit: "loose"},
		store.Limits{Scope: store.ScopeKey, ID: "k2", Quota: &store.Quota{Requests: 37, Per: store.QuotaDay}})
	for _, tc := range []struct {
		id   *authn.Identity
		want int64
	}{{keyIdent("k1", "alice", "a"), 100}, {keyIdent("k2", "bob", "a"), 37}} {
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for range 50 {
					if _, err := l.Limit(&fasthttp.ResponseHeader{}, nil, tc.id, netip.Addr{}, t0); err == nil {
						admitted.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if admitted.Load() != tc.want {
			t.Fatalf("%s: admitted %d of 800 concurrent; want exactly %d", tc.id.KeyID, admitted.Load(), tc.want)
		}
	}
}

// TestReloadKeepsState: a reload keeps the state of unchanged assignments,
// starts a changed one afresh and drops a removed one; Run reloads on an
// invalidation.
func TestReloadKeepsState(t *testing.T) {
	ctx := context.Background()
	ls := boltStore(t, "")
	l := newLimiter(t, ls, nil, 1, nil, store.Limits{Scope: store.ScopeKey, ID: "k1", RateLimit: "tight"})
	id := keyIdent("k1", "alice", "a")
	take := func() error { _, err := l.Limit(&fasthttp.ResponseHeader{}, nil, id, netip.Addr{}, t0); return err }
	for range 3 {
		if err := take(); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ls.SetLimits(ctx, &store.Limits{Scope: store.ScopeUser, ID: "bob", RateLimit: "loose"}))
	must(l.Reload(ctx))
	if err := take(); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("after an unrelated reload: %v; want the spent budget kept", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); l.Run(rctx) }()
	defer func() { cancel(); <-done }()
	must(ls.SetLimits(ctx, &store.Limits{Scope: store.ScopeKey, ID: "k1", RateLimit: "loose"}))
	l.Invalidate(store.Invalidation{KeyID: "k1"})
	deadline := time.Now().Add(3 * time.Second)
	for take() != nil {
		if time.Now().After(deadline) {
			t.Fatal("the changed policy was not picked up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	must(ls.SetLimits(ctx, &store.Limits{Scope: store.ScopeKey, ID: "k1"}))
	l.Invalidate(store.Invalidation{KeyID: "k1"})
	for time.Now().Before(deadline.Add(2 * time.Second)) {
		var h fasthttp.ResponseHeader
		if d, err := l.Limit(&h, nil, id, netip.Addr{}, t0); err == nil && d.head == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the removed assignment still applies")
}

// TestTargetedReload: an invalidation naming keys or users reads their
// assignments alone (no ListLimits) and changes only their entries, keeping
// every other bucket's state; one naming an account, a flush or more
// names than maxPendIDs reads them all; an upstream-credential
// invalidation reads nothing.
func TestTargetedReload(t *testing.T) {
	ctx := context.Background()
	ls := &countingLimits{Store: boltStore(t, "")}
	var assign []store.Limits
	for i := range 50 {
		assign = append(assign, store.Limits{Scope: store.ScopeKey, ID: fmt.Sprintf("other%d", i), RateLimit: "loose"})
	}
	assign = append(assign, store.Limits{Scope: store.ScopeKey, ID: "k1", RateLimit: "tight"})
	l := newLimiter(t, ls, nil, 1, nil, assign...)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	policyOf := func(key, user string) string {
		t.Helper()
		var h fasthttp.ResponseHeader
		d, err := l.Limit(&h, nil, keyIdent(key, user, "acme"), netip.Addr{}, t0)
		if err != nil {
			return "refused"
		}
		d.Set(&h)
		return string(h.Peek("RateLimit-Policy"))
	}
	// Spend 2 of k1's 3: the state must survive reloads that do not touch k1.
	for range 2 {
		if p := policyOf("k1", "zed"); p != `"tight";q=3;w=60` {
			t.Fatalf("k1: %q", p)
		}
	}
	lists := ls.lists.Load()
	settle := func(what string, want func() bool) {
		t.Helper()
		must(l.reloadPending(ctx))
		if !want() {
			t.Fatalf("%s: not applied", what)
		}
	}
	// A new key assignment and a user assignment, announced as the store does.
	must(ls.SetLimits(ctx, &store.Limits{Scope: store.ScopeKey, ID: "k2", RateLimit: "tight"}))
	must(ls.SetLimits(ctx, &store.Limits{Scope: store.ScopeUser, ID: "bob", RateLimit: "loose"}))
	l.Invalidate(store.Invalidation{KeyID: "k2", Username: "alice"})
	l.Invalidate(store.Invalidation{Username: "bob"})
	settle("key and user", func() bool {
		return policyOf("k2", "zed") == `"tight";q=3;w=60` && policyOf("nokey", "bob") == `"loose";q=100;w=60`
	})
	if n := ls.lists.Load(); n != lists {
		t.Fatalf("a key/user invalidation read every assignment (%d ListLimits calls)", n-lists)
	}
	if p := policyOf("k1", "zed"); p != `"tight";q=3;w=60` {
		t.Fatalf("k1 after an unrelated targeted reload: %q", p)
	}
	if p := policyOf("k1", "zed"); p != "refused" {
		t.Fatalf("k1's spent budget was not kept across a targeted reload: %q", p)
	}
	// A removed assignment goes; an upstream-credential invalidation reads nothing.
	must(ls.SetLimits(ctx, &store.Limits{Scope: store.ScopeUser, ID: "bob"}))
	l.Invalidate(store.Invalidation{Username: "bob"})
	settle("removal", func() bool { return policyOf("nokey", "bob") == "" })
	l.Invalidate(store.Invalidation{UpstreamCredential: store.UpstreamCredentialRef{Account: "acme", Name: "x"}})
	must(l.reloadPending(ctx))
	if n := ls.lists.Load(); n != lists {
		t.Fatalf("targeted and credential invalidations read every assignment (%d calls)", n-lists)
	}
	// This instance's own write: the one assignment, at once.
	must(ls.SetLimits(ctx, &store.Limits{Scope: store.ScopeAccount, ID: "acme", RateLimit: "loose"}))
	must(l.ReloadAssignment(ctx, store.ScopeAccount, "acme"))
	if p := policyOf("nokey", "carol"); p != `"loose";q=100;w=60` {
		t.Fatalf("account assignment after ReloadAssignment: %q", p)
	}
	if n := ls.lists.Load(); n != lists {
		t.Fatalf("ReloadAssignment read every assignment (%d calls)", n-lists)
	}
	// Wider invalidations read everything.
	for i, inv := range []store.Invalidation{{Account: "acme"}, {Flush: true}, {Revalidate: true}, {}} {
		l.Invalidate(inv)
		must(l.reloadPending(ctx))
		if n := ls.lists.Load(); n != lists+int64(i)+1 {
			t.Fatalf("%+v: %d ListLimits calls, want one", inv, n-lists-int64(i))
		}
	}
	lists = ls.lists.Load()
	for i := range maxPendIDs + 1 {
		l.Invalidate(store.Invalidation{KeyID: fmt.Sprintf("many%d", i)})
	}
	must(l.reloadPending(ctx))
	if n := ls.lists.Load(); n != lists+1 {
		t.Fatalf("%d named keys: %d ListLimits calls, want one full reload", maxPendIDs+1, n-lists)
	}
}

// countingLimits is the real bolt store, counting ListLimits calls.
type countingLimits struct {
	*boltstore.Store
	lists atomic.Int64
}

func (c *countingLimits) ListLimits(ctx context.Context) ([]store.Limits, error) {
	c.lists.Add(1)
	return c.Store.ListLimits(ctx)
}

// TestSharedHeaders: from a lease, RateLimit reports what the shared bucket
// had left, not only the units on hand.
func TestSharedHeaders(t *testing.T) {
	srv := testredis.Start(t)
	s := redisStore(t, srv.Addr(), "kgh:")
	l := newLimiter(t, s, s, 1, nil, store.Limits{Scope: store.ScopeKey, ID: "k1", RateLimit: "fast"})
	id := keyIdent("k1", "alice", "a")
	var h fasthttp.ResponseHeader
	for i, want := range []string{`"fast";r=199;t=1`, `"fast";r=198;t=1`} {
		d, err := l.Limit(&h, nil, id, netip.Addr{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		d.Set(&h)
		if got := string(h.Peek("RateLimit")); got != want {
			t.Fatalf("request %d: RateLimit %q; want %q", i, got, want)
		}
	}
}
