package ui

import (
	"context"
	"net/url"
	"regexp"
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

// TestLimitsForms: a key's, a user's and an account's rate limit and quota
// are set from their forms through the same PATCH handlers (errors next to
// the field, nothing changed on an error), shown with the quota's use, and
// removed again; only global admins get the account form.
func TestLimitsForms(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	lim := func(scope store.LimitScope, id string) store.Limits {
		t.Helper()
		l, err := e.st.GetLimits(ctx, scope, id)
		must(t, err)
		return *l
	}
	// A key of alice's, by alice.
	al := e.browser()
	al.mustLogin("alice", pwAlice)
	id, _ := al.newKey("limited", nil)
	edit := "/ui/keys/" + id + "/edit"
	page := al.req("GET", edit, nil)
	if !strings.Contains(page.body, `<option value="gold">gold</option>`) || !strings.Contains(page.body, `<option value="" selected>none</option>`) {
		t.Fatalf("edit page without the policies:\n%s", page.body)
	}
	tok := field(t, reCSRF, page.body)
	form := formOf(url.Values{"csrf": {tok}, "roles": {"read"}, "rate_limit": {""}, "quota_requests": {""}, "quota_per": {"day"},
		"expires": {field(t, regexp.MustCompile(`id="expires"[^>]*value="([^"]*)"`), page.body)}})
	for _, tc := range []struct {
		name  string
		form  url.Values
		field string
	}{
		{"unknown policy", form("rate_limit", "platinum"), "rate_limit"},
		{"quota not a number", form("quota_requests", "lots"), "quota_requests"},
		{"negative quota", form("quota_requests", "-5"), "quota_requests"},
		{"bad period", form("quota_requests", "5", "quota_per", "week"), "quota_requests"},
	} {
		p := al.req("POST", edit, tc.form)
		if p.status != 422 || !strings.Contains(p.body, `id="`+tc.field+`-err"`) {
			t.Errorf("%s: %d, want 422 next to %s\n%s", tc.name, p.status, tc.field, p.body)
		}
	}
	if l := lim(store.ScopeKey, id); l.RateLimit != "" || l.Quota != nil {
		t.Fatalf("a refused form set limits: %+v", l)
	}
	if p := al.req("POST", edit, form("rate_limit", "std", "quota_requests", "500", "quota_per", "month")); p.status != 303 {
		t.Fatalf("set the key's limits: %d\n%s", p.status, p.body)
	}
	if l := lim(store.ScopeKey, id); l.RateLimit != "std" || l.Quota == nil || l.Quota.Requests != 500 || l.Quota.Per != store.QuotaMonth {
		t.Fatalf("key limits: %+v", l)
	}
	// The key's page (listings carry no limits: GET of one key does).
	kp := al.req("GET", edit, nil)
	if !strings.Contains(kp.body, `<option value="std" selected>`) || !strings.Contains(kp.body, `value="500"`) ||
		!strings.Contains(kp.body, "0 used, 500 remaining, resets 2026-12-01 00:00 UTC") {
		t.Errorf("edit page without the key's limits:\n%s", kp.body)
	}
	if p := al.req("POST", edit, form("rate_limit", "", "quota_requests", "0")); p.status != 303 {
		t.Fatalf("remove the key's limits: %d\n%s", p.status, p.body)
	}
	if l := lim(store.ScopeKey, id); l.RateLimit != "" || l.Quota != nil {
		t.Fatalf("key limits not removed: %+v", l)
	}

	// A user's, by the account admin, on the user's page.
	aa := e.browser()
	aa.mustLogin("aadmin", pwAAdm)
	up := aa.req("GET", "/ui/accounts/acme/users/alice", nil)
	atok := field(t, reCSRF, up.body)
	uform := url.Values{"csrf": {atok}, "type": {"user"}, "roles": {"read"}, "state": {"enabled"}, "rate_limit": {"gold"}, "quota_requests": {"1000"}, "quota_per": {"day"}}
	if p := aa.req("POST", "/ui/accounts/acme/users/alice", uform); p.status != 303 {
		t.Fatalf("set alice's limits: %d\n%s", p.status, p.body)
	}
	if l := lim(store.ScopeUser, "alice"); l.RateLimit != "gold" || l.Quota == nil || l.Quota.Requests != 1000 {
		t.Fatalf("alice's limits: %+v", l)
	}
	if p := aa.req("GET", "/ui/accounts/acme/users/alice", nil); !strings.Contains(p.body, `<option value="gold" selected>`) ||
		!strings.Contains(p.body, "0 used, 1000 remaining") {
		t.Errorf("alice's page without her limits:\n%s", p.body)
	}
	// The account form: global admins only.
	if p := aa.req("GET", "/ui/accounts/acme", nil); strings.Contains(p.body, `action="/ui/accounts/acme/limits"`) {
		t.Error("an account admin is offered the account's limits form")
	}
	if p := aa.req("POST", "/ui/accounts/acme/limits", url.Values{"csrf": {atok}, "rate_limit": {"std"}}); p.status != 403 {
		t.Errorf("an account admin sets the account's limits: %d", p.status)
	}
	root := e.browser()
	root.mustLogin("admin", pwRoot)
	acc := root.req("GET", "/ui/accounts/acme", nil)
	rtok := field(t, reCSRF, acc.body)
	if p := root.req("POST", "/ui/accounts/acme/limits", url.Values{"csrf": {rtok}, "rate_limit": {"nope"}}); p.status != 422 || !strings.Contains(p.body, `id="rate_limit-err"`) {
		t.Errorf("unknown policy on the account: %d\n%s", p.status, p.body)
	}
	if p := root.req("POST", "/ui/accounts/acme/limits", url.Values{"csrf": {rtok}, "rate_limit": {"std"}, "quota_requests": {"9"}, "quota_per": {"day"}}); p.status != 303 {
		t.Fatalf("set the account's limits: %d\n%s", p.status, p.body)
	}
	if l := lim(store.ScopeAccount, "acme"); l.RateLimit != "std" || l.Quota == nil || l.Quota.Requests != 9 {
		t.Fatalf("account limits: %+v", l)
	}
	if p := root.req("POST", "/ui/accounts/acme/limits", url.Values{"csrf": {"bad"}, "rate_limit": {""}}); p.status != 403 {
		t.Errorf("account limits without a CSRF token: %d", p.status)
	}
}
