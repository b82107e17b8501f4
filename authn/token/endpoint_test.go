package token

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/failurelimit"
	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/redisstore"
)

type fixture struct {
	t      testing.TB
	env    *testEnv
	signer *Signer
	ep     *Endpoint
	auth   *Authenticator
	peer   net.IP
}

func newFixture(t testing.TB, mod func(*EndpointOptions)) *fixture {
	t.Helper()
	env := newEnv(t, fastHasher())
	return newFixtureEnv(t, env, mod)
}

func newFixtureEnv(t testing.TB, env *testEnv, mod func(*EndpointOptions)) *fixture {
	t.Helper()
	cfg := hsConfig(testSecret)
	signer := mustSigner(t, cfg, env.clock.Now)
	opts := EndpointOptions{Store: env.s, Refresh: env.s, Passwords: env.passwords(), Now: env.clock.Now, Realm: "kg-test"}
	if mod != nil {
		mod(&opts)
	}
	ep, err := NewEndpoint(cfg, signer, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, env: env, signer: signer, ep: ep,
		auth: NewAuthenticator(signer.Verifier(), env.s, AuthOptions{}), peer: net.ParseIP("192.0.2.7")}
}

type response struct {
	status int
	raw    string
	body   map[string]any
	header *fasthttp.ResponseHeader
}

func (r response) str(k string) string { s, _ := r.body[k].(string); return s }

// do sends one request to the endpoint. Every response must carry
// Cache-Control: no-store and Pragma: no-cache and a JSON body.
func (f *fixture) do(method, contentType, body string, mods ...func(*fasthttp.Request)) response {
	f.t.Helper()
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI("http://gw.example/oauth/token")
	if contentType != "" {
		req.Header.SetContentType(contentType)
	}
	req.SetBodyString(body)
	for _, m := range mods {
		m(&req)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: f.peer, Port: 40000}, nil)
	f.ep.Handler(&ctx)
	r := response{status: ctx.Response.StatusCode(), raw: string(ctx.Response.Body()), header: &fasthttp.ResponseHeader{}}
	ctx.Response.Header.CopyTo(r.header)
	if cc := string(r.header.Peek("Cache-Control")); cc != "no-store" {
		f.t.Errorf("%s %q: Cache-Control = %q, want no-store", method, body, cc)
	}
	if p := string(r.header.Peek("Pragma")); p != "no-cache" {
		f.t.Errorf("%s %q: Pragma = %q, want no-cache", method, body, p)
	}
	if ct := string(r.header.ContentType()); !strings.HasPrefix(ct, "application/json") {
		f.t.Errorf("Content-Type = %q", ct)
	}
	if err := json.Unmarshal(ctx.Response.Body(), &r.body); err != nil {
		f.t.Errorf("body %q is not JSON: %v", r.raw, err)
	}
	return r
}

const formCT = "application/x-www-form-urlencoded"

func (f *fixture) post(form url.Values) response {
	f.t.Helper()
	return f.do("POST", formCT, form.Encode())
}

func pwForm(user, pw string) url.Values {
	return url.Values{"grant_type": {"password"}, "username": {user}, "password": {pw}}
}

func refreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
}

// wantError checks an RFC 6749 §5.2 error response.
func (f *fixture) wantError(what string, r response, status int, code string) {
	f.t.Helper()
	if r.status != status || r.str("error") != code {
		f.t.Errorf("%s: %d %s, want %d %s", what, r.status, r.raw, status, code)
	}
	if _, ok := r.body["error_description"].(string); !ok {
		f.t.Errorf("%s: no error_description in %s", what, r.raw)
	}
	for k := range r.body {
		if k != "error" && k != "error_description" {
			f.t.Errorf("%s: unexpected field %q", what, k)
		}
	}
}

func (f *fixture) wantTokens(what string, r response, withRefresh bool) (access, refresh string) {
	f.t.Helper()
	if r.status != 200 || r.str("token_type") != "Bearer" || r.str("access_token") == "" {
		f.t.Fatalf("%s: %d %s", what, r.status, r.raw)
	}
	if exp, _ := r.body["expires_in"].(float64); exp != 3600 {
		f.t.Errorf("%s: expires_in = %v, want 3600", what, r.body["expires_in"])
	}
	if withRefresh != (r.str("refresh_token") != "") {
		f.t.Errorf("%s: refresh_token present = %v, want %v", what, r.str("refresh_token") != "", withRefresh)
	}
	return r.str("access_token"), r.str("refresh_token")
}

