package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
)

// allowAll answers an authorize request by allowing every tuple asked.
func allowAll(ctx *fasthttp.RequestCtx) {
	var req authz.AuthorizeRequest
	if err := json.Unmarshal(ctx.Request.Body(), &req); err != nil {
		ctx.SetStatusCode(400)
		return
	}
	b, _ := json.Marshal(authz.AuthorizeResponse{Allowed: req.Actions})
	ctx.SetBody(b)
}

// TestExternalDecisions runs the reference plugin and checks every decision
// path through it, with and without signing.
func TestExternalDecisions(t *testing.T) {
	t.Parallel()
	alice := ident("alice", "acme")
	bob := ident("bob", "acme")
	admin := ident("root", "admin")
	admin.UserType = "admin"
	cases := []struct {
		name string
		req  *authz.Request
		want error
	}{
		{"allowed", request(alice, act("GET", "api:/v1/things")), nil},
		{"several allowed", request(alice, act("GET", "api:/v1/a"), act("POST", "api:/v1/b"), act("DELETE", "api:/v1/c")), nil},
		{"denied by default", request(bob, act("POST", "api:/v1/things")), authz.ErrDenied},
		{"mixed: one denied denies all", request(bob, act("GET", "api:/v1/a"), act("DELETE", "api:/v1/a")), authz.ErrDenied},
		{"deny rule wins", request(alice, act("GET", "api:/admin/users")), authz.ErrDenied},
		{"other domain", request(ident("alice", "other"), act("GET", "api:/v1/a")), authz.ErrDenied},
		{"unknown principal", request(ident("mallory", "acme"), act("GET", "api:/v1/a")), authz.ErrDenied},
		{"admin action by type", request(admin, act("create_user", "admin:/v1/accounts")), nil},
		{"type required", request(alice, act("create_user", "admin:/v1/accounts")), authz.ErrDenied},
		{"odd characters", request(alice, act("GET", "api:/v1/\"quoted\"\\/\x01/🙂/<&>")), nil},
		{"invalid UTF-8 cannot round-trip: denied", request(alice, act("GET", "api:/v1/\xff")), authz.ErrDenied},
		{"no actions", request(alice), authz.ErrDenied},
		{"nil identity", &authz.Request{Domain: "acme", Actions: []authz.Action{act("GET", "api:/")}}, authz.ErrDenied},
	}
	for _, signed := range []bool{false, true} {
		secret := ""
		if signed {
			secret = testSecret
		}
		srv, endpoint := startPlugin(t, testRules, secret)
		for _, ttl := range []time.Duration{0, time.Minute} {
			ext := newExternal(t, externalCfg(endpoint, secret, 5*time.Second, ttl), authz.Options{})
			for _, tc := range cases {
				name := tc.name
				if signed {
					name += "/signed"
				}
				if ttl > 0 {
					name += "/cached"
				}
				t.Run(name, func(t *testing.T) {
					for range 2 { // the second round is served from the cache when enabled
						d, err := ext.Authorize(context.Background(), tc.req)
						if tc.want == nil {
							if err != nil || !d.Allowed {
								t.Fatalf("Authorize = %+v, %v; want allowed", d, err)
							}
						} else if !errors.Is(err, tc.want) || d.Allowed {
							t.Fatalf("Authorize = %+v, %v; want %v", d, err, tc.want)
						}
						ext.WaitCache()
					}
				})
			}
		}
		if srv.AuthorizeCalls() == 0 {
			t.Fatal("the plugin was never asked")
		}
	}
}

// TestExternalWrongSecret: a plugin that rejects keygate's signature is a
// denial, never an allow.
func TestExternalWrongSecret(t *testing.T) {
	t.Parallel()
	_, endpoint := startPlugin(t, testRules, testSecret)
	for _, secret := range []string{"", "not-the-secret-not-the-secret-00"} {
		ext := newExternal(t, externalCfg(endpoint, secret, 5*time.Second, time.Minute), authz.Options{})
		_, err := ext.Authorize(context.Background(), request(ident("alice", "acme"), act("GET", "api:/v1/a")))
		if !errors.Is(err, authz.ErrDenied) {
			t.Fatalf("secret %q: err = %v, want ErrDenied", secret, err)
		}
	}
}

