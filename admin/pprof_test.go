package admin

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	rtpprof "runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
)

// pprofPaths are every endpoint admin.pprof adds.
var pprofPaths = []string{
	"/debug/pprof", "/debug/pprof/cmdline", "/debug/pprof/profile", "/debug/pprof/symbol", "/debug/pprof/trace",
	"/debug/pprof/allocs", "/debug/pprof/block", "/debug/pprof/goroutine", "/debug/pprof/heap",
	"/debug/pprof/mutex", "/debug/pprof/threadcreate",
}

// With admin.pprof off, /debug/pprof… answers exactly what an unknown path
// of the same shape does, to anyone: 404 (with a trailing slash, the
// router's 404 for any such path, as /nope/ gets).
func TestPprofDisabled(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	unknown := e.do("GET", "/debug/nope", asRoot, nil).want(t, 404)
	unknownDir := e.do("GET", "/debug/nope/", asRoot, nil).want(t, 404)
	for _, p := range append(slices.Clone(pprofPaths), "/debug/pprof/profile?seconds=1", "/debug/pprof/heap?debug=1", "/debug/pprof/?x=1", "/debug/pprof/") {
		for _, who := range []struct{ name, auth string }{{"anonymous", ""}, {"global admin", asRoot}} {
			t.Run(who.name+" "+p, func(t *testing.T) {
				want := unknown
				if strings.HasPrefix(p, "/debug/pprof/?") || p == "/debug/pprof/" {
					want = unknownDir
				}
				r := e.do("GET", p, who.auth, nil).want(t, want.status)
				if !bytes.Equal(r.body, want.body) || r.header.Get("Content-Type") != want.header.Get("Content-Type") {
					t.Errorf("%d %s %q, want %s %q like an unknown path", r.status, r.body, r.header.Get("Content-Type"), want.body, want.header.Get("Content-Type"))
				}
				if len(r.header.Values("WWW-Authenticate")) != 0 {
					t.Error("a disabled endpoint asks for credentials")
				}
			})
		}
	}
}

// Only an authenticated global admin, by password or token, reaches the
// profiles: the API's chain and error shapes apply.
func TestPprofAccess(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{pprof: true})
	rootKey := e.newKey(asRoot, "/v1/user/api-keys", map[string]any{"name": "root-ci"})
	aliceKey := e.newKey(asAlice, "/v1/user/api-keys", map[string]any{"name": "alice-ci"})
	// Anonymous gets exactly the challenge and body of any API endpoint.
	anon := e.do("GET", "/v1/accounts", "", nil).want(t, 401)

	tests := []struct {
		name, auth string
		want       int
		code       string
	}{
		{"anonymous", "", 401, "unauthorized"},
		{"wrong password", basicAuth(store.AdminUsername, "wrong-Pa55word-x"), 401, "invalid_credentials"},
		{"bad bearer", "Bearer kg_AAAA_bbbb", 401, "invalid_credentials"},
		{"user", asAlice, 403, "forbidden"},
		{"account admin", asAAdmin, 403, "forbidden"},
		{"global admin's API key (Bearer)", rootKey.bearer(), 403, "forbidden"},
		{"global admin's API key (ApiKey)", rootKey.apiKey(), 403, "forbidden"},
		{"user's API key", aliceKey.bearer(), 403, "forbidden"},
		{"global admin", asRoot, 200, ""},
	}
	for _, p := range []string{"/debug/pprof", "/debug/pprof/heap?debug=1", "/debug/pprof/cmdline"} {
		for _, tc := range tests {
			t.Run(tc.name+" "+p, func(t *testing.T) {
				r := e.do("GET", p, tc.auth, nil).want(t, tc.want)
				if tc.want == 200 {
					return
				}
				if r.code() != tc.code || r.header.Get("Content-Type") != "application/json" {
					t.Errorf("code %q content-type %q, want %q application/json; body %s", r.code(), r.header.Get("Content-Type"), tc.code, r.body)
				}
				if tc.want == 401 && len(r.header.Values("WWW-Authenticate")) != 2 {
					t.Errorf("WWW-Authenticate %q, want the Basic and Bearer challenges", r.header.Values("WWW-Authenticate"))
				}
				if tc.name == "anonymous" {
					if !bytes.Equal(r.body, anon.body) || !slices.Equal(r.header.Values("WWW-Authenticate"), anon.header.Values("WWW-Authenticate")) {
						t.Errorf("401 %s %q, want the API's %s %q", r.body, r.header.Values("WWW-Authenticate"), anon.body, anon.header.Values("WWW-Authenticate"))
					}
				}
				if strings.Contains(string(r.body), "goroutine") || strings.Contains(string(r.body), os.Args[0]) {
					t.Errorf("a refusal leaks profile data: %s", r.body)
				}
			})
		}
	}

	t.Run("privileges come from the current record", func(t *testing.T) {
		e.do("POST", "/v1/accounts/admin/users", asRoot, map[string]any{"username": "ops", "password": "Ops-root-Pa55word", "type": "admin"}).want(t, 201) //nolint:gosec // test data, not a real credential
		asOps := basicAuth("ops", "Ops-root-Pa55word")
		e.do("GET", "/debug/pprof", asOps, nil).want(t, 200)
		e.do("PATCH", "/v1/accounts/admin/users/ops", asRoot, map[string]any{"type": "user"}).want(t, 200)
		e.do("GET", "/debug/pprof", asOps, nil).want(t, 403)
	})
	t.Run("only GET and HEAD", func(t *testing.T) {
		r := e.do("POST", "/debug/pprof/symbol", asRoot, "0x1").want(t, 405)
		if r.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("Allow %q", r.header.Get("Allow"))
		}
	})
	t.Run("unknown profile", func(t *testing.T) {
		e.do("GET", "/debug/pprof/nope", asRoot, nil).want(t, 404)
		e.do("GET", "/debug/pprof/heap/", asRoot, nil).want(t, 404)
		e.do("GET", "/debug/pprof/", asRoot, nil).want(t, 404) // the index has no trailing slash
	})
}