// bearerOK authenticates an access token through the Bearer authenticator.
func (f *fixture) bearerErr(tok string) error {
	_, err := f.auth.Authenticate(context.Background(), bearer(tok))
	return err
}

func TestEndpointPasswordGrant(t *testing.T) {
	f := newFixture(t, nil)
	at, rt := f.wantTokens("password grant", f.post(pwForm("alice", alicePW)), true)
	if err := f.bearerErr(at); err != nil {
		t.Errorf("issued access token refused: %v", err)
	}
	if len(rt) != refreshValueLen {
		t.Errorf("refresh token %q has length %d", rt, len(rt))
	}
	// client_id=anonymous, charset parameter, unknown parameters and scope
	// are fine.
	form := pwForm("alice", alicePW)
	form.Set("client_id", "anonymous")
	form.Set("scope", "anything")
	form.Set("whatever", "1")
	f.wantTokens("with client_id", f.do("POST", formCT+"; charset=UTF-8", form.Encode()), true)
	// A JSON object of strings (simple-oauth2 bodyFormat "json").
	f.wantTokens("json body", f.do("POST", "Application/JSON; charset=utf-8",
		`{"grant_type":"password","username":"alice","password":"`+alicePW+`","client_id":"anonymous","client_secret":"","scope":"x"}`), true)
	// The user's roles.
	c, err := f.signer.Verifier().Verify(at)
	if err != nil || strings.Join(c.Roles, ",") != "dev,ops" {
		t.Errorf("claims %+v, %v", c, err)
	}
}

