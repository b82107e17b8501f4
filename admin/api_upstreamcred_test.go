package admin

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/internal/testoauth"
)

const ucPath = "/v1/accounts/acme/upstream-credentials"

func ucKey() []byte { return bytes.Repeat([]byte{0x42}, 32) }

func TestUpstreamCredentialsAPI(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{ucred: true, ucredKey: ucKey()})
	const secret = "Api-Secret-Value-77231"
	body := map[string]any{"name": "billing", "type": "bearer", "secret": secret}

	// Who may create.
	for _, tc := range []struct {
		name, auth string
		status     int
		code       string
	}{
		{"user", asAlice, 403, "forbidden"},
		{"other account's admin", asBAdmin, 404, "not_found"},
		{"other account's user", asBob, 404, "not_found"},
		{"anonymous", "", 401, ""},
	} {
		r := e.do("POST", ucPath, tc.auth, body)
		if r.status != tc.status || (tc.code != "" && r.code() != tc.code) {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
	}
	var created adminapi.UpstreamCredential
	e.do("POST", ucPath+"?validate=false", asAAdmin, body).want(t, 201).decode(t, &created)
	if !created.SecretSet || created.Name != "billing" || created.Type != "bearer" || created.Validation != "skipped" {
		t.Errorf("created: %+v", created)
	}
	e.do("POST", ucPath, asRoot, body).want(t, 409)
	e.do("POST", "/v1/accounts/admin/upstream-credentials", asRoot,
		map[string]any{"name": "global", "type": "header", "fields": map[string]string{"name": "X-Api-Key"}, "secret": secret}).want(t, 201)

	// Reads: admins see everything but the secret, users names and types,
	// API-key callers may read (as their owner).
	key := e.newKey(asAAdmin, "/v1/user/api-keys", map[string]any{"name": "ro"})
	aliceKey := e.newKey(asAlice, "/v1/user/api-keys", map[string]any{"name": "ro"})
	for _, tc := range []struct {
		name, auth string
		full       bool
	}{
		{"root", asRoot, true},
		{"account admin", asAAdmin, true},
		{"account admin's key", key.bearer(), true},
		{"user", asAlice, false},
		{"user's key", aliceKey.apiKey(), false},
	} {
		for _, path := range []string{ucPath, ucPath + "/billing"} {
			r := e.do("GET", path, tc.auth, nil).want(t, 200)
			if bytes.Contains(r.body, []byte(secret)) {
				t.Fatalf("%s: %s returned the secret", tc.name, path)
			}
			full := bytes.Contains(r.body, []byte(`"secret_set":true`))
			if full != tc.full || !bytes.Contains(r.body, []byte(`"billing"`)) || !bytes.Contains(r.body, []byte(`"bearer"`)) {
				t.Errorf("%s GET %s: %s", tc.name, path, r.body)
			}
		}
	}
	e.do("GET", ucPath, asBAdmin, nil).want(t, 404)
	e.do("GET", ucPath, asBob, nil).want(t, 404)
	e.do("GET", ucPath+"/nope", asRoot, nil).want(t, 404)

	// API-key callers never write.
	e.do("PATCH", ucPath+"/billing", key.bearer(), map[string]any{"secret": "x"}).want(t, 403)
	e.do("DELETE", ucPath+"/billing", key.bearer(), nil).want(t, 403)
	e.do("POST", ucPath, key.bearer(), body).want(t, 403)

	// Bad input: clear 4xx, never the secret.
	for _, tc := range []struct {
		body   any
		status int
		code   string
	}{
		{map[string]any{"name": "x", "type": "nope", "secret": secret}, 422, "invalid"},
		{map[string]any{"name": "x", "type": "bearer"}, 422, "invalid"},
		{map[string]any{"name": "a/b", "type": "bearer", "secret": secret}, 422, "invalid"},
		{map[string]any{"name": "x", "type": "basic", "secret": secret}, 422, "invalid"},
		{map[string]any{"name": "x", "type": "bearer", "secret": secret, "extra": 1}, 400, "bad_request"},
		{`{"name":`, 400, "bad_request"},
	} {
		r := e.do("POST", ucPath+"?validate=false", asAAdmin, tc.body)
		if r.status != tc.status || r.code() != tc.code || bytes.Contains(r.body, []byte(secret)) {
			t.Errorf("POST %v: %d %s", tc.body, r.status, r.body)
		}
	}
	e.do("POST", ucPath+"?validate=maybe", asAAdmin, body).want(t, 400)

	// PATCH and DELETE.
	var upd adminapi.UpstreamCredential
	e.do("PATCH", ucPath+"/billing?validate=false", asAAdmin, map[string]any{"secret": "New-Secret-1"}).want(t, 200).decode(t, &upd)
	if !upd.SecretSet {
		t.Errorf("patched: %+v", upd)
	}
	e.do("PATCH", ucPath+"/billing", asAlice, map[string]any{"secret": "x"}).want(t, 403)
	e.do("PATCH", ucPath+"/billing", asAAdmin, map[string]any{}).want(t, 422)
	e.do("PATCH", ucPath+"/nope?validate=false", asAAdmin, map[string]any{"secret": "x"}).want(t, 404)
	e.do("DELETE", ucPath+"/billing", asAlice, nil).want(t, 403)
	e.do("DELETE", ucPath+"/billing", asAAdmin, nil).want(t, 204)
	e.do("DELETE", ucPath+"/billing", asAAdmin, nil).want(t, 404)

	// Audit: one line per write, never the secret.
	writes := 0
	for _, l := range e.audit.All() {
		line := l.Message
		for _, f := range l.Context {
			line += " " + f.String
		}
		if strings.Contains(line, secret) || strings.Contains(line, "New-Secret-1") {
			t.Fatalf("audit line has the secret: %s", line)
		}
		for _, f := range l.Context {
			if f.Key == "action" && strings.Contains(f.String, "UpstreamCredential") {
				writes++
			}
		}
	}
	if writes < 5 {
		t.Errorf("%d audit lines for upstream credential writes", writes)
	}
}

