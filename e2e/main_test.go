package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/echo"
	"github.com/keygate/keygate/internal/testport"
)

// binPath is the keygate binary TestMain builds once.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keygate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "keygate")
	// Without -race: the binary is the thing under test, the race detector
	// covers the packages' own tests.
	build := exec.Command("go", "build", "-o", binPath, "github.com/keygate/keygate/cmd/keygate") //nolint:gosec // runs the binary or tool the test built or needs; no outside input
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building keygate: %v\n%s", err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a free 127.0.0.1 address for a process to bind later,
// below the kernel's ephemeral port range so that no bind(":0") of a
// parallel test and no outgoing connection can take it first (testport).
func freeAddr(t *testing.T) string {
	t.Helper()
	return testport.Addr(t)
}

// syncBuffer is a goroutine-safe output sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running keygate process.
type proc struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	err            error // valid after done
}

// startProc starts the binary with args and extra environment variables
// (the parent's environment minus KEYGATE_*). It is killed at cleanup.
func startProc(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, done: make(chan struct{})}
	p.cmd = exec.Command(binPath, args...) //nolint:gosec // runs the binary or tool the test built or needs; no outside input
	p.cmd.Env = append(cleanEnv(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start keygate %v: %v", args, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("keygate %v stderr:\n%s", args, p.stderr.String())
		}
	})
	return p
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYGATE_") {
			env = append(env, kv)
		}
	}
	return env
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to end and returns its exit code.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("keygate did not exit within %v; stderr:\n%s", d, p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

// run runs the binary to completion (bounded) and returns exit code, stdout
// and stderr.
func run(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	p := startProc(t, env, args...)
	code := p.wait(20 * time.Second)
	return code, p.stdout.String(), p.stderr.String()
}

// waitHTTP polls GET url until it answers 200, failing if p exits first.
func waitHTTP(t *testing.T, p *proc, url string, tlsConf *tls.Config) {
	t.Helper()
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf, DisableKeepAlives: true}}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			t.Fatalf("keygate exited early (%v); stderr:\n%s", p.err, p.stderr.String())
		}
		resp, err := c.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s not ready; stderr:\n%s", url, p.stderr.String())
}

// startEchoProc runs `keygate echo` on a free port and returns its address.
func startEchoProc(t *testing.T) string {
	t.Helper()
	addr := freeAddr(t)
	p := startProc(t, nil, "echo", "--listen", addr)
	waitHTTP(t, p, "http://"+addr+"/ready", nil)
	return addr
}

// gateway is a running `keygate serve`.
type gateway struct {
	*proc
	public, admin string // host:port
	scheme        string
}

// url is an absolute URL on the public listener.
func (g *gateway) url(pathAndQuery string) string {
	return g.scheme + "://" + g.public + pathAndQuery
}

// serveOpts tunes startGateway.
type serveOpts struct {
	routes  string // YAML list under "routes:" (indented two spaces)
	extra   string // more top-level YAML
	env     []string
	tlsConf *tls.Config // client config when the gateway serves TLS
	// shutdownTimeout is the YAML shutdown_timeout (default 5s).
	shutdownTimeout string
	// store is the YAML "store:" block's body (default: bolt in a temp dir).
	store string
}

// startGateway writes a config with free ports and a bolt store in a temp dir,
// runs `keygate serve --config`, and waits for /healthz.
func startGateway(t *testing.T, o serveOpts) *gateway {
	t.Helper()
	dir := t.TempDir()
	g := &gateway{public: freeAddr(t), admin: freeAddr(t), scheme: "http"}
	storeYAML := o.store
	if storeYAML == "" {
		storeYAML = fmt.Sprintf("  driver: bolt\n  bolt:\n    path: %q", filepath.Join(dir, "data", "keygate.db"))
	}
	if o.tlsConf != nil {
		g.scheme = "https"
	}
	cfg := fmt.Sprintf(`listen: %q
admin:
  listen: %q
shutdown_timeout: %s
store:
%s
limits:
  max_body: 1MiB
  max_header: 16KiB
  read_timeout: 5s
  write_timeout: 5s
  idle_timeout: 5s
log:
  level: info
%s
routes:
%s
`, g.public, g.admin, cmp.Or(o.shutdownTimeout, "5s"), storeYAML, o.extra, o.routes)
	path := filepath.Join(dir, "keygate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append([]string{"KEYGATE_ADMIN_PASSWORD=correct-horse-battery-staple", "KEYGATE_TOKENS_SIGNING_SECRET=" + testSigningSecret}, o.env...)
	g.proc = startProc(t, env, "serve", "--config", path)
	waitHTTP(t, g.proc, "http://"+g.admin+"/healthz", nil)
	return g
}

// echoRoute is a YAML route to upstream with auth none.
func echoRoute(name, prefix, upstream string, more ...string) string {
	s := fmt.Sprintf("  - name: %s\n    path_prefix: %s\n    upstreams: [\"http://%s\"]\n    auth: none\n", name, prefix, upstream)
	for _, m := range more {
		s += "    " + m + "\n"
	}
	return s
}

// rawResponse is a response read off a raw connection.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// rawDo writes raw to addr over TCP and reads one response (bounded).
func rawDo(t *testing.T, addr, raw string) rawResponse {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// Write concurrently: the server may answer (and close) before reading
	// everything, e.g. on an oversize request.
	go func() { _, _ = io.WriteString(c, raw) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response to %.60q: %v", raw, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: body}
}

// decodeEcho parses an echo response body.
func decodeEcho(t *testing.T, body []byte) echo.Response {
	t.Helper()
	var r echo.Response
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("not an echo response: %v: %s", err, body)
	}
	return r
}

// errorCode returns error.code of a JSON error body, or "".
func errorCode(body []byte) string {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Code
}

// testUpstream is an upstream inside the test process that counts the
// requests it receives and may delay its answer.
type testUpstream struct {
	addr     string
	count    atomic.Int64
	delay    time.Duration
	received chan struct{} // one send per request, non-blocking
}

func startUpstream(t *testing.T, delay time.Duration) *testUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &testUpstream{addr: ln.Addr().String(), delay: delay, received: make(chan struct{}, 16)}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			u.count.Add(1)
			select {
			case u.received <- struct{}{}:
			default:
			}
			if u.delay > 0 {
				time.Sleep(u.delay)
			}
			echo.Handler(ctx)
		},
		DisableHeaderNamesNormalizing: true,
		ReadTimeout:                   10 * time.Second,
		WriteTimeout:                  10 * time.Second,
		IdleTimeout:                   10 * time.Second,
		CloseOnShutdown:               true,
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.ShutdownWithContext(ctx)
		<-done
	})
	return u
}

// sigterm sends SIGTERM to the process.
func (p *proc) sigterm() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
}

// testSigningSecret is the HS256 token secret of the gateways the tests
// start (serve refuses to start without a strong one when bearer is on).
const testSigningSecret = "e2e-Zq8v3Lr1Tw6Yp0Ks4Nd7Hb2Xm5Jc9Gf" //nolint:gosec // test data, not a real credential