func TestEndpointErrors(t *testing.T) {
	f := newFixture(t, nil)
	good := pwForm("alice", alicePW)
	with := func(k, v string) string {
		form := pwForm("alice", alicePW)
		form.Set(k, v)
		return form.Encode()
	}
	without := func(k string) string {
		form := pwForm("alice", alicePW)
		form.Del(k)
		return form.Encode()
	}
	cases := []struct {
		name          string
		method, ct    string
		body          string
		mod           func(*fasthttp.Request)
		status        int
		code          string
		wantChallenge bool
	}{
		{"GET", "GET", "", "", nil, 405, "invalid_request", false},
		{"PUT", "PUT", formCT, good.Encode(), nil, 405, "invalid_request", false},
		{"json body without credentials", "POST", "application/json", `{"grant_type":"password"}`, nil, 400, "invalid_request", false},
		{"json nested value", "POST", "application/json", `{"grant_type":"password","username":{"x":"alice"},"password":"p"}`, nil, 400, "invalid_request", false},
		{"json number value", "POST", "application/json", `{"grant_type":"password","username":"alice","password":1}`, nil, 400, "invalid_request", false},
		{"json null value", "POST", "application/json", `{"grant_type":"password","username":"alice","password":null}`, nil, 400, "invalid_request", false},
		{"json duplicate", "POST", "application/json", `{"grant_type":"password","username":"alice","password":"x","password":"y"}`, nil, 400, "invalid_request", false},
		{"json array", "POST", "application/json", `[{"grant_type":"password"}]`, nil, 400, "invalid_request", false},
		{"json trailing data", "POST", "application/json", `{"grant_type":"password","username":"alice","password":"x"}{}`, nil, 400, "invalid_request", false},
		{"json truncated", "POST", "application/json", `{"grant_type":"password","username":"alice"`, nil, 400, "invalid_request", false},
		{"text body", "POST", "text/plain", good.Encode(), nil, 400, "invalid_request", false},
		{"no content type", "POST", "", good.Encode(), nil, 400, "invalid_request", false},
		{"multipart", "POST", "multipart/form-data; boundary=x", good.Encode(), nil, 400, "invalid_request", false},
		{"no grant_type", "POST", formCT, without("grant_type"), nil, 400, "invalid_request", false},
		{"empty grant_type", "POST", formCT, with("grant_type", ""), nil, 400, "invalid_request", false},
		{"no username", "POST", formCT, without("username"), nil, 400, "invalid_request", false},
		{"no password", "POST", formCT, without("password"), nil, 400, "invalid_request", false},
		{"duplicate password", "POST", formCT, good.Encode() + "&password=x", nil, 400, "invalid_request", false},
		{"duplicate grant_type", "POST", formCT, good.Encode() + "&grant_type=password", nil, 400, "invalid_request", false},
		{"duplicate client_id", "POST", formCT, good.Encode() + "&client_id=anonymous&client_id=anonymous", nil, 400, "invalid_request", false},
		{"password in query", "POST", formCT, without("password"), func(r *fasthttp.Request) {
			r.SetRequestURI("http://gw.example/oauth/token?password=" + alicePW)
		}, 400, "invalid_request", false},
		{"body too large", "POST", formCT, good.Encode() + "&x=" + strings.Repeat("a", MaxRequestBody), nil, 400, "invalid_request", false},
		{"unknown client", "POST", formCT, with("client_id", "webapp"), nil, 401, "invalid_client", true},
		{"empty client", "POST", formCT, with("client_id", ""), nil, 401, "invalid_client", true},
		{"client secret", "POST", formCT, with("client_secret", "s3cret"), nil, 401, "invalid_client", true},
		{"client secret of the public client", "POST", formCT, with("client_secret", "x") + "&client_id=anonymous", nil, 401, "invalid_client", true},
		{"basic client auth with a secret", "POST", formCT, good.Encode(), func(r *fasthttp.Request) {
			r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("anonymous:s3cret")))
		}, 401, "invalid_client", true},
		{"client_credentials", "POST", formCT, with("grant_type", "client_credentials"), nil, 400, "unsupported_grant_type", false},
		{"authorization_code", "POST", formCT, with("grant_type", "authorization_code"), nil, 400, "unsupported_grant_type", false},
		{"grant type case", "POST", formCT, with("grant_type", "Password"), nil, 400, "unsupported_grant_type", false},
		{"wrong password", "POST", formCT, with("password", "nope"), nil, 400, "invalid_grant", false},
		{"unknown user", "POST", formCT, with("username", "mallory"), nil, 400, "invalid_grant", false},
		{"api key user", "POST", formCT, with("username", authn.APIKeyUser), nil, 400, "invalid_grant", false},
		{"api key as password", "POST", formCT, with("password", "kg_0123456789abcdefghij_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), nil, 400, "invalid_grant", false},
		{"no refresh_token", "POST", formCT, "grant_type=refresh_token", nil, 400, "invalid_request", false},
		{"malformed refresh_token", "POST", formCT, refreshForm("abc").Encode(), nil, 400, "invalid_grant", false},
		{"unknown refresh_token", "POST", formCT, refreshForm(strings.Repeat("A", 22) + "." + strings.Repeat("B", 43)).Encode(), nil, 400, "invalid_grant", false},
		{"access token as refresh_token", "POST", formCT, "", nil, 400, "invalid_grant", false},
	}
	at, _ := f.wantTokens("setup", f.post(good), true)
	for _, c := range cases {
		body := c.body
		if c.name == "access token as refresh_token" {
			body = refreshForm(at).Encode()
		}
		var mods []func(*fasthttp.Request)
		if c.mod != nil {
			mods = append(mods, c.mod)
		}
		r := f.do(c.method, c.ct, body, mods...)
		f.wantError(c.name, r, c.status, c.code)
		challenge := string(r.header.Peek("WWW-Authenticate"))
		if c.wantChallenge && challenge != `Basic realm="kg-test"` {
			t.Errorf("%s: WWW-Authenticate = %q", c.name, challenge)
		}
		if !c.wantChallenge && challenge != "" {
			t.Errorf("%s: unexpected WWW-Authenticate %q", c.name, challenge)
		}
		if c.status == 405 && string(r.header.Peek("Allow")) != "POST" {
			t.Errorf("%s: Allow = %q", c.name, r.header.Peek("Allow"))
		}
		if strings.Contains(r.raw, alicePW) || strings.Contains(r.raw, "mallory") {
			t.Errorf("%s: the body echoes the request: %s", c.name, r.raw)
		}
	}
}

// TestEndpointSameBody: unknown user and wrong password get byte-identical
// responses (and each costs one argon2id: see the benchmark pair).
func TestEndpointSameBody(t *testing.T) {
	f := newFixture(t, nil)
	unknown := f.post(pwForm("mallory", "whatever"))
	wrong := f.post(pwForm("alice", "whatever"))
	if unknown.status != wrong.status || unknown.raw != wrong.raw {
		t.Errorf("unknown user: %d %s; wrong password: %d %s", unknown.status, unknown.raw, wrong.status, wrong.raw)
	}
	// A disabled user with the right password gets the same answer too.
	st := store.StateDisabled
	if _, err := f.env.s.UpdateUser(context.Background(), "alice", store.UserUpdate{State: &st}); err != nil {
		t.Fatal(err)
	}
	if d := f.post(pwForm("alice", alicePW)); d.raw != wrong.raw {
		t.Errorf("disabled user: %s", d.raw)
	}
}

