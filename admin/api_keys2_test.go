package admin

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/store"
)

const ownKeys = "/v1/user/api-keys"
const aliceKeys = "/v1/accounts/acme/users/alice/api-keys"

// TestKeyPatch: each field, on the user path and the admin path; the rules
// (earlier expiry only, roles ⊆ owner's, valid metadata and CIDRs, nothing
// to change, revoked key) and who may (API-key callers never, other
// accounts' admins 404).
func TestKeyPatch(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	k := e.newKey(asAlice, ownKeys, map[string]any{"name": "ci", "expires_in": "720h"})
	path := ownKeys + "/" + k.ID
	var got adminapi.Key
	e.do("PATCH", path, asAlice, map[string]any{"description": "deploys", "metadata": map[string]any{"team": "core", "tier": 2},
		"allowed_cidrs": []string{"10.1.2.3/8", "2001:db8::1"}, "expires_in": "24h"}).want(t, 200).decode(t, &got)
	if got.Description != "deploys" || string(got.Metadata) != `{"team":"core","tier":2}` ||
		!slices.Equal(got.AllowedCIDRs, []string{"10.0.0.0/8", "2001:db8::1/128"}) ||
		got.ExpiresAt == nil || !got.ExpiresAt.Equal(e.clk.Now().Add(24*time.Hour)) {
		t.Errorf("patched key = %+v", got)
	}
	sk := e.storeKey(k.ID)
	if sk.Description != "deploys" || string(sk.Metadata) != `{"team":"core","tier":2}` {
		t.Errorf("stored = %+v", sk)
	}
	// The admin path; the account admin holds read and write.
	e.do("PATCH", aliceKeys+"/"+k.ID, asAAdmin, map[string]any{"roles": []string{}}).want(t, 200).decode(t, &got)
	if len(got.Roles) != 0 {
		t.Errorf("roles = %v", got.Roles)
	}
	k2 := e.newKey(asAlice, ownKeys, map[string]any{"name": "ci2"})
	cases := []struct {
		name, auth, path string
		body             any
		status           int
		code             string
	}{
		{"later expiry", asAlice, path, map[string]any{"expires_in": "48h"}, 422, "expiry_extended"},
		{"past expiry", asAlice, path, map[string]any{"expires_at": "2000-01-01T00:00:00Z"}, 422, "invalid"},
		{"both expiries", asAlice, path, map[string]any{"expires_in": "1h", "expires_at": "2000-01-01T00:00:00Z"}, 422, "invalid"},
		{"role not the owner's", asAlice, path, map[string]any{"roles": []string{"write"}}, 422, "unknown_role"},
		{"bad metadata", asAlice, path, map[string]any{"metadata": []int{1}}, 422, "invalid"},
		{"bad metadata name", asAlice, path, `{"metadata":{"a b":1}}`, 422, "invalid"},
		{"metadata too big", asAlice, path, map[string]any{"metadata": map[string]string{"a": strings.Repeat("x", 5000)}}, 422, "invalid"},
		{"bad cidr", asAlice, path, map[string]any{"allowed_cidrs": []string{"10.0.0.0/40"}}, 422, "invalid"},
		{"nothing", asAlice, path, map[string]any{}, 422, "invalid"},
		{"unknown field", asAlice, path, map[string]any{"name": "x"}, 400, "bad_request"},
		{"api key caller", k2.bearer(), path, map[string]any{"description": "x"}, 403, "forbidden"},
		{"api key caller, own key", k2.bearer(), ownKeys + "/" + k2.ID, map[string]any{"description": "x"}, 403, "forbidden"},
		{"other account admin", asBAdmin, aliceKeys + "/" + k.ID, map[string]any{"description": "x"}, 404, "not_found"},
		{"other user", asBob, ownKeys + "/" + k.ID, map[string]any{"description": "x"}, 404, "not_found"},
		{"unknown key", asAlice, ownKeys + "/00000000000000000000", map[string]any{"description": "x"}, 404, "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.storeKey(k.ID)
			r := e.do("PATCH", tc.path, tc.auth, tc.body)
			if r.status != tc.status || r.code() != tc.code {
				t.Fatalf("%d %s, want %d %s: %s", r.status, r.code(), tc.status, tc.code, r.body)
			}
			after := e.storeKey(k.ID)
			if after.Description != before.Description || !after.ExpiresAt.Equal(before.ExpiresAt) || string(after.Metadata) != string(before.Metadata) {
				t.Errorf("refused patch changed the key: %+v → %+v", before, after)
			}
		})
	}
	// A revoked key cannot change.
	e.do("DELETE", path, asAlice, nil).want(t, 200)
	if r := e.do("PATCH", path, asAlice, map[string]any{"description": "x"}); r.status != 409 || r.code() != "key_not_active" {
		t.Errorf("patch revoked: %d %s", r.status, r.body)
	}
}

