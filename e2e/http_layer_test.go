package e2e

import (
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The three listeners that authenticate (the proxy, the admin API, the
// token endpoint) answer through one HTTP layer (internal/httpx, issue 20
// item 2): the same WWW-Authenticate challenges, quoted one way, and the
// same Retry-After for the same failure limiter. (The limiter itself hands
// out whole seconds, so the proxy's old truncation of a fractional wait is
// not visible here; proxy TestChainAuthenticatorAnswers and httpx
// TestRetryAfter pin the rounding up.)
func TestHTTPLayerChallengesAndRetryAfter(t *testing.T) {
	t.Parallel()
	up := startEchoProc(t)
	g := startGateway(t, serveOpts{
		routes: auOpsRoutes(up),
		extra:  "auth:\n  realm: e2e realm\n  failures:\n    per_ip_per_minute: 2\n    per_user_per_minute: 0\n",
	})
	c := newAuClient(5 * time.Second)
	defer c.close()
	proxyURL, adminURL := g.url("/x"), "http://"+g.admin+"/v1/user"
	token := func(form url.Values) (int, http.Header, string) {
		t.Helper()
		resp, err := c.c.PostForm(g.url("/oauth/token"), form)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	wrongGrant := url.Values{"grant_type": {"password"}, "username": {"nobody"}, "password": {"wrong"}, "client_id": {"anonymous"}}

	// Challenges, before any failure is counted.
	both := []string{`Basic realm="e2e realm"`, `Bearer realm="e2e realm"`}
	for _, tc := range []struct{ what, url string }{{"proxy", proxyURL}, {"admin", adminURL}} {
		r := c.get(t, tc.url, "")
		if got := r.header.Values("WWW-Authenticate"); r.status != 401 || !slices.Equal(got, both) {
			t.Errorf("%s without credentials: %d %q, want 401 %q", tc.what, r.status, got, both)
		}
	}
	if code, h, body := token(url.Values{"grant_type": {"password"}, "username": {"a"}, "password": {"b"}, "client_id": {"other"}}); code != 401 ||
		h.Get("WWW-Authenticate") != `Basic realm="e2e realm"` {
		t.Errorf("token endpoint, unknown client: %d %q %s", code, h.Values("WWW-Authenticate"), body)
	}

	// Use up the address's budget, then compare the three Retry-After.
	wrong := auBasic("nobody", "wrong password")
	for i := 0; c.get(t, proxyURL, wrong).status != 429; i++ {
		if i == 10 {
			t.Fatal("no 429 after 10 wrong passwords with per_ip_per_minute 2")
		}
	}
	retryAfter := func(what string, status int, h http.Header) int {
		t.Helper()
		s := h.Get("Retry-After")
		n, err := strconv.Atoi(s)
		if status != 429 || err != nil || n < 1 || n > 60 {
			t.Fatalf("%s: %d Retry-After %q, want 429 with 1..60", what, status, s)
		}
		return n
	}
	for attempt := 0; ; attempt++ {
		r := c.get(t, proxyURL, wrong)
		p1 := retryAfter("proxy", r.status, r.header)
		r = c.get(t, adminURL, wrong)
		a := retryAfter("admin", r.status, r.header)
		code, h, _ := token(wrongGrant)
		tk := retryAfter("token endpoint", code, h)
		r = c.get(t, proxyURL, wrong)
		p2 := retryAfter("proxy", r.status, r.header)
		if p1 != p2 { // a whole second passed between the requests: again
			if attempt == 5 {
				t.Fatalf("Retry-After never stable: %d then %d", p1, p2)
			}
			continue
		}
		if a != p1 || tk != p1 {
			t.Fatalf("Retry-After: proxy %d, admin %d, token endpoint %d; want one value", p1, a, tk)
		}
		if !strings.Contains(r.header.Get("Content-Type"), "application/json") {
			t.Errorf("429 Content-Type %q", r.header.Get("Content-Type"))
		}
		break
	}
}
