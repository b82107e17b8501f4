package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/echo"
	"github.com/keygate/keygate/internal/testport"
)

// lockedBuffer is a goroutine-safe bytes.Buffer.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newEnv(environ ...string) (*env, *lockedBuffer, *lockedBuffer) {
	var out, errOut lockedBuffer
	return &env{stdout: &out, stderr: &errOut, environ: environ}, &out, &errOut
}

func TestDispatch(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"no args", nil, exitUsage, "", "Usage: keygate"},
		{"unknown", []string{"nope"}, exitUsage, "", `unknown subcommand "nope"`},
		{"unknown control chars", []string{"a\x1b[2Jb"}, exitUsage, "", `unknown subcommand "a?[2Jb"`},
		{"version", []string{"version"}, exitOK, "keygate dev", ""},
		{"-v", []string{"-v"}, exitOK, "keygate dev", ""},
		{"version extra", []string{"version", "x"}, exitUsage, "", "unexpected argument"},
		{"help", []string{"help"}, exitOK, "echo", ""},
		{"--help", []string{"--help"}, exitOK, "serve", ""},
		{"help echo", []string{"help", "echo"}, exitOK, "", "-listen"},
		{"help help", []string{"help", "help"}, exitUsage, "", "unknown subcommand"},
		{"serve -h", []string{"serve", "-h"}, exitOK, "", "-config"},
		{"serve bad flag", []string{"serve", "-x"}, exitUsage, "", "flag provided but not defined"},
		{"echo stray", []string{"echo", "x"}, exitUsage, "", `unexpected argument "x"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, out, errOut := newEnv()
			if code := run(context.Background(), e, tc.args); code != tc.code {
				t.Errorf("exit %d, want %d (stderr %s)", code, tc.code, errOut)
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout %q lacks %q", out, tc.stdout)
			}
			if !strings.Contains(errOut.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", errOut, tc.stderr)
			}
		})
	}
}

func TestEveryCommandRegisteredOnce(t *testing.T) {
	for _, name := range []string{"echo", "help", "serve", "version"} {
		if lookup(name) == nil {
			t.Errorf("subcommand %s missing", name)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("duplicate registration accepted")
		}
	}()
	register(&command{name: "echo"})
}

func TestGetenvLastWins(t *testing.T) {
	e, _, _ := newEnv("A=1", "B=2", "A=3", "C", "AB=4")
	for name, want := range map[string]string{"A": "3", "B": "2", "C": "", "AB": "4", "Z": ""} {
		if got := e.getenv(name); got != want {
			t.Errorf("getenv(%s) = %q, want %q", name, got, want)
		}
	}
}

func TestWithoutServeEnv(t *testing.T) {
	in := []string{"KEYGATE_CONFIG=/x", "KEYGATE_ADMIN_PASSWORD=s3cret", "KEYGATE_LISTEN=:1", "KEYGATE_ROUTES=[]", "PATH=/bin"}
	got := strings.Join(withoutServeEnv(in, false), " ")
	if got != "KEYGATE_LISTEN=:1 KEYGATE_ROUTES=[] PATH=/bin" {
		t.Errorf("without demo: %s", got)
	}
	got = strings.Join(withoutServeEnv(in, true), " ")
	if got != "KEYGATE_LISTEN=:1 PATH=/bin" {
		t.Errorf("with demo: %s", got)
	}
}

func TestLoadConfigDemo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	// A user-supplied KEYGATE_ROUTES is replaced by the demo route.
	cfg, err := loadConfig("", []string{`KEYGATE_ROUTES=[{"name":"x","path_prefix":"/x","upstreams":["http://127.0.0.1:1"]}]`}, ln)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Routes) != 2 {
		t.Fatalf("routes = %+v", cfg.Routes)
	}
	for i, want := range []struct{ name, prefix, auth string }{
		{"demo-public", "/public", configs.AuthNone},
		{"demo", "/", configs.AuthRequired},
	} {
		r := cfg.Routes[i]
		if r.Name != want.name || r.PathPrefix != want.prefix || r.Auth != want.auth ||
			len(r.Upstreams) != 1 || r.Upstreams[0] != "http://"+ln.Addr().String() {
			t.Errorf("demo route %d = %+v", i, r)
		}
	}
	// Without the demo, the defaults have no route: a validation error.
	_, err = loadConfig("", nil, nil)
	var ve *configs.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want a ValidationError", err)
	}
}

func TestPrintConfigError(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&configs.ValidationError{Problems: []string{"listen: bad", "routes: none"}}, "invalid configuration:\n  - listen: bad\n  - routes: none\n"},
		{errors.New("configs: read config file: nope"), "invalid configuration: configs: read config file: nope\n"},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		printConfigError(&b, tc.err)
		if b.String() != tc.want {
			t.Errorf("got %q, want %q", b.String(), tc.want)
		}
	}
}

func TestNewLogger(t *testing.T) {
	var b bytes.Buffer
	log, err := newLogger("warn", &b)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown")
	if s := b.String(); strings.Contains(s, "hidden") || !strings.Contains(s, `"msg":"shown"`) || !json.Valid(bytes.TrimSpace(b.Bytes())) {
		t.Errorf("log output %q", s)
	}
	if _, err := newLogger("loud", &b); err == nil {
		t.Error("bad level accepted")
	}
}

func TestDialable(t *testing.T) {
	tests := []struct {
		addr *net.TCPAddr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4zero, Port: 8080}, "127.0.0.1:8080"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 8080}, "127.0.0.1:8080"},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, "127.0.0.1:1"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 2}, "[::1]:2"},
	}
	for _, tc := range tests {
		if got := dialable(tc.addr); got != tc.want {
			t.Errorf("dialable(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// freeAddr returns a free 127.0.0.1 address for the gateway to bind later,
// below the kernel's ephemeral port range so that no bind(":0") of a
// parallel test and no outgoing connection can take it first (testport).
func freeAddr(t *testing.T) string {
	t.Helper()
	return testport.Addr(t)
}

// waitOK polls url until it answers 200 or done is closed.
func waitOK(t *testing.T, url string, done <-chan int) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case code := <-done:
			t.Fatalf("exited early with %d", code)
		default:
		}
		if resp, err := c.Get(url); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
	}
	t.Fatalf("%s never ready", url)
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestEchoInProcess(t *testing.T) {
	addr := freeAddr(t)
	e, _, errOut := newEnv()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- runEcho(ctx, e, []string{"--listen", addr}) }()
	waitOK(t, "http://"+addr+"/x", done)
	code, body := get(t, "http://"+addr+"/a/../b?q=1")
	var r echo.Response
	if err := json.Unmarshal(body, &r); err != nil || code != 200 || r.Query != "q=1" {
		t.Errorf("%d %s %v", code, body, err)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit %d: %s", code, errOut)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("echo did not stop")
	}
}

// inProcess is a `keygate serve --demo` running in this process.
type inProcess struct {
	public, admin string
	errOut        *lockedBuffer
	cancel        context.CancelFunc
	done          chan int
}

// serveInProcess starts serve --demo in this process (so the race detector
// sees its goroutines) on free ports and a fresh store, with extraEnv, and
// returns once the admin listener answers. Stop it with stop.
func serveInProcess(t *testing.T, extraEnv ...string) *inProcess {
	t.Helper()
	p := &inProcess{public: freeAddr(t), admin: freeAddr(t), done: make(chan int, 1)}
	e, _, errOut := newEnv(append([]string{
		"KEYGATE_LISTEN=" + p.public,
		"KEYGATE_ADMIN_LISTEN=" + p.admin,
		"KEYGATE_STORE_BOLT_PATH=" + filepath.Join(t.TempDir(), "d", "kg.db"),
		"KEYGATE_ADMIN_PASSWORD=in-process-test-password",
		"KEYGATE_SHUTDOWN_TIMEOUT=5s",
	}, extraEnv...)...)
	p.errOut = errOut
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	t.Cleanup(cancel)
	go func() { p.done <- runServe(ctx, e, []string{"--demo"}) }()
	waitOK(t, "http://"+p.admin+"/healthz", p.done)
	return p
}

// stop cancels serve and fails unless it exits 0 in time.
func (p *inProcess) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	select {
	case code := <-p.done:
		if code != exitOK {
			t.Errorf("exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
}

// TestServeInProcess runs serve --demo in this process, proxies one request
// and stops it by cancelling ctx.
func TestServeInProcess(t *testing.T) {
	p := serveInProcess(t)
	public, admin, errOut := p.public, p.admin, p.errOut

	code, body := get(t, "http://"+public+"/public/hello?x=1")
	var r echo.Response
	if err := json.Unmarshal(body, &r); err != nil || code != 200 || r.Path != "/public/hello" || r.Query != "x=1" {
		t.Errorf("proxied: %d %s %v", code, body, err)
	}
	if code, body := get(t, "http://"+public+"/hello"); code != 401 {
		t.Errorf("no credentials on /: %d %s", code, body)
	}
	// A login costs an argon2id hash, far slower under -race than the
	// chain's timeout on a loaded machine: e2e.TestDemo logs in through the
	// built binary instead.
	if code, body := get(t, "http://"+admin+"/readyz"); code != 200 {
		t.Errorf("readyz: %d %s", code, body)
	}
	p.stop(t)
	if s := errOut.String(); strings.Contains(s, "in-process-test-password") {
		t.Errorf("password in output:\n%s", s)
	} else if !strings.Contains(s, "keygate started") || !strings.Contains(s, "curl -i http://"+public+"/public/hello?x=1") {
		t.Errorf("stderr:\n%s", s)
	}
}

// admin.pprof reaches the admin listener: off, /debug/pprof… is not there;
// on, it asks for credentials (the access rules are admin's tests; a login
// costs an argon2id hash, too slow here under -race) and start-up says so.
func TestServePprof(t *testing.T) {
	tests := []struct {
		name        string
		env         []string
		heap, index int
		logged      bool
	}{
		{"default off", nil, 404, 404, false},
		{"off", []string{"KEYGATE_ADMIN_PPROF=false"}, 404, 404, false},
		{"on", []string{"KEYGATE_ADMIN_PPROF=true"}, 401, 401, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := serveInProcess(t, tc.env...)
			if code, body := get(t, "http://"+p.admin+"/debug/pprof/heap"); code != tc.heap {
				t.Errorf("/debug/pprof/heap: %d %s, want %d", code, body, tc.heap)
			}
			if code, body := get(t, "http://"+p.admin+"/debug/pprof"); code != tc.index {
				t.Errorf("/debug/pprof: %d %s, want %d", code, body, tc.index)
			}
			if code, body := get(t, "http://"+p.admin+"/debug/pprof/"); code != 404 {
				t.Errorf("/debug/pprof/: %d %s, want 404 (no admin path ends in '/')", code, body)
			}
			p.stop(t)
			line := `"msg":"admin pprof enabled on http://` + p.admin + `/debug/pprof"`
			if s := p.errOut.String(); strings.Contains(s, line) != tc.logged || strings.Count(s, "admin pprof enabled") > 1 {
				t.Errorf("start-up log (want %s: %v):\n%s", line, tc.logged, s)
			}
		})
	}
}

func TestEffectiveHashConcurrency(t *testing.T) {
	for _, tc := range []struct{ configured, cpus, want int }{
		{2, 2, 1}, {2, 1, 1}, {2, 4, 2}, {8, 4, 3}, {1, 16, 1}, {0, 8, 1},
	} {
		if got := effectiveHashConcurrency(tc.configured, tc.cpus); got != tc.want {
			t.Errorf("effectiveHashConcurrency(%d, %d) = %d, want %d", tc.configured, tc.cpus, got, tc.want)
		}
	}
}

// TestEverySubcommandHelpExitsZero: `keygate <sub> --help` asks for the
// usage, so it is not a usage error (exit 0) for every subcommand.
func TestEverySubcommandHelpExitsZero(t *testing.T) {
	for _, c := range commands {
		if c.name == "help" {
			continue
		}
		for _, flag := range []string{"-h", "--help"} {
			t.Run(c.name+" "+flag, func(t *testing.T) {
				e, _, errOut := newEnv()
				if code := run(context.Background(), e, []string{c.name, flag}); code != exitOK {
					t.Errorf("exit %d, want %d (stderr %s)", code, exitOK, errOut)
				}
			})
		}
	}
}
