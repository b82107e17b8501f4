package admin

import (
	"strings"
	"testing"
)

// POST /v1/verify: who may call it, the verdicts, and that failures of the
// checked credential are limited and audited like any other.
func TestAPIVerify(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{verifyRoles: []string{"write"}, perIP: 4})
	aliceKey := e.newKey(asAlice, "/v1/user/api-keys", map[string]any{"name": "svc"})
	verifierKey := e.newKey(asAAdmin, "/v1/user/api-keys", map[string]any{"name": "verifier", "roles": []string{"write"}})
	readKey := e.newKey(asAAdmin, "/v1/user/api-keys", map[string]any{"name": "reader", "roles": []string{"read"}})

	type verdict struct {
		Valid    bool `json:"valid"`
		Identity *struct {
			Username, Account, Method string
			Roles                     []string
			KeyID                     string `json:"key_id"`
			KeyName                   string `json:"key_name"`
		} `json:"identity"`
		Code       string `json:"code"`
		RetryAfter int    `json:"retry_after"`
	}
	check := func(caller, authorization string) verdict {
		t.Helper()
		var v verdict
		e.do("POST", "/v1/verify", caller, map[string]any{"authorization": authorization, "client_ip": "198.51.100.9"}).want(t, 200).decode(t, &v)
		return v
	}

	t.Run("callers", func(t *testing.T) {
		for _, c := range []struct {
			name, caller string
			status       int
		}{
			{"global admin", asRoot, 200},
			{"role in verify_roles", asAAdmin, 200},
			{"api key with the role", verifierKey.bearer(), 200},
			{"api key without it", readKey.apiKey(), 403},
			{"user without the role", asAlice, 403},
			{"anonymous", "", 401},
		} {
			r := e.do("POST", "/v1/verify", c.caller, map[string]any{"authorization": aliceKey.bearer()})
			r.want(t, c.status)
		}
	})
	t.Run("valid api key", func(t *testing.T) {
		v := check(verifierKey.bearer(), aliceKey.apiKey())
		if !v.Valid || v.Identity == nil || v.Identity.Username != "alice" || v.Identity.Account != "acme" ||
			v.Identity.Method != "api_key" || v.Identity.KeyID != aliceKey.ID || v.Identity.KeyName != "svc" ||
			strings.Join(v.Identity.Roles, ",") != "read" || v.Code != "" {
			t.Fatalf("%+v %+v", v, v.Identity)
		}
	})
	t.Run("valid password", func(t *testing.T) {
		v := check(asRoot, asBob)
		if !v.Valid || v.Identity.Username != "bob" || v.Identity.Method != "basic" || v.Identity.KeyID != "" {
			t.Fatalf("%+v", v)
		}
	})
	t.Run("no credential", func(t *testing.T) {
		if v := check(asRoot, ""); v.Valid || v.Code != "unauthorized" || v.Identity != nil {
			t.Fatalf("%+v", v)
		}
	})
	t.Run("revoked key", func(t *testing.T) {
		k := e.newKey(asAlice, "/v1/user/api-keys", map[string]any{"name": "gone"})
		if v := check(asRoot, k.bearer()); !v.Valid {
			t.Fatalf("%+v", v)
		}
		e.do("DELETE", "/v1/user/api-keys/"+k.ID, asAlice, nil).want(t, 200)
		eventually(t, "revoked key refused", func() bool { return check(asRoot, k.bearer()).Code == "invalid_credentials" })
	})
	t.Run("bad input", func(t *testing.T) {
		e.do("POST", "/v1/verify", asRoot, map[string]any{"authorization": "Basic x\r\nX: y"}).want(t, 400)
		e.do("POST", "/v1/verify", asRoot, map[string]any{"authorization": "x", "client_ip": "nope"}).want(t, 400)
		e.do("POST", "/v1/verify", asRoot, map[string]any{"authz": "x"}).want(t, 400)
		e.do("POST", "/v1/verify", asRoot, "not json").want(t, 400)
	})
	t.Run("failure limit applies to the checked credential", func(t *testing.T) {
		var v verdict
		for range 6 {
			v = check(asRoot, basicAuth("alice", "wrong-password-x"))
			if v.Code == "rate_limited" {
				break
			}
			if v.Valid || v.Code != "invalid_credentials" {
				t.Fatalf("%+v", v)
			}
		}
		if v.Code != "rate_limited" || v.RetryAfter < 1 {
			t.Fatalf("never limited: %+v", v)
		}
		// The limit is on client_ip: the caller itself is not locked out.
		e.do("GET", "/v1/user", asRoot, nil).want(t, 200)
	})
}