// onServer serves e's store and chain, pprof on, through the whole admin
// listener of cfg (admin.New, Server.Handler's headers, Server's limits) and
// returns e pointed at it.
func onServer(t *testing.T, e *apiEnv, cfg *configs.Config) *apiEnv {
	t.Helper()
	s, err := New(ConfigOf(cfg), Options{Gatherer: prometheus.NewRegistry(), Store: e.st})
	mustOK(t, err)
	mustOK(t, RegisterAPI(s, APIDeps{Store: e.st, Auth: e.chain, Hasher: apiTestHasher, Realm: "keygate", Pprof: true}))
	full := *e
	full.base = "http://" + start(t, s)
	return &full
}

// What a global admin gets from each endpoint, through the whole listener.
func TestPprofEndpoints(t *testing.T) {
	e := onServer(t, newAPIEnv(t, apiEnvOptions{}), testConfig())
	gzipped := func(b []byte) bool { return len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b }
	tests := []struct {
		path        string
		contentType string
		check       func([]byte) bool
	}{
		{"/debug/pprof", "text/html", func(b []byte) bool {
			// Relative links, resolved against the <base> the index gets.
			return bytes.Contains(b, []byte(`<head><base href="/debug/pprof/">`)) &&
				bytes.Contains(b, []byte(`href='heap?debug=1'`)) && bytes.Contains(b, []byte(`href="goroutine?debug=2"`))
		}},
		{"/debug/pprof/heap?debug=1", "text/plain", func(b []byte) bool { return bytes.HasPrefix(b, []byte("heap profile:")) }},
		{"/debug/pprof/heap", "application/octet-stream", gzipped},
		{"/debug/pprof/heap?gc=1", "application/octet-stream", gzipped},
		{"/debug/pprof/heap?seconds=1", "application/octet-stream", gzipped},
		{"/debug/pprof/goroutine?debug=2", "text/plain", func(b []byte) bool { return bytes.Contains(b, []byte("goroutine ")) }},
		{"/debug/pprof/allocs", "application/octet-stream", gzipped},
		{"/debug/pprof/block", "application/octet-stream", gzipped},
		{"/debug/pprof/mutex", "application/octet-stream", gzipped},
		{"/debug/pprof/threadcreate?debug=1", "text/plain", func(b []byte) bool { return bytes.Contains(b, []byte("threadcreate profile:")) }},
		{"/debug/pprof/cmdline", "text/plain", func(b []byte) bool { return string(b) == strings.Join(os.Args, "\x00") }},
		{"/debug/pprof/symbol", "text/plain", func(b []byte) bool { return bytes.HasPrefix(b, []byte("num_symbols: 1")) }},
		{"/debug/pprof/profile?seconds=1", "application/octet-stream", gzipped},
		{"/debug/pprof/trace?seconds=1", "application/octet-stream", func(b []byte) bool { return bytes.HasPrefix(b, []byte("go 1.")) }},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			began := time.Now()
			r := e.do("GET", tc.path, asRoot, nil).want(t, 200)
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
				t.Errorf("content-type %q, want %s", ct, tc.contentType)
			}
			if len(r.body) == 0 || !tc.check(r.body) {
				t.Errorf("unexpected body (%d bytes): %.200q", len(r.body), r.body)
			}
			// Server.Handler and net/http/pprof both set it: once is enough.
			if v := r.header.Values("X-Content-Type-Options"); len(v) != 1 || v[0] != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", v)
			}
			if v := r.header.Values("Cache-Control"); len(v) != 1 || v[0] != "no-store" {
				t.Errorf("Cache-Control %q", v)
			}
			if strings.Contains(tc.path, "seconds=1") && time.Since(began) < time.Second {
				t.Errorf("a 1 s profile took %v", time.Since(began))
			}
		})
	}
	// Every profile the index links to is served.
	for _, p := range rtpprof.Profiles() {
		t.Run("index link "+p.Name(), func(t *testing.T) {
			e.do("GET", "/debug/pprof/"+p.Name()+"?debug=1", asRoot, nil).want(t, 200)
		})
	}
}

