package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/failurelimit"
	"github.com/keygate/keygate/authn/keyauth"
	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
	"github.com/keygate/keygate/upstreamcred"
)

var testHasher = password.New(password.Params{Memory: 1024, Iterations: 1, Parallelism: 1}, 8)

const (
	pwRoot  = "root-Pa55word-long"
	pwAlice = "alice-Pa55word-long"
	pwAAdm  = "aadmin-Pa55word-long"
	pwBob   = "bob-Pa55word-long"
)

// env is the UI over a real bolt store, authentication chain (with the
// per-user failure limit) and admin API, served in memory.
type env struct {
	t     *testing.T
	st    *boltstore.Store
	ui    *UI
	clock atomic.Int64
	audit *observer.ObservedLogs
}

func (e *env) now() time.Time { return time.Unix(0, e.clock.Load()) }

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t}
	e.clock.Store(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC).UnixNano())
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "kg.db"), boltstore.Options{Now: e.now})
	must(t, err)
	t.Cleanup(func() { _ = st.Close() })
	e.st = st
	ctx := context.Background()
	_, err = store.Bootstrap(ctx, st, testHasher.Hash, pwRoot, io.Discard)
	must(t, err)
	for _, a := range []string{"acme", "globex"} {
		must(t, st.CreateAccount(ctx, &store.Account{Name: a}))
	}
	e.user("alice", "acme", store.TypeUser, pwAlice, "read")
	e.user("aadmin", "acme", store.TypeAccountAdmin, pwAAdm, "read")
	e.user("bob", "globex", store.TypeUser, pwBob, "read")
	e.ui, e.audit = newUI(t, st, e.now)
	return e
}

// newUI is a UI over st (a real store) with its own authentication chain
// and admin API, as one keygate instance has; its audit lines are returned.
func newUI(t *testing.T, st store.Driver, now func() time.Time) (*UI, *observer.ObservedLogs) {
	t.Helper()
	chain, err := authn.NewChain(authn.ChainConfig{
		Authenticators: map[authn.CredKind]authn.Authenticator{
			authn.KindAPIKey: keyauth.NewAuthenticator(st, keyauth.AuthOptions{Now: now}),
			authn.KindBasic:  password.NewAuthenticator(st, testHasher, password.AuthOptions{}),
		},
		UserLimiter: failurelimit.New(3, 1000, now),
		Now:         now,
	})
	must(t, err)
	core, logs := observer.New(zapcore.InfoLevel)
	ring, err := upstreamcred.NewKeyring(bytes.Repeat([]byte{0x42}, 32), nil)
	must(t, err)
	ucred := upstreamcred.New(upstreamcred.Options{Store: st, Keys: ring, Now: now})
	t.Cleanup(ucred.Close)
	api, err := admin.NewAPI(admin.APIDeps{Store: st, Auth: chain, Hasher: testHasher, Logger: zap.New(core), UpstreamCredentials: ucred,
		RateLimits: configs.RateLimits{Policies: []configs.RatePolicy{{Name: "std", Requests: 10, Per: configs.Duration(time.Second)},
			{Name: "gold", Requests: 100, Per: configs.Duration(time.Second)}}},
		APIKeys: configs.APIKeys{MaxLifetime: configs.Duration(30 * 24 * time.Hour)}, Realm: "keygate", Now: now})
	must(t, err)
	u, err := New(Options{API: api, Store: st, Auth: chain, Secret: bytes.Repeat([]byte("k"), 32), Now: now})
	must(t, err)
	return u, logs
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) user(name, account string, typ store.UserType, pw string, roles ...string) {
	e.t.Helper()
	h, err := testHasher.Hash(pw)
	must(e.t, err)
	must(e.t, e.st.CreateUser(context.Background(), &store.User{Username: name, Account: account, Type: typ, Roles: roles, PasswordHash: h}))
}

// browser is a cookie jar in front of the UI.
type browser struct {
	e       *env
	cookies map[string]string
}

func (e *env) browser() *browser { return &browser{e: e, cookies: map[string]string{}} }

type page struct {
	status int
	header map[string]string
	body   string
	loc    string
}

