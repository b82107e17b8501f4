package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The token endpoint and Bearer JWTs through the built binary: password
// grant, the token on a protected route, refresh rotation with reuse
// detection, and RFC 6749 errors with no-store.
func TestTokenEndpoint(t *testing.T) {
	t.Parallel()
	echoAddr := startEchoProc(t)
	g := startGateway(t, serveOpts{
		routes: fmt.Sprintf("  - name: api\n    path_prefix: /\n    upstreams: [\"http://%s\"]\n    auth: required\n", echoAddr),
	})
	grant := func(form url.Values) (int, http.Header, map[string]any) {
		t.Helper()
		return tokenGrant(t, g, form)
	}
	bearerGet := func(tok string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", g.url("/hello"), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b) + " " + strings.Join(resp.Header.Values("WWW-Authenticate"), " | ")
	}

	code, h, body := grant(url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {"correct-horse-battery-staple"}, "client_id": {"anonymous"}})
	if code != 200 || body["token_type"] != "Bearer" || body["access_token"] == nil || body["refresh_token"] == nil {
		t.Fatalf("password grant: %d %v", code, body)
	}
	if h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
		t.Errorf("password grant headers: %v", h)
	}
	access, refresh := body["access_token"].(string), body["refresh_token"].(string)
	if code, out := bearerGet(access); code != 200 || !strings.Contains(out, `"X-Auth-Method":["bearer"]`) || !strings.Contains(out, `"X-Auth-User":["admin"]`) {
		t.Errorf("bearer request: %d %s", code, out)
	}
	if code, out := bearerGet(access[:len(access)-2] + "xx"); code != 401 || !strings.Contains(out, `error="invalid_token"`) {
		t.Errorf("tampered token: %d %s", code, out)
	}

	// Refresh rotates; reusing the old refresh token revokes the family.
	code, _, body = grant(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
	if code != 200 || body["refresh_token"] == nil {
		t.Fatalf("refresh: %d %v", code, body)
	}
	newer := body["refresh_token"].(string)
	if code, _, body = grant(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}); code != 400 || body["error"] != "invalid_grant" {
		t.Errorf("reused refresh token: %d %v", code, body)
	}
	if code, _, body = grant(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {newer}}); code != 400 || body["error"] != "invalid_grant" {
		t.Errorf("family not revoked after reuse: %d %v", code, body)
	}

	// Same error for an unknown user and a wrong password; RFC error codes.
	_, _, unknown := grant(url.Values{"grant_type": {"password"}, "username": {"nobody"}, "password": {"whatever-it-is"}})
	_, _, wrong := grant(url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {"whatever-it-is"}})
	if fmt.Sprint(unknown) != fmt.Sprint(wrong) || wrong["error"] != "invalid_grant" {
		t.Errorf("unknown user %v vs wrong password %v", unknown, wrong)
	}
	if code, _, body = grant(url.Values{"grant_type": {"implicit"}}); code != 400 || body["error"] != "unsupported_grant_type" {
		t.Errorf("unsupported grant: %d %v", code, body)
	}
	// client_credentials is for service accounts' keys (issue 18): without
	// client credentials it is invalid_client.
	if code, _, body = grant(url.Values{"grant_type": {"client_credentials"}}); code != 401 || body["error"] != "invalid_client" {
		t.Errorf("client_credentials without credentials: %d %v", code, body)
	}
	if code, h, body = grant(url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {"x"}, "client_id": {"other"}}); code != 401 || body["error"] != "invalid_client" || h.Get("WWW-Authenticate") == "" {
		t.Errorf("unknown client: %d %v %v", code, h, body)
	}
	// HS256 publishes no JWKS.
	resp, err := http.Get(g.url("/.well-known/jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("JWKS with HS256: %d", resp.StatusCode)
	}
}

// A missing, short or default signing secret refuses to start (exit 2),
// unless bearer tokens are disabled.
func TestWeakSigningSecretRefusesToStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "k.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("listen: %q\nadmin:\n  listen: %q\nstore:\n  bolt:\n    path: %q\nroutes:\n  - path_prefix: /\n    upstreams: [\"http://127.0.0.1:9\"]\n",
		freeAddr(t), freeAddr(t), filepath.Join(dir, "kg.db"))), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  []string
		code int
	}{
		{"missing", nil, 2},
		{"short", []string{"KEYGATE_TOKENS_SIGNING_SECRET=tooshort"}, 2},
		{"default word", []string{"KEYGATE_TOKENS_SIGNING_SECRET=secretsecretsecretsecretsecretsecret"}, 2},
		{"one character", []string{"KEYGATE_TOKENS_SIGNING_SECRET=" + strings.Repeat("a", 40)}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(t, tc.env, "serve", "--config", cfg)
			if code != tc.code || !strings.Contains(stderr, "tokens.signing") {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			for _, e := range tc.env {
				if v := strings.SplitN(e, "=", 2)[1]; strings.Contains(stderr, v) {
					t.Errorf("the secret appears in stderr")
				}
			}
		})
	}
}
