package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCLI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string // substring
		stderr     string // substring
		emptyStdio bool   // stdout must be empty
	}{
		{name: "no arguments", args: nil, code: 2, stderr: "Usage: keygate", emptyStdio: true},
		{name: "unknown subcommand", args: []string{"frobnicate"}, code: 2, stderr: `unknown subcommand "frobnicate"`, emptyStdio: true},
		{name: "version", args: []string{"version"}, code: 0, stdout: "keygate "},
		{name: "--version", args: []string{"--version"}, code: 0, stdout: "keygate "},
		{name: "help", args: []string{"help"}, code: 0, stdout: "serve"},
		{name: "help serve", args: []string{"help", "serve"}, code: 0, stderr: "-config"},
		{name: "help unknown", args: []string{"help", "nope"}, code: 2, stderr: "unknown subcommand"},
		{name: "serve -h", args: []string{"serve", "-h"}, code: 0, stderr: "-demo"},
		{name: "serve bad flag", args: []string{"serve", "--nope"}, code: 2, stderr: "flag provided but not defined"},
		{name: "serve stray argument", args: []string{"serve", "extra"}, code: 2, stderr: `unexpected argument "extra"`},
		{name: "echo bad flag", args: []string{"echo", "--port", "1"}, code: 2, stderr: "flag provided but not defined"},
		{name: "echo bad address", args: []string{"echo", "--listen", "127.0.0.1:notaport"}, code: 1, stderr: "cannot listen"},
		{name: "serve missing config file", args: []string{"serve", "--config", "/nonexistent/keygate.yaml"}, code: 2, stderr: "invalid configuration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(t, nil, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if !strings.Contains(stdout, tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, stdout)
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, stderr)
			}
			if tc.emptyStdio && stdout != "" {
				t.Errorf("stdout not empty: %q", stdout)
			}
		})
	}
}

func TestEchoSignals(t *testing.T) {
	t.Parallel()
	for _, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		t.Run(sig.String(), func(t *testing.T) {
			addr := freeAddr(t)
			p := startProc(t, nil, "echo", "--listen", addr)
			waitHTTP(t, p, "http://"+addr+"/", nil)
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := p.wait(5 * time.Second); code != 0 {
				t.Errorf("exit %d", code)
			}
		})
	}
}

func TestInvalidConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		env  []string
		want []string // substrings of stderr
	}{
		{
			name: "several problems",
			yaml: `limits:
  concurrency: -1
store:
  driver: mongo
log:
  level: loud
routes:
  - name: r
    path_prefix: api
    upstreams: []
    auth: maybe
`,
			want: []string{"invalid configuration:", "limits.concurrency", "store.driver", "log.level",
				"routes[0].path_prefix", "routes[0].upstreams", "routes[0].auth"},
		},
		{
			name: "no routes",
			yaml: "listen: \"127.0.0.1:0\"\n",
			want: []string{"invalid configuration:", "routes"},
		},
		{
			name: "unknown key",
			yaml: "listne: \":8080\"\nroutes: [{name: a, path_prefix: /, upstreams: [\"http://127.0.0.1:9\"]}]\n",
			want: []string{"invalid configuration", "listne"},
		},
		{
			name: "unknown nested key",
			yaml: "limits:\n  max_bodyy: 1MiB\nroutes: [{name: a, path_prefix: /, upstreams: [\"http://127.0.0.1:9\"]}]\n",
			want: []string{"invalid configuration", "max_bodyy"},
		},
		{
			name: "unknown environment variable",
			yaml: "routes: [{name: a, path_prefix: /, upstreams: [\"http://127.0.0.1:9\"]}]\n",
			env:  []string{"KEYGATE_LISTNE=:1"},
			want: []string{"invalid configuration", "KEYGATE_LISTNE"},
		},
		{
			name: "bad environment value",
			yaml: "routes: [{name: a, path_prefix: /, upstreams: [\"http://127.0.0.1:9\"]}]\n",
			env:  []string{"KEYGATE_SHUTDOWN_TIMEOUT=soon"},
			want: []string{"invalid configuration", "KEYGATE_SHUTDOWN_TIMEOUT"},
		},
		{
			name: "not yaml",
			yaml: "routes: [unclosed\n",
			want: []string{"invalid configuration"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := run(t, tc.env, "serve", "--config", path)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
	t.Run("config from KEYGATE_CONFIG", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(path, []byte("log: {level: loud}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := run(t, []string{"KEYGATE_CONFIG=" + path}, "serve")
		if code != 2 || !strings.Contains(stderr, "log.level") {
			t.Errorf("exit %d; stderr:\n%s", code, stderr)
		}
	})
}

func TestPortBusy(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	busy := ln.Addr().String()
	for _, key := range []string{"KEYGATE_LISTEN", "KEYGATE_ADMIN_LISTEN"} {
		t.Run(key, func(t *testing.T) {
			// The listener not under test takes a port the kernel picks
			// (127.0.0.1:0): a port from freeAddr could be taken by a
			// parallel test before keygate binds it, and keygate would
			// then fail on that one instead of on busy.
			env := []string{
				"KEYGATE_LISTEN=127.0.0.1:0", "KEYGATE_ADMIN_LISTEN=127.0.0.1:0",
				key + "=" + busy,
				"KEYGATE_STORE_BOLT_PATH=" + filepath.Join(t.TempDir(), "kg.db"),
			}
			code, _, stderr := run(t, env, "serve", "--demo")
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if !strings.Contains(stderr, "cannot listen on "+busy) || !strings.Contains(stderr, "address already in use") {
				t.Errorf("stderr does not explain:\n%s", stderr)
			}
		})
	}
}

func TestDemo(t *testing.T) {
	t.Parallel()
	public, adminAddr := freeAddr(t), freeAddr(t)
	env := []string{
		"KEYGATE_LISTEN=" + public,
		"KEYGATE_ADMIN_LISTEN=" + adminAddr,
		"KEYGATE_STORE_BOLT_PATH=" + filepath.Join(t.TempDir(), "sub", "dir", "keygate.db"),
	}
	p := startProc(t, env, "serve", "--demo")
	waitHTTP(t, p, "http://"+adminAddr+"/healthz", nil)

	resp, err := http.Get("http://" + public + "/public/hello?x=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	e := decodeEcho(t, body)
	if e.Method != "GET" || e.Path != "/public/hello" || e.Query != "x=1" {
		t.Errorf("echo saw %s %s ? %s", e.Method, e.Path, e.Query)
	}
	stderr := waitOutput(p, "keygate started")
	for _, want := range []string{
		"curl -i http://" + public + "/public/hello?x=1",
		"curl -i -u admin:<password> http://" + public + "/hello?x=1",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	// Everything but /public needs a credential: the generated admin
	// password works, a wrong one does not.
	resp, err = http.Get("http://" + public + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 401 || len(resp.Header.Values("WWW-Authenticate")) != 2 {
		t.Errorf("anonymous /hello: %d %v", resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
	}
	for _, tc := range []struct {
		pw   string
		want int
	}{{generatedPassword(t, stderr), 200}, {"wrong-password", 401}} {
		req, _ := http.NewRequest("GET", "http://"+public+"/hello?x=1", nil)
		req.SetBasicAuth("admin", tc.pw)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("admin login: %d, want %d: %s", resp.StatusCode, tc.want, body)
			continue
		}
		if tc.want == 200 {
			e := decodeEcho(t, body)
			if got := e.Headers["X-Auth-User"]; len(got) != 1 || got[0] != "admin" {
				t.Errorf("X-Auth-User upstream = %v", got)
			}
			if got := e.Headers["Authorization"]; len(got) != 0 {
				t.Errorf("Authorization forwarded: %v", got)
			}
		}
	}
	if !strings.Contains(stderr, `"msg":"keygate started"`) || !strings.Contains(stderr, `"store":"bolt"`) {
		t.Errorf("no start log line:\n%s", stderr)
	}
	// The bolt directory was created private.
	st, err := os.Stat(filepath.Dir(strings.TrimPrefix(env[2], "KEYGATE_STORE_BOLT_PATH=")))
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("store directory: %v %v", st.Mode(), err)
	}
	// The generated admin password is never printed when stderr is not a
	// terminal (here a pipe, as under any log collector): it is in a 0600
	// file beside the store, whose path is printed.
	pw := generatedPassword(t, stderr)
	pwFile := filepath.Join(filepath.Dir(strings.TrimPrefix(env[2], "KEYGATE_STORE_BOLT_PATH=")), "admin-password")
	if !strings.Contains(stderr, pwFile) {
		t.Errorf("stderr does not name %s:\n%s", pwFile, stderr)
	}
	if strings.Contains(stderr, pw) || strings.Contains(p.stdout.String(), pw) {
		t.Errorf("the generated password was printed:\n%s", stderr)
	}
	p.sigterm()
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}

	// A restart on the same store creates nothing and prints no password.
	p2 := startProc(t, env, "serve", "--demo")
	waitHTTP(t, p2, "http://"+adminAddr+"/healthz", nil)
	if s := p2.stderr.String(); strings.Contains(s, "generated password") || strings.Contains(s, pw) {
		t.Errorf("restart printed a password:\n%s", s)
	}
	if got, err := os.ReadFile(pwFile); err != nil || strings.TrimSpace(string(got)) != pw { //nolint:gosec // a file the test itself wrote
		t.Errorf("restart changed the password file: %v", err)
	}
	if err := p2.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := p2.wait(10 * time.Second); code != 0 {
		t.Errorf("restart: exit %d after SIGINT", code)
	}
}

// generatedPassword returns the password of the file whose path the first
// start printed ("… written to <path> (mode 0600 …"), after checking the
// file's mode is 0600.
func generatedPassword(t *testing.T, stderr string) string {
	t.Helper()
	const before, after = "written to ", " (mode 0600"
	i := strings.Index(stderr, before)
	if i < 0 {
		t.Fatalf("no generated password file on stderr:\n%s", stderr)
	}
	rest := stderr[i+len(before):]
	j := strings.Index(rest, after)
	if j < 0 {
		t.Fatalf("no generated password file on stderr:\n%s", stderr)
	}
	path := rest[:j]
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path) //nolint:gosec // a file the test itself wrote
	if err != nil {
		t.Fatal(err)
	}
	pw := strings.TrimSpace(string(b))
	if len(pw) != 24 {
		t.Fatalf("%s holds %d characters, want the 24 of a generated password", path, len(pw))
	}
	return pw
}

func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, 0)
	g := startGateway(t, serveOpts{routes: echoRoute("api", "/", up.addr)})
	// One proxied request so request metrics exist.
	if resp, err := http.Get(g.url("/some/thing")); err != nil {
		t.Fatal(err)
	} else {
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("proxied request: %d", resp.StatusCode)
		}
	}
	tests := []struct {
		method, path string
		code         int
		body         string
		contains     []string
	}{
		{"GET", "/healthz", 200, `{"status":"ok"}`, nil},
		{"GET", "/readyz", 200, `{"status":"ready","store":"ok","checks":{"startup":"ok","store_read":"ok","store_write":"ok"}}`, nil},
		{"GET", "/metrics", 200, "", []string{"keygate_requests_total{", `route="api"`, "go_goroutines ", "process_cpu_seconds_total"}},
		{"GET", "/nope", 404, "", []string{`"code":"not_found"`}},
		{"POST", "/healthz", 405, "", []string{`"code":"method_not_allowed"`}},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://"+g.admin+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.code, body)
			}
			if tc.body != "" && string(body) != tc.body {
				t.Errorf("body %s, want %s", body, tc.body)
			}
			for _, c := range tc.contains {
				if !strings.Contains(string(body), c) {
					t.Errorf("body lacks %q", c)
				}
			}
		})
	}
}

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, time.Second)
	g := startGateway(t, serveOpts{routes: echoRoute("slow", "/", up.addr)})

	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(g.url("/in-flight"))
		if err != nil {
			res <- result{err: err}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		res <- result{code: resp.StatusCode}
	}()
	select {
	case <-up.received:
	case <-time.After(5 * time.Second):
		t.Fatal("request never reached the upstream")
	}
	began := time.Now()
	g.sigterm()

	// New connections are refused while the request is still in flight.
	refused := false
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", g.public, 200*time.Millisecond)
		if err != nil {
			refused = true
			break
		}
		_ = c.Close()
	}
	if !refused {
		t.Error("new connections still accepted after SIGTERM")
	}
	r := <-res
	if r.err != nil || r.code != 200 {
		t.Errorf("in-flight request: %d %v", r.code, r.err)
	}
	if code := g.wait(6 * time.Second); code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("shutdown took %v, over shutdown_timeout", took)
	}
	if !strings.Contains(g.stderr.String(), "shutting down") {
		t.Errorf("no shutdown log:\n%s", g.stderr.String())
	}
}