// req sends one request; form is the urlencoded body of a POST. hdr adds
// headers (a browser's same-origin POST by default).
func (b *browser) req(method, path string, form url.Values, hdr ...string) page {
	b.e.t.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}, nil)
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(path)
	ctx.Request.Header.SetHost("127.0.0.1:8081")
	for k, v := range b.cookies {
		ctx.Request.Header.SetCookie(k, v)
	}
	if method == fasthttp.MethodPost {
		ctx.Request.Header.SetContentType("application/x-www-form-urlencoded")
		ctx.Request.SetBodyString(form.Encode())
		ctx.Request.Header.Set("Sec-Fetch-Site", "same-origin")
		ctx.Request.Header.Set("Origin", "http://127.0.0.1:8081")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			ctx.Request.Header.Del(hdr[i])
		} else {
			ctx.Request.Header.Set(hdr[i], hdr[i+1])
		}
	}
	b.e.ui.Handler(&ctx)
	p := page{status: ctx.Response.StatusCode(), header: map[string]string{}, body: string(ctx.Response.Body())}
	for k, v := range ctx.Response.Header.All() {
		p.header[string(k)] = string(v)
	}
	p.loc = strings.TrimPrefix(string(ctx.Response.Header.Peek("Location")), "http://127.0.0.1:8081")
	for k, v := range ctx.Response.Header.Cookies() {
		var c fasthttp.Cookie
		must(b.e.t, c.ParseBytes(v))
		if c.Expire().Before(time.Unix(1e9, 0)) && c.Expire() != fasthttp.CookieExpireUnlimited || len(c.Value()) == 0 {
			delete(b.cookies, string(k))
		} else {
			b.cookies[string(k)] = string(c.Value())
		}
	}
	return p
}

var (
	reToken = regexp.MustCompile(`name="token" value="([^"]+)"`)
	reCSRF  = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

func field(t testing.TB, re *regexp.Regexp, body string) string {
	t.Helper()
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in the page:\n%s", re, body)
	}
	return m[1]
}

// login posts the login form and returns the answer.
func (b *browser) login(user, pw string) page {
	b.e.t.Helper()
	lp := b.req("GET", "/ui/login", nil)
	return b.req("POST", "/ui/login", url.Values{"token": {field(b.e.t, reToken, lp.body)}, "username": {user}, "password": {pw}})
}

func (b *browser) mustLogin(user, pw string) {
	b.e.t.Helper()
	if p := b.login(user, pw); p.status != 303 || p.loc != "/ui/keys" {
		b.e.t.Fatalf("login %s: %d %s\n%s", user, p.status, p.loc, p.body)
	}
}

// csrf is the CSRF token of the page at path.
func (b *browser) csrf(path string) string {
	b.e.t.Helper()
	return field(b.e.t, reCSRF, b.req("GET", path, nil).body)
}

func TestHeadersOnEveryResponse(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	pages := []string{"/ui/login", "/ui/static/style.css", "/ui/static/copy.js", "/ui/keys"}
	b.mustLogin("alice", pwAlice)
	pages = append(pages, "/ui/keys/new", "/ui/keys/created", "/ui/password", "/ui/accounts/globex", "/ui")
	for _, p := range pages {
		r := b.req("GET", p, nil)
		for k, v := range map[string]string{
			"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
			"X-Frame-Options":         "DENY",
		} {
			if r.header[k] != v {
				t.Errorf("%s: %s = %q, want %q", p, k, r.header[k], v)
			}
		}
		if cc := r.header["Cache-Control"]; !strings.HasPrefix(p, "/ui/static/") && cc != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", p, cc)
		}
		if strings.Contains(r.body, "<script>") || strings.Contains(r.body, "style=") || strings.Contains(r.body, "<style") {
			t.Errorf("%s has inline script or style", p)
		}
	}
}