func TestEndpointDisabledAccount(t *testing.T) {
	f := newFixture(t, nil)
	_, rt := f.wantTokens("login", f.post(pwForm("alice", alicePW)), true)
	if _, err := f.env.s.SetAccountState(context.Background(), "acme", store.StateDisabled); err != nil {
		t.Fatal(err)
	}
	f.wantError("password grant, account disabled", f.post(pwForm("alice", alicePW)), 400, "invalid_grant")
	f.wantError("refresh, account disabled", f.post(refreshForm(rt)), 400, "invalid_grant")
}

// TestEndpointRefreshRotation: each refresh spends the token and returns a
// new pair; replaying a spent token revokes the family, the latest token
// included.
func TestEndpointRefreshRotation(t *testing.T) {
	t.Run("bolt", func(t *testing.T) { testRefreshRotation(t, newFixture(t, nil)) })
	t.Run("redis", func(t *testing.T) {
		srv := testredis.Start(t)
		rs, err := redisstore.New(configs.Redis{Addrs: []string{srv.Addr()}, KeyPrefix: "tk:"}, redisstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rs.Close() })
		testRefreshRotation(t, newFixture(t, func(o *EndpointOptions) { o.Refresh = rs }))
	})
}

func testRefreshRotation(t *testing.T, f *fixture) {
	at1, rt1 := f.wantTokens("login", f.post(pwForm("alice", alicePW)), true)
	f.env.clock.Advance(time.Minute)
	at2, rt2 := f.wantTokens("refresh 1", f.post(refreshForm(rt1)), true)
	if rt2 == rt1 || at2 == at1 || rt2[:familyLen] != rt1[:familyLen] {
		t.Errorf("rotation: rt1 %q rt2 %q", rt1, rt2)
	}
	if err := f.bearerErr(at2); err != nil {
		t.Errorf("refreshed access token: %v", err)
	}
	_, rt3 := f.wantTokens("refresh 2", f.post(refreshForm(rt2)), true)

	// A second, independent login is another family.
	_, other := f.wantTokens("second login", f.post(pwForm("alice", alicePW)), true)

	f.wantError("replay of rt1", f.post(refreshForm(rt1)), 400, "invalid_grant")
	f.wantError("latest token of the revoked family", f.post(refreshForm(rt3)), 400, "invalid_grant")
	f.wantTokens("other family untouched", f.post(refreshForm(other)), true)
}

func TestEndpointRefreshExpiry(t *testing.T) {
	f := newFixture(t, nil)
	_, rt := f.wantTokens("login", f.post(pwForm("alice", alicePW)), true)
	f.env.clock.Advance(24 * time.Hour)
	f.wantError("refresh after refresh_lifetime", f.post(refreshForm(rt)), 400, "invalid_grant")
}

// TestEndpointGenerationKillsTokens: a password change kills the refresh
// tokens and the access tokens issued before it.
func TestEndpointGenerationKillsTokens(t *testing.T) {
	f := newFixture(t, nil)
	at, rt := f.wantTokens("login", f.post(pwForm("alice", alicePW)), true)
	phc, _ := f.env.h.Hash("a new long passphrase")
	if _, err := f.env.s.UpdateUser(context.Background(), "alice", store.UserUpdate{PasswordHash: &phc}); err != nil {
		t.Fatal(err)
	}
	f.wantError("refresh after password change", f.post(refreshForm(rt)), 400, "invalid_grant")
	if err := f.bearerErr(at); err == nil {
		t.Error("access token still accepted after the password change")
	}
	f.wantError("old password", f.post(pwForm("alice", alicePW)), 400, "invalid_grant")
	at2, _ := f.wantTokens("new password", f.post(pwForm("alice", "a new long passphrase")), true)
	if err := f.bearerErr(at2); err != nil {
		t.Errorf("new token: %v", err)
	}

	// Deleted and re-created user: the old refresh token is dead although
	// the generation (1) matches again.
	bob := f.env.addUser(t, "bob", "acme", alicePW)
	_, brt := f.wantTokens("bob login", f.post(pwForm("bob", alicePW)), true)
	if err := f.env.s.DeleteUser(context.Background(), "bob"); err != nil {
		t.Fatal(err)
	}
	f.env.clock.Advance(time.Second)
	if bob2 := f.env.addUser(t, "bob", "acme", alicePW); bob2.Generation != bob.Generation {
		t.Fatal("generations differ")
	}
	f.wantError("refresh of a re-created user", f.post(refreshForm(brt)), 400, "invalid_grant")
}