// seconds is one whole number from 1 to MaxPprofSeconds; anything else is a
// JSON 400 before any profiling starts, never a 500.
func TestPprofSeconds(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{pprof: true})
	bad := []string{"0", "-1", "abc", "61", "3600", "", "1.5", "1e1", "+5", "0x10", "9223372036854775808", "1&seconds=2"}
	for _, p := range []string{"/debug/pprof/profile", "/debug/pprof/trace", "/debug/pprof/heap", "/debug/pprof/goroutine"} {
		for _, v := range bad {
			t.Run(p+"?seconds="+v, func(t *testing.T) {
				began := time.Now()
				r := e.do("GET", p+"?seconds="+v, asRoot, nil).want(t, 400)
				if r.code() != "bad_request" || !strings.Contains(string(r.body), "seconds") {
					t.Errorf("body %s", r.body)
				}
				if d := time.Since(began); d > 500*time.Millisecond {
					t.Errorf("refused after %v: something ran first", d)
				}
			})
		}
	}
	// net/http/pprof's own refusals come back in the API's error shape.
	for _, p := range []string{"/debug/pprof/heap?seconds=1&debug=1", "/debug/pprof/allocs?debug=1&seconds=60"} {
		t.Run(p, func(t *testing.T) {
			r := e.do("GET", p, asRoot, nil).want(t, 400)
			if r.code() != "bad_request" || r.header.Get("Content-Type") != "application/json" || r.header.Get("X-Go-Pprof") != "" {
				t.Errorf("%s %q", r.body, r.header)
			}
		})
	}
	// The value checked is the one net/http/pprof reads: fasthttp ends the
	// query at '#', net/url does not, so a seconds after a '#' is seen.
	t.Run("seconds after #", func(t *testing.T) {
		status, body := rawGet(t, e.base, "/debug/pprof/heap?x#&seconds=3600", asRoot)
		if status != 400 || !strings.Contains(body, `"bad_request"`) {
			t.Errorf("%d %s", status, body)
		}
	})
}

// The runtime takes one CPU profile at a time: a second caller gets 409 at
// once, not net/http/pprof's 500.
func TestPprofOneCPUProfileAtATime(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{pprof: true})
	for _, c := range []struct {
		path string
		busy *oneAtATime
	}{{"/debug/pprof/profile?seconds=1", cpuProfiling}, {"/debug/pprof/trace?seconds=1", tracing}} {
		t.Run(c.path, func(t *testing.T) {
			c.busy.Lock()
			r := e.do("GET", c.path, asRoot, nil)
			c.busy.Unlock()
			r.want(t, 409)
			if r.code() != "conflict" || !strings.Contains(string(r.body), c.busy.what) {
				t.Errorf("body %s", r.body)
			}
			e.do("GET", c.path, asRoot, nil).want(t, 200)
		})
	}
}

// A CPU profile may outlast limits.write_timeout (30 s by default, the cap
// is 60 s): fasthttp starts that clock when the handler returns.
func TestPprofProfileOutlastsWriteTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.ReadTimeout = configs.Duration(time.Second)
	cfg.Limits.WriteTimeout = configs.Duration(time.Second)
	e := onServer(t, newAPIEnv(t, apiEnvOptions{}), cfg)
	r := e.do("GET", "/debug/pprof/profile?seconds=2", asRoot, nil).want(t, 200)
	if len(r.body) < 2 || r.body[0] != 0x1f || r.body[1] != 0x8b {
		t.Fatalf("body %.100q, want a gzipped profile", r.body)
	}
}

// rawGet sends a request line as is (net/http would drop a '#…').
func rawGet(t *testing.T, base, uri, auth string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	mustOK(t, err)
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = io.WriteString(conn, "GET "+uri+" HTTP/1.1\r\nHost: x\r\nAuthorization: "+auth+"\r\nConnection: close\r\n\r\n")
	mustOK(t, err)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	mustOK(t, err)
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	mustOK(t, err)
	return res.StatusCode, string(b)
}
