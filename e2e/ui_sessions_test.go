package e2e

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
)

// uiClient is a cookie-keeping HTTP client of the web UI that does not
// follow redirects.
type uiClient struct {
	t *testing.T
	c *http.Client
}

func newUIClient(t *testing.T) *uiClient {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &uiClient{t: t, c: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request (a same-origin form post when form is not nil) and
// returns the status, the Location and the body.
func (u *uiClient) do(base, path string, form url.Values) (int, string, string) {
	u.t.Helper()
	method, body := "GET", io.Reader(nil)
	if form != nil {
		method, body = "POST", strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		u.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	res, err := u.c.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		u.t.Fatal(err)
	}
	loc := res.Header.Get("Location")
	if i := strings.Index(loc, "/ui/"); i >= 0 {
		loc = loc[i:]
	}
	return res.StatusCode, loc, string(b)
}

var uiLoginToken = regexp.MustCompile(`name="token" value="([^"]+)"`)

func (u *uiClient) login(base, user, pw string) {
	u.t.Helper()
	_, _, page := u.do(base, "/ui/login", nil)
	m := uiLoginToken.FindStringSubmatch(page)
	if m == nil {
		u.t.Fatalf("no login form:\n%s", page)
	}
	if st, loc, body := u.do(base, "/ui/login", url.Values{"token": {m[1]}, "username": {user}, "password": {pw}}); st != 303 || loc != "/ui/keys" {
		u.t.Fatalf("login: %d %s\n%s", st, loc, body)
	}
}

// Two instances on one Redis (and one tokens secret, from which the UI
// derives its session keys): a session opened on A works on B, and a
// change on B (the user's password, then their account's state) ends it on
// A at once.
func TestWebUISessionsAcrossInstances(t *testing.T) {
	r := testredis.Start(t)
	upstream := startEchoProc(t)
	a := auRedisGateway(t, r.Addr(), upstream, "", nil)
	b := auRedisGateway(t, r.Addr(), upstream, "", nil)
	adm := newAdmClient(t, a)
	root := admBasic("admin", admBootstrapPassword)
	adm.want(201, "POST", "/v1/accounts", root, map[string]any{"name": "acme"})
	adm.want(201, "POST", "/v1/accounts/acme/users", root, map[string]any{"username": "alice", "password": "alice-Pa55word-long", "roles": []string{"read"}})
	baseA, baseB := "http://"+a.admin, "http://"+b.admin

	c := newUIClient(t)
	c.login(baseA, "alice", "alice-Pa55word-long")
	for _, base := range []string{baseA, baseB} {
		if st, loc, _ := c.do(base, "/ui/keys", nil); st != 200 {
			t.Fatalf("%s/ui/keys: %d %s", base, st, loc)
		}
	}
	// The password changed on B: A refuses the session on the next request.
	admB := newAdmClient(t, b)
	admB.want(200, "PATCH", "/v1/accounts/acme/users/alice", root, map[string]any{"password": "alice-N3w-Pa55word"})
	if st, loc, _ := c.do(baseA, "/ui/keys", nil); st != 303 || loc != "/ui/login" {
		t.Fatalf("after the password change on B, A answered %d %s", st, loc)
	}
	// A new login, then the account is disabled on B.
	c.login(baseA, "alice", "alice-N3w-Pa55word")
	if st, _, _ := c.do(baseB, "/ui/keys", nil); st != 200 {
		t.Fatalf("new session on B: %d", st)
	}
	admB.want(200, "PATCH", "/v1/accounts/acme", root, map[string]any{"state": "disabled"})
	if st, loc, _ := c.do(baseA, "/ui/keys", nil); st != 303 || loc != "/ui/login" {
		t.Fatalf("after the account was disabled on B, A answered %d %s", st, loc)
	}
}
