package ui

import (
	"context"
	"strings"
	"testing"

	"github.com/keygate/keygate/store"
)

// TestLimitsShown: an account's rate limit and quota (issue 19) are on its
// page, with the quota's use, escaped like every other value.
func TestLimitsShown(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	must(t, e.st.SetLimits(ctx, &store.Limits{Scope: store.ScopeAccount, ID: "acme", RateLimit: "std",
		Quota: &store.Quota{Requests: 1000, Per: store.QuotaMonth}}))
	start, _ := (&store.Quota{Per: store.QuotaMonth}).Period(e.now())
	if _, _, err := e.st.LeaseQuota(ctx, store.QuotaCounter(store.ScopeAccount, "acme", start), 12, 1000, e.now().AddDate(0, 2, 0)); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.mustLogin("aadmin", pwAAdm)
	p := b.req("GET", "/ui/accounts/acme", nil)
	for _, want := range []string{"Rate limit (shared by its users): std", "Quota: 12 of 1000 per month used, 988 remaining, resets 2026-12-01 00:00 UTC"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("account page lacks %q:\n%s", want, p.body)
		}
	}
	// No limits: no lines.
	must(t, e.st.SetLimits(ctx, &store.Limits{Scope: store.ScopeAccount, ID: "acme"}))
	if p := b.req("GET", "/ui/accounts/acme", nil); strings.Contains(p.body, "Quota:") || strings.Contains(p.body, "Rate limit") {
		t.Fatalf("limits shown after removal:\n%s", p.body)
	}
}