// TestKeyPatchApplies: a patch of roles and the allow-list applies to the
// next request with the key (the per-key invalidation reaches the cache).
func TestKeyPatchApplies(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	k := e.newKey(asAAdmin, "/v1/user/api-keys", map[string]any{"name": "ci"})
	var self adminapi.Self
	e.do("GET", "/v1/user", k.bearer(), nil).want(t, 200).decode(t, &self)
	if !slices.Equal(self.Roles, []string{"read", "write"}) {
		t.Fatalf("roles = %v", self.Roles)
	}
	e.do("PATCH", "/v1/user/api-keys/"+k.ID, asAAdmin, map[string]any{"roles": []string{"read"}}).want(t, 200)
	eventually(t, "roles narrowed", func() bool {
		var s adminapi.Self
		e.do("GET", "/v1/user", k.bearer(), nil).want(t, 200).decode(t, &s)
		return slices.Equal(s.Roles, []string{"read"})
	})
	// An allow-list without 127.0.0.1: the key is refused (403), not
	// counted as a failure; another key of the owner still works.
	other := e.newKey(asAAdmin, "/v1/user/api-keys", map[string]any{"name": "other"})
	e.do("PATCH", "/v1/user/api-keys/"+k.ID, asAAdmin, map[string]any{"allowed_cidrs": []string{"192.0.2.0/24"}}).want(t, 200)
	eventually(t, "allow-list applied", func() bool {
		r := e.do("GET", "/v1/user", k.bearer(), nil)
		return r.status == 403 && r.code() == "address_not_allowed"
	})
	e.do("GET", "/v1/user", other.bearer(), nil).want(t, 200)
	e.do("PATCH", "/v1/user/api-keys/"+k.ID, asAAdmin, map[string]any{"allowed_cidrs": []string{"127.0.0.0/8", "::1"}}).want(t, 200)
	eventually(t, "allow-list widened", func() bool { return e.do("GET", "/v1/user", k.bearer(), nil).status == 200 })
}

