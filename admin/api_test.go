package admin

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/store"
)

func TestAPIAuthenticationErrors(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	t.Run("anonymous gets both challenges", func(t *testing.T) {
		r := e.do("GET", "/v1/user", "", nil).want(t, 401)
		ch := r.header.Values("WWW-Authenticate")
		if len(ch) != 2 || !strings.HasPrefix(ch[0], `Basic realm="keygate"`) || ch[1] != `Bearer realm="keygate"` {
			t.Fatalf("WWW-Authenticate = %q", ch)
		}
		if r.code() != "unauthorized" {
			t.Fatalf("code %q", r.code())
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		r := e.do("GET", "/v1/user", basicAuth("alice", "wrong-password-x"), nil).want(t, 401)
		if r.code() != "invalid_credentials" {
			t.Fatalf("code %q", r.code())
		}
	})
	t.Run("bad bearer token", func(t *testing.T) {
		r := e.do("GET", "/v1/user", "Bearer kg_AAAA_bbbb", nil).want(t, 401)
		if ch := r.header.Values("WWW-Authenticate"); len(ch) != 2 || !strings.Contains(ch[1], `error="invalid_token"`) {
			t.Fatalf("WWW-Authenticate = %q", ch)
		}
	})
	t.Run("two Authorization headers", func(t *testing.T) {
		req, _ := http.NewRequest("GET", e.base+"/v1/user", nil)
		req.Header.Add("Authorization", asAlice)
		req.Header.Add("Authorization", asRoot)
		res, err := e.http.Do(req)
		mustOK(t, err)
		_ = res.Body.Close()
		if res.StatusCode != 400 {
			t.Fatalf("status %d, want 400", res.StatusCode)
		}
	})
	t.Run("openapi is public", func(t *testing.T) {
		r := e.do("GET", "/openapi.json", "", nil).want(t, 200)
		if !strings.Contains(string(r.body), `"openapi"`) {
			t.Fatalf("body %.100s", r.body)
		}
	})
}

func TestAPIRateLimited(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{perIP: 2})
	e.do("GET", "/v1/user", asRoot, nil).want(t, 200) // cached: never limited
	for range 2 {
		e.do("GET", "/v1/user", basicAuth("alice", "wrong-password-x"), nil).want(t, 401)
	}
	r := e.do("POST", "/v1/user/api-keys", basicAuth("alice", pwAlice), map[string]any{"name": "x"}).want(t, 429)
	if r.code() != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Fatalf("429 = %v %s", r.header, r.body)
	}
	if keyCount(e, "alice") != 0 {
		t.Fatal("a rate-limited write had an effect")
	}
	e.do("GET", "/v1/user", asRoot, nil).want(t, 200)
}

