package forwardauth

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
)

// metaEnv is an env with a route forwarding the key metadata "team" and
// alice's key given metadata, an allow-list and an expiry inside the
// warning window.
func metaEnv(t testing.TB) *env {
	t.Helper()
	e := newEnv(t, func(c *configs.Config) {
		c.Routes = append(c.Routes, configs.Route{Name: "meta", PathPrefix: "/meta", Upstreams: []string{"http://127.0.0.1:9"},
			Auth: configs.AuthOptional, ForwardKeyMetadata: []string{"team", "tier"}})
	})
	m := json.RawMessage(`{"team":"core"}`)
	cidrs := []string{"198.51.100.0/24", "127.0.0.1"}
	exp := time.Now().Add(24 * time.Hour)
	_, err := e.st.UpdateAPIKey(context.Background(), e.keyID, store.KeyUpdate{Metadata: &m, AllowedCIDRs: &cidrs, ExpiresAt: &exp})
	must(t, err)
	return e
}

// TestCheckKeyHeaders: an allowed check answers every configured
// X-Auth-Key-Meta-* header (the member's value, or empty), and
// Keygate-Key-Expires for a key inside the warning window; the client
// address (from a trusted front proxy's X-Forwarded-For) must be in the
// key's allow-list, else 403 address_not_allowed.
func TestCheckKeyHeaders(t *testing.T) {
	e := metaEnv(t)
	fwd := func(xff, auth string) *fasthttp.Response {
		return e.check(loopback, "GET", "/", "X-Forwarded-Method", "GET", "X-Forwarded-Host", "svc.example",
			"X-Forwarded-Uri", "/meta/x", "X-Forwarded-For", xff, "Authorization", auth)
	}
	r := fwd("198.51.100.2", "Bearer "+e.key)
	if r.StatusCode() != 200 {
		t.Fatalf("allowed address: %d %s", r.StatusCode(), r.Body())
	}
	if got := string(r.Header.Peek("X-Auth-Key-Meta-Team")); got != "core" {
		t.Errorf("team = %q", got)
	}
	if v := r.Header.Peek("X-Auth-Key-Meta-Tier"); v == nil || len(v) != 0 {
		t.Errorf("tier = %q, want present and empty", v)
	}
	if got := string(r.Header.Peek("Keygate-Key-Expires")); got == "" {
		t.Error("no Keygate-Key-Expires for a key expiring within the window")
	}
	r = fwd("192.0.2.1", "Bearer "+e.key)
	if r.StatusCode() != 403 || len(r.Header.Peek("X-Auth-Key-Meta-Team")) != 0 {
		t.Errorf("outside the allow-list: %d %s", r.StatusCode(), r.Body())
	}
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	if json.Unmarshal(r.Body(), &body) != nil || body.Error.Code != "address_not_allowed" {
		t.Errorf("code: %s", r.Body())
	}
	// A password: headers present and empty, no expiry warning.
	r = fwd("192.0.2.1", "Basic "+b64("alice:"+testPassword))
	if r.StatusCode() != 200 || r.Header.Peek("X-Auth-Key-Meta-Team") == nil || len(r.Header.Peek("X-Auth-Key-Meta-Team")) != 0 ||
		len(r.Header.Peek("Keygate-Key-Expires")) != 0 {
		t.Errorf("password: %d team %q expires %q", r.StatusCode(), r.Header.Peek("X-Auth-Key-Meta-Team"), r.Header.Peek("Keygate-Key-Expires"))
	}
}

// TestGRPCCheckKeyHeaders: Envoy's ext_authz gets the route's metadata
// headers to set (a client's copies overwritten, not also removed),
// Keygate-Key-Expires among the response headers to add, and a refusal
// from an address outside the key's allow-list.
func TestGRPCCheckKeyHeaders(t *testing.T) {
	e := metaEnv(t)
	cl := authv3.NewAuthorizationClient(startGRPC(t, e))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := envoyCheck("GET", "svc.example", "/meta/x", map[string]string{"authorization": "Bearer " + e.key,
		"x-auth-key-meta-team": "evil", "x_auth_key_meta_tier": "evil"})
	resp, err := cl.Check(ctx, req)
	must(t, err)
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("not allowed: %v", resp)
	}
	set := map[string]string{}
	for _, h := range ok.GetHeaders() {
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if v, present := set["x-auth-key-meta-team"]; !present || v != "core" {
		t.Errorf("team = %q (%v)", v, present)
	}
	if v, present := set["x-auth-key-meta-tier"]; !present || v != "" {
		t.Errorf("tier = %q (%v)", v, present)
	}
	if slices.Contains(ok.GetHeadersToRemove(), "x-auth-key-meta-team") || !slices.Contains(ok.GetHeadersToRemove(), "x_auth_key_meta_tier") {
		t.Errorf("headers to remove: %v", ok.GetHeadersToRemove())
	}
	found := false
	for _, h := range ok.GetResponseHeadersToAdd() {
		found = found || h.GetHeader().GetKey() == "keygate-key-expires" && h.GetHeader().GetValue() != ""
	}
	if !found {
		t.Errorf("no keygate-key-expires in %v", ok.GetResponseHeadersToAdd())
	}
	req.Attributes.Source.Address.GetSocketAddress().Address = "192.0.2.1"
	resp, err = cl.Check(ctx, req)
	must(t, err)
	if d := resp.GetDeniedResponse(); d == nil || d.GetStatus().GetCode() != 403 || !strings.Contains(d.GetBody(), "address_not_allowed") {
		t.Errorf("outside the allow-list: %v", resp)
	}
}