// TestUnknownPages: addresses under /ui/ that name no page get the HTML
// error page with the UI's headers (not the admin API's JSON), signed in or
// not, and a page asked with a method it does not take says which it does.
func TestUnknownPages(t *testing.T) {
	e := newEnv(t)
	anon, alice := e.browser(), e.browser()
	alice.mustLogin("alice", pwAlice)
	for _, tc := range []struct {
		method, path string
		status       int
		text, allow  string
	}{
		{"GET", "/ui/nope", 404, "There is no such page.", ""},
		{"GET", "/ui/keys/", 404, "There is no such page.", ""},
		{"GET", "/ui/accounts/acme/users/x/keys/y/z", 404, "There is no such page.", ""},
		{"GET", "/ui/a//b", 400, "The address is malformed.", ""},
		{"DELETE", "/ui/keys", 405, "does not accept that kind of request", "GET, HEAD"},
	} {
		for who, b := range map[string]*browser{"anonymous": anon, "alice": alice} {
			r := b.req(tc.method, tc.path, nil)
			if r.status != tc.status || !strings.Contains(r.body, tc.text) {
				t.Errorf("%s %s %s: %d %q, want %d with %q", who, tc.method, tc.path, r.status, r.body, tc.status, tc.text)
			}
			if ct := r.header["Content-Type"]; ct != "text/html; charset=utf-8" {
				t.Errorf("%s %s %s: Content-Type %q, want the HTML page", who, tc.method, tc.path, ct)
			}
			if r.header["Content-Security-Policy"] == "" || r.header["Cache-Control"] != "no-store" {
				t.Errorf("%s %s %s: the UI's headers are missing: %v", who, tc.method, tc.path, r.header)
			}
			if tc.allow != "" && r.header["Allow"] != tc.allow {
				t.Errorf("%s %s %s: Allow %q, want %q", who, tc.method, tc.path, r.header["Allow"], tc.allow)
			}
		}
	}
}

func TestLogin(t *testing.T) {
	e := newEnv(t)
	// The Basic "_api_key" form is not a login, whatever follows.
	tests := []struct {
		name, user, pw string
		status         int
	}{
		{"wrong password", "alice", "nope-nope-nope", 401},
		{"unknown user", "nobody", "nope-nope-nope", 401},
		{"api key form", "_api_key", "kg_abc_def", 401},
		{"empty", "", "", 401},
		{"colon in name", "al:ice", pwAlice, 401},
		{"ok", "alice", pwAlice, 303},
		{"case-mapped name", "ALICE", pwAlice, 303},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := e.browser()
			p := b.login(tc.user, tc.pw)
			if p.status != tc.status {
				t.Fatalf("status %d, want %d\n%s", p.status, tc.status, p.body)
			}
			if tc.status == 303 {
				c := p.header["Set-Cookie"]
				for _, want := range []string{"kg_session=", "HttpOnly", "SameSite=Strict", "path=/ui"} {
					if !strings.Contains(c, want) {
						t.Errorf("session cookie %q lacks %s", c, want)
					}
				}
				if strings.Contains(c, "secure") {
					t.Errorf("Secure cookie without TLS: %q", c)
				}
			} else if !strings.Contains(p.body, "Wrong username or password.") {
				t.Errorf("no error shown:\n%s", p.body)
			}
			if strings.Contains(p.body, tc.pw) && tc.pw != "" {
				t.Error("the password is echoed in the page")
			}
		})
	}
	// No login token (another site's form): refused.
	b := e.browser()
	if p := b.req("POST", "/ui/login", url.Values{"username": {"alice"}, "password": {pwAlice}}); p.status != 403 {
		t.Errorf("login without token: %d", p.status)
	}
	// Failures per user are limited as Basic's: 429 with Retry-After, then
	// even the right password waits.
	for range 3 {
		b.login("bob", "wrong-wrong-wrong")
	}
	p := b.login("bob", "wrong-wrong-wrong")
	if p.status != 429 || p.header["Retry-After"] == "" {
		t.Fatalf("after 4 failures: %d Retry-After %q", p.status, p.header["Retry-After"])
	}
}

func TestSessionSecure(t *testing.T) {
	e := newEnv(t)
	e.ui.tls = true
	b := e.browser()
	p := b.login("alice", pwAlice)
	if !strings.Contains(strings.ToLower(p.header["Set-Cookie"]), "secure") {
		t.Errorf("cookie under TLS without Secure: %q", p.header["Set-Cookie"])
	}
}