func TestAPIBadRequests(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	send := func(method, path, ct, body string) resp {
		req, _ := http.NewRequest(method, e.base+path, strings.NewReader(body))
		req.Header.Set("Authorization", asRoot)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		res, err := e.http.Do(req)
		mustOK(t, err)
		defer func() { _ = res.Body.Close() }()
		b, err := io.ReadAll(res.Body)
		mustOK(t, err)
		return resp{status: res.StatusCode, header: res.Header, body: b}
	}
	const keys = "/v1/user/api-keys"
	cases := []struct {
		name, method, path, ct, body string
		status                       int
		code                         string
	}{
		{"unknown field", "POST", keys, "application/json", `{"name":"a","nickname":"b"}`, 400, "bad_request"},
		{"malformed JSON", "POST", keys, "application/json", `{"name":`, 400, "bad_request"},
		{"two values", "POST", keys, "application/json", `{"name":"a"}{"name":"b"}`, 400, "bad_request"},
		{"empty body", "POST", keys, "application/json", ``, 400, "bad_request"},
		{"wrong type", "POST", keys, "application/json", `{"name":1}`, 400, "bad_request"},
		{"roles not a list", "POST", keys, "application/json", `{"name":"a","roles":"read"}`, 400, "bad_request"},
		{"text/plain", "POST", keys, "text/plain", `{"name":"a"}`, 415, "unsupported_media_type"},
		{"no content type", "POST", keys, "", `{"name":"a"}`, 415, "unsupported_media_type"},
		{"json with charset", "POST", keys, "application/json; charset=utf-8", `{"name":"ok"}`, 201, ""},
		{"too large", "POST", keys, "application/json", `{"name":"` + strings.Repeat("a", MaxAPIBody) + `"}`, 413, "body_too_large"},
		{"missing name", "POST", keys, "application/json", `{}`, 422, "invalid"},
		{"name with control char", "POST", keys, "application/json", `{"name":"a\u0001"}`, 422, "invalid"},
		{"duplicate roles", "POST", keys, "application/json", `{"name":"b","roles":["admin","admin"]}`, 422, "invalid"},
		{"bad role token", "POST", keys, "application/json", `{"name":"b","roles":["a b"]}`, 422, "invalid"},
		{"unknown query parameter", "GET", "/v1/api-keys?acount=x", "", "", 400, "bad_request"},
		{"bad status", "GET", "/v1/api-keys?status=gone", "", "", 400, "bad_request"},
		{"bad limit", "GET", "/v1/api-keys?limit=-1", "", "", 400, "bad_request"},
		{"bad cursor", "GET", "/v1/api-keys?cursor=%%%", "", "", 400, "bad_request"},
		{"bad cursor 2", "GET", "/v1/api-keys?cursor=abc", "", "", 400, "bad_request"},
		{"bad account state", "PATCH", "/v1/accounts/acme", "application/json", `{"state":"paused"}`, 422, "invalid"},
		{"empty patch", "PATCH", "/v1/accounts/acme/users/alice", "application/json", `{}`, 422, "invalid"},
		{"bad user type", "PATCH", "/v1/accounts/acme/users/alice", "application/json", `{"type":"root"}`, 422, "invalid"},
		{"admin outside admin account", "PATCH", "/v1/accounts/acme/users/alice", "application/json", `{"type":"admin"}`, 422, "invalid"},
		{"weak password", "POST", "/v1/accounts/acme/users", "application/json", `{"username":"carl","password":"password"}`, 422, "weak_password"},
		{"password is username", "POST", "/v1/accounts/acme/users", "application/json", `{"username":"carlcarl","password":"CarlCarl"}`, 422, "weak_password"},
		{"no password", "POST", "/v1/accounts/acme/users", "application/json", `{"username":"carl"}`, 422, "invalid"},
		{"username with slash", "POST", "/v1/accounts/acme/users", "application/json", `{"username":"a/b","password":"Carl-Pa55word-long"}`, 422, "invalid"},
		{"taken username", "POST", "/v1/accounts/globex/users", "application/json", `{"username":"alice","password":"Carl-Pa55word-long"}`, 409, "conflict"},
		{"taken username, other spelling", "POST", "/v1/accounts/globex/users", "application/json", `{"username":"ＡＬＩＣＥ","password":"Carl-Pa55word-long"}`, 409, "conflict"},
		{"username mixing scripts", "POST", "/v1/accounts/acme/users", "application/json", `{"username":"\u0430dmin","password":"Carl-Pa55word-long"}`, 422, "invalid"},
		{"username with zero-width space", "POST", "/v1/accounts/acme/users", "application/json", `{"username":"car\u200bl","password":"Carl-Pa55word-long"}`, 422, "invalid"},
		{"username with comma", "POST", "/v1/accounts/acme/users", "application/json", `{"username":"carl,admin","password":"Carl-Pa55word-long"}`, 422, "invalid"},
		{"username with space", "POST", "/v1/accounts/acme/users", "application/json", `{"username":"carl admin","password":"Carl-Pa55word-long"}`, 422, "invalid"},
		{"reserved username", "POST", "/v1/accounts/acme/users", "application/json", `{"username":"_api_key","password":"Carl-Pa55word-long"}`, 422, "invalid"},
		{"taken account", "POST", "/v1/accounts", "application/json", `{"name":"acme"}`, 409, "conflict"},
		{"taken account, other spelling", "POST", "/v1/accounts", "application/json", `{"name":"ACME"}`, 409, "conflict"},
		{"account name mixing scripts", "POST", "/v1/accounts", "application/json", `{"name":"\u0430cme"}`, 422, "invalid"},
		{"account name with comma", "POST", "/v1/accounts", "application/json", `{"name":"a,b"}`, 422, "invalid"},
		{"account name with colon", "POST", "/v1/accounts", "application/json", `{"name":"a:b"}`, 422, "invalid"},
		{"no such account", "GET", "/v1/accounts/nope/users", "", "", 404, "not_found"},
		{"no such user", "GET", "/v1/accounts/acme/users/nobody", "", "", 404, "not_found"},
		{"no such key", "GET", "/v1/user/api-keys/AAAAAAAAAAAAAAAAAAAA", "", "", 404, "not_found"},
		{"malformed key id", "GET", "/v1/user/api-keys/not-an-id!", "", "", 404, "not_found"},
		{"bulk without selector", "DELETE", "/v1/api-keys", "application/json", `{}`, 422, "invalid"},
		{"password change without fields", "PUT", "/v1/user/password", "application/json", `{"new":"x"}`, 422, "invalid"},
		{"method not allowed", "PUT", "/v1/accounts", "application/json", `{}`, 405, "method_not_allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := send(tc.method, tc.path, tc.ct, tc.body)
			if r.status != tc.status || r.code() != tc.code {
				t.Fatalf("status %d code %q, want %d %q; body %s", r.status, r.code(), tc.status, tc.code, r.body)
			}
			if r.status >= 400 && !strings.Contains(string(r.body), `"message":"`) {
				t.Fatalf("no message: %s", r.body)
			}
		})
	}
}

