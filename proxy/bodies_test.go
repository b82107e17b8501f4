package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/configs"
)

// readResp reads one response from br (bounded by c's deadline).
func readResp(t *testing.T, c net.Conn, br *bufio.Reader) *http.Response {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	r, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	return r
}

// TestExpectDecidedOnHeaders: with Expect: 100-continue the answer comes on
// the headers alone; a refused request never gets a 100 Continue, an
// accepted one gets it and is forwarded with its body.
func TestExpectDecidedOnHeaders(t *testing.T) {
	up := newUpstream(t)
	_, addr := startProxy(t, baseConfig(stdRoutes(up.url())...), Options{Authenticator: testAuth{}})
	tests := []struct {
		name, target, auth string
		length             int
		status             int // final status; 100 first when 200
	}{
		{"no credentials", "/admin/x", "", 60000, 401},
		{"bad credentials", "/admin/x", "Bearer nope", 60000, 401},
		{"over max_body", "/public/x", "", 1 << 20, 413},
		{"accepted", "/admin/x", "Bearer good", 60000, 200},
		{"accepted, public", "/public/x", "", 20000, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.reset()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			h := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: %d\r\n", tt.target, tt.length)
			if tt.auth != "" {
				h += "Authorization: " + tt.auth + "\r\n"
			}
			if _, err := io.WriteString(c, h+"\r\n"); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			r := readResp(t, c, br)
			_ = r.Body.Close()
			if tt.status != 200 {
				if r.StatusCode != tt.status || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-Request-Id") == "" {
					t.Fatalf("status %d %v, want %d before any body", r.StatusCode, r.Header, tt.status)
				}
				if up.count() != 0 {
					t.Fatal("forwarded")
				}
				return
			}
			if r.StatusCode != 100 {
				t.Fatalf("status %d, want 100 Continue", r.StatusCode)
			}
			if _, err := io.WriteString(c, strings.Repeat("b", tt.length)); err != nil {
				t.Fatal(err)
			}
			r = readResp(t, c, br)
			_ = r.Body.Close()
			if r.StatusCode != 200 || up.last(t).BodySize != tt.length {
				t.Fatalf("status %d, upstream body %d", r.StatusCode, up.last(t).BodySize)
			}
			if got := up.last(t).get("Expect"); len(got) != 0 {
				t.Fatalf("Expect forwarded: %v", got)
			}
		})
	}
}

// TestEarlyAnswerSeen (issue 13 item 12): a client that writes its whole
// body before reading gets the status, not a reset, and a small unread body
// keeps the connection usable.
func TestEarlyAnswerSeen(t *testing.T) {
	up := newUpstream(t)
	cfg := baseConfig(stdRoutes(up.url())...)
	cfg.Limits.MaxBody = 2 << 20
	_, addr := startProxy(t, cfg, Options{Authenticator: testAuth{}})
	tests := []struct {
		name, target string
		declared     int // Content-Length; -1: chunked
		send         int // body bytes written before reading
		status       int
		keepAlive    bool
	}{
		{"413 over max_body, 3 MiB written", "/public/x", 3 << 20, 3 << 20, 413, false},
		{"413 over max_body, 12 MiB written", "/public/x", 12 << 20, 12 << 20, 413, false},
		{"413 chunked over max_body", "/public/x", -1, 3 << 20, 413, false},
		{"401, 1 MiB written", "/admin/x", 1 << 20, 1 << 20, 401, false},
		{"401 chunked, 1 MiB written", "/admin/x", -1, 1 << 20, 401, false},
		{"401, small body, keep-alive", "/admin/x", 30000, 30000, 401, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.reset()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			var head string
			body := strings.Repeat("z", tt.send)
			if tt.declared < 0 {
				head = "POST " + tt.target + " HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
				body = fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", tt.send, body)
			} else {
				head = fmt.Sprintf("POST %s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n", tt.target, tt.declared)
			}
			// The whole request first, then read: what a naive client does.
			if _, err := io.WriteString(c, head+body); err != nil {
				t.Fatalf("writing the body: %v", err)
			}
			br := bufio.NewReader(c)
			r := readResp(t, c, br)
			b, _ := io.ReadAll(r.Body)
			_ = r.Body.Close()
			if r.StatusCode != tt.status || !strings.Contains(string(b), `"error"`) {
				t.Fatalf("status %d %s, want %d", r.StatusCode, b, tt.status)
			}
			if up.count() != 0 {
				t.Fatal("forwarded")
			}
			if r.Close == tt.keepAlive {
				t.Fatalf("Connection close %v, want keep-alive %v", r.Close, tt.keepAlive)
			}
			if tt.keepAlive {
				_, _ = io.WriteString(c, get("/public/again"))
				if r := readResp(t, c, br); r.StatusCode != 200 { //nolint:bodyclose // a raw connection's exchange: the test reads what it checks, the connection's Close ends it
					t.Fatalf("next request on the connection: %d", r.StatusCode)
				}
			}
		})
	}
}

