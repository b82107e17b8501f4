package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testport"
)

func TestOversize(t *testing.T) {
	up := newUpstream(t)
	_, addr := startProxy(t, baseConfig(stdRoutes(up.url())...), Options{})
	big := strings.Repeat("a", 100<<10)
	tests := []struct {
		name, raw string
		status    int
	}{
		{"100 KB header", get("/public/x", "X-Big: "+big), 431},
		{"many headers", get("/public/x", strings.Repeat("X-A: "+strings.Repeat("b", 100)+"\r\n", 200)), 431},
		{"long URI", get("/public/" + big), 431},
		{"body over max_body", "POST /public/x HTTP/1.1\r\nHost: h\r\nContent-Length: 70000\r\n\r\n" + strings.Repeat("x", 70000), 413},
		{"declared body over max_body", "POST /public/x HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999\r\n\r\n", 413},
		{"chunked body over max_body", "POST /public/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n11170\r\n" + strings.Repeat("x", 70000) + "\r\n0\r\n\r\n", 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.reset()
			r := rawDo(t, addr, tt.raw)
			wantErrBody(t, r, tt.status, "")
			if up.count() != 0 {
				t.Fatal("forwarded")
			}
		})
	}
	t.Run("1 MB header line answered quickly", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		start := time.Now()
		go func() {
			// The server answers after 16 KiB and closes: later writes fail.
			_, _ = io.WriteString(c, "GET /public/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer "+strings.Repeat("t", 1<<20)+"\r\n\r\n")
		}()
		r, err := http.ReadResponse(bufio.NewReader(c), nil) //nolint:bodyclose // a raw connection's exchange: the test reads what it checks, the connection's Close ends it
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if r.StatusCode != 431 {
			t.Fatalf("status %d", r.StatusCode)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("took %v", d)
		}
	})
	t.Run("body at max_body passes", func(t *testing.T) {
		r := rawDo(t, addr, "POST /public/x HTTP/1.1\r\nHost: h\r\nContent-Length: 65536\r\n\r\n"+strings.Repeat("x", 65536))
		if r.Status != 200 || up.last(t).BodySize != 65536 {
			t.Fatalf("status %d", r.Status)
		}
	})
}