// TestKeyRotate: the new key works and is shown once with the old key's
// fields; the old one works until the grace ends, is listed with
// rotated_to, and cannot be rotated again; grace 0 kills it at once;
// concurrent rotations: exactly one 201.
func TestKeyRotate(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	k := e.newKey(asAlice, ownKeys, map[string]any{"name": "ci", "description": "d", "metadata": map[string]string{"team": "core"},
		"allowed_cidrs": []string{"127.0.0.1"}})
	var nk createdKey
	e.do("POST", ownKeys+"/"+k.ID+"/rotate", asAlice, map[string]any{"grace": "1h"}).want(t, 201).decode(t, &nk)
	if nk.ID == k.ID || nk.Name != "ci" || nk.RotatedFrom != k.ID || nk.APIKey == "" || nk.Encoded == "" ||
		string(nk.Metadata) != `{"team":"core"}` || !slices.Equal(nk.AllowedCIDRs, []string{"127.0.0.1/32"}) {
		t.Fatalf("rotated = %+v", nk)
	}
	if !nk.ExpiresAt.Equal(*k.ExpiresAt) {
		t.Errorf("new expiry %v, want the old key's %v", nk.ExpiresAt, k.ExpiresAt)
	}
	e.do("GET", "/v1/user", nk.bearer(), nil).want(t, 200)
	e.do("GET", "/v1/user", k.bearer(), nil).want(t, 200) // within the grace
	var page adminapi.KeyPage
	e.do("GET", ownKeys+"?name=ci", asAlice, nil).want(t, 200).decode(t, &page)
	if len(page.APIKeys) != 2 {
		t.Fatalf("listed %d keys named ci, want 2", len(page.APIKeys))
	}
	for _, lk := range page.APIKeys {
		if lk.ID == k.ID && lk.RotatedTo != nk.ID {
			t.Errorf("old key rotated_to = %q", lk.RotatedTo)
		}
		if lk.ID == k.ID && !lk.ExpiresAt.Equal(e.clk.Now().Add(time.Hour)) {
			t.Errorf("old key expires %v", lk.ExpiresAt)
		}
	}
	if r := e.do("POST", ownKeys+"/"+k.ID+"/rotate", asAlice, nil); r.status != 409 || r.code() != "key_not_active" {
		t.Errorf("rotate twice: %d %s", r.status, r.body)
	}
	if r := e.do("POST", ownKeys, asAlice, map[string]any{"name": "ci"}); r.status != 409 {
		t.Errorf("create with the rotated name: %d %s", r.status, r.body)
	}
	// After the grace the old key is refused; the new one works.
	e.clk.Advance(time.Hour + time.Second)
	e.cache.Invalidate(store.Invalidation{Flush: true})
	e.do("GET", "/v1/user", k.bearer(), nil).want(t, 401)
	e.do("GET", "/v1/user", nk.bearer(), nil).want(t, 200)

	// grace 0: the leak case.
	var nk2 createdKey
	e.do("POST", aliceKeys+"/"+nk.ID+"/rotate", asAAdmin, map[string]any{"grace": "0s"}).want(t, 201).decode(t, &nk2)
	eventually(t, "leaked key dead", func() bool { return e.do("GET", "/v1/user", nk.bearer(), nil).status == 401 })
	e.do("GET", "/v1/user", nk2.bearer(), nil).want(t, 200)

	for _, tc := range []struct {
		name, auth, path string
		body             any
		status           int
	}{
		{"bad grace", asAlice, ownKeys + "/" + nk2.ID + "/rotate", map[string]any{"grace": "soon"}, 422},
		{"negative grace", asAlice, ownKeys + "/" + nk2.ID + "/rotate", map[string]any{"grace": "-1h"}, 422},
		{"huge grace", asAlice, ownKeys + "/" + nk2.ID + "/rotate", map[string]any{"grace": "10000h"}, 422},
		{"api key caller", nk2.bearer(), ownKeys + "/" + nk2.ID + "/rotate", nil, 403},
		{"other account", asBAdmin, aliceKeys + "/" + nk2.ID + "/rotate", nil, 404},
	} {
		if r := e.do("POST", tc.path, tc.auth, tc.body); r.status != tc.status {
			t.Errorf("%s: %d, want %d: %s", tc.name, r.status, tc.status, r.body)
		}
	}
	if got := e.storeKey(nk2.ID); got.RotatedTo != "" {
		t.Errorf("refused rotations rotated the key: %+v", got)
	}

	// Concurrent rotations of one key: exactly one 201, the others 409.
	c := e.newKey(asAlice, ownKeys, map[string]any{"name": "race"})
	var wg sync.WaitGroup
	codes := make([]int, 6)
	for i := range codes {
		wg.Go(func() {
			codes[i] = e.do("POST", ownKeys+"/"+c.ID+"/rotate", asAlice, map[string]any{"grace": "1h"}).status
		})
	}
	wg.Wait()
	n201 := 0
	for _, code := range codes {
		switch code {
		case 201:
			n201++
		case 409:
		default:
			t.Errorf("concurrent rotation: status %d", code)
		}
	}
	if n201 != 1 {
		t.Errorf("%d rotations succeeded, want 1 (%v)", n201, codes)
	}
}

// TestKeysExpiringWithin: ?expiring_within= lists the active keys that
// expire within the window only.
func TestKeysExpiringWithin(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	soon := e.newKey(asAlice, ownKeys, map[string]any{"name": "soon", "expires_in": "24h"})
	e.newKey(asAlice, ownKeys, map[string]any{"name": "later", "expires_in": "720h"})
	for _, path := range []string{"/v1/api-keys?account=acme&expiring_within=168h", ownKeys + "?expiring_within=168h", aliceKeys + "?expiring_within=168h"} {
		var page adminapi.KeyPage
		e.do("GET", path, asRoot, nil)
		auth := asRoot
		if strings.HasPrefix(path, ownKeys) {
			auth = asAlice
		}
		e.do("GET", path, auth, nil).want(t, 200).decode(t, &page)
		if len(page.APIKeys) != 1 || page.APIKeys[0].ID != soon.ID {
			t.Errorf("%s: %+v", path, page.APIKeys)
		}
	}
	for _, bad := range []string{"x", "-1h", "0s"} {
		e.do("GET", "/v1/api-keys?expiring_within="+bad, asRoot, nil).want(t, 400)
	}
}

