package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
)

// openBolt opens a real bolt store in a temp dir, closed at cleanup.
func openBolt(t *testing.T) *boltstore.Store {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "kg.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// pingStore is a store.Readiness whose one check (store_read, its Ping) is
// controllable, for failures the real stores cannot produce on demand (a
// ping that hangs, an error text that names an address). Only Ready and
// Ping are implemented; the other tests use the real bolt store.
type pingStore struct {
	store.Store
	err   atomic.Pointer[error]
	delay time.Duration
}

// Ready is the one check store_read, the Ping.
func (p *pingStore) Ready(ctx context.Context) []store.Check {
	return []store.Check{{Name: "store_read", Err: p.Ping(ctx)}}
}

func (p *pingStore) Ping(ctx context.Context) error {
	if p.delay > 0 {
		select {
		case <-time.After(p.delay):
		case <-ctx.Done():
			return fmt.Errorf("ping redis 10.1.2.3:6379: %w: %w", store.ErrUnavailable, ctx.Err())
		}
	}
	if e := p.err.Load(); e != nil {
		return *e
	}
	return nil
}

// testConfig is configs.Default() with test-sized limits.
func testConfig() *configs.Config {
	c := configs.Default()
	c.Limits = configs.Limits{
		MaxBody: 1 << 20, MaxHeader: 16 << 10, Concurrency: 100,
		ReadTimeout:  configs.Duration(5 * time.Second),
		WriteTimeout: configs.Duration(5 * time.Second),
		IdleTimeout:  configs.Duration(5 * time.Second),
	}
	return c
}

// start serves s on a real 127.0.0.1 listener and returns its address.
func start(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.Server()
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	return ln.Addr().String()
}

func do(t *testing.T, addr, method, uri string) (int, *fasthttp.ResponseHeader, []byte) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://" + addr + uri)
	req.URI().DisablePathNormalizing = true
	c := &fasthttp.Client{DisablePathNormalizing: true}
	if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatalf("%s %s: %v", method, uri, err)
	}
	var h fasthttp.ResponseHeader
	resp.Header.CopyTo(&h)
	return resp.StatusCode(), &h, append([]byte(nil), resp.Body()...)
}

func newServer(t *testing.T, st store.Readiness, g prometheus.Gatherer) *Server {
	t.Helper()
	s, err := New(ConfigOf(testConfig()), Options{Gatherer: g, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewRejectsMissingCollaborators(t *testing.T) {
	reg := prometheus.NewRegistry()
	st := &pingStore{}
	tests := []struct {
		name string
		cfg  *configs.Config
		opts Options
	}{
		{"nil gatherer", testConfig(), Options{Store: st}},
		{"nil store", testConfig(), Options{Gatherer: reg}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := New(ConfigOf(tc.cfg), tc.opts); err == nil || s != nil {
				t.Fatalf("New = %v, %v; want error", s, err)
			}
		})
	}
}

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "keygate_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Add(3)
	addr := start(t, newServer(t, openBolt(t), reg))

	tests := []struct {
		name, method, uri string
		code              int
		body              string // exact JSON, when set
		contains          []string
		allow             string
	}{
		{name: "healthz", method: "GET", uri: "/healthz", code: 200, body: `{"status":"ok"}`},
		{name: "healthz query ignored", method: "GET", uri: "/healthz?x=1", code: 200, body: `{"status":"ok"}`},
		{name: "head healthz", method: "HEAD", uri: "/healthz", code: 200},
		{name: "readyz", method: "GET", uri: "/readyz", code: 200, body: `{"status":"ready","store":"ok","checks":{"store_read":"ok","store_write":"ok"}}`},
		{name: "metrics", method: "GET", uri: "/metrics", code: 200, contains: []string{"keygate_test_total 3", "go_goroutines"}},
		{name: "unknown path", method: "GET", uri: "/nope", code: 404, body: `{"error":{"code":"not_found","message":"no such endpoint"}}`},
		{name: "root", method: "GET", uri: "/", code: 404},
		{name: "trailing slash", method: "GET", uri: "/healthz/", code: 404, body: `{"error":{"code":"not_found","message":"no such endpoint (paths take no trailing slash)"}}`},
		{name: "double slash", method: "GET", uri: "//healthz", code: 400},
		{name: "dot segment", method: "GET", uri: "/x/../healthz", code: 400},
		{name: "encoded dot segment", method: "GET", uri: "/%2e%2e/healthz", code: 400},
		{name: "bad escape", method: "GET", uri: "/health%zz", code: 400},
		{name: "case matters", method: "GET", uri: "/HEALTHZ", code: 404},
		{name: "post healthz", method: "POST", uri: "/healthz", code: 405, allow: "GET, HEAD", contains: []string{`"code":"method_not_allowed"`}},
		{name: "delete metrics", method: "DELETE", uri: "/metrics", code: 405, allow: "GET, HEAD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, h, body := do(t, addr, tc.method, tc.uri)
			if code != tc.code {
				t.Fatalf("status = %d, want %d (body %s)", code, tc.code, body)
			}
			if tc.body != "" && string(body) != tc.body {
				t.Errorf("body = %s, want %s", body, tc.body)
			}
			for _, s := range tc.contains {
				if !strings.Contains(string(body), s) {
					t.Errorf("body lacks %q", s)
				}
			}
			if got := string(h.Peek("Allow")); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
			if tc.code >= 400 {
				var e adminapi.ErrorBody
				if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
					t.Errorf("error body %s is not {error:{code,message}}: %v", body, err)
				}
				if ct := string(h.ContentType()); ct != "application/json" {
					t.Errorf("content-type = %q", ct)
				}
			}
		})
	}
}

