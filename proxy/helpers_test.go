package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/configs"
)

// seen is one request as the upstream received it.
type seen struct {
	Method   string
	URI      string // raw request target
	Headers  [][2]string
	BodySize int
}

// get returns every value of header name (exact, case-insensitive).
func (s seen) get(name string) []string {
	var out []string
	for _, kv := range s.Headers {
		if strings.EqualFold(kv[0], name) {
			out = append(out, kv[1])
		}
	}
	return out
}

func (s seen) one(t *testing.T, name string) string {
	t.Helper()
	v := s.get(name)
	if len(v) != 1 {
		t.Fatalf("upstream got %d %q headers (%q), want 1; all: %v", len(v), name, v, s.Headers)
	}
	return v[0]
}

// upstream is a real fasthttp server on 127.0.0.1 that records requests,
// keeping header names as sent.
type upstream struct {
	addr  string
	mu    sync.Mutex
	reqs  []seen
	delay time.Duration
	// respond, if set, adds to the response.
	respond func(ctx *fasthttp.RequestCtx)
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = ln.Addr().String()
	s := &fasthttp.Server{
		DisableHeaderNamesNormalizing: true,
		ReadTimeout:                   5 * time.Second,
		Handler: func(ctx *fasthttp.RequestCtx) {
			r := seen{Method: string(ctx.Method()), URI: string(ctx.Request.Header.RequestURI()), BodySize: len(ctx.Request.Body())}
			for k, v := range ctx.Request.Header.AllInOrder() {
				r.Headers = append(r.Headers, [2]string{string(k), string(v)})
			}
			u.mu.Lock()
			u.reqs = append(u.reqs, r)
			d := u.delay
			fn := u.respond
			u.mu.Unlock()
			if d > 0 {
				time.Sleep(d)
			}
			ctx.Response.Header.Set("X-Upstream", "yes")
			ctx.SetBodyString("upstream:" + r.URI)
			if fn != nil {
				fn(ctx)
			}
		},
	}
	go s.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = s.Shutdown() })
	return u
}

func (u *upstream) url() string { return "http://" + u.addr }

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *upstream) last(t *testing.T) seen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("upstream received nothing")
	}
	return u.reqs[len(u.reqs)-1]
}

func (u *upstream) reset() {
	u.mu.Lock()
	u.reqs = nil
	u.mu.Unlock()
}

// testAuth is the test double of the authentication seam: "Bearer good" is
// alice (bearer), "ApiKey good" is alice's key k1, anything else is 401.
type testAuth struct{}

func (testAuth) Authenticate(ctx *fasthttp.RequestCtx, _ *Route, _ netip.Addr) (*authn.Identity, error) {
	switch string(ctx.Request.Header.Peek("Authorization")) {
	case "":
		return nil, nil
	case "Bearer good":
		return &authn.Identity{Username: "alice", Account: "acme", Roles: []string{"admin", "dev"}, RolesHeader: "admin,dev", Method: authn.MethodBearer}, nil
	case "ApiKey good":
		return &authn.Identity{Username: "alice", Account: "acme", Roles: []string{"dev"}, RolesHeader: "dev", Method: authn.MethodAPIKey, KeyID: "k1", KeyName: "ci"}, nil
	case "Bearer expired":
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="keygate", error="invalid_token"`)
		return nil, &HTTPError{Status: 401, Code: "invalid_token", Message: "token expired"}
	case "Bearer boom":
		return nil, errors.New("store exploded with secret s3cr3t")
	}
	return nil, &HTTPError{Status: 401, Code: "invalid_credentials", Message: "bad credentials"}
}

// baseConfig is configs.Default() with test-sized limits and routes,
// normalised as Load does (components trust a normalised config).
func baseConfig(routes ...configs.Route) *configs.Config {
	c := configs.Default()
	c.Listen = "127.0.0.1:0"
	c.Limits = configs.Limits{
		MaxBody: 64 << 10, MaxHeader: 16 << 10, Concurrency: 64,
		ReadTimeout:  configs.Duration(5 * time.Second),
		WriteTimeout: configs.Duration(5 * time.Second),
		IdleTimeout:  configs.Duration(5 * time.Second),
	}
	c.Routes = routes
	c.Normalize()
	return c
}

// startProxy runs p.Serve on 127.0.0.1:0 and returns its address.
func startProxy(t *testing.T, cfg *configs.Config, opts Options) (*Proxy, string) {
	t.Helper()
	p, err := New(ConfigOf(cfg), opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = p.Serve(ln); close(done) }()
	t.Cleanup(func() {
		_ = p.Server().Shutdown()
		<-done
		p.Close()
	})
	return p, ln.Addr().String()
}

type resp struct {
	Status int
	Header http.Header
	Body   string
	Close  bool
}

// rawDo sends raw bytes on a new connection and reads one response.
func rawDo(t *testing.T, addr, raw string) resp {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	r, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	defer func() { _ = r.Body.Close() }()
	b, _ := io.ReadAll(r.Body)
	return resp{Status: r.StatusCode, Header: r.Header, Body: string(b), Close: r.Close}
}

// get builds a simple GET with extra header lines.
func get(target string, lines ...string) string {
	var b strings.Builder
	b.WriteString("GET " + target + " HTTP/1.1\r\nHost: example.com\r\n")
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

func wantErrBody(t *testing.T, r resp, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d (body %s)", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	if code != "" && !strings.Contains(r.Body, `"code":"`+code+`"`) {
		t.Fatalf("body %s, want code %q", r.Body, code)
	}
	if r.Header.Get("X-Request-Id") == "" {
		t.Fatalf("error response without X-Request-Id")
	}
}
