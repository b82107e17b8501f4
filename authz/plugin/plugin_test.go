package plugin

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authz"
)

const testSecret = "0123456789abcdef0123456789abcdef"

const testRules = `
rules:
  - effect: allow
    principals: [alice]
    actions: [GET]
    targets: ["api:/**"]
`

func startServer(t *testing.T, secret string) (*Server, string) {
	t.Helper()
	r, err := ParseRules([]byte(testRules))
	if err != nil {
		t.Fatal(err)
	}
	s := New(r, secret, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-done
	})
	return s, ln.Addr().String()
}

var testClient = &fasthttp.Client{
	DisablePathNormalizing: true,
	ReadTimeout:            5 * time.Second,
	WriteTimeout:           5 * time.Second,
	MaxConnWaitTimeout:     5 * time.Second,
	MaxIdleConnDuration:    time.Second,
}

type call struct {
	method, path string
	body         string
	ts, sig      string // "" and "" with sign: computed
	sign         bool
}

func do(t *testing.T, addr string, c call) (int, []byte) {
	t.Helper()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(c.method)
	req.SetRequestURI("http://" + addr + c.path)
	req.URI().DisablePathNormalizing = true
	if c.body != "" {
		req.SetBodyString(c.body)
	}
	ts, sig := c.ts, c.sig
	if c.sign {
		if ts == "" {
			ts = strconv.FormatInt(time.Now().Unix(), 10)
		}
		if sig == "" {
			p, _, _ := strings.Cut(c.path, "?")
			sig = authz.Sign(testSecret, c.method, p, ts, []byte(c.body))
		}
	}
	if ts != "" {
		req.Header.Set(authz.HeaderTimestamp, ts)
	}
	if sig != "" {
		req.Header.Set(authz.HeaderSignature, sig)
	}
	if err := testClient.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...)
}

const authorizeBody = `{"principal":{"name":"alice","type":"user"},"domain":"acme","actions":[{"action":"GET","target":"api:/a"},{"action":"POST","target":"api:/a"}]}`

func TestSignatureVerification(t *testing.T) {
	t.Parallel()
	srv, addr := startServer(t, testSecret)
	now := time.Now().Unix()
	ts := strconv.FormatInt(now, 10)
	good := authz.Sign(testSecret, "POST", authz.PathAuthorize, ts, []byte(authorizeBody))
	cases := []struct {
		name string
		c    call
		want int
	}{
		{"good", call{method: "POST", path: authz.PathAuthorize, body: authorizeBody, sign: true}, 200},
		{"bad signature", call{method: "POST", path: authz.PathAuthorize, body: authorizeBody, ts: ts, sig: "v1=" + strings.Repeat("0", 64)}, 401},
		{"other secret", call{method: "POST", path: authz.PathAuthorize, body: authorizeBody, ts: ts,
			sig: authz.Sign("other", "POST", authz.PathAuthorize, ts, []byte(authorizeBody))}, 401},
		{"missing signature", call{method: "POST", path: authz.PathAuthorize, body: authorizeBody, ts: ts}, 401},
		{"missing timestamp", call{method: "POST", path: authz.PathAuthorize, body: authorizeBody, sig: good}, 401},
		{"missing both", call{method: "POST", path: authz.PathAuthorize, body: authorizeBody}, 401},
		{"skewed old", call{method: "POST", path: authz.PathAuthorize, body: authorizeBody, sign: true,
			ts: strconv.FormatInt(now-6*60, 10)}, 401},
		{"skewed future", call{method: "POST", path: authz.PathAuthorize, body: authorizeBody, sign: true,
			ts: strconv.FormatInt(now+6*60, 10)}, 401},
		{"body tampered", call{method: "POST", path: authz.PathAuthorize, ts: ts, sig: good,
			body: strings.Replace(authorizeBody, "alice", "admin", 1)}, 401},
		{"signature replayed on another path", call{method: "POST", path: "/v1/principals/alice", body: authorizeBody, ts: ts, sig: good}, 401},
		{"lifecycle signed", call{method: "POST", path: "/v1/principals/alice", body: `{"name":"alice"}`, sign: true}, 204},
		{"listing needs a signature", call{method: "GET", path: "/v1/principals"}, 401},
		{"listing signed", call{method: "GET", path: "/v1/principals", sign: true}, 200},
		{"healthz is open", call{method: "GET", path: "/healthz"}, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, addr, tc.c)
			if code != tc.want {
				t.Fatalf("status %d, want %d: %s", code, tc.want, body)
			}
			if code == 401 && !strings.Contains(string(body), `"code":"unauthorized"`) {
				t.Fatalf("401 body %s", body)
			}
		})
	}
	// Only the two signed lifecycle/authorize calls got through.
	if n := srv.AuthorizeCalls(); n != 1 {
		t.Fatalf("AuthorizeCalls = %d, want 1", n)
	}
	if ev := srv.Events(); len(ev) != 1 || ev[0].Name != "alice" || ev[0].Op != authz.OpCreate {
		t.Fatalf("events = %+v", ev)
	}
}