// TestExternalMisbehavingPlugin: whatever a broken plugin does, keygate
// answers 403 or 503 and never allows.
func TestExternalMisbehavingPlugin(t *testing.T) {
	t.Parallel()
	const (
		get = `{"action":"GET","target":"api:/a"}`
		del = `{"action":"DELETE","target":"api:/a"}`
	)
	reply := func(status int, body string) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			ctx.SetStatusCode(status)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(body)
		}
	}
	cases := []struct {
		name    string
		handler fasthttp.RequestHandler
		want    error
		kind    string
	}{
		{"control: well-behaved", reply(200, `{"allowed":[`+get+`,`+del+`],"denied":[]}`), nil, ""},
		{"garbage", reply(200, `<html>it works</html>`), authz.ErrDenied, "malformed"},
		{"trailing garbage", reply(200, `{"allowed":[`+get+`,`+del+`]}]]`), authz.ErrDenied, "malformed"},
		{"empty 200", reply(200, ``), authz.ErrDenied, "malformed"},
		{"partial allowed list", reply(200, `{"allowed":[`+get+`]}`), authz.ErrDenied, "incomplete"},
		{"empty lists", reply(200, `{"allowed":[],"denied":[]}`), authz.ErrDenied, "incomplete"},
		{"extra tuple", reply(200, `{"allowed":[`+get+`,`+del+`,{"action":"PUT","target":"api:/a"}]}`), authz.ErrDenied, "unexpected"},
		{"allow and deny", reply(200, `{"allowed":[`+get+`,`+del+`],"denied":[`+del+`]}`), authz.ErrDenied, ""},
		{"500", reply(500, `{"allowed":[`+get+`,`+del+`]}`), authz.ErrUnavailable, "status"},
		{"502", reply(502, ``), authz.ErrUnavailable, "status"},
		{"429", reply(429, ``), authz.ErrUnavailable, "status"},
		{"204", reply(204, ``), authz.ErrDenied, "status"},
		{"201 with allow", reply(201, `{"allowed":[`+get+`,`+del+`]}`), authz.ErrDenied, "status"},
		{"302", reply(302, ``), authz.ErrDenied, "status"},
		{"401", reply(401, ``), authz.ErrDenied, "status"},
		{"connection closed without answer", nil, authz.ErrUnavailable, "transport"},
		{"oversize body", reply(200, `{"allowed":[`+get+`,`+del+`],"pad":"`+strings.Repeat("x", authz.MaxPluginBody)+`"}`), authz.ErrDenied, "too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			core, logs := observer.New(zap.WarnLevel)
			endpoint := startHandler(t, tc.handler)
			if tc.handler == nil {
				endpoint = startCloser(t)
			}
			ext := newExternal(t, externalCfg(endpoint, testSecret, 5*time.Second, time.Minute),
				authz.Options{Logger: zap.New(core)})
			req := request(ident("alice", "acme"), act("GET", "api:/a"), act("DELETE", "api:/a"))
			for range 2 { // a failure is never cached as an allow
				d, err := ext.Authorize(context.Background(), req)
				if tc.want == nil {
					if err != nil || !d.Allowed {
						t.Fatalf("Authorize = %+v, %v", d, err)
					}
					return
				}
				if !errors.Is(err, tc.want) || d.Allowed {
					t.Fatalf("Authorize = %+v, %v; want %v", d, err, tc.want)
				}
				ext.WaitCache()
			}
			if tc.kind != "" {
				entries := logs.FilterField(zap.String("kind", tc.kind)).All()
				if len(entries) == 0 {
					t.Fatalf("no log with kind=%s; logs: %v", tc.kind, logs.All())
				}
				for _, e := range entries {
					for _, f := range e.Context {
						if strings.Contains(f.String, "alice") || strings.Contains(f.String, testSecret) {
							t.Fatalf("log leaks request data: %v", e.Context)
						}
					}
				}
			}
		})
	}
}

