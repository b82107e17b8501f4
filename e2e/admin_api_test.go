package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// admBootstrapPassword is what startGateway gives the bootstrap admin.
const admBootstrapPassword = "correct-horse-battery-staple"

// admClient talks JSON to the admin listener of a gateway.
type admClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newAdmClient(t *testing.T, g *gateway) *admClient {
	return &admClient{t: t, base: "http://" + g.admin, c: &http.Client{Timeout: 10 * time.Second}}
}

func admBasic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

// do sends a request and returns status, headers and body. A 503 (the
// server says retry: argon2 capacity or the store, under the load of the
// parallel e2e tests) is retried for up to 20 s; a 503 changes nothing.
func (a *admClient) do(method, path, auth string, body any) (int, http.Header, []byte) {
	a.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, h, b := a.once(method, path, auth, body)
		if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return status, h, b
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (a *admClient) once(method, path, auth string, body any) (int, http.Header, []byte) {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := a.c.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, b
}

func (a *admClient) want(status int, method, path, auth string, body any) []byte {
	a.t.Helper()
	got, _, b := a.do(method, path, auth, body)
	if got != status {
		a.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, got, status, b)
	}
	return b
}

// admSkipUnlessAPI skips when the binary does not serve the admin API
// yet (admin.RegisterAPI not wired into keygate serve).
func admSkipUnlessAPI(t *testing.T, a *admClient) {
	t.Helper()
	status, _, body := a.do("GET", "/v1/user", "", nil)
	if status == http.StatusNotFound && errorCode(body) == "not_found" {
		t.Skip("the keygate binary does not serve the admin API yet (admin.RegisterAPI is not wired into serve)")
	}
}

func TestAdminAPIEndToEnd(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, 0)
	g := startGateway(t, serveOpts{routes: echoRoute("api", "/", up.addr)})
	a := newAdmClient(t, g)
	admSkipUnlessAPI(t, a)
	root := admBasic("admin", admBootstrapPassword)

	// Anonymous: 401 with both challenges.
	status, h, _ := a.do("GET", "/v1/user", "", nil)
	if status != 401 || len(h.Values("WWW-Authenticate")) != 2 {
		t.Fatalf("anonymous: %d %v", status, h.Values("WWW-Authenticate"))
	}
	var doc map[string]any
	if err := json.Unmarshal(a.want(200, "GET", "/openapi.json", "", nil), &doc); err != nil || doc["openapi"] == nil {
		t.Fatalf("openapi.json: %v", err)
	}

	a.want(201, "POST", "/v1/accounts", root, map[string]any{"name": "acme"})
	a.want(201, "POST", "/v1/accounts/acme/users", root, map[string]any{
		"username": "alice", "password": "Alice-Pa55word-long", "roles": []string{"read"}})
	alice := admBasic("alice", "Alice-Pa55word-long")
	var key struct {
		ID, APIKey, Encoded string
	}
	b := a.want(201, "POST", "/v1/user/api-keys", alice, map[string]any{"name": "ci", "expires_in": "24h"})
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	key.ID, _ = raw["id"].(string)
	key.APIKey, _ = raw["api_key"].(string)
	key.Encoded, _ = raw["encoded"].(string)
	for _, auth := range []string{"Bearer " + key.APIKey, "ApiKey " + key.Encoded, admBasic("_api_key", key.APIKey)} {
		var self map[string]any
		if err := json.Unmarshal(a.want(200, "GET", "/v1/user", auth, nil), &self); err != nil {
			t.Fatal(err)
		}
		if self["username"] != "alice" || self["method"] != "api_key" {
			t.Fatalf("self by key: %v", self)
		}
	}
	// An API key may not write, even its own keys.
	a.want(403, "DELETE", "/v1/user/api-keys/"+key.ID, "Bearer "+key.APIKey, nil)
	a.want(403, "POST", "/v1/user/api-keys", "Bearer "+key.APIKey, map[string]any{"name": "x"})
	// Listing never shows the value.
	if l := a.want(200, "GET", "/v1/api-keys?account=acme", root, nil); bytes.Contains(l, []byte(key.APIKey)) {
		t.Fatal("listing shows the key value")
	}
	// Revocation takes effect (within the cache's invalidation).
	a.want(200, "DELETE", "/v1/user/api-keys/"+key.ID, alice, nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, _, _ := a.do("GET", "/v1/user", "Bearer "+key.APIKey, nil)
		if s == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked key still accepted (%d)", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Password change stops the old password.
	a.want(204, "PUT", "/v1/user/password", alice, map[string]any{"current": "Alice-Pa55word-long", "new": "Alice-New-Pa55word"})
	deadline = time.Now().Add(5 * time.Second)
	for {
		s, _, _ := a.do("GET", "/v1/user", alice, nil)
		if s == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old password still accepted (%d)", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.want(200, "GET", "/v1/user", admBasic("alice", "Alice-New-Pa55word"), nil)
	// Cascade.
	a.want(204, "DELETE", "/v1/accounts/acme", root, nil)
	a.want(404, "GET", "/v1/accounts/acme/users/alice", root, nil)

	// The audit log names the actions, never a secret.
	logs := g.stdout.String() + g.stderr.String()
	for _, action := range []string{"createAccount", "createUser", "createApiKey", "revokeApiKey", "changePassword", "deleteAccount"} {
		if !strings.Contains(logs, `"action":"`+action+`"`) {
			t.Errorf("no audit line for %s", action)
		}
	}
	for _, secret := range []string{key.APIKey, "Alice-Pa55word-long", "Alice-New-Pa55word", admBootstrapPassword} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains a secret")
		}
	}
}

