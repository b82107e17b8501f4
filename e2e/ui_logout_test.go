package e2e

// Logout ends a web UI session on the server (store.EndedSessions): a copy
// of the session cookie taken before the logout is refused afterwards by
// the instance that logged out and by another instance on the same Redis;
// on bolt, by the one instance. Plain HTTP (no browser): the cookie is
// handled by hand, as a thief would.

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
)

// uiHTTP is a browser-less client of a gateway's web UI.
type uiHTTP struct {
	t *testing.T
	c *http.Client
}

func newUIHTTP(t *testing.T) *uiHTTP {
	return &uiHTTP{t: t, c: &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request with cookies (name → value) and returns status,
// Location, body and the cookies set.
func (h *uiHTTP) do(method, base, path string, cookies map[string]string, form url.Values) (int, string, string, map[string]string) {
	h.t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for k, v := range cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	res, err := h.c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	b := readAll(h.t, res)
	set := map[string]string{}
	for _, c := range res.Cookies() {
		set[c.Name] = c.Value
	}
	return res.StatusCode, res.Header.Get("Location"), string(b), set
}

var (
	uiReToken = regexp.MustCompile(`name="token" value="([^"]+)"`)
	uiReCSRF  = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// login logs in on base and returns the session cookie's value.
func (h *uiHTTP) login(base, user, pw string) string {
	h.t.Helper()
	_, _, page, set := h.do("GET", base, "/ui/login", nil, nil)
	m := uiReToken.FindStringSubmatch(page)
	if m == nil {
		h.t.Fatalf("no login token:\n%s", page)
	}
	st, loc, body, set2 := h.do("POST", base, "/ui/login", set, url.Values{"token": {m[1]}, "username": {user}, "password": {pw}})
	if st != 303 || !strings.HasSuffix(loc, "/ui/keys") || set2["kg_session"] == "" {
		h.t.Fatalf("login %s: %d %s\n%s", user, st, loc, body)
	}
	return set2["kg_session"]
}

// page is GET /ui/keys with session cookie v: 200, or 303 to the login page.
func (h *uiHTTP) keysStatus(base, v string) int {
	h.t.Helper()
	st, _, _, _ := h.do("GET", base, "/ui/keys", map[string]string{"kg_session": v}, nil)
	return st
}

func (h *uiHTTP) logout(base, v string) {
	h.t.Helper()
	_, _, page, _ := h.do("GET", base, "/ui/keys", map[string]string{"kg_session": v}, nil)
	m := uiReCSRF.FindStringSubmatch(page)
	if m == nil {
		h.t.Fatalf("no CSRF token:\n%s", page)
	}
	if st, loc, body, _ := h.do("POST", base, "/ui/logout", map[string]string{"kg_session": v}, url.Values{"csrf": {m[1]}}); st != 303 || !strings.HasSuffix(loc, "/ui/login") {
		h.t.Fatalf("logout: %d %s\n%s", st, loc, body)
	}
}

func TestWebUILogoutEndsSession(t *testing.T) {
	t.Parallel()
	const secret = "KEYGATE_ADMIN_UI_SESSION_SECRET=e2e-ui-session-secret-0123456789abcdef"
	t.Run("two instances on one Redis", func(t *testing.T) {
		t.Parallel()
		r := testredis.Start(t)
		up := startEchoProc(t)
		a := auRedisGateway(t, r.Addr(), up, auNoLimits, nil, secret)
		b := auRedisGateway(t, r.Addr(), up, auNoLimits, nil, secret)
		h := newUIHTTP(t)
		baseA, baseB := "http://"+a.admin, "http://"+b.admin
		v := h.login(baseA, "admin", admBootstrapPassword)
		other := h.login(baseB, "admin", admBootstrapPassword)
		if st := h.keysStatus(baseB, v); st != 200 {
			t.Fatalf("A's session on B before the logout: %d (instances share the session secret)", st)
		}
		h.logout(baseA, v)
		for name, base := range map[string]string{"A": baseA, "B": baseB} {
			if st := h.keysStatus(base, v); st != 303 {
				t.Errorf("the copied cookie on %s after the logout: %d, want 303 to the login page", name, st)
			}
		}
		if st := h.keysStatus(baseA, other); st != 200 {
			t.Errorf("the admin's other session ended too: %d", st)
		}
	})
	t.Run("bolt", func(t *testing.T) {
		t.Parallel()
		g := startGateway(t, serveOpts{routes: "  - name: api\n    path_prefix: /\n    upstreams: [\"http://127.0.0.1:9\"]\n    auth: required\n", env: []string{secret}})
		h := newUIHTTP(t)
		base := "http://" + g.admin
		v := h.login(base, "admin", admBootstrapPassword)
		h.logout(base, v)
		if st := h.keysStatus(base, v); st != 303 {
			t.Errorf("the copied cookie after the logout: %d, want 303", st)
		}
	})
}