func TestAPIKeyCreation(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	now := e.clk.Now()
	const path = "/v1/user/api-keys"

	t.Run("defaults", func(t *testing.T) {
		k := e.newKey(asAAdmin, path, map[string]any{"name": "ci", "description": "build"})
		if !slices.Equal(k.Roles, []string{"read", "write"}) {
			t.Errorf("roles %v, want the owner's", k.Roles)
		}
		if k.ExpiresAt == nil || !k.ExpiresAt.Equal(now.Add(e.maxLife)) {
			t.Errorf("expires_at %v, want now+max_lifetime", k.ExpiresAt)
		}
		if !strings.HasPrefix(k.APIKey, "kg_"+k.ID+"_") {
			t.Errorf("api_key %q does not carry id %q", k.APIKey, k.ID)
		}
		dec, err := base64.StdEncoding.DecodeString(k.Encoded)
		mustOK(t, err)
		if string(dec) != k.ID+":"+k.APIKey {
			t.Errorf("encoded is not base64(id:api_key)")
		}
		// Every credential form of the key authenticates as the owner.
		for _, auth := range []string{k.bearer(), k.apiKey(), basicAuth("_api_key", k.APIKey)} {
			var self adminapi.Self
			e.do("GET", "/v1/user", auth, nil).want(t, 200).decode(t, &self)
			if self.Username != "aadmin" || self.Method != "api_key" || self.KeyID != k.ID || self.KeyName != "ci" {
				t.Errorf("self = %+v", self)
			}
		}
		// The listing shows the key without its value or hash.
		r := e.do("GET", path+"/"+k.ID, asAAdmin, nil).want(t, 200)
		if strings.Contains(string(r.body), k.APIKey[10:]) || strings.Contains(string(r.body), "hash") {
			t.Fatalf("key listing leaks: %s", r.body)
		}
		var kj adminapi.Key
		r.decode(t, &kj)
		if kj.Status != store.KeyActive || kj.Description != "build" || kj.Account != "acme" || kj.Username != "aadmin" {
			t.Errorf("key = %+v", kj)
		}
	})
	t.Run("name taken", func(t *testing.T) {
		e.newKey(asAlice, path, map[string]any{"name": "dup"})
		r := e.do("POST", path, asAlice, map[string]any{"name": "dup"}).want(t, 409)
		if r.code() != "conflict" {
			t.Fatal(r.code())
		}
	})
	t.Run("explicit subset of roles", func(t *testing.T) {
		k := e.newKey(asAAdmin, path, map[string]any{"name": "ro", "roles": []string{"read"}})
		if !slices.Equal(k.Roles, []string{"read"}) {
			t.Fatal(k.Roles)
		}
		k = e.newKey(asAAdmin, path, map[string]any{"name": "none", "roles": []string{}})
		if len(k.Roles) != 0 {
			t.Fatal(k.Roles)
		}
	})
	expiry := []struct {
		name   string
		body   map[string]any
		status int
		want   time.Time
	}{
		{"expires_in", map[string]any{"expires_in": "720h"}, 201, now.Add(720 * time.Hour)},
		{"expires_at", map[string]any{"expires_at": now.Add(48 * time.Hour).Format(time.RFC3339)}, 201, now.Add(48 * time.Hour)},
		{"expires_at at max", map[string]any{"expires_at": now.Add(8760 * time.Hour).Format(time.RFC3339)}, 201, now.Add(8760 * time.Hour)},
		{"expires_at beyond max", map[string]any{"expires_at": now.Add(8761 * time.Hour).Format(time.RFC3339)}, 422, time.Time{}},
		{"expires_in beyond max", map[string]any{"expires_in": "8761h"}, 422, time.Time{}},
		{"expires_at in the past", map[string]any{"expires_at": now.Add(-time.Second).Format(time.RFC3339)}, 422, time.Time{}},
		{"expires_at now", map[string]any{"expires_at": now.Format(time.RFC3339)}, 422, time.Time{}},
		{"negative expires_in", map[string]any{"expires_in": "-1h"}, 422, time.Time{}},
		{"zero expires_in", map[string]any{"expires_in": "0s"}, 422, time.Time{}},
		{"bad expires_in", map[string]any{"expires_in": "a month"}, 422, time.Time{}},
		{"bad expires_at", map[string]any{"expires_at": "tomorrow"}, 422, time.Time{}},
		{"both", map[string]any{"expires_at": now.Add(time.Hour).Format(time.RFC3339), "expires_in": "1h"}, 422, time.Time{}},
		{"unknown role", map[string]any{"roles": []string{"ops"}}, 422, time.Time{}},
	}
	for i, tc := range expiry {
		t.Run(tc.name, func(t *testing.T) {
			tc.body["name"] = fmt.Sprintf("exp-%d", i)
			r := e.do("POST", path, asAlice, tc.body).want(t, tc.status)
			if tc.status != 201 {
				var eb adminapi.ErrorBody
				r.decode(t, &eb)
				if eb.Error.Message == "" {
					t.Fatal("no message")
				}
				return
			}
			var k createdKey
			r.decode(t, &k)
			if k.ExpiresAt == nil || !k.ExpiresAt.Equal(tc.want) {
				t.Fatalf("expires_at %v, want %v", k.ExpiresAt, tc.want)
			}
		})
	}
	t.Run("expired key stops and is listed as expired", func(t *testing.T) {
		k := e.newKey(asBob, path, map[string]any{"name": "short", "expires_in": "1h"})
		e.do("GET", "/v1/user", k.bearer(), nil).want(t, 200)
		e.clk.Advance(2 * time.Hour)
		defer e.clk.Advance(-2 * time.Hour)
		eventually(t, "expired key refused", func() bool {
			return e.do("GET", "/v1/user", k.bearer(), nil).status == 401
		})
		var page adminapi.KeyPage
		e.do("GET", path+"?status=expired", asBob, nil).want(t, 200).decode(t, &page)
		if len(page.APIKeys) != 1 || page.APIKeys[0].ID != k.ID || page.APIKeys[0].Status != store.KeyExpired {
			t.Fatalf("expired listing %+v", page)
		}
		e.do("GET", path, asBob, nil).want(t, 200).decode(t, &page)
		for _, kj := range page.APIKeys {
			if kj.ID == k.ID {
				t.Fatal("default listing shows an expired key")
			}
		}
		// The name is free again.
		e.newKey(asBob, path, map[string]any{"name": "short"})
	})
}

