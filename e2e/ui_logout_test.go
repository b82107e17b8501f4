package e2e

// Logout ends a web UI session on the server (store.EndedSessions): a copy
// of the session cookie taken before the logout is refused afterwards by
// the instance that logged out and by another instance on the same Redis;
// on bolt, by the one instance. Plain HTTP (uiClient, ui_sessions_test.go),
// the cookie copied into another client as a thief would.

import (
	"net/http"
	"net/url"
	"regexp"
	"testing"

	"github.com/keygate/keygate/internal/testredis"
)

var uiCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// session returns the client's session cookie for base.
func (u *uiClient) session(base string) string {
	u.t.Helper()
	pu, err := url.Parse(base + "/ui/keys")
	if err != nil {
		u.t.Fatal(err)
	}
	for _, c := range u.c.Jar.Cookies(pu) {
		if c.Name == "kg_session" {
			return c.Value
		}
	}
	return ""
}

// withSession is a new client holding session cookie v for base.
func withSession(t *testing.T, base, v string) *uiClient {
	t.Helper()
	c := newUIClient(t)
	pu, err := url.Parse(base + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	c.c.Jar.SetCookies(pu, []*http.Cookie{{Name: "kg_session", Value: v, Path: "/ui"}}) //nolint:gosec // a client jar replaying a copied cookie, not a cookie keygate sets
	return c
}

func (u *uiClient) logout(base string) {
	u.t.Helper()
	_, _, page := u.do(base, "/ui/keys", nil)
	m := uiCSRF.FindStringSubmatch(page)
	if m == nil {
		u.t.Fatalf("no CSRF token:\n%s", page)
	}
	if st, loc, body := u.do(base, "/ui/logout", url.Values{"csrf": {m[1]}}); st != 303 || loc != "/ui/login" {
		u.t.Fatalf("logout: %d %s\n%s", st, loc, body)
	}
}

// keys is the status of GET /ui/keys: 200, or 303 to the login page.
func (u *uiClient) keys(base string) int {
	u.t.Helper()
	st, _, _ := u.do(base, "/ui/keys", nil)
	return st
}

func TestWebUILogoutEndsSession(t *testing.T) {
	t.Parallel()
	const secret = "KEYGATE_ADMIN_UI_SESSION_SECRET=e2e-ui-session-secret-0123456789abcdef" //nolint:gosec // test data, not a real credential
	t.Run("two instances on one Redis", func(t *testing.T) {
		t.Parallel()
		r := testredis.Start(t)
		up := startEchoProc(t)
		a := auRedisGateway(t, r.Addr(), up, auNoLimits, nil, secret)
		b := auRedisGateway(t, r.Addr(), up, auNoLimits, nil, secret)
		baseA, baseB := "http://"+a.admin, "http://"+b.admin
		owner := newUIClient(t)
		owner.login(baseA, "admin", admBootstrapPassword)
		v := owner.session(baseA)
		thiefB := withSession(t, baseB, v)
		if st := thiefB.keys(baseB); st != 200 {
			t.Fatalf("A's session on B before the logout: %d (the instances share the session secret)", st)
		}
		other := newUIClient(t)
		other.login(baseB, "admin", admBootstrapPassword)

		owner.logout(baseA)
		if st := withSession(t, baseA, v).keys(baseA); st != 303 {
			t.Errorf("the copied cookie on A after the logout: %d, want 303 to the login page", st)
		}
		if st := thiefB.keys(baseB); st != 303 {
			t.Errorf("the copied cookie on B after the logout: %d, want 303 to the login page", st)
		}
		if st := other.keys(baseA); st != 200 {
			t.Errorf("the admin's other session ended too: %d", st)
		}
	})
	t.Run("bolt", func(t *testing.T) {
		t.Parallel()
		g := startGateway(t, serveOpts{routes: "  - name: api\n    path_prefix: /\n    upstreams: [\"http://127.0.0.1:9\"]\n    auth: required\n", env: []string{secret}})
		base := "http://" + g.admin
		owner := newUIClient(t)
		owner.login(base, "admin", admBootstrapPassword)
		v := owner.session(base)
		owner.logout(base)
		if st := withSession(t, base, v).keys(base); st != 303 {
			t.Errorf("the copied cookie after the logout: %d, want 303", st)
		}
	})
}
