package proxy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/configs"
)

func TestExtraHandlers(t *testing.T) {
	up := newUpstream(t)
	extra := map[string]fasthttp.RequestHandler{
		"/oauth/token": func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"ok":true}`)
		},
	}
	_, addr := startProxy(t, baseConfig(stdRoutes(up.url())...), Options{Extra: extra})
	tests := []struct {
		name, raw string
		status    int
		body      string
	}{
		{"served", "POST /oauth/token HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\na=b", 200, `{"ok":true}`},
		{"with query", get("/oauth/token?x=1"), 200, `{"ok":true}`},
		{"not a prefix match", get("/oauth/token/x"), 200, "upstream:/oauth/token/x"},
		{"duplicate Authorization still refused", get("/oauth/token", "Authorization: a", "Authorization: b"), 400, ""},
		{"smuggling still refused", "POST /oauth/token HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rawDo(t, addr, tt.raw)
			if r.Status != tt.status || tt.body != "" && r.Body != tt.body {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
			if r.Header.Get("X-Request-Id") == "" {
				t.Fatal("no request id")
			}
		})
	}
}

func TestTrailerAndExpect(t *testing.T) {
	up := newUpstream(t)
	_, addr := startProxy(t, baseConfig(stdRoutes(up.url())...), Options{Authenticator: testAuth{}})
	r := rawDo(t, addr, "POST /admin/t HTTP/1.1\r\nHost: h\r\nAuthorization: ApiKey good\r\nTrailer: X-Auth-User\r\n"+
		"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Auth-User: mallory\r\nX-Auth-Roles: root\r\n\r\n")
	// Trailers are merged into the headers after the body, past the
	// sanitiser: refused, never forwarded (body.go).
	if r.Status != 400 || !strings.Contains(r.Body, "trailers are not accepted") || up.count() != 0 {
		t.Fatalf("status %d %s, forwarded %d", r.Status, r.Body, up.count())
	}
	r = rawDo(t, addr, "POST /public/e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab")
	if r.Status != 100 && r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
}

func TestChunkedUpstreamResponse(t *testing.T) {
	up := newUpstream(t)
	up.respond = func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			_, _ = w.WriteString("part1-")
			_ = w.Flush()
			_, _ = w.WriteString("part2")
		})
	}
	_, addr := startProxy(t, baseConfig(stdRoutes(up.url())...), Options{})
	r := rawDo(t, addr, get("/public/chunked"))
	if r.Status != 200 || r.Body != "part1-part2" {
		t.Fatalf("%d %q", r.Status, r.Body)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key to dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keygate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestTLSListener(t *testing.T) {
	up := newUpstream(t)
	cfg := baseConfig(stdRoutes(up.url())...)
	cfg.TLS.CertFile, cfg.TLS.KeyFile = selfSigned(t, t.TempDir())
	_, addr := startProxy(t, cfg, Options{})
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a test client of the test's own self-signed server
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, get("/public/tls", "X-Forwarded-Proto: http")); err != nil {
		t.Fatal(err)
	}
	r, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("status %d", r.StatusCode)
	}
	if s := up.last(t); s.one(t, "X-Forwarded-Proto") != "https" || s.URI != "/public/tls" {
		t.Fatalf("upstream saw %v", s)
	}
}

// closingUpstream answers one request per connection with a keep-alive
// response and then closes the connection: the proxy's pooled connection
// is stale on the next request.
func closingUpstream(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				n.Add(1)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				time.Sleep(10 * time.Millisecond)
			}()
		}
	}()
	return "http://" + ln.Addr().String(), &n
}

func TestRetryOnlyIdempotent(t *testing.T) {
	up, n := closingUpstream(t)
	_, addr := startProxy(t, baseConfig(configs.Route{Name: "c", PathPrefix: "/", Upstreams: []string{up}, Auth: configs.AuthNone}), Options{})
	if r := rawDo(t, addr, get("/a")); r.Status != 200 {
		t.Fatalf("first %d", r.Status)
	}
	time.Sleep(100 * time.Millisecond)
	// GET on the stale pooled connection is retried on a fresh one.
	if r := rawDo(t, addr, get("/b")); r.Status != 200 {
		t.Fatalf("GET on stale connection: %d %s", r.Status, r.Body)
	}
	time.Sleep(100 * time.Millisecond)
	before := n.Load()
	// POST on the stale pooled connection is not retried.
	r := rawDo(t, addr, "POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx")
	if r.Status != 502 {
		t.Fatalf("POST on stale connection: %d, want 502", r.Status)
	}
	if got := n.Load() - before; got != 0 {
		t.Fatalf("POST reached the upstream %d times", got)
	}
}

func TestHeadAndFramingHeadersInConnection(t *testing.T) {
	up := newUpstream(t)
	_, addr := startProxy(t, baseConfig(stdRoutes(up.url())...), Options{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	// HEAD, then a POST naming its own framing headers in Connection, on
	// one keep-alive connection.
	_, _ = io.WriteString(c, "HEAD /public/h HTTP/1.1\r\nHost: h\r\n\r\n")
	r, err := http.ReadResponse(br, &http.Request{Method: "HEAD"}) //nolint:bodyclose // a raw connection's exchange: the test reads what it checks, the connection's Close ends it
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("HEAD: %v %v", r, err)
	}
	if s := up.last(t); s.Method != "HEAD" {
		t.Fatalf("upstream method %s", s.Method)
	}
	_, _ = io.WriteString(c, "POST /public/p HTTP/1.1\r\nHost: h\r\nConnection: Content-Length, Host\r\nContent-Length: 4\r\n\r\nbody")
	r, err = http.ReadResponse(br, nil) //nolint:bodyclose // a raw connection's exchange: the test reads what it checks, the connection's Close ends it
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("POST: %v %v", r, err)
	}
	b, _ := io.ReadAll(r.Body)
	if s := up.last(t); s.BodySize != 4 || s.one(t, "Host") != "h" || string(b) != "upstream:/public/p" {
		t.Fatalf("upstream saw %+v", s)
	}
}

// Server() alone (as cmd/keygate may wire it) serves the pipeline with the
// limits of the (normalised) config as they are: no default of its own.
func TestServerAlone(t *testing.T) {
	up := newUpstream(t)
	cfg := baseConfig(stdRoutes(up.url())...)
	cfg.Limits.IdleTimeout = configs.Duration(7 * time.Second)
	p, err := New(ConfigOf(cfg), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := p.Server()
	if s != p.Server() {
		t.Fatal("Server not built once")
	}
	if s.ReadTimeout != 5*time.Second || s.WriteTimeout != 5*time.Second || s.IdleTimeout != 7*time.Second || s.Concurrency != 64 ||
		s.MaxRequestBodySize != 64<<10 || s.ReadBufferSize != 16<<10 || !s.NoDefaultServerHeader || !s.StreamRequestBody || s.ExpectHandler == nil {
		t.Fatalf("server settings %+v", s)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)     //nolint:errcheck
	defer s.Shutdown() //nolint:errcheck
	if r := rawDo(t, ln.Addr().String(), get("/public/alone")); r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
	r := rawDo(t, ln.Addr().String(), "POST /public/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx")
	wantErrBody(t, r, 400, "bad_request")
}

func TestForwardedIPv6Peer(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	up := newUpstream(t)
	for _, tt := range []struct {
		trusted []string
		xff     string
	}{
		{nil, "::1"},
		{[]string{"::1/128"}, "2001:db8::1, ::1"},
		{[]string{"127.0.0.1"}, "::1"},
	} {
		cfg := baseConfig(stdRoutes(up.url())...)
		cfg.TrustedProxies = tt.trusted
		p, err := New(ConfigOf(cfg), Options{})
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp6", "[::1]:0")
		if err != nil {
			t.Fatal(err)
		}
		go p.Serve(l) //nolint:errcheck
		r := rawDo(t, l.Addr().String(), get("/public/v6", "X-Forwarded-For: 2001:db8::1"))
		_ = p.Server().Shutdown()
		if r.Status != 200 {
			t.Fatalf("status %d", r.Status)
		}
		if got := up.last(t).one(t, "X-Forwarded-For"); got != tt.xff {
			t.Errorf("trusted %v: XFF %q want %q", tt.trusted, got, tt.xff)
		}
	}
	_ = ln.Close()
}