func TestAPIKeyNeverExpires(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{maxLifetime: -1})
	k := e.newKey(asAlice, "/v1/user/api-keys", map[string]any{"name": "forever"})
	if k.ExpiresAt != nil {
		t.Fatalf("expires_at %v with max_lifetime 0, want null", k.ExpiresAt)
	}
	k = e.newKey(asAlice, "/v1/user/api-keys", map[string]any{"name": "long", "expires_in": "87600h"})
	if k.ExpiresAt == nil {
		t.Fatal("explicit expiry dropped")
	}
}

func TestAPIKeyRolesGrant(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	// alice gets a role aadmin does not hold (by the global admin).
	e.do("PATCH", "/v1/accounts/acme/users/alice", asRoot, map[string]any{"roles": []string{"read", "ops"}}).want(t, 200)
	p := "/v1/accounts/acme/users/alice/api-keys"
	// Default roles (alice's: read, ops) include one aadmin lacks.
	e.do("POST", p, asAAdmin, map[string]any{"name": "a"}).want(t, 403)
	e.do("POST", p, asAAdmin, map[string]any{"name": "a", "roles": []string{"ops"}}).want(t, 403)
	k := e.newKey(asAAdmin, p, map[string]any{"name": "a", "roles": []string{"read"}})
	if !slices.Equal(k.Roles, []string{"read"}) {
		t.Fatal(k.Roles)
	}
	// Setting alice's password would let aadmin act with "ops".
	e.do("PATCH", "/v1/accounts/acme/users/alice", asAAdmin, map[string]any{"password": "Reset-Passw0rd-long"}).want(t, 403)
	// Removing a role one does not hold is fine.
	e.do("PATCH", "/v1/accounts/acme/users/alice", asAAdmin, map[string]any{"roles": []string{"read"}}).want(t, 200)
	// The global admin grants anything, but a key only carries its owner's roles.
	e.do("POST", p, asRoot, map[string]any{"name": "b", "roles": []string{"ops"}}).want(t, 422)
	e.newKey(asRoot, p, map[string]any{"name": "b", "roles": []string{"read"}})
	// A key's effective roles shrink with its owner's.
	k2 := e.newKey(asAAdmin, "/v1/user/api-keys", map[string]any{"name": "rw"})
	e.do("PATCH", "/v1/accounts/acme/users/aadmin", asRoot, map[string]any{"roles": []string{"read"}}).want(t, 200)
	eventually(t, "key roles follow the owner's", func() bool {
		var self adminapi.Self
		e.do("GET", "/v1/user", k2.bearer(), nil).want(t, 200).decode(t, &self)
		return slices.Equal(self.Roles, []string{"read"})
	})
	// aadmin no longer holds "write": cannot grant it.
	e.do("PATCH", "/v1/accounts/acme/users/alice", asAAdmin, map[string]any{"roles": []string{"read", "write"}}).want(t, 403)
}

func TestAPIConcurrentKeyName(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	// Warm the credential cache so that the requests race in the store.
	e.do("GET", "/v1/user", asAlice, nil).want(t, 200)
	const n = 16
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			statuses[i] = e.do("POST", "/v1/user/api-keys", asAlice, map[string]any{"name": "race"}).status
		})
	}
	wg.Wait()
	created, conflicts := 0, 0
	for _, s := range statuses {
		switch s {
		case 201:
			created++
		case 409:
			conflicts++
		}
	}
	if created != 1 || conflicts != n-1 {
		t.Fatalf("statuses %v: want one 201 and %d 409", statuses, n-1)
	}
	if c := keyCount(e, "alice"); c != 1 {
		t.Fatalf("%d keys stored", c)
	}
}