func TestShutdownTimeout(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, 3*time.Second)
	g := startGateway(t, serveOpts{routes: echoRoute("slow", "/", up.addr, "timeout: 10s"), shutdownTimeout: "500ms"})
	go func() {
		if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(g.url("/stuck")); err == nil {
			_ = resp.Body.Close()
		}
	}()
	select {
	case <-up.received:
	case <-time.After(5 * time.Second):
		t.Fatal("request never reached the upstream")
	}
	began := time.Now()
	g.sigterm()
	if code := g.wait(5 * time.Second); code != 1 {
		t.Errorf("exit %d, want 1 when shutdown times out", code)
	}
	if took := time.Since(began); took > 2500*time.Millisecond {
		t.Errorf("exit took %v with shutdown_timeout 500ms", took)
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and returns the
// cert and key paths and a client config trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "keygate e2e"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, client := selfSigned(t)
	up := startUpstream(t, 0)
	g := startGateway(t, serveOpts{
		routes:  echoRoute("api", "/", up.addr),
		extra:   fmt.Sprintf("tls:\n  cert_file: %q\n  key_file: %q\n", certFile, keyFile),
		tlsConf: client,
	})
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: client}}
	resp, err := c.Get(g.url("/secure?x=1"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	e := decodeEcho(t, body)
	if e.Path != "/secure" || e.Query != "x=1" {
		t.Errorf("echo saw %s ? %s", e.Path, e.Query)
	}
	proto := ""
	for name, v := range e.Headers {
		if strings.EqualFold(name, "X-Forwarded-Proto") && len(v) == 1 {
			proto = v[0]
		}
	}
	if proto != "https" {
		t.Errorf("X-Forwarded-Proto = %q, want https", proto)
	}
	// Plain HTTP on the TLS listener gets no proxied answer.
	if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + g.public + "/x"); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP served on the TLS listener")
		}
	}

	t.Run("bad certificate file", func(t *testing.T) {
		dir := t.TempDir()
		bad := filepath.Join(dir, "bad.pem")
		if err := os.WriteFile(bad, []byte("not a pem"), 0o600); err != nil {
			t.Fatal(err)
		}
		env := []string{
			"KEYGATE_LISTEN=" + freeAddr(t), "KEYGATE_ADMIN_LISTEN=" + freeAddr(t),
			"KEYGATE_STORE_BOLT_PATH=" + filepath.Join(dir, "kg.db"),
			"KEYGATE_TLS_CERT_FILE=" + bad, "KEYGATE_TLS_KEY_FILE=" + keyFile,
		}
		code, _, stderr := run(t, env, "serve", "--demo")
		if code == 0 || !strings.Contains(stderr, "tls") {
			t.Errorf("exit %d; stderr:\n%s", code, stderr)
		}
		if key, _ := os.ReadFile(keyFile); strings.Contains(stderr, string(key[30:60])) { //nolint:gosec // a file the test itself wrote
			t.Error("stderr contains key material")
		}
	})
}