// TestBodyBudget: request bodies being read count against
// limits.max_body_in_flight; one that does not fit gets 503 + Retry-After,
// and the budget is returned when the request ends.
func TestBodyBudget(t *testing.T) {
	up := newUpstream(t)
	cfg := baseConfig(stdRoutes(up.url())...)
	cfg.Limits.MaxBody = 60 << 10
	cfg.Limits.MaxBodyInFlight = 100 << 10
	p, addr := startProxy(t, cfg, Options{})
	const n = 50 << 10
	post := fmt.Sprintf("POST /public/x HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n", n)

	// Two bodies held half-sent: 100 KiB reserved.
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		_, _ = io.WriteString(c, post+strings.Repeat("a", 20<<10))
		held = append(held, c)
	}
	deadline := time.Now().Add(2 * time.Second)
	for p.bodies.used.Load() < 2*n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := p.bodies.used.Load(); got != 2*n {
		t.Fatalf("in flight %d, want %d", got, 2*n)
	}
	tests := []struct {
		name, raw string
		status    int
	}{
		{"third body does not fit", post + strings.Repeat("a", n), 503},
		{"small body needs no budget", "POST /public/x HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("a", 100), 200},
		{"no body", get("/public/x"), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rawDo(t, addr, tt.raw)
			if r.Status != tt.status {
				t.Fatalf("status %d %s", r.Status, r.Body)
			}
			if tt.status == 503 && (r.Header.Get("Retry-After") == "" || !strings.Contains(r.Body, `"code":"overloaded"`)) {
				t.Fatalf("503 without Retry-After/code: %v %s", r.Header, r.Body)
			}
		})
	}
	// Finishing the held bodies returns the budget.
	for _, c := range held {
		_, _ = io.WriteString(c, strings.Repeat("a", n-20<<10))
		r := readResp(t, c, bufio.NewReader(c))
		_ = r.Body.Close()
		if r.StatusCode != 200 {
			t.Fatalf("held body: %d", r.StatusCode)
		}
	}
	if got := p.bodies.used.Load(); got != 0 {
		t.Fatalf("budget not returned: %d", got)
	}
	if r := rawDo(t, addr, post+strings.Repeat("a", n)); r.Status != 200 {
		t.Fatalf("after release: %d", r.Status)
	}
}

// TestStreamedResponse: a response much larger than anything buffered is
// streamed through (declared length and chunked) and limits.max_response
// refuses a declared length over it.
func TestStreamedResponse(t *testing.T) {
	const size = 32 << 20
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	us := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		n := size
		if ctx.QueryArgs().Has("chunked") {
			n = -1
		}
		ctx.SetBodyStream(io.LimitReader(zeros{}, size), n)
	}}
	go us.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = us.Shutdown() })
	up := "http://" + ln.Addr().String()
	cfg := baseConfig(configs.Route{Name: "big", PathPrefix: "/", Upstreams: []string{up}, Auth: configs.AuthNone})
	_, addr := startProxy(t, cfg, Options{})
	capped := baseConfig(configs.Route{Name: "big", PathPrefix: "/", Upstreams: []string{up}, Auth: configs.AuthNone})
	capped.Limits.MaxResponse = 1 << 20
	_, addrCapped := startProxy(t, capped, Options{})
	tests := []struct {
		name, addr, target string
		status             int
		n                  int64
	}{
		{"declared length", addr, "/x", 200, size},
		{"chunked", addr, "/x?chunked=1", 200, size},
		{"over max_response", addrCapped, "/x", 502, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := http.Get("http://" + tt.addr + tt.target)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = r.Body.Close() }()
			n, err := io.Copy(io.Discard, r.Body)
			if r.StatusCode != tt.status || err != nil || tt.n >= 0 && n != tt.n {
				t.Fatalf("status %d, %d bytes, %v", r.StatusCode, n, err)
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }

// TestWriteTimeoutWholeResponse (issue 13 item 3): write_timeout bounds the
// whole response: a client reading slowly is cut off soon after it, not
// when the last byte trickles out of the kernel buffers.
func TestWriteTimeoutWholeResponse(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	us := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyStream(io.LimitReader(zeros{}, 100<<20), 100<<20)
	}}
	go us.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = us.Shutdown() })
	cfg := baseConfig(configs.Route{Name: "big", PathPrefix: "/", Upstreams: []string{"http://" + ln.Addr().String()}, Auth: configs.AuthNone})
	cfg.Limits.WriteTimeout = configs.Duration(time.Second)
	_, addr := startProxy(t, cfg, Options{})

	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.(*net.TCPConn).SetReadBuffer(16 << 10)
	start := time.Now()
	_, _ = io.WriteString(c, get("/x"))
	// 200 KB/s: the 100 MB body would take over 8 minutes.
	var got int64
	buf := make([]byte, 4<<10)
	var rerr error
	for time.Since(start) < 10*time.Second {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		got += int64(n)
		if err != nil {
			rerr = err
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	d := time.Since(start)
	if rerr == nil || d > 3*time.Second {
		t.Fatalf("still connected after %v (%d bytes read, err %v)", d, got, rerr)
	}
	t.Logf("cut after %v, %d bytes read (%v)", d.Round(time.Millisecond), got, rerr)
}

// TestIdleConnectionsEvicted (issue 13 item 4): with every slot held by an
// idle keep-alive connection a new client is served at once, the oldest
// idle connection making room; idle connections are released sooner under
// pressure.
func TestIdleConnectionsEvicted(t *testing.T) {
	up := newUpstream(t)
	cfg := baseConfig(stdRoutes(up.url())...)
	cfg.Limits.Concurrency = 50
	cfg.Limits.IdleTimeout = configs.Duration(2 * time.Second) // under pressure: 500 ms
	_, addr := startProxy(t, cfg, Options{})
	type kc struct {
		c  net.Conn
		br *bufio.Reader
	}
	var idle []kc
	for i := range 50 {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		br := bufio.NewReader(c)
		_, _ = io.WriteString(c, get("/public/idle"))
		r := readResp(t, c, br)
		_ = r.Body.Close()
		if r.StatusCode != 200 {
			t.Fatalf("idle client %d: %d", i, r.StatusCode)
		}
		idle = append(idle, kc{c, br})
	}
	// Every slot is taken by an idle connection. New clients are served.
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			r := rawDo(t, addr, get("/public/new"))
			if r.Status != 200 || time.Since(start) > time.Second {
				t.Errorf("new client %d: %d after %v", i, r.Status, time.Since(start))
			}
		}()
	}
	wg.Wait()
	// The oldest idle connection was closed to make room.
	_ = idle[0].c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := idle[0].br.ReadByte(); err == nil {
		t.Fatal("oldest idle connection still open")
	}
	// Under pressure the rest go within idle_timeout/4, not idle_timeout.
	last := idle[len(idle)-1]
	_ = last.c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
	start := time.Now()
	if _, err := last.br.ReadByte(); err == nil || time.Since(start) > 1200*time.Millisecond {
		t.Fatalf("idle connection under pressure kept %v (%v)", time.Since(start), err)
	}
}

