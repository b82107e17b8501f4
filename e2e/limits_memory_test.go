package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Regression tests of issue 13 items 2, 3, 4 and 12 against the built
// binary; the heavy versions are in chaos_memory_test.go.

// zeroReader yields zero bytes forever.
type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) { clear(b); return len(b), nil }

// startBigUpstream serves GET /?n=<bytes>[&chunked=1] with a body of n zero
// bytes generated on the fly (the upstream itself holds nothing).
func startBigUpstream(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		n, _ := strconv.Atoi(string(ctx.QueryArgs().Peek("n")))
		size := n
		if ctx.QueryArgs().Has("chunked") {
			size = -1
		}
		ctx.SetBodyStream(io.LimitReader(zeroReader{}, int64(n)), size)
	}, ReadTimeout: 10 * time.Second, CloseOnShutdown: true}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// procMem returns VmRSS and VmHWM (peak RSS) of pid in bytes.
func procMem(t testing.TB, pid int) (rss, hwm int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// resetHWM resets the peak RSS of pid (Linux: write 5 to clear_refs).
func resetHWM(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// fetchDiscard GETs url and discards the body, returning its size.
func fetchDiscard(t testing.TB, url string) (int, int64) {
	t.Helper()
	r, err := http.Get(url) //nolint:gosec // a test URL on the loopback server the test started
	if err != nil {
		t.Error(err)
		return 0, 0
	}
	defer func() { _ = r.Body.Close() }()
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		t.Error(err)
	}
	return r.StatusCode, n
}

func authRoute(name, prefix, upstream string) string {
	return fmt.Sprintf("  - name: %s\n    path_prefix: %s\n    upstreams: [\"http://%s\"]\n    auth: required\n", name, prefix, upstream)
}

// TestLargeResponseStreamed (item 2): a 64 MiB upstream response goes
// through the gateway without being held: the peak RSS grows by far less
// than the body.
func TestLargeResponseStreamed(t *testing.T) {
	up := startBigUpstream(t)
	g := startGateway(t, serveOpts{routes: echoRoute("big", "/", up)})
	pid := g.cmd.Process.Pid
	if st, _ := fetchDiscard(t, g.url("/?n=1024")); st != 200 {
		t.Fatalf("warm-up: %d", st)
	}
	resetHWM(pid)
	base, _ := procMem(t, pid)
	tests := []struct{ name, q string }{
		{"declared length", "/?n=67108864"},
		{"chunked", "/?n=67108864&chunked=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, n := fetchDiscard(t, g.url(tt.q))
			if st != 200 || n != 64<<20 {
				t.Fatalf("status %d, %d bytes", st, n)
			}
			_, hwm := procMem(t, pid)
			if d := hwm - base; d > 24<<20 {
				t.Fatalf("peak RSS grew %d MiB for a 64 MiB response (buffered?)", d>>20)
			} else {
				t.Logf("peak RSS delta %.1f MiB", float64(d)/(1<<20))
			}
		})
	}
}