func TestAPIPagination(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	want := map[string]bool{}
	for i := range 5 {
		k := e.newKey(asBob, "/v1/user/api-keys", map[string]any{"name": fmt.Sprintf("k%d", i)})
		want[k.ID] = true
	}
	e.newKey(asAlice, "/v1/user/api-keys", map[string]any{"name": "other"})
	for _, base := range []string{"/v1/user/api-keys?limit=2", "/v1/api-keys?username=bob&limit=2", "/v1/accounts/globex/users/bob/api-keys?limit=2"} {
		t.Run(base, func(t *testing.T) {
			auth := asRoot
			if strings.HasPrefix(base, "/v1/user") {
				auth = asBob
			}
			seen := map[string]int{}
			cursor, pages := "", 0
			for {
				p := base
				if cursor != "" {
					p += "&cursor=" + cursor
				}
				var page adminapi.KeyPage
				e.do("GET", p, auth, nil).want(t, 200).decode(t, &page)
				pages++
				if len(page.APIKeys) > 2 {
					t.Fatalf("page of %d", len(page.APIKeys))
				}
				for _, k := range page.APIKeys {
					seen[k.ID]++
				}
				if page.NextCursor == "" {
					break
				}
				cursor = page.NextCursor
				if pages > 10 {
					t.Fatal("cursor does not end")
				}
			}
			if pages != 3 || len(seen) != 5 {
				t.Fatalf("%d pages, %d keys; want 3 and 5", pages, len(seen))
			}
			for id, n := range seen {
				if n != 1 || !want[id] {
					t.Fatalf("key %s seen %d times (want %v)", id, n, want[id])
				}
			}
		})
	}
	t.Run("account admin search is forced to their account", func(t *testing.T) {
		var page adminapi.KeyPage
		e.do("GET", "/v1/api-keys?status=all", asAAdmin, nil).want(t, 200).decode(t, &page)
		if len(page.APIKeys) != 1 || page.APIKeys[0].Account != "acme" {
			t.Fatalf("account admin sees %+v", page.APIKeys)
		}
		e.do("GET", "/v1/api-keys?username=bob", asAAdmin, nil).want(t, 200).decode(t, &page)
		if len(page.APIKeys) != 0 {
			t.Fatalf("account admin sees another account's keys: %+v", page.APIKeys)
		}
	})
}

func TestAPIRevoke(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	k := e.newKey(asAlice, "/v1/user/api-keys", map[string]any{"name": "ci"})
	e.do("GET", "/v1/user", k.bearer(), nil).want(t, 200)
	var first, second adminapi.Key
	e.do("DELETE", "/v1/user/api-keys/"+k.ID, asAlice, nil).want(t, 200).decode(t, &first)
	if first.Status != store.KeyRevoked || first.RevokedAt == nil {
		t.Fatalf("revoked key %+v", first)
	}
	e.clk.Advance(time.Minute)
	e.do("DELETE", "/v1/user/api-keys/"+k.ID, asAlice, nil).want(t, 200).decode(t, &second)
	if !second.RevokedAt.Equal(*first.RevokedAt) {
		t.Fatalf("revoking twice moved revoked_at: %v → %v", first.RevokedAt, second.RevokedAt)
	}
	eventually(t, "revoked key refused", func() bool { return e.do("GET", "/v1/user", k.bearer(), nil).status == 401 })
	// The revoked key is listed with status=revoked, not by default.
	var page adminapi.KeyPage
	e.do("GET", "/v1/user/api-keys?status=revoked", asAlice, nil).want(t, 200).decode(t, &page)
	if len(page.APIKeys) != 1 {
		t.Fatalf("%+v", page)
	}
	e.do("GET", "/v1/user/api-keys", asAlice, nil).want(t, 200).decode(t, &page)
	if len(page.APIKeys) != 0 {
		t.Fatalf("%+v", page)
	}
}

