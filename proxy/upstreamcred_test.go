package proxy

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testoauth"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
	"github.com/keygate/keygate/upstreamcred"
)

// credFixture is a real upstreamcred.Manager on a bolt store, kept current
// by the store's invalidations, with a real OAuth2 server.
type credFixture struct {
	st  *boltstore.Store
	m   *upstreamcred.Manager
	srv *testoauth.Server
}

func newCredFixture(t *testing.T) *credFixture {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "kg.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	for _, a := range []string{store.AdminAccount, "acme", "beta"} {
		if err := st.CreateAccount(context.Background(), &store.Account{Name: a}); err != nil {
			t.Fatal(err)
		}
	}
	key := make([]byte, upstreamcred.KeySize)
	key[0] = 7
	ring, err := upstreamcred.NewKeyring(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := upstreamcred.New(upstreamcred.Options{Store: st, Keys: ring, RetryInterval: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = store.WatchThrough(st, m.Subscriber()).Watch(ctx, func(store.Invalidation) {}) }()
	t.Cleanup(func() { cancel(); m.Close() })
	srv := testoauth.New(t)
	srv.AddClient("svc-client", "svc-secret-1")
	return &credFixture{st: st, m: m, srv: srv}
}

func (f *credFixture) add(t *testing.T, account, name, typ string, fields map[string]string, secret string) {
	t.Helper()
	c := &store.UpstreamCredential{Account: account, Name: name, Type: typ, Fields: fields}
	if err := f.m.Create(context.Background(), c, []byte(secret), false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // let the create's invalidation pass
}

func TestUpstreamCredentialRoutes(t *testing.T) {
	f := newCredFixture(t)
	f.add(t, "acme", "svc", "bearer", nil, "acme-token")
	f.add(t, store.AdminAccount, "svc", "bearer", nil, "global-token")
	f.add(t, store.AdminAccount, "key", "header", map[string]string{"name": "X-Api-Key"}, "global-api-key")
	up := newUpstream(t)
	cfg := baseConfig(
		configs.Route{Name: "svc", PathPrefix: "/svc", Upstreams: []string{up.url()}, Auth: configs.AuthRequired, UpstreamCredential: "svc"},
		configs.Route{Name: "open", PathPrefix: "/open", Upstreams: []string{up.url()}, Auth: configs.AuthNone, UpstreamCredential: "svc"},
		configs.Route{Name: "key", PathPrefix: "/key", Upstreams: []string{up.url()}, Auth: configs.AuthOptional, UpstreamCredential: "key"},
		configs.Route{Name: "none", PathPrefix: "/none", Upstreams: []string{up.url()}, Auth: configs.AuthOptional, UpstreamCredential: "nothing"},
	)
	_, addr := startProxy(t, cfg, Options{Authenticator: testAuth{}, UpstreamCredentials: f.m})

	tests := []struct {
		name    string
		req     string
		header  string
		want    string
		absent  []string
		status  int
		errCode string
	}{
		{"caller's account", get("/svc/x", "Authorization: Bearer good"), "Authorization", "Bearer acme-token", nil, 200, ""},
		{"anonymous gets admin's", get("/open/x"), "Authorization", "Bearer global-token", nil, 200, ""},
		{"client Authorization dropped on open route", get("/open/x", "Authorization: Bearer mine"), "Authorization", "Bearer global-token", nil, 200, ""},
		{"header type replaces the client's", get("/key/x", "Authorization: Bearer good", "X-Api-Key: forged", "x-api-key: forged2"), "X-Api-Key", "global-api-key", []string{"Authorization"}, 200, ""},
		{"missing", get("/none/x", "Authorization: Bearer good"), "", "", nil, 403, "upstream_credential_missing"},
		{"missing anonymous", get("/none/x"), "", "", nil, 403, "upstream_credential_missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up.reset()
			r := rawDo(t, addr, tc.req)
			if tc.errCode != "" {
				wantErrBody(t, r, tc.status, tc.errCode)
				if up.count() != 0 {
					t.Error("forwarded without the credential")
				}
				return
			}
			if r.Status != tc.status {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			last := up.last(t)
			if got := last.one(t, tc.header); got != tc.want {
				t.Errorf("%s = %q, want %q", tc.header, got, tc.want)
			}
			for _, h := range tc.absent {
				if v := last.get(h); len(v) != 0 {
					t.Errorf("%s forwarded: %q", h, v)
				}
			}
		})
	}
	// A route naming a credential needs a source.
	if _, err := New(ConfigOf(cfg), Options{}); err == nil || !strings.Contains(err.Error(), "upstream credential") {
		t.Errorf("New without UpstreamCredentials: %v", err)
	}
}

func TestUpstreamCredential401Retry(t *testing.T) {
	f := newCredFixture(t)
	f.add(t, "acme", "cc", "oauth2_client_credentials",
		map[string]string{"token_url": f.srv.TokenURL, "client_id": "svc-client"}, "svc-secret-1")
	up := newUpstream(t)
	up.respond = func(ctx *fasthttp.RequestCtx) {
		v := string(ctx.Request.Header.Peek("Authorization"))
		if !strings.HasPrefix(v, "Bearer ") || !f.srv.Valid(v[7:]) {
			ctx.SetStatusCode(fasthttp.StatusUnauthorized)
			ctx.SetBodyString("denied")
		}
	}
	cfg := baseConfig(configs.Route{Name: "cc", PathPrefix: "/", Upstreams: []string{up.url()}, Auth: configs.AuthRequired, UpstreamCredential: "cc"})
	_, addr := startProxy(t, cfg, Options{Authenticator: testAuth{}, UpstreamCredentials: f.m})

	if r := rawDo(t, addr, get("/a", "Authorization: Bearer good")); r.Status != 200 {
		t.Fatalf("first request: %d %s", r.Status, r.Body)
	}
	// After each revocation the upstream refuses the cached token.
	tests := []struct {
		name   string
		raw    string
		status int
		sends  int // requests the upstream sees
		body   int // body bytes of the last one
	}{
		{"GET: one refresh, one retry", get("/b", "Authorization: Bearer good"), 200, 2, 0},
		{"POST: not retried", "POST /c HTTP/1.1\r\nHost: example.com\r\nAuthorization: Bearer good\r\nContent-Length: 2\r\n\r\nhi", 401, 1, 2},
		{"PUT: retried with its body", "PUT /d HTTP/1.1\r\nHost: example.com\r\nAuthorization: Bearer good\r\nContent-Length: 5\r\n\r\nhello", 200, 2, 5},
		{"DELETE: retried", "DELETE /e HTTP/1.1\r\nHost: example.com\r\nAuthorization: Bearer good\r\n\r\n", 200, 2, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.srv.Revoke()
			up.reset()
			if r := rawDo(t, addr, tc.raw); r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if up.count() != tc.sends || up.last(t).BodySize != tc.body {
				t.Errorf("upstream saw %d requests (want %d), last body %d bytes (want %d)", up.count(), tc.sends, up.last(t).BodySize, tc.body)
			}
		})
	}
}

func TestUpstreamCredentialUnavailable(t *testing.T) {
	f := newCredFixture(t)
	f.srv.Fail(503)
	f.add(t, "acme", "cc", "oauth2_client_credentials",
		map[string]string{"token_url": f.srv.TokenURL, "client_id": "svc-client"}, "svc-secret-1")
	up := newUpstream(t)
	cfg := baseConfig(configs.Route{Name: "cc", PathPrefix: "/", Upstreams: []string{up.url()}, Auth: configs.AuthRequired, UpstreamCredential: "cc"})
	_, addr := startProxy(t, cfg, Options{Authenticator: testAuth{}, UpstreamCredentials: f.m})
	r := rawDo(t, addr, get("/a", "Authorization: Bearer good"))
	wantErrBody(t, r, 502, "upstream_credential_unavailable")
	if strings.Contains(r.Body, "svc-secret-1") || up.count() != 0 {
		t.Errorf("body %s, upstream count %d", r.Body, up.count())
	}
}