func TestEndpointWithoutRefreshStore(t *testing.T) {
	f := newFixture(t, func(o *EndpointOptions) { o.Refresh = nil })
	f.wantTokens("login", f.post(pwForm("alice", alicePW)), false)
	f.wantError("refresh grant", f.post(refreshForm(strings.Repeat("A", 22)+"."+strings.Repeat("B", 43))), 400, "unsupported_grant_type")
}

func TestEndpointRateLimit(t *testing.T) {
	t.Run("ip", func(t *testing.T) {
		lim := failurelimit.New(3, 100, nil)
		f := newFixture(t, func(o *EndpointOptions) { o.IPLimiter = lim })
		for i := range 3 {
			f.wantError("failure "+string(rune('1'+i)), f.post(pwForm("mallory", "x")), 400, "invalid_grant")
		}
		for _, form := range []url.Values{pwForm("alice", alicePW), refreshForm("x")} {
			r := f.post(form)
			f.wantError("over the IP limit", r, 429, "invalid_request")
			if r.str("error_description") != "too many attempts" || string(r.header.Peek("Retry-After")) == "" {
				t.Errorf("429: %s, Retry-After %q", r.raw, r.header.Peek("Retry-After"))
			}
		}
		f.peer = net.ParseIP("198.51.100.9")
		f.wantTokens("another IP", f.post(pwForm("alice", alicePW)), true)
	})
	t.Run("user", func(t *testing.T) {
		lim := failurelimit.New(2, 100, nil)
		f := newFixture(t, func(o *EndpointOptions) { o.UserLimiter = lim })
		f.post(pwForm("alice", "x"))
		f.peer = net.ParseIP("198.51.100.10")
		f.post(pwForm("alice", "y"))
		f.peer = net.ParseIP("198.51.100.11")
		r := f.post(pwForm("alice", alicePW))
		f.wantError("over the user limit", r, 429, "invalid_request")
		if ra := string(r.header.Peek("Retry-After")); ra == "" || ra == "0" {
			t.Errorf("Retry-After = %q", ra)
		}
		f.wantError("another user is not limited", f.post(pwForm("bob", "x")), 400, "invalid_grant")
	})
}

func TestEndpointUnavailable(t *testing.T) {
	f := newFixture(t, nil)
	_ = f.env.s.Close()
	r := f.post(pwForm("alice", alicePW))
	if r.status != 503 || r.str("error") != "temporarily_unavailable" || string(r.header.Peek("Retry-After")) == "" {
		t.Errorf("store closed: %d %s", r.status, r.raw)
	}
}

func TestEndpointPaths(t *testing.T) {
	f := newFixture(t, nil)
	if p := f.ep.Paths(); len(p) != 2 || p[0] != "/oauth/token" || p[1] != V1Path {
		t.Errorf("Paths = %q", p)
	}
	cfg := hsConfig(testSecret)
	cfg.Path = V1Path
	ep, err := NewEndpoint(cfg, f.signer, EndpointOptions{Store: f.env.s, Passwords: f.env.passwords()})
	if err != nil || len(ep.Paths()) != 1 {
		t.Errorf("Paths with tokens.path = %s: %q, %v", V1Path, ep.Paths(), err)
	}
}

func TestJWKSHandler(t *testing.T) {
	testKeys(t)
	get := func(v *Verifier, method string) *fasthttp.Response {
		var req fasthttp.Request
		req.Header.SetMethod(method)
		req.SetRequestURI(JWKSPath)
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, nil, nil)
		v.JWKSHandler(&ctx)
		var res fasthttp.Response
		ctx.Response.CopyTo(&res)
		return &res
	}
	hs, _ := NewVerifier(hsConfig(testSecret))
	if r := get(hs, "GET"); r.StatusCode() != 404 || apiErrorCode(t, r) != "not_found" {
		t.Errorf("HS256 JWKS: %d %s", r.StatusCode(), r.Body())
	}
	if r := get(hs, "DELETE"); r.StatusCode() != 405 || apiErrorCode(t, r) != "method_not_allowed" || string(r.Header.Peek("Allow")) != "GET, HEAD" {
		t.Errorf("DELETE JWKS: %d %s", r.StatusCode(), r.Body())
	}
	ed, err := NewVerifier(keyConfig(t, configs.AlgEdDSA, pkcs8PEM(t, edKey)))
	if err != nil {
		t.Fatal(err)
	}
	r := get(ed, "GET")
	if r.StatusCode() != 200 || string(r.Body()) != string(ed.JWKS()) || !strings.Contains(string(r.Body()), `"kty":"OKP"`) {
		t.Errorf("EdDSA JWKS: %d %s", r.StatusCode(), r.Body())
	}
	if r := get(ed, "POST"); r.StatusCode() != 405 || apiErrorCode(t, r) != "method_not_allowed" {
		t.Errorf("POST JWKS: %d %s", r.StatusCode(), r.Body())
	}
}