func TestServerEndpoints(t *testing.T) {
	t.Parallel()
	srv, addr := startServer(t, "")
	// Authorize: alice may GET but not POST.
	code, body := do(t, addr, call{method: "POST", path: authz.PathAuthorize, body: authorizeBody})
	var resp authz.AuthorizeResponse
	if err := json.Unmarshal(body, &resp); code != 200 || err != nil {
		t.Fatalf("authorize: %d %s", code, body)
	}
	if len(resp.Allowed) != 1 || resp.Allowed[0].Action != "GET" || len(resp.Denied) != 1 || resp.Denied[0].Action != "POST" {
		t.Fatalf("authorize = %+v", resp)
	}
	cases := []struct {
		name string
		c    call
		want int
	}{
		{"malformed authorize", call{method: "POST", path: authz.PathAuthorize, body: "{"}, 400},
		{"authorize without principal", call{method: "POST", path: authz.PathAuthorize, body: `{"actions":[]}`}, 400},
		{"authorize GET", call{method: "GET", path: authz.PathAuthorize}, 405},
		{"create principal", call{method: "POST", path: "/v1/principals/bob"}, 204},
		{"create escaped principal", call{method: "POST", path: "/v1/principals/a%2Fb%20c"}, 204},
		{"create domain", call{method: "POST", path: "/v1/domains/acme"}, 204},
		{"delete principal", call{method: "DELETE", path: "/v1/principals/bob"}, 204},
		{"delete unknown principal", call{method: "DELETE", path: "/v1/principals/bob"}, 404},
		{"nested name", call{method: "POST", path: "/v1/principals/a/b"}, 400},
		{"bad escape", call{method: "POST", path: "/v1/principals/%zz"}, 400},
		{"PUT principal", call{method: "PUT", path: "/v1/principals/x"}, 405},
		{"POST listing", call{method: "POST", path: "/v1/domains"}, 405},
		{"unknown path", call{method: "GET", path: "/v2/authorize"}, 404},
	}
	for _, tc := range cases {
		if code, body := do(t, addr, tc.c); code != tc.want {
			t.Errorf("%s: status %d, want %d: %s", tc.name, code, tc.want, body)
		}
	}
	var l listing
	code, body = do(t, addr, call{method: "GET", path: "/v1/principals"})
	if err := json.Unmarshal(body, &l); code != 200 || err != nil {
		t.Fatalf("list: %d %s", code, body)
	}
	if strings.Join(l.Names, ",") != "a/b c" || len(l.Events) != 4 {
		t.Fatalf("principals = %+v", l)
	}
	code, body = do(t, addr, call{method: "GET", path: "/v1/domains"})
	if err := json.Unmarshal(body, &l); code != 200 || err != nil || strings.Join(l.Names, ",") != "acme" {
		t.Fatalf("domains: %d %s", code, body)
	}
	if n := len(srv.Events()); n != 5 {
		t.Fatalf("%d events", n)
	}
	// SetRules swaps atomically; hand-built rules are compiled.
	srv.SetRules(Rules{Rules: []Rule{{Effect: EffectAllow, Principals: []string{"alice"}}}})
	_, body = do(t, addr, call{method: "POST", path: authz.PathAuthorize, body: authorizeBody})
	if err := json.Unmarshal(body, &resp); err != nil || len(resp.Allowed) != 2 {
		t.Fatalf("after SetRules: %s", body)
	}
	srv.SetRules(Rules{Rules: []Rule{{Effect: "maybe"}}}) // invalid: deny all
	_, body = do(t, addr, call{method: "POST", path: authz.PathAuthorize, body: authorizeBody})
	if err := json.Unmarshal(body, &resp); err != nil || len(resp.Allowed) != 0 || len(resp.Denied) != 2 {
		t.Fatalf("after invalid SetRules: %s", body)
	}
}