// A session ends when the user's generation changes (any instance writes
// the store), when the user or account is disabled, and at idle and
// absolute expiry.
func TestSessionEnds(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		change func(e *env)
	}{
		{"roles changed", func(e *env) {
			roles := []string{"read", "write"}
			_, err := e.st.UpdateUser(ctx, "alice", store.UserUpdate{Roles: &roles})
			must(e.t, err)
		}},
		{"disabled", func(e *env) {
			s := store.StateDisabled
			_, err := e.st.UpdateUser(ctx, "alice", store.UserUpdate{State: &s})
			must(e.t, err)
		}},
		{"account disabled", func(e *env) {
			_, err := e.st.SetAccountState(ctx, "acme", store.StateDisabled)
			must(e.t, err)
		}},
		{"deleted", func(e *env) { must(e.t, e.st.DeleteUser(ctx, "alice")) }},
		{"idle", func(e *env) { e.clock.Add(int64(DefaultIdleTimeout + time.Minute)) }},
		{"absolute", nil}, // active every 20 minutes, past the absolute limit
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			b := e.browser()
			b.mustLogin("alice", pwAlice)
			if p := b.req("GET", "/ui/keys", nil); p.status != 200 {
				t.Fatalf("before: %d", p.status)
			}
			if tc.name == "absolute" {
				// Keep the session alive meanwhile: it must still end.
				for range int(DefaultMaxAge/(20*time.Minute)) + 1 {
					e.clock.Add(int64(20 * time.Minute))
					b.req("GET", "/ui/keys", nil)
				}
			} else {
				tc.change(e)
			}
			p := b.req("GET", "/ui/keys", nil)
			if p.status != 303 || p.loc != "/ui/login" {
				t.Fatalf("after %s: %d %s", tc.name, p.status, p.loc)
			}
			if _, ok := b.cookies[sessionCookie]; ok {
				t.Error("the session cookie was not cleared")
			}
		})
	}
}

// Every state-changing form needs the session's CSRF token and a
// same-origin request.
func TestCSRF(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.mustLogin("alice", pwAlice)
	tok := b.csrf("/ui/keys/new")
	other := e.browser()
	other.mustLogin("bob", pwBob)
	tests := []struct {
		name   string
		form   url.Values
		hdr    []string
		status int
	}{
		{"no token", url.Values{"name": {"a"}}, nil, 403},
		{"bad token", url.Values{"name": {"b"}, "csrf": {"AAAA"}}, nil, 403},
		{"another session's token", url.Values{"name": {"c"}, "csrf": {other.csrf("/ui/keys/new")}}, nil, 403},
		{"cross-site", url.Values{"name": {"d"}, "csrf": {tok}}, []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"same-site other port", url.Values{"name": {"e"}, "csrf": {tok}}, []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"foreign origin", url.Values{"name": {"f"}, "csrf": {tok}}, []string{"Sec-Fetch-Site", "", "Origin", "http://evil.example"}, 403},
		{"null origin, same-origin fetch", url.Values{"name": {"g"}, "csrf": {tok}}, []string{"Origin", "null"}, 303},
		{"ok", url.Values{"name": {"h"}, "csrf": {tok}}, nil, 303},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := b.req("POST", "/ui/keys/new", tc.form, tc.hdr...)
			if p.status != tc.status {
				t.Fatalf("status %d, want %d\n%s", p.status, tc.status, p.body)
			}
			page, err := e.st.ListAPIKeys(context.Background(), store.KeyFilter{Account: "acme", Username: "alice", Name: tc.form.Get("name"), Status: store.StatusAll})
			must(t, err)
			if created := len(page.Keys) == 1; created != (tc.status == 303) {
				t.Fatalf("key %q created: %v", tc.form.Get("name"), created)
			}
		})
	}
	// Logout is a form too.
	if p := b.req("POST", "/ui/logout", url.Values{}); p.status != 403 {
		t.Errorf("logout without token: %d", p.status)
	}
}