// TestServiceAccounts: created by admins without a password; Basic with any
// password refuses them; a password or a type change is refused; their
// keys are created by an admin and outlive that admin.
func TestServiceAccounts(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	users := "/v1/accounts/acme/users"
	var u adminapi.User
	e.do("POST", users, asAAdmin, map[string]any{"username": "ci-bot", "type": "service", "roles": []string{"read"}}).want(t, 201).decode(t, &u)
	if u.Type != store.TypeService {
		t.Fatalf("type = %q", u.Type)
	}
	for _, tc := range []struct {
		name   string
		auth   string
		method string
		path   string
		body   any
		status int
	}{
		{"with a password", asAAdmin, "POST", users, map[string]any{"username": "bot2", "type": "service", "password": "Bot-Pa55word-long"}, 422},
		{"by a user", asAlice, "POST", users, map[string]any{"username": "bot3", "type": "service"}, 403},
		{"set its password", asAAdmin, "PATCH", users + "/ci-bot", map[string]any{"password": "Bot-Pa55word-long"}, 422},
		{"make it a user", asAAdmin, "PATCH", users + "/ci-bot", map[string]any{"type": "user"}, 422},
		{"make a user one", asAAdmin, "PATCH", users + "/alice", map[string]any{"type": "service"}, 422},
		{"basic empty password", basicAuth("ci-bot", ""), "GET", "/v1/user", nil, 401},
		{"basic some password", basicAuth("ci-bot", "x"), "GET", "/v1/user", nil, 401},
	} {
		if r := e.do(tc.method, tc.path, tc.auth, tc.body); r.status != tc.status {
			t.Errorf("%s: %d, want %d: %s", tc.name, r.status, tc.status, r.body)
		}
	}
	// A key made by the account admin; the admin then goes; the key stays.
	k := e.newKey(asAAdmin, users+"/ci-bot/api-keys", map[string]any{"name": "deploy"})
	var self adminapi.Self
	e.do("GET", "/v1/user", k.bearer(), nil).want(t, 200).decode(t, &self)
	if self.Username != "ci-bot" || self.Type != store.TypeService {
		t.Errorf("self = %+v", self)
	}
	e.do("DELETE", users+"/aadmin", asRoot, nil).want(t, 204)
	e.do("GET", "/v1/user", k.bearer(), nil).want(t, 200)
	if _, err := e.st.GetAPIKey(context.Background(), k.ID); err != nil {
		t.Errorf("the service account's key went with its creator: %v", err)
	}
}

// TestExpiringKeysGauge: the gauge counts the active keys expiring within
// the window only.
func TestExpiringKeysGauge(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	e.newKey(asAlice, ownKeys, map[string]any{"name": "soon", "expires_in": "24h"})
	e.newKey(asAlice, ownKeys, map[string]any{"name": "soon2", "expires_in": "100h"})
	e.newKey(asAlice, ownKeys, map[string]any{"name": "later", "expires_in": "720h"})
	gone := e.newKey(asAlice, ownKeys, map[string]any{"name": "revoked", "expires_in": "24h"})
	e.do("DELETE", ownKeys+"/"+gone.ID, asAlice, nil).want(t, 200)
	x := NewExpiringKeys(e.st, 168*time.Hour, time.Hour, e.clk.Now, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(x)
	want := func(v float64) {
		t.Helper()
		mfs, err := reg.Gather()
		mustOK(t, err)
		if len(mfs) != 1 || mfs[0].GetName() != "keygate_api_keys_expiring" || mfs[0].Metric[0].GetGauge().GetValue() != v {
			t.Fatalf("gathered %v, want %v", mfs, v)
		}
	}
	want(-1)
	if n, err := x.Count(context.Background()); err != nil || n != 2 {
		t.Fatalf("Count = %d, %v; want 2", n, err)
	}
	want(2)
}