// startCloser accepts connections and closes them without answering.
func startCloser(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Read(make([]byte, 4096))
			_ = c.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// TestExternalPluginDown: nothing listening → 503 at once.
func TestExternalPluginDown(t *testing.T) {
	t.Parallel()
	endpoint, _ := closedEndpoint(t)
	reg := prometheus.NewPedanticRegistry()
	ext := newExternal(t, externalCfg(endpoint, "", 5*time.Second, time.Minute), authz.Options{Registerer: reg})
	d, err := ext.Authorize(context.Background(), request(ident("alice", "acme"), act("GET", "api:/a")))
	if !errors.Is(err, authz.ErrUnavailable) || d.Allowed || authz.Status(err) != 503 {
		t.Fatalf("Authorize = %+v, %v; want ErrUnavailable", d, err)
	}
	if !strings.Contains(err.Error(), "refused") {
		t.Fatalf("err = %v, want kind refused", err)
	}
	text := exposition(t, reg)
	for _, want := range []string{
		`keygate_authz_decisions_total{handler="external",result="error"} 1`,
		`keygate_authz_plugin_duration_seconds_count 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s:\n%s", want, text)
		}
	}
}

// TestExternalPluginHangs: a plugin that never answers costs at most the
// configured timeout (plus scheduling margin), then 503.
func TestExternalPluginHangs(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var started atomic.Int32
	endpoint := startHandler(t, func(ctx *fasthttp.RequestCtx) {
		started.Add(1)
		<-release
	})
	t.Cleanup(func() { close(release) }) // runs before the server's cleanup
	const timeout = 100 * time.Millisecond
	ext := newExternal(t, externalCfg(endpoint, "", timeout, time.Minute), authz.Options{})
	for _, c := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"own timeout", func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
		{"earlier ctx deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), timeout/2)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := c.ctx()
			defer cancel()
			start := time.Now()
			d, err := ext.Authorize(ctx, request(ident("alice", "acme"), act("GET", "api:/a")))
			took := time.Since(start)
			if !errors.Is(err, authz.ErrUnavailable) || d.Allowed {
				t.Fatalf("Authorize = %+v, %v; want ErrUnavailable", d, err)
			}
			if took > timeout+2*time.Second {
				t.Fatalf("took %s with a %s timeout", took, timeout)
			}
		})
	}
	if started.Load() == 0 {
		t.Fatal("the request never reached the plugin")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ext.Authorize(ctx, request(ident("alice", "acme"), act("GET", "api:/a"))); !errors.Is(err, authz.ErrUnavailable) {
		t.Fatalf("cancelled ctx: err = %v", err)
	}
}

// TestExternalCache: hits avoid the plugin; invalidation by user, account and
// flush, a generation change and the TTL each force a new call.
func TestExternalCache(t *testing.T) {
	t.Parallel()
	srv, endpoint := startPlugin(t, testRules, testSecret)
	clk := newClock()
	const ttl = 10 * time.Second
	ext := newExternal(t, externalCfg(endpoint, testSecret, 5*time.Second, ttl), authz.Options{Now: clk.Now})
	alice := ident("alice", "acme")
	get := act("GET", "api:/v1/things")
	root := ident("root", "admin")
	root.UserType = "admin"
	crossDomain := root // acts in acme (see check)

	calls := srv.AuthorizeCalls()
	check := func(t *testing.T, id *authn.Identity, a authz.Action, wantAllowed, wantCall bool) {
		t.Helper()
		req := request(id, a)
		if id == crossDomain {
			req.Domain = "acme"
		}
		d, err := ext.Authorize(context.Background(), req)
		if wantAllowed != (err == nil) || d.Allowed != wantAllowed {
			t.Fatalf("Authorize = %+v, %v; want allowed=%v", d, err, wantAllowed)
		}
		ext.WaitCache()
		n := srv.AuthorizeCalls()
		if called := n != calls; called != wantCall {
			t.Fatalf("plugin called=%v, want %v (decision %+v)", called, wantCall, d)
		}
		if d.Cached == wantCall {
			t.Fatalf("Decision.Cached = %v with plugin called=%v", d.Cached, wantCall)
		}
		calls = n
	}
	steps := []struct {
		name       string
		before     func()
		id         *authn.Identity
		a          authz.Action
		allowed    bool
		pluginCall bool
	}{
		{"cold", nil, alice, get, true, true},
		{"warm", nil, alice, get, true, false},
		{"other target is another entry", nil, alice, act("GET", "api:/v1/other"), true, true},
		{"other method is another entry", nil, alice, act("HEAD", "api:/v1/things"), true, true},
		{"denials are cached too (cold)", nil, alice, act("GET", "api:/admin"), false, true},
		{"denials are cached too (warm)", nil, alice, act("GET", "api:/admin"), false, false},
		{"invalidating someone else keeps it", func() { ext.Invalidate(store.Invalidation{Username: "bob", Account: "other"}) }, alice, get, true, false},
		{"key id alone keeps it", func() { ext.Invalidate(store.Invalidation{KeyID: "k1"}) }, alice, get, true, false},
		{"empty invalidation keeps it", func() { ext.Invalidate(store.Invalidation{}) }, alice, get, true, false},
		{"invalidate user", func() { ext.Invalidate(store.Invalidation{Username: "alice"}) }, alice, get, true, true},
		{"warm again", nil, alice, get, true, false},
		{"invalidate account", func() { ext.Invalidate(store.Invalidation{Account: "acme"}) }, alice, get, true, true},
		{"flush", func() { ext.Invalidate(store.Invalidation{Flush: true}) }, alice, get, true, true},
		{"generation bump (role change)", nil, withGen(alice, 2), get, true, true},
		{"new generation is warm", nil, withGen(alice, 2), get, true, false},
		{"before ttl", func() { clk.Add(ttl - time.Nanosecond) }, alice, get, true, false},
		{"at ttl", func() { clk.Add(time.Nanosecond) }, alice, get, true, true},
		{"same name other domain", nil, ident("alice", "other"), get, false, true},
		{"admin acting in acme (cold)", nil, crossDomain, act("create_user", "admin:/v1/accounts"), true, true},
		{"admin acting in acme (warm)", nil, crossDomain, act("create_user", "admin:/v1/accounts"), true, false},
		{"invalidating the admin's own account drops it", func() { ext.Invalidate(store.Invalidation{Account: "admin"}) }, crossDomain, act("create_user", "admin:/v1/accounts"), true, true},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.before != nil {
				s.before()
			}
			check(t, s.id, s.a, s.allowed, s.pluginCall)
		})
	}

	// A partly cached request sends only the missing tuple.
	var sent atomic.Value
	ext2 := newExternal(t, externalCfg(startHandler(t, func(ctx *fasthttp.RequestCtx) {
		sent.Store(string(ctx.Request.Body()))
		allowAll(ctx)
	}), "", 5*time.Second, ttl), authz.Options{Now: clk.Now})
	if _, err := ext2.Authorize(context.Background(), request(alice, get)); err != nil {
		t.Fatal(err)
	}
	ext2.WaitCache()
	if _, err := ext2.Authorize(context.Background(), request(alice, get, act("PUT", "api:/x"))); err != nil {
		t.Fatal(err)
	}
	if s := sent.Load().(string); strings.Contains(s, `"GET"`) || !strings.Contains(s, `"PUT"`) {
		t.Fatalf("second call sent %s", s)
	}
}

func withGen(id *authn.Identity, gen uint64) *authn.Identity {
	c := *id
	c.Generation = gen
	return &c
}

// TestExternalInvalidationDuringCall: an answer obtained while an
// invalidation lands is not cached.
func TestExternalInvalidationDuringCall(t *testing.T) {
	t.Parallel()
	var ext *authz.External
	var calls atomic.Int32
	endpoint := startHandler(t, func(ctx *fasthttp.RequestCtx) {
		if calls.Add(1) == 1 {
			ext.Invalidate(store.Invalidation{Username: "alice"})
		}
		ctx.SetBodyString(`{"allowed":[{"action":"GET","target":"api:/a"}]}`)
	})
	ext = newExternal(t, externalCfg(endpoint, "", 5*time.Second, time.Minute), authz.Options{})
	req := request(ident("alice", "acme"), act("GET", "api:/a"))
	for i := range 3 {
		if _, err := ext.Authorize(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		ext.WaitCache()
		if want := []int32{1, 2, 2}[i]; calls.Load() != want {
			t.Fatalf("after call %d: %d plugin calls, want %d", i+1, calls.Load(), want)
		}
	}
}

// TestExternalErrorsNotCached: a 503 is not remembered.
func TestExternalErrorsNotCached(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	endpoint := startHandler(t, func(ctx *fasthttp.RequestCtx) {
		if calls.Add(1) == 1 {
			ctx.SetStatusCode(503)
			return
		}
		ctx.SetBodyString(`{"allowed":[{"action":"GET","target":"api:/a"}]}`)
	})
	ext := newExternal(t, externalCfg(endpoint, "", 5*time.Second, time.Minute), authz.Options{})
	req := request(ident("alice", "acme"), act("GET", "api:/a"))
	if _, err := ext.Authorize(context.Background(), req); !errors.Is(err, authz.ErrUnavailable) {
		t.Fatalf("first: %v", err)
	}
	ext.WaitCache()
	if _, err := ext.Authorize(context.Background(), req); err != nil {
		t.Fatalf("second: %v", err)
	}
}

// TestExternalConcurrent exercises the cache and invalidations under -race.
func TestExternalConcurrent(t *testing.T) {
	t.Parallel()
	_, endpoint := startPlugin(t, testRules, testSecret)
	ext := newExternal(t, externalCfg(endpoint, testSecret, 5*time.Second, time.Minute), authz.Options{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				if g == 0 && i%10 == 0 {
					ext.Invalidate(store.Invalidation{Username: "alice"})
					continue
				}
				r := authz.AcquireRequest()
				r.Identity = ident("alice", "acme")
				r.Domain = "acme"
				r.AddRouteAction([]byte("GET"), "api", []byte("/v1/x"))
				if g%2 == 1 {
					r.AddRouteAction([]byte("DELETE"), "api", []byte("/admin"))
				}
				_, err := ext.Authorize(context.Background(), r)
				if (g%2 == 1) != (err != nil) {
					t.Errorf("goroutine %d: err = %v", g, err)
				}
				authz.ReleaseRequest(r)
			}
		})
	}
	wg.Wait()
}

func TestNewExternalErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  func(c *configs.External)
	}{
		{"not a URL", func(c *configs.External) { c.Endpoint = "127.0.0.1:8089" }},
		{"ftp", func(c *configs.External) { c.Endpoint = "ftp://127.0.0.1" }},
		{"credentials", func(c *configs.External) { c.Endpoint = "http://u:p@127.0.0.1" }},
		{"query", func(c *configs.External) { c.Endpoint = "http://127.0.0.1/?a=b" }},
		{"zero timeout", func(c *configs.External) { c.Timeout = 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := externalCfg("http://127.0.0.1:8089", "", time.Second, time.Second)
			tc.cfg(&cfg)
			if _, err := authz.NewExternal(cfg, authz.Options{}); err == nil {
				t.Fatal("accepted")
			} else if strings.Contains(err.Error(), "u:p") {
				t.Fatalf("error leaks credentials: %v", err)
			}
		})
	}
}