// The created key's value is on the one-time page once, escaped pages
// never show it again, and names and descriptions are escaped.
func TestOneTimeValueAndEscaping(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.mustLogin("alice", pwAlice)
	tok := b.csrf("/ui/keys/new")
	p := b.req("POST", "/ui/keys/new", url.Values{"csrf": {tok}, "name": {`x"><img src=x onerror=alert(1)>`}, "description": {"<script>alert(2)</script>"}})
	if p.status != 303 || p.loc != "/ui/keys/created" {
		t.Fatalf("create: %d %s\n%s", p.status, p.loc, p.body)
	}
	if strings.Contains(p.header["Set-Cookie"], "kg_") && !strings.Contains(p.header["Set-Cookie"], "HttpOnly") {
		t.Error("the one-time cookie is not HttpOnly")
	}
	created := b.req("GET", "/ui/keys/created", nil)
	m := regexp.MustCompile(`id="api-key"[^>]*value="(kg_[^"]+)"`).FindStringSubmatch(created.body)
	if m == nil {
		t.Fatalf("no value on the one-time page:\n%s", created.body)
	}
	value := m[1]
	if strings.Contains(created.body, "<img src=x") {
		t.Error("the key name is not escaped")
	}
	for _, path := range []string{"/ui/keys/created", "/ui/keys", "/ui/keys?f=1"} {
		q := b.req("GET", path, nil)
		if strings.Contains(q.body, value) {
			t.Errorf("%s shows the key value again", path)
		}
		if strings.Contains(q.body, "<script>alert(2)") || strings.Contains(q.body, "<img src=x") {
			t.Errorf("%s: unescaped name or description", path)
		}
	}
	// The value is in no audit line.
	for _, l := range e.audit.All() {
		for k, v := range l.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, value) {
				t.Errorf("audit field %s holds the key value", k)
			}
		}
	}
	// Another session cannot open the one-time cookie.
	other := e.browser()
	other.mustLogin("bob", pwBob)
	other.cookies[flashCookie] = b.e.ui.keys.seal([]byte(`{"key":{"api_key":"kg_x"}}`), "another-sid")
	if q := other.req("GET", "/ui/keys/created", nil); strings.Contains(q.body, "kg_x") {
		t.Error("a one-time cookie of another session was shown")
	}
}

// An account admin reaches only their account: another account's pages
// and forms answer 404 and change nothing; users reach no admin page.
func TestAccountScope(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	b := e.browser()
	b.mustLogin("aadmin", pwAAdm)
	if p := b.req("GET", "/ui/accounts", nil); p.status != 303 || p.loc != "/ui/accounts/acme" {
		t.Fatalf("account admin's accounts page: %d %s", p.status, p.loc)
	}
	tok := b.csrf("/ui/accounts/acme")
	for _, tc := range []struct {
		method, path string
		form         url.Values
	}{
		{"GET", "/ui/accounts/globex", nil},
		{"GET", "/ui/accounts/globex/users/bob", nil},
		{"GET", "/ui/accounts/globex/users/bob/keys/new", nil},
		{"POST", "/ui/accounts/globex/users", url.Values{"csrf": {tok}, "username": {"mallory"}, "password": {"mallory-Pa55word-long"}}},
		{"POST", "/ui/accounts/globex/users/bob", url.Values{"csrf": {tok}, "type": {"user"}, "roles": {""}, "state": {"disabled"}}},
		{"POST", "/ui/accounts/globex/users/bob/keys/new", url.Values{"csrf": {tok}, "name": {"sneaky"}}},
		{"POST", "/ui/accounts/globex/state", url.Values{"csrf": {tok}, "state": {"disabled"}}},
	} {
		p := b.req(tc.method, tc.path, tc.form)
		if p.status != 404 && !(tc.path == "/ui/accounts/globex/state" && p.status == 403) {
			t.Errorf("%s %s: %d, want 404", tc.method, tc.path, p.status)
		}
	}
	bob, err := e.st.GetUser(ctx, "bob")
	must(t, err)
	acc, err := e.st.GetAccount(ctx, "globex")
	must(t, err)
	keys, err := e.st.ListAPIKeys(ctx, store.KeyFilter{Account: "globex", Status: store.StatusAll})
	must(t, err)
	if bob.State != store.StateEnabled || acc.State != store.StateEnabled || len(keys.Keys) != 0 {
		t.Fatalf("globex changed: bob %s, account %s, %d keys", bob.State, acc.State, len(keys.Keys))
	}
	if _, err := e.st.GetUser(ctx, "mallory"); err == nil {
		t.Fatal("mallory was created")
	}
	// A plain user: no account pages.
	u := e.browser()
	u.mustLogin("alice", pwAlice)
	if p := u.req("GET", "/ui/accounts", nil); p.status != 403 {
		t.Errorf("user's accounts page: %d", p.status)
	}
	if p := u.req("GET", "/ui/accounts/acme", nil); p.status != 403 && p.status != 404 {
		t.Errorf("user's account page: %d", p.status)
	}
}