// TestAnsweredBeforeBody (items 2, 12): authentication and size are decided
// on the headers: with Expect: 100-continue no 100 is sent to a refused
// request; a client that writes its whole body first still reads the
// status.
func TestAnsweredBeforeBody(t *testing.T) {
	up := startEchoProc(t)
	g := startGateway(t, serveOpts{routes: authRoute("api", "/api", up) + echoRoute("pub", "/pub", up)})
	t.Run("expect 100-continue", func(t *testing.T) {
		tests := []struct {
			name, target string
			length       int
			status       int
		}{
			{"unauthenticated", "/api/x", 900 << 10, 401},
			{"over max_body", "/pub/x", 5 << 20, 413},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c, err := net.Dial("tcp", g.public)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = c.Close() }()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", tt.target, tt.length)
				start := time.Now()
				r, err := http.ReadResponse(bufio.NewReader(c), nil) //nolint:bodyclose // a raw connection's exchange: the test reads what it checks, the connection's Close ends it
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(r.Body)
				if r.StatusCode != tt.status || errorCode(b) == "" || time.Since(start) > time.Second {
					t.Fatalf("first answer %d %s after %v, want %d without the body", r.StatusCode, b, time.Since(start), tt.status)
				}
			})
		}
	})
	t.Run("whole body written first", func(t *testing.T) {
		tests := []struct {
			name, target string
			length       int
			status       int
		}{
			{"413, 12 MiB over a 1 MiB max_body", "/pub/x", 12 << 20, 413},
			{"401, 900 KiB unauthenticated", "/api/x", 900 << 10, 401},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c, err := net.Dial("tcp", g.public)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = c.Close() }()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", tt.target, tt.length, strings.Repeat("x", tt.length))
				if _, err := io.WriteString(c, req); err != nil {
					t.Fatalf("writing the body: %v", err)
				}
				r, err := http.ReadResponse(bufio.NewReader(c), nil) //nolint:bodyclose // a raw connection's exchange: the test reads what it checks, the connection's Close ends it
				if err != nil {
					t.Fatalf("the status was lost: %v", err)
				}
				b, _ := io.ReadAll(r.Body)
				if r.StatusCode != tt.status || errorCode(b) == "" {
					t.Fatalf("%d %s, want %d", r.StatusCode, b, tt.status)
				}
			})
		}
	})
}

// TestIdleConnectionsDoNotStarve (item 4): every slot of a small
// concurrency limit held by idle keep-alive connections; new clients are
// served promptly.
func TestIdleConnectionsDoNotStarve(t *testing.T) {
	up := startEchoProc(t)
	g := startGateway(t, serveOpts{routes: echoRoute("pub", "/", up), env: []string{"KEYGATE_LIMITS_CONCURRENCY=50"}})
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			_ = c.Close()
		}
	}()
	for i := range 50 {
		c, err := net.Dial("tcp", g.public)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /idle HTTP/1.1\r\nHost: h\r\n\r\n") //nolint:errcheck
		r, err := http.ReadResponse(bufio.NewReader(c), nil)       //nolint:bodyclose // a raw connection's exchange: the test reads what it checks, the connection's Close ends it
		if err != nil || r.StatusCode != 200 {
			t.Fatalf("idle client %d: %v %v", i, err, r)
		}
		_, _ = io.Copy(io.Discard, r.Body)
	}
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			r := rawDo(t, g.public, "GET /new HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
			if d := time.Since(start); r.status != 200 || d > time.Second {
				t.Errorf("new client %d: %d after %v", i, r.status, d)
			}
		}()
	}
	wg.Wait()
}

// TestWriteTimeoutCoversResponse (item 3): with write_timeout 1s a client
// reading a 100 MB response at 200 KB/s is disconnected soon after 1 s.
func TestWriteTimeoutCoversResponse(t *testing.T) {
	up := startBigUpstream(t)
	g := startGateway(t, serveOpts{routes: echoRoute("big", "/", up), env: []string{"KEYGATE_LIMITS_WRITE_TIMEOUT=1s"}})
	d, n, err := slowRead(t, g.public, "/?n=100000000", 200<<10, 15*time.Second)
	if err == nil || d > 3*time.Second {
		t.Fatalf("still connected after %v (%d bytes, %v)", d, n, err)
	}
	t.Logf("disconnected after %v, %d bytes read", d.Round(time.Millisecond), n)
}

// slowRead GETs target on a raw connection with a small receive buffer and
// reads at about rate bytes/s until an error or max. It returns how long
// the connection lasted, the bytes read and the error that ended it.
func slowRead(t testing.TB, addr, target string, rate int, max time.Duration) (time.Duration, int64, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.(*net.TCPConn).SetReadBuffer(16 << 10)
	start := time.Now()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", target)
	buf := make([]byte, rate/50)
	var n int64
	for time.Since(start) < max {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := io.ReadFull(c, buf)
		n += int64(k)
		if err != nil {
			return time.Since(start), n, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start), n, nil
}