func TestAPIBulkRevoke(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	a1 := e.newKey(asAlice, "/v1/user/api-keys", map[string]any{"name": "a1"})
	a2 := e.newKey(asAlice, "/v1/user/api-keys", map[string]any{"name": "a2"})
	b1 := e.newKey(asBob, "/v1/user/api-keys", map[string]any{"name": "b1"})
	r1 := e.newKey(asRoot, "/v1/user/api-keys", map[string]any{"name": "r1"})

	t.Run("account admin: other accounts' ids are errors, untouched", func(t *testing.T) {
		var out adminapi.BulkResult
		e.do("DELETE", "/v1/api-keys", asAAdmin, map[string]any{"ids": []string{a1.ID, b1.ID, r1.ID, "AAAAAAAAAAAAAAAAAAAA", "bad id"}}).
			want(t, 200).decode(t, &out)
		if !slices.Equal(out.Invalidated, []string{a1.ID}) || len(out.PreviouslyInvalidated) != 0 || out.ErrorCount != 4 || len(out.Errors) != 4 {
			t.Fatalf("bulk = %+v", out)
		}
		for _, be := range out.Errors {
			if be.Code != "not_found" || be.Message == "" {
				t.Fatalf("error %+v", be)
			}
		}
		if keyRevoked(e, b1.ID) || keyRevoked(e, r1.ID) || !keyRevoked(e, a1.ID) {
			t.Fatal("side effect outside the caller's account")
		}
	})
	t.Run("previously invalidated", func(t *testing.T) {
		var out adminapi.BulkResult
		e.do("DELETE", "/v1/api-keys", asRoot, map[string]any{"ids": []string{a1.ID, a2.ID}}).want(t, 200).decode(t, &out)
		if !slices.Equal(out.Invalidated, []string{a2.ID}) || !slices.Equal(out.PreviouslyInvalidated, []string{a1.ID}) || out.ErrorCount != 0 {
			t.Fatalf("bulk = %+v", out)
		}
	})
	t.Run("ids must match the filter", func(t *testing.T) {
		var out adminapi.BulkResult
		e.do("DELETE", "/v1/api-keys", asRoot, map[string]any{"ids": []string{b1.ID}, "username": "alice"}).want(t, 200).decode(t, &out)
		if len(out.Invalidated) != 0 || out.ErrorCount != 1 || keyRevoked(e, b1.ID) {
			t.Fatalf("bulk = %+v", out)
		}
	})
	t.Run("by name across accounts", func(t *testing.T) {
		c1 := e.newKey(asAlice, "/v1/user/api-keys", map[string]any{"name": "deploy"})
		c2 := e.newKey(asBob, "/v1/user/api-keys", map[string]any{"name": "deploy"})
		var out adminapi.BulkResult
		e.do("DELETE", "/v1/api-keys", asBAdmin, map[string]any{"name": "deploy"}).want(t, 200).decode(t, &out)
		if !slices.Equal(out.Invalidated, []string{c2.ID}) || keyRevoked(e, c1.ID) {
			t.Fatalf("account admin of B revoked %+v", out)
		}
		e.do("DELETE", "/v1/api-keys", asRoot, map[string]any{"name": "deploy"}).want(t, 200).decode(t, &out)
		if !slices.Equal(out.Invalidated, []string{c1.ID}) || !slices.Equal(out.PreviouslyInvalidated, []string{c2.ID}) {
			t.Fatalf("global admin revoked %+v", out)
		}
	})
	t.Run("account admin of admin cannot revoke a global admin's keys", func(t *testing.T) {
		e.addUser("opsadmin", store.AdminAccount, store.TypeAccountAdmin, "Ops-admin-Pa55word")
		var out adminapi.BulkResult
		e.do("DELETE", "/v1/api-keys", basicAuth("opsadmin", "Ops-admin-Pa55word"), map[string]any{"ids": []string{r1.ID}}).
			want(t, 200).decode(t, &out)
		if out.ErrorCount != 1 || out.Errors[0].Code != "forbidden" || keyRevoked(e, r1.ID) {
			t.Fatalf("bulk = %+v", out)
		}
	})
}

func TestAPICascadeDelete(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	k := e.newKey(asBob, "/v1/user/api-keys", map[string]any{"name": "ci"})
	kb := e.newKey(asBAdmin, "/v1/user/api-keys", map[string]any{"name": "ci"})
	e.do("GET", "/v1/user", k.bearer(), nil).want(t, 200)
	e.do("GET", "/v1/user", asBob, nil).want(t, 200)

	e.do("DELETE", "/v1/accounts/globex/users/bob", asBAdmin, nil).want(t, 204)
	if _, err := e.st.GetAPIKey(context.Background(), k.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("key of a deleted user: %v", err)
	}
	eventually(t, "deleted user's key refused", func() bool { return e.do("GET", "/v1/user", k.bearer(), nil).status == 401 })
	eventually(t, "deleted user refused", func() bool { return e.do("GET", "/v1/user", asBob, nil).status == 401 })
	e.do("GET", "/v1/accounts/globex/users/bob", asRoot, nil).want(t, 404)

	e.do("DELETE", "/v1/accounts/globex", asRoot, nil).want(t, 204)
	if userExists(e, "badmin") {
		t.Fatal("user of a deleted account survives")
	}
	if _, err := e.st.GetAPIKey(context.Background(), kb.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("key of a deleted account: %v", err)
	}
	eventually(t, "deleted account's admin refused", func() bool { return e.do("GET", "/v1/user", asBAdmin, nil).status == 401 })
	e.do("GET", "/v1/accounts/globex", asRoot, nil).want(t, 404)
	e.do("DELETE", "/v1/accounts/globex", asRoot, nil).want(t, 404)
}

func TestAPIAccountLifecycle(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	var acc store.Account
	e.do("POST", "/v1/accounts", asRoot, map[string]any{"name": "initech"}).want(t, 201).decode(t, &acc)
	if acc.Name != "initech" || acc.State != store.StateEnabled {
		t.Fatalf("%+v", acc)
	}
	var list adminapi.Accounts
	e.do("GET", "/v1/accounts", asRoot, nil).want(t, 200).decode(t, &list)
	if len(list.Accounts) != 4 {
		t.Fatalf("%+v", list)
	}
	e.do("POST", "/v1/accounts/initech/users", asRoot, map[string]any{
		"username": "peter", "password": "Peter-Pa55word-long", "type": "account_admin", "roles": []string{"tps"}}).want(t, 201)
	asPeter := basicAuth("peter", "Peter-Pa55word-long")
	e.do("GET", "/v1/user", asPeter, nil).want(t, 200)
	e.do("PATCH", "/v1/accounts/initech", asRoot, map[string]any{"state": "disabled"}).want(t, 200).decode(t, &acc)
	if acc.State != store.StateDisabled {
		t.Fatal(acc)
	}
	eventually(t, "disabled account's user refused", func() bool { return e.do("GET", "/v1/user", asPeter, nil).status == 401 })
	e.do("PATCH", "/v1/accounts/initech", asRoot, map[string]any{"state": "enabled"}).want(t, 200)
	eventually(t, "re-enabled account's user served", func() bool { return e.do("GET", "/v1/user", asPeter, nil).status == 200 })
}