// apiErrorCode checks that r has keygate's JSON error shape (DESIGN.md §6:
// {"error":{"code","message"}} and nothing else) and returns the code.
func apiErrorCode(t *testing.T, r *fasthttp.Response) string {
	t.Helper()
	var body map[string]map[string]string
	if err := json.Unmarshal(r.Body(), &body); err != nil || len(body) != 1 || len(body["error"]) != 2 ||
		body["error"]["message"] == "" || !strings.HasPrefix(string(r.Header.ContentType()), "application/json") {
		t.Errorf("not keygate's error shape: %s (%s, %v)", r.Body(), r.Header.ContentType(), err)
		return ""
	}
	return body["error"]["code"]
}

// BenchmarkPasswordGrantUnknownUserVsWrongPassword is the timing pair of
// SECURITY.md "enumeration by timing" at the endpoint, with the production
// argon2id parameters. The two run alternately and are timed apart, so load
// on the machine hits both alike: unknown/wrong must be within noise of 1.
func BenchmarkPasswordGrantUnknownUserVsWrongPassword(b *testing.B) {
	env := newEnv(b, password.New(password.DefaultParams, 1))
	f := newFixtureEnv(b, env, nil)
	unknown, wrong := pwForm("mallory", "wrong password").Encode(), pwForm("alice", "wrong password").Encode()
	run := func(body string) time.Duration {
		start := time.Now()
		if r := f.do("POST", formCT, body); r.status != 400 {
			b.Fatalf("%d %s", r.status, r.raw)
		}
		return time.Since(start)
	}
	run(unknown) // warm-up
	run(wrong)
	var du, dw time.Duration
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			du += run(unknown)
			dw += run(wrong)
		} else {
			dw += run(wrong)
			du += run(unknown)
		}
		i++
	}
	b.ReportMetric(float64(du.Nanoseconds())/float64(i), "unknown-ns/op")
	b.ReportMetric(float64(dw.Nanoseconds())/float64(i), "wrong-ns/op")
	b.ReportMetric(float64(du)/float64(dw), "unknown/wrong")
}

func TestEndpointMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFixture(t, func(o *EndpointOptions) { o.Registerer = reg })
	_, rt := f.wantTokens("login", f.post(pwForm("alice", alicePW)), true)
	f.post(pwForm("alice", "wrong"))
	f.post(refreshForm(rt))
	f.post(refreshForm(rt)) // reuse
	f.post(url.Values{"grant_type": {"client_credentials"}})
	f.do("GET", "", "")
	f.post(url.Values{"grant_type": {"password"}, "client_id": {"x"}})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "keygate_token_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				l := m.GetLabel()
				got[l[0].GetValue()+"/"+l[1].GetValue()] = v
			}
		}
	}
	want := map[string]float64{
		"password/issued": 1, "password/invalid_grant": 1, "refresh_token/issued": 1,
		"refresh_token/invalid_grant": 1, "other/unsupported_grant_type": 1, "other/invalid_request": 1,
		"other/invalid_client": 1,
	}
	if len(got) != len(want) {
		t.Errorf("metrics = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if _, err := NewEndpoint(hsConfig(testSecret), f.signer, EndpointOptions{Store: f.env.s, Passwords: f.env.passwords(), Registerer: reg}); err == nil {
		t.Error("registering twice succeeded")
	}
}