func TestUpstreamCredentialsAPIValidation(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{ucred: true, ucredKey: ucKey()})
	srv := testoauth.New(t)
	srv.AddClient("svc", "Right-Secret-123")
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, p, _ := r.BasicAuth()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		//nolint:gosec // a test token endpoint that echoes the secret on purpose (JSON, not HTML)
		_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"secret ` + p + ` is wrong"}`))
	}))
	t.Cleanup(echo.Close)
	mk := func(url, secret string) map[string]any {
		return map[string]any{"name": "cc", "type": "oauth2_client_credentials", "secret": secret,
			"fields": map[string]string{"token_url": url, "client_id": "svc"}}
	}
	r := e.do("POST", ucPath, asAAdmin, mk(srv.TokenURL, "Wrong-Secret-456")).want(t, 422)
	if r.code() != "credential_invalid" || !bytes.Contains(r.body, []byte("401")) || !bytes.Contains(r.body, []byte("invalid_client")) ||
		bytes.Contains(r.body, []byte("Wrong-Secret-456")) {
		t.Errorf("wrong secret: %s", r.body)
	}
	r = e.do("POST", ucPath, asAAdmin, mk(echo.URL, "Echoed-Secret-789")).want(t, 422)
	if bytes.Contains(r.body, []byte("Echoed-Secret-789")) || !bytes.Contains(r.body, []byte("invalid_client")) {
		t.Errorf("echoing endpoint: %s", r.body)
	}
	e.do("GET", ucPath+"/cc", asAAdmin, nil).want(t, 404) // nothing stored
	var c adminapi.UpstreamCredential
	e.do("POST", ucPath, asAAdmin, mk(srv.TokenURL, "Right-Secret-123")).want(t, 201).decode(t, &c)
	if c.Validation != "ok" || c.ValidatedAt == nil {
		t.Errorf("validated: %+v", c)
	}
	// PATCH validates too, and a failure changes nothing.
	e.do("PATCH", ucPath+"/cc", asAAdmin, map[string]any{"secret": "Wrong-Again-000"}).want(t, 422)
	for _, l := range e.audit.All() {
		for _, f := range l.Context {
			if strings.Contains(f.String, "Secret-") || strings.Contains(f.String, "Wrong-Again") {
				t.Fatalf("audit has a secret: %v", l.Context)
			}
		}
	}
}

func TestUpstreamCredentialsAPINoKey(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{ucred: true})
	r := e.do("POST", ucPath+"?validate=false", asRoot, map[string]any{"name": "x", "type": "bearer", "secret": "t"}).want(t, 422)
	if r.code() != "no_encryption_key" {
		t.Errorf("no key: %s", r.body)
	}
	e.do("GET", ucPath, asRoot, nil).want(t, 200)
	off := newAPIEnv(t, apiEnvOptions{})
	off.do("GET", ucPath, asRoot, nil).want(t, 503)
}