func TestAPIUserLifecycle(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	var u adminapi.User
	r := e.do("POST", "/v1/accounts/acme/users", asAAdmin, map[string]any{
		"username": "carl", "password": "Carl-Pa55word-long", "roles": []string{"write"}}).want(t, 201)
	if strings.Contains(string(r.body), "argon2") || strings.Contains(string(r.body), "Carl-Pa55word") || strings.Contains(string(r.body), "password") {
		t.Fatalf("user response leaks: %s", r.body)
	}
	r.decode(t, &u)
	if u.Username != "carl" || u.Account != "acme" || u.Type != store.TypeUser || !slices.Equal(u.Roles, []string{"write"}) || u.State != store.StateEnabled {
		t.Fatalf("%+v", u)
	}
	asCarl := basicAuth("carl", "Carl-Pa55word-long")
	e.do("GET", "/v1/user", asCarl, nil).want(t, 200)
	var users adminapi.Users
	e.do("GET", "/v1/accounts/acme/users", asAAdmin, nil).want(t, 200).decode(t, &users)
	if len(users.Users) != 3 {
		t.Fatalf("%+v", users)
	}
	e.do("PATCH", "/v1/accounts/acme/users/carl", asAAdmin, map[string]any{"state": "disabled"}).want(t, 200).decode(t, &u)
	if u.State != store.StateDisabled {
		t.Fatal(u)
	}
	eventually(t, "disabled user refused", func() bool { return e.do("GET", "/v1/user", asCarl, nil).status == 401 })
	e.do("PATCH", "/v1/accounts/acme/users/carl", asAAdmin, map[string]any{"state": "enabled", "password": "Carl-New-Pa55word"}).want(t, 200)
	asCarl2 := basicAuth("carl", "Carl-New-Pa55word")
	eventually(t, "new password accepted", func() bool { return e.do("GET", "/v1/user", asCarl2, nil).status == 200 })
	e.do("GET", "/v1/user", asCarl, nil).want(t, 401)
	// Own password through PATCH is refused: it needs the current one.
	e.do("PATCH", "/v1/accounts/acme/users/aadmin", asAAdmin, map[string]any{"password": "Whatever-Pa55word"}).want(t, 403)
}

func TestAPIPasswordChange(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	e.do("GET", "/v1/user", asAlice, nil).want(t, 200) // cached now
	r := e.do("PUT", "/v1/user/password", asAlice, map[string]any{"current": "not-the-password", "new": "Another-Pa55word"}).want(t, 403)
	if r.code() != "invalid_current_password" {
		t.Fatal(r.code())
	}
	r = e.do("PUT", "/v1/user/password", asAlice, map[string]any{"current": pwAlice, "new": "short"}).want(t, 422)
	if r.code() != "weak_password" || !strings.Contains(string(r.body), "at least 8") {
		t.Fatalf("%s", r.body)
	}
	e.do("PUT", "/v1/user/password", asAlice, map[string]any{"current": pwAlice, "new": pwAlice}).want(t, 422)
	e.do("PUT", "/v1/user/password", asAlice, map[string]any{"current": pwAlice, "new": "Another-Pa55word"}).want(t, 204)
	eventually(t, "old password refused", func() bool { return e.do("GET", "/v1/user", asAlice, nil).status == 401 })
	e.do("GET", "/v1/user", basicAuth("alice", "Another-Pa55word"), nil).want(t, 200)
	if g := mustUser(e, "alice").Generation; g != 2 {
		t.Fatalf("generation %d after a password change, want 2", g)
	}
}