func TestUpstreamFailures(t *testing.T) {
	// A port with nothing listening; below the ephemeral range
	// (testport), no parallel test's bind(":0") can start listening there.
	dead := "http://" + testport.Addr(t)
	slow := newUpstream(t)
	slow.delay = time.Second
	fast := newUpstream(t)
	cfg := baseConfig(
		configs.Route{Name: "dead", PathPrefix: "/dead", Upstreams: []string{dead}, Auth: configs.AuthNone},
		configs.Route{Name: "slow", PathPrefix: "/slow", Upstreams: []string{slow.url()}, Auth: configs.AuthNone, Timeout: configs.Duration(200 * time.Millisecond)},
		configs.Route{Name: "fast", PathPrefix: "/fast", Upstreams: []string{fast.url()}, Auth: configs.AuthNone, Timeout: configs.Duration(200 * time.Millisecond)},
	)
	_, addr := startProxy(t, cfg, Options{})
	tests := []struct {
		name, raw string
		status    int
		code      string
		max       time.Duration
	}{
		{"refused", get("/dead/x"), 502, "bad_gateway", time.Second},
		{"refused POST", "POST /dead/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx", 502, "bad_gateway", time.Second},
		{"slow GET", get("/slow/x"), 504, "upstream_timeout", 700 * time.Millisecond},
		{"slow POST", "POST /slow/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx", 504, "upstream_timeout", 700 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r := rawDo(t, addr, tt.raw)
			wantErrBody(t, r, tt.status, tt.code)
			if d := time.Since(start); d > tt.max {
				t.Fatalf("took %v", d)
			}
		})
	}
	// Non-idempotent requests are never retried.
	if n := slow.count(); n != 2 {
		t.Fatalf("slow upstream got %d requests, want 2 (no retries)", n)
	}
	if r := rawDo(t, addr, get("/fast/x")); r.Status != 200 {
		t.Fatalf("fast route %d", r.Status)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	up := newUpstream(t)
	cfg := baseConfig(stdRoutes(up.url())...)
	cfg.Limits.Concurrency = 2
	_, addr := startProxy(t, cfg, Options{})
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	time.Sleep(50 * time.Millisecond)
	r := rawDo(t, addr, get("/public/x"))
	if r.Status != 503 || !strings.Contains(r.Body, `"code":"overloaded"`) || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("over limit: %d %v %s", r.Status, r.Header, r.Body)
	}
	for _, c := range held {
		_ = c.Close()
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		r = rawDo(t, addr, get("/public/x"))
		if r.Status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not served after release: %d", r.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSlowloris(t *testing.T) {
	up := newUpstream(t)
	cfg := baseConfig(stdRoutes(up.url())...)
	cfg.Limits.ReadTimeout = configs.Duration(300 * time.Millisecond)
	_, addr := startProxy(t, cfg, Options{})
	const n = 5
	var wg sync.WaitGroup
	closedAfter := make(chan time.Duration, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				closedAfter <- -1
				return
			}
			defer func() { _ = c.Close() }()
			start := time.Now()
			go func() {
				req := get("/public/slow")
				for i := 0; i < len(req); i++ {
					if _, err := c.Write([]byte{req[i]}); err != nil {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, _ = io.Copy(io.Discard, c) // returns when the server closes
			closedAfter <- time.Since(start)
		}()
	}
	// Others are served meanwhile.
	for range 3 {
		if r := rawDo(t, addr, get("/public/ok")); r.Status != 200 {
			t.Fatalf("status %d", r.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	close(closedAfter)
	for d := range closedAfter {
		if d < 0 || d > 1500*time.Millisecond {
			t.Fatalf("slow connection closed after %v", d)
		}
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	for _, s := range up.reqs {
		if s.URI == "/public/slow" {
			t.Fatal("slow request forwarded")
		}
	}
}

func TestMetricsAndAccessLog(t *testing.T) {
	up := newUpstream(t)
	reg := prometheus.NewRegistry()
	core, logs := observer.New(zap.InfoLevel)
	cfg := baseConfig(stdRoutes(up.url())...)
	cfg.Log.Access = true
	cfg.Log.AccessSample = 1
	_, addr := startProxy(t, cfg, Options{Registerer: reg, Logger: zap.New(core), Authenticator: testAuth{}})
	rawDo(t, addr, get("/public/a"))
	rawDo(t, addr, get("/public/b"))
	rawDo(t, addr, get("/admin/x", "Authorization: Bearer good"))
	rawDo(t, addr, get("/admin/x", "Authorization: Bearer s3cr3t-token"))
	rawDo(t, addr, get("/public/%2e%2e"))
	cfg2 := *cfg
	cfg2.Routes = cfg.Routes[:1]
	p2, err := New(ConfigOf(&cfg2), Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetHost("h")
	ctx.Request.SetRequestURI("/nothing")
	p2.Handler(&ctx)
	if ctx.Response.StatusCode() != 404 {
		t.Fatalf("404 expected, got %d", ctx.Response.StatusCode())
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	hist := map[string]uint64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			lbl := ""
			for _, l := range m.GetLabel() {
				lbl += l.GetName() + "=" + l.GetValue() + ","
			}
			switch mf.GetName() {
			case "keygate_requests_total":
				counts[lbl] = m.GetCounter().GetValue()
			case "keygate_request_duration_seconds", "keygate_upstream_duration_seconds":
				hist[mf.GetName()+"{"+lbl+"}"] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	want := map[string]float64{
		"code=200,route=public,": 2, "code=200,route=admin,": 1, "code=401,route=admin,": 1, "code=400,route=,": 1,
	}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("requests_total{%s} = %v, want %v (all %v)", k, counts[k], v, counts)
		}
	}
	if hist["keygate_upstream_duration_seconds{route=public,}"] != 2 || hist["keygate_request_duration_seconds{route=admin,}"] != 2 {
		t.Errorf("histograms %v", hist)
	}

	entries := logs.FilterMessage("access").All()
	if len(entries) != 5 {
		t.Fatalf("%d access log lines", len(entries))
	}
	for _, e := range entries {
		m := e.ContextMap()
		for _, k := range []string{"method", "path", "status", "duration", "route", "request_id", "user"} {
			if _, ok := m[k]; !ok {
				t.Errorf("access log lacks %q: %v", k, m)
			}
		}
	}
	if m := entries[4].ContextMap(); m["path"] != "/public/%2e%2e" || m["status"] != int64(400) || m["route"] != "" {
		t.Errorf("entry %v", m)
	}
	if m := entries[2].ContextMap(); m["user"] != "alice" || m["route"] != "admin" || m["status"] != int64(200) || m["path"] != "/admin/x" {
		t.Errorf("entry %v", m)
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if strings.Contains(f.String, "s3cr3t") || strings.Contains(f.String, "Bearer") {
				t.Errorf("credential in log: %v", e.ContextMap())
			}
		}
	}
}

func TestAccessLogSampling(t *testing.T) {
	up := newUpstream(t)
	core, logs := observer.New(zap.InfoLevel)
	cfg := baseConfig(stdRoutes(up.url())...)
	cfg.Log.Access, cfg.Log.AccessSample = true, 3
	_, addr := startProxy(t, cfg, Options{Logger: zap.New(core)})
	for range 9 {
		rawDo(t, addr, get("/public/a"))
	}
	if n := logs.FilterMessage("access").Len(); n != 3 {
		t.Fatalf("%d lines for 9 requests at 1/3", n)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name  string
		mut   func(*configs.Config)
		wants []string
	}{
		{"bad upstream scheme, no leak", func(c *configs.Config) {
			c.Routes[0].Upstreams = []string{"ftp://u:hunter2@host"}
		}, []string{"routes[0]", "scheme"}},
		{"upstream with path and credentials", func(c *configs.Config) {
			c.Routes[0].Upstreams = []string{"http://u:hunter2@host/x"}
		}, []string{"routes[0]"}},
		{"no upstreams", func(c *configs.Config) { c.Routes[0].Upstreams = nil }, []string{"no upstreams"}},
		{"bad auth", func(c *configs.Config) { c.Routes[0].Auth = "maybe" }, []string{"auth must be"}},
		{"bad prefix", func(c *configs.Config) { c.Routes[0].PathPrefix = "/a/../b" }, []string{"path_prefix"}},
		{"duplicate names and bad trusted proxy", func(c *configs.Config) {
			c.Routes[1].Name = c.Routes[0].Name
			c.TrustedProxies = []string{"10.0.0.0/33", "nope"}
		}, []string{"duplicate name", "trusted_proxies[0]", "trusted_proxies[1]"}},
		{"mixed schemes", func(c *configs.Config) {
			c.Routes[0].Upstreams = []string{"http://a:1", "https://b:2"}
		}, []string{"mix"}},
		{"bad header name", func(c *configs.Config) { c.Headers.User = "X Auth" }, []string{"headers"}},
		{"bad method", func(c *configs.Config) { c.Routes[0].Methods = []string{"GE T"} }, []string{"method"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig(stdRoutes("http://127.0.0.1:1")...)
			tt.mut(cfg)
			_, err := New(ConfigOf(cfg), Options{})
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("password in error: %v", err)
			}
		})
	}
	if _, err := New(Config{}, Options{}); err == nil || !strings.Contains(err.Error(), "access_sample") {
		t.Fatalf("zero Config accepted: %v", err)
	}
	// Registering twice on one registry is reported, not a panic.
	reg := prometheus.NewRegistry()
	cfg := baseConfig(stdRoutes("http://127.0.0.1:1")...)
	if _, err := New(ConfigOf(cfg), Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ConfigOf(cfg), Options{Registerer: reg}); err == nil {
		t.Fatal("duplicate registration not reported")
	}
}

func TestWriteError(t *testing.T) {
	tests := []struct {
		err    error
		status int
		body   string
	}{
		{ErrNotFound, 404, `{"error":{"code":"not_found","message":"no route for this request"}}`},
		{errors.New("db password is hunter2"), 500, `{"error":{"code":"internal_error","message":"internal error"}}`},
		{&HTTPError{Status: 429, Code: "rate_limited", Message: `slow "down" <now>`}, 429, `{"error":{"code":"rate_limited","message":"slow \"down\" \u003cnow\u003e"}}`},
		{&HTTPError{Status: 200, Code: "x", Message: "y"}, 500, `{"error":{"code":"internal_error","message":"internal error"}}`},
		{errors.Join(errors.New("ctx"), ErrForbidden), 403, `{"error":{"code":"forbidden","message":"not allowed"}}`},
		{nil, 500, `{"error":{"code":"internal_error","message":"internal error"}}`},
	}
	for _, tt := range tests {
		var ctx fasthttp.RequestCtx
		ctx.SetBodyString("previous")
		WriteError(&ctx, tt.err)
		if ctx.Response.StatusCode() != tt.status || string(ctx.Response.Body()) != tt.body ||
			string(ctx.Response.Header.ContentType()) != "application/json" {
			t.Errorf("%v: %d %s %s", tt.err, ctx.Response.StatusCode(), ctx.Response.Body(), ctx.Response.Header.ContentType())
		}
	}
}