func TestReadyzStoreDown(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		delay time.Duration
	}{
		{name: "error", err: fmt.Errorf("dial tcp 10.9.8.7:6379: connection refused, password=hunter2: %w", store.ErrUnavailable)},
		{name: "plain error", err: errors.New("boom at /var/lib/keygate.db")},
		{name: "hangs past timeout", delay: 5 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &pingStore{delay: tc.delay}
			if tc.err != nil {
				st.err.Store(&tc.err)
			}
			addr := start(t, newServer(t, st, prometheus.NewRegistry()))
			began := time.Now()
			code, _, body := do(t, addr, "GET", "/readyz")
			if took := time.Since(began); took > ReadyTimeout+time.Second {
				t.Errorf("readyz took %v", took)
			}
			if code != 503 || string(body) != `{"status":"unavailable","store":"unavailable","failed":["store_read"],"checks":{"store_read":"failed"}}` {
				t.Fatalf("got %d %s", code, body)
			}
			// Recovery: the same server reports ready again.
			if tc.err != nil {
				st.err.Store(nil)
				if code, _, body := do(t, addr, "GET", "/readyz"); code != 200 {
					t.Fatalf("after recovery: %d %s", code, body)
				}
			}
		})
	}
}

// TestReadyzBoltClosed: a real store that stops working makes /readyz 503.
func TestReadyzBoltClosed(t *testing.T) {
	st := openBolt(t)
	addr := start(t, newServer(t, st, prometheus.NewRegistry()))
	if code, _, body := do(t, addr, "GET", "/readyz"); code != 200 {
		t.Fatalf("open store: %d %s", code, body)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	want := `{"status":"unavailable","store":"unavailable","failed":["store_read","store_write"],"checks":{"store_read":"failed","store_write":"failed"}}`
	if code, _, body := do(t, addr, "GET", "/readyz"); code != 503 || string(body) != want {
		t.Fatalf("closed store: %d %s", code, body)
	}
	if code, _, _ := do(t, addr, "GET", "/healthz"); code != 200 {
		t.Errorf("healthz with the store closed: %d", code)
	}
}

// TestReadyzChecks: serve's own checks come first; a *ReadyState sets the
// status word and reason, any other error says only "failed" (its text,
// which may hold a secret or an address, is not sent).
func TestReadyzChecks(t *testing.T) {
	starting := &ReadyState{Status: "starting", Reason: "the store is not initialised yet"}
	tests := []struct {
		name string
		err  error
		code int
		body string
	}{
		{"passes", nil, 200, `{"status":"ready","store":"ok","checks":{"startup":"ok","store_read":"ok","store_write":"ok"}}`},
		{"starting", starting, 503, `{"status":"starting","store":"ok","reason":"the store is not initialised yet","failed":["startup"],"checks":{"startup":"failed","store_read":"ok","store_write":"ok"}}`},
		{"plain error", errors.New("dial 10.0.0.1:6379 password=hunter2"), 503, `{"status":"unavailable","store":"ok","failed":["startup"],"checks":{"startup":"failed","store_read":"ok","store_write":"ok"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(ConfigOf(testConfig()), Options{Gatherer: prometheus.NewRegistry(), Store: openBolt(t),
				ReadyChecks: []ReadyCheck{{Name: "startup", Check: func(context.Context) error { return tc.err }}}})
			if err != nil {
				t.Fatal(err)
			}
			addr := start(t, s)
			code, _, body := do(t, addr, "GET", "/readyz")
			if code != tc.code || string(body) != tc.body {
				t.Errorf("got %d %s\nwant %d %s", code, body, tc.code, tc.body)
			}
		})
	}
}

func TestRouterParams(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newServer(t, openBolt(t), reg)
	var got atomic.Value
	record := func(tag string) HandlerFunc {
		return func(ctx *fasthttp.RequestCtx, p Params) {
			got.Store(fmt.Sprintf("%s %v", tag, []Param(p)))
			writeJSON(ctx, 200, map[string]string{"account": p.Get("account"), "username": p.Get("username")})
		}
	}
	s.Handle("GET", "/v1/accounts", record("list"))
	s.Handle("GET", "/v1/accounts/{account}", record("get"))
	s.Handle("PATCH", "/v1/accounts/{account}", record("patch"))
	s.Handle("GET", "/v1/accounts/{account}/users/{username}", record("user"))
	s.Handle("DELETE", "/v1/accounts/{account}/users/{username}", record("deluser"))
	s.Handle("GET", "/v1/user", record("me"))
	s.Handle("GET", "/v1/dir", record("dir"))
	s.Handle("GET", "/v1/dir/{name}", record("dirent"))
	addr := start(t, s)

	tests := []struct {
		method, uri string
		code        int
		want        string
		allow       string
	}{
		{"GET", "/v1/accounts", 200, "list []", ""},
		{"GET", "/v1/accounts/acme", 200, "get [{account acme}]", ""},
		{"PATCH", "/v1/accounts/acme", 200, "patch [{account acme}]", ""},
		{"GET", "/v1/accounts/acme/users/alice", 200, "user [{account acme} {username alice}]", ""},
		{"DELETE", "/v1/accounts/acme/users/alice", 200, "deluser [{account acme} {username alice}]", ""},
		{"GET", "/v1/accounts/a%2Fb/users/bob%40x", 200, "user [{account a/b} {username bob@x}]", ""},
		{"GET", "/v1/user", 200, "me []", ""},
		{"POST", "/v1/accounts/acme", 405, "", "GET, HEAD, PATCH"},
		{"PUT", "/v1/accounts/acme/users/alice", 405, "", "DELETE, GET, HEAD"},
		{"GET", "/v1/accounts/acme/users", 404, "", ""},
		{"GET", "/v1/accounts/acme/users/alice/extra", 404, "", ""},
		{"GET", "/v1/accounts//users/alice", 400, "", ""},
		{"GET", "/v1/accounts/%2e%2e/users/alice", 400, "", ""},
		{"GET", "/v1/accounts/../accounts", 400, "", ""},
		// A trailing slash names no endpoint: 404 (not 400 malformed),
		// whatever the method, whether or not the path without it exists.
		{"GET", "/v1/dir", 200, "dir []", ""},
		{"GET", "/v1/dir/", 404, "", ""},
		{"GET", "/v1/dir/x", 200, "dirent [{name x}]", ""},
		{"GET", "/v1/dir/x/", 404, "", ""},
		{"GET", "/v1/%64ir/", 404, "", ""},
		{"POST", "/v1/dir/", 404, "", ""},
		{"GET", "/v1/user/", 404, "", ""},
		{"GET", "/v1/accounts/", 404, "", ""},
		{"POST", "/v1/accounts/", 404, "", ""},
		{"GET", "/v1/accounts/acme/", 404, "", ""},
		{"GET", "/nope/", 404, "", ""},
		// Empty segments inside are still malformed.
		{"GET", "/v1/dir//", 400, "", ""},
		{"GET", "//", 400, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.uri, func(t *testing.T) {
			got.Store("")
			code, h, body := do(t, addr, tc.method, tc.uri)
			if code != tc.code {
				t.Fatalf("status = %d, want %d (%s)", code, tc.code, body)
			}
			if g := got.Load().(string); g != tc.want {
				t.Errorf("handler = %q, want %q", g, tc.want)
			}
			if a := string(h.Peek("Allow")); a != tc.allow {
				t.Errorf("Allow = %q, want %q", a, tc.allow)
			}
		})
	}
}

func TestRouterBadPatternPanics(t *testing.T) {
	for _, p := range []string{"", "v1", "/v1//x", "//", "/v1//", "/v1/", "/debug/pprof/"} {
		t.Run(p, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("pattern %q accepted", p)
				}
			}()
			var r Router
			r.Handle("GET", p, func(*fasthttp.RequestCtx, Params) {})
		})
	}
}

func TestSplitPath(t *testing.T) {
	tests := []struct {
		raw  string
		segs []string
		ok   bool
	}{
		{"/", nil, true},
		{"/a", []string{"a"}, true},
		{"/a/b%20c", []string{"a", "b c"}, true},
		{"/a%2Fb", []string{"a/b"}, true},
		{"", nil, false},
		{"a/b", nil, false},
		{"/a/", nil, false},
		{"/a//b", nil, false},
		{"/./a", nil, false},
		{"/%2E", nil, false},
		{"/a/%2e%2E", nil, false},
		{"/a%00", nil, false},
		{"/%", nil, false},
	}
	for _, tc := range tests {
		segs, ok := splitPath(tc.raw)
		if ok != tc.ok || fmt.Sprint(segs) != fmt.Sprint(tc.segs) {
			t.Errorf("splitPath(%q) = %q, %v; want %q, %v", tc.raw, segs, ok, tc.segs, tc.ok)
		}
	}
}

func FuzzSplitPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/%2e%2e", "//", "/a%2Fb/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		segs, ok := splitPath(raw)
		if !ok {
			return
		}
		for _, s := range segs {
			if s == "" || s == "." || s == ".." {
				t.Fatalf("splitPath(%q) returned segment %q", raw, s)
			}
		}
	})
}

func TestServerLimits(t *testing.T) {
	cfg := testConfig()
	s, err := New(ConfigOf(cfg), Options{Gatherer: prometheus.NewRegistry(), Store: &pingStore{}})
	if err != nil {
		t.Fatal(err)
	}
	srv := s.Server()
	if srv.ReadTimeout != 5*time.Second || srv.WriteTimeout != 5*time.Second || srv.IdleTimeout != 5*time.Second ||
		srv.MaxRequestBodySize != 1<<20 || srv.ReadBufferSize != 16<<10 || srv.Concurrency != 100 || srv.Handler == nil {
		t.Errorf("server = %+v", srv)
	}
	if srv.Name != "keygate" || srv.ErrorHandler == nil || !srv.CloseOnShutdown || !srv.SecureErrorLogMessage {
		t.Errorf("server = %+v", srv)
	}
}

func TestAdminMalformedRequests(t *testing.T) {
	addr := start(t, newServer(t, &pingStore{}, prometheus.NewRegistry()))
	tests := []struct {
		name string
		raw  string
		code int
		ec   string
	}{
		{"header too large", "GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431, "header_too_large"},
		{"body too large", "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 2097152\r\n\r\n" + strings.Repeat("b", 2<<20), 413, "body_too_large"},
		{"bad content-length", "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 400, "bad_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			go func() { _, _ = c.Write([]byte(tc.raw)) }()
			var resp fasthttp.Response
			if err := resp.Read(bufio.NewReader(c)); err != nil {
				t.Fatal(err)
			}
			var e adminapi.ErrorBody
			if resp.StatusCode() != tc.code || json.Unmarshal(resp.Body(), &e) != nil || e.Error.Code != tc.ec {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode(), resp.Body(), tc.code, tc.ec)
			}
		})
	}
}