func TestAPILastAdmin(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	e.do("POST", "/v1/accounts/admin/users", asRoot, map[string]any{"username": "root2", "password": "Root2-Pa55word-long", "type": "admin"}).want(t, 201)
	asRoot2 := basicAuth("root2", "Root2-Pa55word-long")
	e.do("PATCH", "/v1/accounts/admin/users/admin", asRoot2, map[string]any{"state": "disabled"}).want(t, 200)
	r := e.do("DELETE", "/v1/accounts/admin/users/root2", asRoot2, nil).want(t, 409)
	if r.code() != "last_admin" {
		t.Fatal(r.code())
	}
	e.do("PATCH", "/v1/accounts/admin/users/root2", asRoot2, map[string]any{"type": "account_admin"}).want(t, 409)
	e.do("PATCH", "/v1/accounts/admin/users/root2", asRoot2, map[string]any{"state": "disabled"}).want(t, 409)
	e.do("PATCH", "/v1/accounts/admin/users/admin", asRoot2, map[string]any{"state": "enabled"}).want(t, 200)
	e.do("DELETE", "/v1/accounts/admin/users/admin", asRoot2, nil).want(t, 204)
	// An account admin of the admin account cannot touch a global admin.
	e.addUser("opsadmin", store.AdminAccount, store.TypeAccountAdmin, "Ops-admin-Pa55word")
	asOps := basicAuth("opsadmin", "Ops-admin-Pa55word")
	e.do("PATCH", "/v1/accounts/admin/users/root2", asOps, map[string]any{"password": "Taken-over-Pa55word"}).want(t, 403)
	e.do("DELETE", "/v1/accounts/admin/users/root2", asOps, nil).want(t, 403)
	e.do("POST", "/v1/accounts/admin/users/root2/api-keys", asOps, map[string]any{"name": "x", "roles": []string{}}).want(t, 403)
	e.do("POST", "/v1/accounts/admin/users", asOps, map[string]any{"username": "evil", "password": "Evil-Pa55word-long", "type": "admin"}).want(t, 403)
	e.do("PATCH", "/v1/accounts/admin/users/opsadmin", asOps, map[string]any{"type": "admin"}).want(t, 403)
}

// unavailableStore fails every write with ErrUnavailable.
type unavailableStore struct{ store.Store }

func (unavailableStore) CreateAPIKey(context.Context, *store.APIKey) error {
	return fmt.Errorf("redis 10.0.0.1:6379: %w", store.ErrUnavailable)
}

func (unavailableStore) CreateAccount(context.Context, *store.Account) error {
	return fmt.Errorf("redis 10.0.0.1:6379: %w", store.ErrUnavailable)
}

func TestAPIStoreUnavailable(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{store: func(s store.Store) store.Store { return unavailableStore{s} }})
	for _, c := range []struct{ path, body string }{
		{"/v1/user/api-keys", `{"name":"x"}`},
		{"/v1/accounts", `{"name":"x"}`},
	} {
		r := e.do("POST", c.path, asRoot, c.body).want(t, 503)
		if r.header.Get("Retry-After") == "" || r.code() != "unavailable" || strings.Contains(string(r.body), "10.0.0.1") {
			t.Fatalf("503 = %v %s", r.header, r.body)
		}
	}
}

func TestAPIAudit(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	k := e.newKey(asAlice, "/v1/user/api-keys", map[string]any{"name": "ci"})
	e.do("PUT", "/v1/user/password", asAlice, map[string]any{"current": pwAlice, "new": "Another-Pa55word"}).want(t, 204)
	e.do("DELETE", "/v1/user/api-keys/"+k.ID, k.bearer(), nil).want(t, 403)
	e.do("GET", "/v1/user", asRoot, nil).want(t, 200) // a read: not audited
	logs := e.audit.FilterMessage("admin audit").All()
	if len(logs) != 3 {
		t.Fatalf("%d audit lines, want 3", len(logs))
	}
	want := []struct{ action, actor, method, result string }{
		{ActionCreateAPIKey, "alice", "basic", "success"},
		{ActionChangePassword, "alice", "basic", "success"},
		{ActionRevokeAPIKey, "alice", "api_key", "denied"},
	}
	for i, l := range logs {
		m := l.ContextMap()
		if m["action"] != want[i].action || m["actor"] != want[i].actor || m["actor_method"] != want[i].method ||
			m["result"] != want[i].result || m["client"] != "127.0.0.1" {
			t.Errorf("audit line %d = %v", i, m)
		}
		s := fmt.Sprint(m)
		for _, secret := range []string{k.APIKey[len(k.APIKey)-20:], pwAlice, "Another-Pa55word", "argon2"} {
			if strings.Contains(s, secret) {
				t.Errorf("audit line %d leaks a secret: %v", i, m)
			}
		}
	}
	if logs[0].ContextMap()["key_id"] != k.ID {
		t.Errorf("createApiKey audit lacks key_id: %v", logs[0].ContextMap())
	}
}

// racingStore changes a user's password right before a conditional update,
// as a concurrent admin would.
type racingStore struct {
	store.Store
	hash string
}

func (s racingStore) UpdateUser(ctx context.Context, username string, upd store.UserUpdate) (*store.User, error) {
	if upd.IfPasswordHash != nil {
		if _, err := s.Store.UpdateUser(ctx, username, store.UserUpdate{PasswordHash: &s.hash}); err != nil {
			return nil, err
		}
	}
	return s.Store.UpdateUser(ctx, username, upd)
}

func TestAPIPasswordChangeRace(t *testing.T) {
	h, err := apiTestHasher.Hash("Set-by-admin-Pa55word")
	mustOK(t, err)
	e := newAPIEnv(t, apiEnvOptions{store: func(s store.Store) store.Store { return racingStore{s, h} }})
	r := e.do("PUT", "/v1/user/password", asAlice, map[string]any{"current": pwAlice, "new": "Another-Pa55word"}).want(t, 409)
	if r.code() != "conflict" {
		t.Fatal(r.code())
	}
	if got := mustUser(e, "alice").PasswordHash; got != h {
		t.Fatal("a concurrent password change was overwritten")
	}
}