func TestSessionCookie(t *testing.T) {
	k, err := deriveKeys(bytes.Repeat([]byte("s"), 32))
	must(t, err)
	k2, err := deriveKeys(bytes.Repeat([]byte("t"), 32))
	must(t, err)
	s := &session{V: 1, User: "alice", Gen: 3, Start: 1000, Seen: 1000, SID: "abc"}
	v := k.encodeSession(s)
	if got, err := k.decodeSession(v); err != nil || *got != *s {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	p, sig, _ := strings.Cut(v, ".")
	forged := b64.EncodeToString([]byte(`{"v":1,"u":"admin","g":3,"s":1000,"l":1000,"i":"abc"}`))
	for name, bad := range map[string]string{
		"other key":      k2.encodeSession(s),
		"no signature":   p,
		"bad signature":  p + ".AAAA",
		"swapped":        sig + "." + p,
		"forged payload": forged + "." + sig,
		"empty":          "",
		"huge":           strings.Repeat("a", 5000) + "." + sig,
	} {
		if _, err := k.decodeSession(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		at      time.Time
		expired bool
	}{
		{now, false},
		{now.Add(29 * time.Minute), false},
		{now.Add(31 * time.Minute), true},
		{now.Add(-2 * time.Minute), true}, // seen in the future
	} {
		if got := s.expired(tc.at, 30*time.Minute, 12*time.Hour); got != tc.expired {
			t.Errorf("at %v: expired %v, want %v", tc.at.Sub(now), got, tc.expired)
		}
	}
	if !k.checkCSRF("sid", k.csrfToken("sid")) || k.checkCSRF("sid2", k.csrfToken("sid")) || k.checkCSRF("sid", "") {
		t.Error("CSRF tokens are not bound to their session")
	}
	if k.checkLogin("", k.loginToken("")) {
		t.Error("an empty login nonce was accepted")
	}
}

func FuzzDecodeSession(f *testing.F) {
	k, err := deriveKeys(bytes.Repeat([]byte("s"), 32))
	must(f, err)
	f.Add(k.encodeSession(&session{V: 1, User: "alice", Gen: 1, Start: 1, Seen: 1, SID: "x"}))
	f.Add("e30.AAAA")
	f.Add(".")
	f.Fuzz(func(t *testing.T, v string) {
		s, err := k.decodeSession(v)
		if err == nil && (s.User == "" || s.SID == "" || s.V != 1) {
			t.Fatalf("accepted an incomplete session %+v", s)
		}
		k.open(v, "sid")
	})
}

// keyField and userField put each API error of a form next to its field.
func TestErrorFields(t *testing.T) {
	for _, tc := range []struct {
		code, msg, key, user string
	}{
		{"conflict", "this user already has an active key with this name: choose another name or revoke that key", "name", "username"},
		{"invalid", "the expiry is in the past: give a future expires_at or a positive expires_in", "expires", "username"},
		{"invalid", "the expiry is beyond api_keys.max_lifetime (720h0m0s from now): choose an earlier one", "expires", "username"},
		{"unknown_role", `role "admin" is not one of the key owner's roles`, "roles", "roles"},
		{"forbidden", `cannot create a key with role "x", which you do not hold`, "roles", "roles"},
		{"invalid", `name is required: give the key a name`, "name", "username"},
		{"invalid", "description longer than 1024 bytes", "description", "username"},
		{"weak_password", "the password is too common", "", "password"},
		{"last_admin", "this is the last enabled global admin", "", "type"},
	} {
		he := &httpx.Error{Status: 422, Code: tc.code, Message: tc.msg}
		if got := keyField(he); got != tc.key {
			t.Errorf("keyField(%s %q) = %q, want %q", tc.code, tc.msg, got, tc.key)
		}
		if got := userField(he); got != tc.user {
			t.Errorf("userField(%s %q) = %q, want %q", tc.code, tc.msg, got, tc.user)
		}
	}
}

// The vendored axe-core is the version pinned in tools/axe-core (make
// axe-core copies it).
func TestVendoredAxeMatchesLock(t *testing.T) {
	lock, err := os.ReadFile("../../tools/axe-core/package-lock.json")
	must(t, err)
	var l struct {
		Packages map[string]struct{ Version string } `json:"packages"`
	}
	must(t, json.Unmarshal(lock, &l))
	want := l.Packages["node_modules/axe-core"].Version
	js, err := os.ReadFile("testdata/axe.min.js")
	must(t, err)
	if want == "" || !bytes.HasPrefix(js, []byte("/*! axe v"+want+"\n")) {
		t.Fatalf("testdata/axe.min.js is not axe-core %q of tools/axe-core: run make axe-core", want)
	}
}
