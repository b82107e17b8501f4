package storetest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// RunLimits runs the conformance suite of store.LimitStore (rate-limit
// assignments and quota counters) against the stores newStore makes, which
// must implement it. A factory called twice with the same t and reopen
// semantics is not needed: restarts are tested by the drivers themselves.
func RunLimits(t *testing.T, newStore Factory) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.LimitStore, d store.Driver)
	}{
		{"SetGetList", testLimitsSetGetList},
		{"Validation", testLimitsValidation},
		{"Invalidation", testLimitsInvalidation},
		{"QuotaLeaseCap", testQuotaLeaseCap},
		{"QuotaReturn", testQuotaReturn},
		{"QuotaConcurrent", testQuotaConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := NewClock(time.Now().UTC().Truncate(time.Second))
			d := newStore(t, clock.Now)
			ls, ok := d.(store.LimitStore)
			if !ok {
				t.Fatalf("%T is not a store.LimitStore", d)
			}
			tc.fn(t, ls, d)
		})
	}
}

func testLimitsSetGetList(t *testing.T, s store.LimitStore, _ store.Driver) {
	ctx := context.Background()
	got, err := s.GetLimits(ctx, store.ScopeKey, "k1")
	if err != nil || !got.Empty() || got.Scope != store.ScopeKey || got.ID != "k1" {
		t.Fatalf("GetLimits(unset) = %+v, %v; want empty", got, err)
	}
	want := []store.Limits{
		{Scope: store.ScopeKey, ID: "k1", RateLimit: "fast"},
		{Scope: store.ScopeUser, ID: "alice", Quota: &store.Quota{Requests: 1000, Per: store.QuotaDay}},
		{Scope: store.ScopeAccount, ID: "acme", RateLimit: "slow", Quota: &store.Quota{Requests: 5, Per: store.QuotaMonth}},
	}
	for i := range want {
		if err := s.SetLimits(ctx, &want[i]); err != nil {
			t.Fatalf("SetLimits(%+v): %v", want[i], err)
		}
	}
	for _, w := range want {
		got, err := s.GetLimits(ctx, w.Scope, w.ID)
		if err != nil || got.RateLimit != w.RateLimit || (got.Quota == nil) != (w.Quota == nil) ||
			(w.Quota != nil && *got.Quota != *w.Quota) {
			t.Fatalf("GetLimits(%s,%s) = %+v, %v; want %+v", w.Scope, w.ID, got, err, w)
		}
	}
	list, err := s.ListLimits(ctx)
	if err != nil || len(list) != len(want) {
		t.Fatalf("ListLimits = %+v, %v; want %d", list, err, len(want))
	}
	// Same id in another scope is another assignment; an empty one deletes.
	if err := s.SetLimits(ctx, &store.Limits{Scope: store.ScopeKey, ID: "k1"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetLimits(ctx, store.ScopeKey, "k1"); !got.Empty() {
		t.Fatalf("after clearing: %+v", got)
	}
	if list, _ := s.ListLimits(ctx); len(list) != 2 {
		t.Fatalf("ListLimits after clearing = %+v", list)
	}
}

func testLimitsValidation(t *testing.T, s store.LimitStore, _ store.Driver) {
	ctx := context.Background()
	for _, l := range []store.Limits{
		{Scope: "team", ID: "x", RateLimit: "a"},
		{Scope: store.ScopeKey, ID: "", RateLimit: "a"},
		{Scope: store.ScopeUser, ID: "u", Quota: &store.Quota{Requests: 0, Per: store.QuotaDay}},
		{Scope: store.ScopeUser, ID: "u", Quota: &store.Quota{Requests: 5, Per: "week"}},
	} {
		if err := s.SetLimits(ctx, &l); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("SetLimits(%+v) = %v; want ErrInvalid", l, err)
		}
	}
}

func testLimitsInvalidation(t *testing.T, s store.LimitStore, d store.Driver) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan store.Invalidation, 16)
	go func() {
		_ = d.Watch(ctx, func(inv store.Invalidation) { got <- inv })
	}()
	// The subscription may take a moment: publish until one arrives.
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := s.SetLimits(ctx, &store.Limits{Scope: store.ScopeUser, ID: "bob", RateLimit: "fast"}); err != nil {
			t.Fatal(err)
		}
		select {
		case inv := <-got:
			if inv.Username != "bob" || inv.KeyID != "" {
				t.Fatalf("invalidation %+v; want user bob", inv)
			}
			return
		case <-tick.C:
		case <-deadline:
			t.Fatal("no invalidation for SetLimits")
		}
	}
}

func testQuotaLeaseCap(t *testing.T, s store.LimitStore, _ store.Driver) {
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	c := store.QuotaCounter(store.ScopeKey, "k1", time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	if u, err := s.QuotaUsed(ctx, c); err != nil || u != 0 {
		t.Fatalf("QuotaUsed(new) = %d, %v", u, err)
	}
	steps := []struct{ n, wantG, wantU int64 }{{4, 4, 4}, {4, 4, 8}, {4, 2, 10}, {4, 0, 10}}
	for _, st := range steps {
		g, u, err := s.LeaseQuota(ctx, c, st.n, 10, exp)
		if err != nil || g != st.wantG || u != st.wantU {
			t.Fatalf("LeaseQuota(%d) = %d, %d, %v; want %d, %d", st.n, g, u, err, st.wantG, st.wantU)
		}
	}
	if u, err := s.QuotaUsed(ctx, c); err != nil || u != 10 {
		t.Fatalf("QuotaUsed = %d, %v; want 10", u, err)
	}
	other := store.QuotaCounter(store.ScopeKey, "k1", time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC))
	if g, _, err := s.LeaseQuota(ctx, other, 3, 10, exp); err != nil || g != 3 {
		t.Fatalf("next period: %d, %v; want a fresh counter", g, err)
	}
}

func testQuotaReturn(t *testing.T, s store.LimitStore, _ store.Driver) {
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	c := store.QuotaCounter(store.ScopeUser, "alice", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	if _, _, err := s.LeaseQuota(ctx, c, 8, 10, exp); err != nil {
		t.Fatal(err)
	}
	if err := s.ReturnQuota(ctx, c, 5); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.QuotaUsed(ctx, c); u != 3 {
		t.Fatalf("used after return = %d; want 3", u)
	}
	// Returning more than is used never goes below zero; returning to a
	// counter that does not exist creates nothing.
	if err := s.ReturnQuota(ctx, c, 50); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.QuotaUsed(ctx, c); u != 0 {
		t.Fatalf("used after over-return = %d; want 0", u)
	}
	if err := s.ReturnQuota(ctx, "nothing:here:20261201", 3); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.QuotaUsed(ctx, "nothing:here:20261201"); u != 0 {
		t.Fatalf("phantom counter = %d", u)
	}
}

// testQuotaConcurrent: leases from many goroutines never grant more than
// the limit in all.
func testQuotaConcurrent(t *testing.T, s store.LimitStore, _ store.Driver) {
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	c := store.QuotaCounter(store.ScopeAccount, "acme", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	var total atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				g, _, err := s.LeaseQuota(ctx, c, 3, 100, exp)
				if err != nil {
					t.Error(err)
					return
				}
				total.Add(g)
			}
		})
	}
	wg.Wait()
	if total.Load() != 100 {
		t.Fatalf("granted %d in all; want exactly 100 (240 asked)", total.Load())
	}
}