func TestAdminCLIEndToEnd(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, 0)
	g := startGateway(t, serveOpts{routes: echoRoute("api", "/", up.addr)})
	a := newAdmClient(t, g)
	admSkipUnlessAPI(t, a)
	// Warm the credential cache: the CLI's requests then cost no argon2
	// (which may answer 503 under the load of the parallel tests).
	a.want(200, "GET", "/v1/user", admBasic("admin", admBootstrapPassword), nil)
	env := []string{"KEYGATE_ADMIN_URL=http://" + g.admin, "KEYGATE_USERNAME=admin", "KEYGATE_PASSWORD=" + admBootstrapPassword}
	code, stdout, stderr := run(t, env, "account", "create", "acme")
	if code == 2 && strings.Contains(stderr, "unknown subcommand") {
		t.Fatalf("the keygate binary does not dispatch account/user/key to internal/cli: %s", stderr)
	}
	if code != 0 {
		t.Fatalf("account create: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = run(t, env, "key", "create", "ops", "-o", "json")
	if code != 0 || !strings.Contains(stderr, "cannot be shown again") {
		t.Fatalf("key create: exit %d\n%s%s", code, stdout, stderr)
	}
	var k map[string]any
	if err := json.Unmarshal([]byte(stdout), &k); err != nil {
		t.Fatalf("key create -o json: %v\n%s", err, stdout)
	}
	keyEnv := []string{"KEYGATE_ADMIN_URL=http://" + g.admin, "KEYGATE_API_KEY=" + k["api_key"].(string)}
	code, stdout, _ = run(t, keyEnv, "user", "whoami")
	if code != 0 || !strings.Contains(stdout, "api_key") {
		t.Fatalf("whoami by key: exit %d\n%s", code, stdout)
	}
	code, _, stderr = run(t, keyEnv, "account", "create", "other")
	if code != 1 || !strings.Contains(stderr, "403") {
		t.Fatalf("write by key: exit %d\n%s", code, stderr)
	}
	for range 10 { // 1 is a 503 (hashing capacity) under load: retry
		code, _, stderr = run(t, []string{"KEYGATE_ADMIN_URL=http://" + g.admin, "KEYGATE_USERNAME=admin", "KEYGATE_PASSWORD=wrong-wrong-wrong"}, "account", "list")
		if code != 1 || !strings.Contains(stderr, "503") {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if code != 3 {
		t.Fatalf("wrong password: exit %d, want 3", code)
	}
}