// TestEndpointPasswordGrantRehashes: the password grant checks passwords
// with the Basic authenticator (password.Authenticator.Check), so a login
// through it rewrites a hash made with outdated parameters, as a Basic
// login does: same Generation (tokens issued before stay valid), and the
// password keeps working.
func TestEndpointPasswordGrantRehashes(t *testing.T) {
	env := newEnv(t, fastHasher())
	old := password.New(password.Params{Memory: 32, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}, 1)
	phc, err := old.Hash("an old-parameter passphrase")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.s.CreateUser(env.ctx, &store.User{Username: "olga", Account: "acme", PasswordHash: phc}); err != nil {
		t.Fatal(err)
	}
	var reported []string
	pw := password.NewAuthenticator(env.s, env.h, password.AuthOptions{NeedsRehash: func(u string) { reported = append(reported, u) }})
	f := newFixtureEnv(t, env, func(o *EndpointOptions) { o.Passwords = pw })
	before := env.user(t, "olga")

	at, _ := f.wantTokens("login with an outdated hash", f.post(pwForm("olga", "an old-parameter passphrase")), true)
	if len(reported) != 1 || reported[0] != "olga" {
		t.Fatalf("NeedsRehash calls %v, want [olga]", reported)
	}
	var u *store.User
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if u = env.user(t, "olga"); u.PasswordHash != before.PasswordHash || time.Now().After(deadline) {
			break
		}
	}
	ok, again, err := env.h.Verify(env.ctx, u.PasswordHash, "an old-parameter passphrase")
	if !ok || again || err != nil {
		t.Fatalf("stored hash not rewritten with the current parameters: ok=%v needsRehash=%v err=%v", ok, again, err)
	}
	if u.Generation != before.Generation {
		t.Errorf("rehash changed Generation %d → %d", before.Generation, u.Generation)
	}
	if err := f.bearerErr(at); err != nil {
		t.Errorf("token issued before the rehash: %v", err)
	}
	f.wantTokens("login after the rehash", f.post(pwForm("olga", "an old-parameter passphrase")), true)
	if len(reported) != 1 {
		t.Errorf("NeedsRehash calls after the rehash %v", reported)
	}
}

// TestEndpointTimingParity: through the endpoint, an unknown user, a wrong
// password and a disabled user's right password cost the same (one argon2id
// each, in password.Authenticator.Check). Runs alternate so that load on
// the machine hits all alike; medians are compared. With a hash skipped on
// one path the ratio would be near 0.
func TestEndpointTimingParity(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	// About 10 ms per hash: large against the store lookup and the HTTP
	// handling, small enough for a unit test.
	env := newEnv(t, password.New(password.Params{Memory: 8 << 10, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}, 1))
	env.addUser(t, "dora", "acme", alicePW)
	st := store.StateDisabled
	if _, err := env.s.UpdateUser(env.ctx, "dora", store.UserUpdate{State: &st}); err != nil {
		t.Fatal(err)
	}
	f := newFixtureEnv(t, env, nil)
	kinds := []parityKind{
		{"unknown user", pwForm("mallory", "not the password").Encode()},
		{"wrong password", pwForm("alice", "not the password").Encode()},
		{"disabled user", pwForm("dora", alicePW).Encode()},
	}
	// A shared machine is noisy: measure up to three times, and fail only
	// if every attempt is out of bounds (a skipped hash fails them all).
	const rounds, attempts = 41, 3
	for attempt := 1; ; attempt++ {
		bad := measureParity(t, f, kinds, rounds)
		if bad == "" {
			return
		}
		if attempt == attempts {
			t.Fatal(bad)
		}
		t.Logf("attempt %d: %s; measuring again", attempt, bad)
	}
}

type parityKind struct{ name, body string }

// measureParity times rounds of each kind, alternating, and returns what is
// out of bounds ("" if nothing): each median within 0.75–1.33x of the first.
func measureParity(t *testing.T, f *fixture, kinds []parityKind, rounds int) string {
	t.Helper()
	times := make([][]time.Duration, len(kinds))
	for i := range rounds + 1 {
		for j := range kinds {
			k := (i + j) % len(kinds) // rotate the order
			start := time.Now()
			r := f.do("POST", formCT, kinds[k].body)
			d := time.Since(start)
			if r.status != 400 {
				t.Fatalf("%s: %d %s", kinds[k].name, r.status, r.raw)
			}
			if i > 0 { // the first round warms up
				times[k] = append(times[k], d)
			}
		}
	}
	med := make([]time.Duration, len(kinds))
	for k := range kinds {
		slices.Sort(times[k])
		med[k] = times[k][rounds/2]
	}
	for k := 1; k < len(kinds); k++ {
		ratio := float64(med[k]) / float64(med[0])
		t.Logf("median %s %v, %s %v: ratio %.2f", kinds[0].name, med[0], kinds[k].name, med[k], ratio)
		if ratio < 0.75 || ratio > 1/0.75 {
			return fmt.Sprintf("%s takes %.2fx the time of %s (medians %v vs %v)", kinds[k].name, ratio, kinds[0].name, med[k], med[0])
		}
	}
	return ""
}

func basicClient(idAndSecret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(idAndSecret))
}