// TestIdleWithoutPressureKept: below 3/4 of the limit the idle timeout is
// the configured one and nothing is evicted.
func TestIdleWithoutPressureKept(t *testing.T) {
	up := newUpstream(t)
	cfg := baseConfig(stdRoutes(up.url())...)
	cfg.Limits.Concurrency = 50
	cfg.Limits.IdleTimeout = configs.Duration(2 * time.Second)
	_, addr := startProxy(t, cfg, Options{})
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	br := bufio.NewReader(c)
	_, _ = io.WriteString(c, get("/public/idle"))
	_ = readResp(t, c, br).Body.Close()
	time.Sleep(time.Second)
	_, _ = io.WriteString(c, get("/public/again"))
	if r := readResp(t, c, br); r.StatusCode != 200 { //nolint:bodyclose // a raw connection's exchange: the test reads what it checks, the connection's Close ends it
		t.Fatalf("second request after 1 s idle: %d", r.StatusCode)
	}
}

// TestExpectKeepsHeaderDecision: the decision taken before the 100 Continue
// (sanitised headers, collected X-Forwarded-For of a trusted peer, identity)
// is the one forwarded; nothing is sanitised or authenticated twice.
func TestExpectKeepsHeaderDecision(t *testing.T) {
	up := newUpstream(t)
	cfg := baseConfig(stdRoutes(up.url())...)
	cfg.TrustedProxies = []string{"127.0.0.0/8"}
	_, addr := startProxy(t, cfg, Options{Authenticator: testAuth{}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	io.WriteString(c, "POST /admin/x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n"+ //nolint:errcheck
		"Authorization: ApiKey good\r\nX-Forwarded-For: 6.6.6.6\r\nX-Auth-User: mallory\r\n\r\n")
	br := bufio.NewReader(c)
	if r := readResp(t, c, br); r.StatusCode != 100 { //nolint:bodyclose // a raw connection's exchange: the test reads what it checks, the connection's Close ends it
		t.Fatalf("status %d, want 100", r.StatusCode)
	}
	io.WriteString(c, "abc")                          //nolint:errcheck
	if r := readResp(t, c, br); r.StatusCode != 200 { //nolint:bodyclose // a raw connection's exchange: the test reads what it checks, the connection's Close ends it
		t.Fatalf("status %d", r.StatusCode)
	}
	s := up.last(t)
	if s.one(t, "X-Forwarded-For") != "6.6.6.6, 127.0.0.1" || s.one(t, "X-Auth-User") != "alice" || s.one(t, "X-Auth-Key-Id") != "k1" || s.BodySize != 3 {
		t.Fatalf("forwarded %v", s.Headers)
	}
}
