package admin

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
)

var limitPolicies = configs.RateLimits{Policies: []configs.RatePolicy{
	{Name: "std", Requests: 10, Per: configs.Duration(time.Second)},
	{Name: "slow", Requests: 1, Per: configs.Duration(time.Minute)},
}}

// TestLimitsAPI: rate limits and quotas set on key creation and by PATCH of
// a key, a user and an account; shown on GET with the quota's use; bad
// values are 422 and change nothing; who may change them follows who may
// change the key, user or account.
func TestLimitsAPI(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{rateLimits: limitPolicies})
	var ls store.LimitStore = e.st
	ctx := context.Background()

	// Key: on create, then GET shows it with the quota's use.
	k := e.newKey(asAlice, "/v1/user/api-keys", map[string]any{"name": "ci", "rate_limit": "std", "quota": map[string]any{"requests": 100, "per": "day"}})
	if _, used, err := ls.LeaseQuota(ctx, store.QuotaCounter(store.ScopeKey, k.ID, dayStart(e.clk.Now())), 7, 100, e.clk.Now().Add(48*time.Hour)); err != nil || used != 7 {
		t.Fatal(used, err)
	}
	var got adminapi.Key
	e.do("GET", "/v1/user/api-keys/"+k.ID, asAlice, nil).want(t, 200).decode(t, &got)
	if got.RateLimit != "std" || got.Quota == nil || got.Quota.Used != 7 || got.Quota.Remaining != 93 || got.Quota.Per != "day" ||
		!got.Quota.Reset.Equal(dayStart(e.clk.Now()).Add(24*time.Hour)) {
		t.Fatalf("GET key = %+v %+v", got.Limits, got.Quota)
	}
	// PATCH the key: remove the quota, change the policy.
	got = adminapi.Key{}
	e.do("PATCH", "/v1/user/api-keys/"+k.ID, asAlice, map[string]any{"rate_limit": "slow", "quota": map[string]any{"requests": 0}}).want(t, 200).decode(t, &got)
	if got.RateLimit != "slow" || got.Quota != nil {
		t.Fatalf("PATCH key = %+v", got.Limits)
	}
	// An admin PATCHes another user's key; another account's admin cannot.
	path := "/v1/accounts/acme/users/alice/api-keys/" + k.ID
	got = adminapi.Key{}
	e.do("PATCH", path, asAAdmin, map[string]any{"rate_limit": ""}).want(t, 200).decode(t, &got)
	if got.RateLimit != "" {
		t.Fatalf("cleared: %+v", got.Limits)
	}
	e.do("PATCH", path, asBAdmin, map[string]any{"rate_limit": "std"}).want(t, 404)
	// An API key cannot change limits (not even its own).
	e.do("PATCH", "/v1/user/api-keys/"+k.ID, k.bearer(), map[string]any{"rate_limit": "std"}).want(t, 403)

	// User and account.
	var u adminapi.User
	e.do("PATCH", "/v1/accounts/acme/users/alice", asAAdmin, map[string]any{"rate_limit": "std", "quota": map[string]any{"requests": 5000, "per": "month"}}).want(t, 200).decode(t, &u)
	if u.RateLimit != "std" || u.Quota == nil || u.Quota.Remaining != 5000 || u.Quota.Reset.Day() != 1 {
		t.Fatalf("PATCH user = %+v %+v", u.Limits, u.Quota)
	}
	e.do("GET", "/v1/accounts/acme/users/alice", asRoot, nil).want(t, 200).decode(t, &u)
	if u.RateLimit != "std" {
		t.Fatalf("GET user = %+v", u.Limits)
	}
	var acc adminapi.Account
	e.do("PATCH", "/v1/accounts/acme", asRoot, map[string]any{"rate_limit": "slow"}).want(t, 200).decode(t, &acc)
	if acc.RateLimit != "slow" || acc.State != store.StateEnabled {
		t.Fatalf("PATCH account = %+v", acc)
	}
	e.do("PATCH", "/v1/accounts/acme", asAAdmin, map[string]any{"rate_limit": "std"}).want(t, 403)
	e.do("GET", "/v1/accounts/acme", asRoot, nil).want(t, 200).decode(t, &acc)
	if acc.RateLimit != "slow" {
		t.Fatalf("GET account = %+v", acc)
	}

	// Bad values: 422, nothing changed.
	for _, tc := range []struct {
		path string
		body map[string]any
		code string
	}{
		{"/v1/accounts/acme", map[string]any{"rate_limit": "nope"}, "unknown_policy"},
		{"/v1/accounts/acme", map[string]any{"rate_limit": "\"x\";q=1"}, "unknown_policy"},
		{"/v1/accounts/acme/users/alice", map[string]any{"quota": map[string]any{"requests": 5, "per": "week"}}, "invalid"},
		{"/v1/accounts/acme/users/alice", map[string]any{"quota": map[string]any{"requests": -1, "per": "day"}}, "invalid"},
		{"/v1/user/api-keys", map[string]any{"name": "x", "rate_limit": "nope"}, "unknown_policy"},
		{"/v1/accounts/acme/users/alice/api-keys/" + k.ID, map[string]any{}, "invalid"},
	} {
		method := "PATCH"
		if tc.path == "/v1/user/api-keys" {
			method = "POST"
		}
		r := e.do(method, tc.path, asRoot, tc.body)
		if r.status != 422 || r.code() != tc.code {
			t.Errorf("%s %s %v: %d %s; want 422 %s", method, tc.path, tc.body, r.status, r.body, tc.code)
		}
	}
	if l, _ := ls.GetLimits(ctx, store.ScopeAccount, "acme"); l.RateLimit != "slow" {
		t.Fatalf("a refused PATCH changed the account: %+v", l)
	}
	if list, _ := e.st.ListAPIKeys(ctx, store.KeyFilter{Name: "x", Status: store.StatusAll}); len(list.Keys) != 0 {
		t.Fatal("a refused create stored a key")
	}

	// A deleted user's or account's limits go with it: a new one of the
	// same name starts without.
	e.do("DELETE", "/v1/accounts/acme/users/alice", asRoot, nil).want(t, 204)
	if l, _ := ls.GetLimits(ctx, store.ScopeUser, "alice"); !l.Empty() {
		t.Fatalf("deleted user's limits kept: %+v", l)
	}
	e.do("DELETE", "/v1/accounts/acme", asRoot, nil).want(t, 204)
	if l, _ := ls.GetLimits(ctx, store.ScopeAccount, "acme"); !l.Empty() {
		t.Fatalf("deleted account's limits kept: %+v", l)
	}
}

func dayStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// TestLimitsKeyPatchAndRotate: the key PATCH of issue 18 takes rate_limit
// and quota with its other fields (or alone: no key write); a rotated key
// keeps its predecessor's limits and the quota's use so far.
func TestLimitsKeyPatchAndRotate(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{rateLimits: limitPolicies})
	var ls store.LimitStore = e.st
	ctx := context.Background()
	k := e.newKey(asAlice, "/v1/user/api-keys", map[string]any{"name": "ci"})
	var got adminapi.Key
	e.do("PATCH", "/v1/user/api-keys/"+k.ID, asAlice, map[string]any{"description": "nightly", "rate_limit": "std",
		"quota": map[string]any{"requests": 50, "per": "day"}}).want(t, 200).decode(t, &got)
	if got.Description != "nightly" || got.RateLimit != "std" || got.Quota == nil || got.Quota.Requests != 50 {
		t.Fatalf("PATCH = %+v", got)
	}
	// A bad policy refuses the whole PATCH: the description is unchanged.
	e.do("PATCH", "/v1/user/api-keys/"+k.ID, asAlice, map[string]any{"description": "x", "rate_limit": "nope"}).want(t, 422)
	if d := e.storeKey(k.ID).Description; d != "nightly" {
		t.Fatalf("a refused PATCH changed the description to %q", d)
	}
	counter := store.QuotaCounter(store.ScopeKey, k.ID, dayStart(e.clk.Now()))
	if _, _, err := ls.LeaseQuota(ctx, counter, 20, 50, e.clk.Now().Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	var nk adminapi.CreatedKey
	e.do("POST", "/v1/user/api-keys/"+k.ID+"/rotate", asAlice, map[string]any{"grace": "1h"}).want(t, 201).decode(t, &nk)
	got = adminapi.Key{}
	e.do("GET", "/v1/user/api-keys/"+nk.ID, asAlice, nil).want(t, 200).decode(t, &got)
	if got.RateLimit != "std" || got.Quota == nil || got.Quota.Used != 20 || got.Quota.Remaining != 30 {
		t.Fatalf("rotated key: %+v %+v; want std and the quota's use carried over", got.Limits, got.Quota)
	}
}