// TestEndpointClientAuthentication: the public client "anonymous" is
// accepted in every form real clients send it (RFC 6749 §2.3.1: Basic with
// the form-urlencoded id and the empty secret, or the form's client_id with
// an empty or absent client_secret); any other client, any non-empty secret
// and malformed client credentials are invalid_client.
func TestEndpointClientAuthentication(t *testing.T) {
	f := newFixture(t, nil)
	cases := []struct {
		name   string
		header string // Authorization
		extra  string // appended to the password grant form
		ok     bool
	}{
		{"no client", "", "", true},
		{"form client_id", "", "&client_id=anonymous", true},
		{"form client_id, empty secret", "", "&client_id=anonymous&client_secret=", true},
		{"form empty secret only", "", "&client_secret=", true},
		{"basic anonymous:", basicClient("anonymous:"), "", true},
		{"basic, scheme in lower case", "basic " + base64.StdEncoding.EncodeToString([]byte("anonymous:")), "", true},
		{"basic, id form-urlencoded", basicClient("anon%79mous:"), "", true},
		{"basic and form client_id", basicClient("anonymous:"), "&client_id=anonymous", true},
		{"basic and form empty secret", basicClient("anonymous:"), "&client_secret=", true},

		{"form other client", "", "&client_id=webapp", false},
		{"form empty client_id", "", "&client_id=", false},
		{"form client_id case", "", "&client_id=Anonymous", false},
		{"form secret", "", "&client_secret=s3cret", false},
		{"form client_id and secret", "", "&client_id=anonymous&client_secret=s3cret", false},
		{"form secret of one space", "", "&client_id=anonymous&client_secret=+", false},
		{"basic with a secret", basicClient("anonymous:s3cret"), "", false},
		{"basic secret of one space", basicClient("anonymous:%20"), "", false},
		{"basic other client", basicClient("webapp:"), "", false},
		{"basic empty id", basicClient(":"), "", false},
		{"basic no colon", basicClient("anonymous"), "", false},
		{"basic id with encoded colon", basicClient("anonymous%3A:"), "", false},
		{"basic id with a plus", basicClient("anonymous+:"), "", false},
		{"basic bad escape", basicClient("anonymous%zz:"), "", false},
		{"basic bad base64", "Basic !!!", "", false},
		{"bearer", "Bearer abc.def.ghi", "", false},
		{"api key", "ApiKey " + base64.StdEncoding.EncodeToString([]byte("x:y")), "", false},
		{"basic and form disagree", basicClient("anonymous:"), "&client_id=webapp", false},
		{"basic and form secret", basicClient("anonymous:"), "&client_secret=s3cret", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.t = t
			var mods []func(*fasthttp.Request)
			if c.header != "" {
				mods = append(mods, func(r *fasthttp.Request) { r.Header.Set("Authorization", c.header) })
			}
			r := f.do("POST", formCT, pwForm("alice", alicePW).Encode()+c.extra, mods...)
			if c.ok {
				at, _ := f.wantTokens(c.name, r, true)
				claims, err := f.signer.Verifier().Verify(at)
				if err != nil || claims.ClientID != AnonymousClient {
					t.Errorf("client_id claim: %+v, %v", claims, err)
				}
				return
			}
			f.wantError(c.name, r, 401, "invalid_client")
			if ch := string(r.header.Peek("WWW-Authenticate")); ch != `Basic realm="kg-test"` {
				t.Errorf("WWW-Authenticate = %q", ch)
			}
			if strings.Contains(r.raw, "s3cret") {
				t.Errorf("the body echoes the secret: %s", r.raw)
			}
		})
	}
}

// Issue 12.6/13.8 at the token endpoint: successes, unavailability and a
// disabled user's right password give their reservation back (not
// guesses), wrong passwords keep it; the budget counts guesses only.
func TestEndpointOnlyGuessesSpendTheBudget(t *testing.T) {
	ipLim, userLim := failurelimit.New(3, 100, nil), failurelimit.New(3, 100, nil)
	f := newFixture(t, func(o *EndpointOptions) { o.IPLimiter, o.UserLimiter = ipLim, userLim })
	f.env.addUser(t, "dave", "acme", alicePW)
	st := store.StateDisabled
	if _, err := f.env.s.UpdateUser(context.Background(), "dave", store.UserUpdate{State: &st}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 { // more than either budget
		f.wantTokens(fmt.Sprintf("login %d", i), f.post(pwForm("alice", alicePW)), true)
		f.wantError(fmt.Sprintf("disabled user %d", i), f.post(pwForm("dave", alicePW)), 400, "invalid_grant")
	}
	for i := range 3 {
		f.wantError(fmt.Sprintf("guess %d", i), f.post(pwForm("mallory", fmt.Sprintf("g%d", i))), 400, "invalid_grant")
	}
	f.wantError("4th guess", f.post(pwForm("mallory", "g3")), 429, "invalid_request")
}
