package httpx

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/httpx/deadlinetest"
)

// rawUpstream answers every request read on a connection with answer(path)
// written as is, and counts the connections it accepted.
type rawUpstream struct {
	ln    net.Listener
	conns atomic.Int32
}

func startRaw(t *testing.T, answer func(path string) string) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.conns.Add(1)
			go func() {
				defer func() { _ = c.Close() }()
				br := bufio.NewReader(c)
				for {
					var req fasthttp.Request
					if err := req.Read(br); err != nil {
						return
					}
					a := answer(string(req.URI().Path()))
					if _, err := io.WriteString(c, a); err != nil || strings.Contains(a, "Connection: close") {
						return
					}
				}
			}()
		}
	}()
	return u
}

func streamClient(t *testing.T, addr string, timeout time.Duration) *fasthttp.HostClient {
	t.Helper()
	u, _ := url.Parse("http://" + addr)
	return NewHostClient(u, HostClientConfig{
		DialTimeout: time.Second, ReadTimeout: timeout, WriteTimeout: timeout, MaxConnWaitTimeout: time.Second,
		MaxIdleConnDuration: time.Minute, MaxConns: 4, StreamResponseBody: true, SmallResponse: 1 << 10,
	})
}

func resp(status int, hdrs, body string) string {
	return "HTTP/1.1 " + strconv.Itoa(status) + " X\r\n" + hdrs + "\r\n" + body
}

// TestStreamTransport: each response shape comes back whole and right (small
// ones read whole, others streamed), and the upstream connection is reused
// exactly when the body was read to its end and nothing said close.
func TestStreamTransport(t *testing.T) {
	big := strings.Repeat("b", 5000)
	chunked := "400\r\n" + strings.Repeat("c", 1024) + "\r\n5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"
	answers := map[string]string{
		"/small":     resp(200, "Content-Length: 2\r\n", "ok"),
		"/empty":     resp(200, "Content-Length: 0\r\n", ""),
		"/big":       resp(200, "Content-Length: 5000\r\n", big),
		"/chunked":   resp(200, "Transfer-Encoding: chunked\r\n", chunked),
		"/nocontent": resp(204, "", ""),
		"/notmod":    resp(304, "ETag: x\r\n", ""),
		"/interim":   "HTTP/1.1 103 Early\r\nLink: </a>\r\n\r\n" + resp(200, "Content-Length: 3\r\n", "yes"),
		"/close":     resp(200, "Content-Length: 2\r\nConnection: close\r\n", "ok"),
		"/eof":       resp(200, "Connection: close\r\n", "until the end"),
	}
	for _, tc := range []struct {
		path, body string
		stream     bool
		reused     bool
		head       bool
	}{
		{"/small", "ok", false, true, false},
		{"/empty", "", false, true, false},
		{"/big", big, true, true, false},
		{"/chunked", strings.Repeat("c", 1024) + "hello", true, true, false},
		{"/nocontent", "", false, true, false},
		{"/notmod", "", false, true, false},
		{"/interim", "yes", false, true, false},
		{"/close", "ok", false, false, false},
		{"/eof", "until the end", true, false, false},
		{"/big", "", false, true, true},
	} {
		name := tc.path
		if tc.head {
			name += "_head"
		}
		t.Run(name, func(t *testing.T) {
			up := startRaw(t, func(p string) string {
				if tc.head {
					return resp(200, "Content-Length: 5000\r\n", "")
				}
				return answers[p]
			})
			hc := streamClient(t, up.ln.Addr().String(), 5*time.Second)
			for i := range 3 {
				req, r := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				req.SetRequestURI("http://" + up.ln.Addr().String() + tc.path)
				if tc.head {
					req.Header.SetMethod(fasthttp.MethodHead)
				}
				if err := hc.Do(req, r); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if r.IsBodyStream() != tc.stream {
					t.Fatalf("streamed = %v, want %v", r.IsBodyStream(), tc.stream)
				}
				var got []byte
				if r.IsBodyStream() {
					var err error
					if got, err = io.ReadAll(r.BodyStream()); err != nil {
						t.Fatal(err)
					}
				} else {
					got = r.Body()
				}
				if string(got) != tc.body {
					t.Fatalf("body %q, want %q", got, tc.body)
				}
				if len(r.Header.Peek("X-Trailer")) > 0 {
					t.Fatal("upstream trailer passed on")
				}
				fasthttp.ReleaseResponse(r) // closes the stream
				fasthttp.ReleaseRequest(req)
			}
			want := int32(3)
			if tc.reused {
				want = 1
			}
			if n := up.conns.Load(); n != want {
				t.Fatalf("%d upstream connections for 3 requests, want %d", n, want)
			}
		})
	}
}

// TestStreamTransportUnreadBody: a streamed body closed before its end
// closes its connection (the next request gets a new one) and a body cut
// short by the upstream is an error, never a short success.
func TestStreamTransportUnreadBody(t *testing.T) {
	big := strings.Repeat("b", 5000)
	up := startRaw(t, func(p string) string {
		if p == "/cut" {
			return resp(200, "Content-Length: 5000\r\nConnection: close\r\n", big[:100])
		}
		return resp(200, "Content-Length: 5000\r\n", big)
	})
	hc := streamClient(t, up.ln.Addr().String(), 5*time.Second)
	for i := range 2 {
		req, r := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + up.ln.Addr().String() + "/big")
		if err := hc.Do(req, r); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 10)
		if _, err := io.ReadFull(r.BodyStream(), buf); err != nil {
			t.Fatal(err)
		}
		if err := r.CloseBodyStream(); err != nil {
			t.Fatal(err)
		}
		if n := up.conns.Load(); n != int32(i+1) {
			t.Fatalf("after %d half-read bodies: %d connections", i+1, n)
		}
	}
	req, r := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI("http://" + up.ln.Addr().String() + "/cut")
	if err := hc.Do(req, r); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r.BodyStream()); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut body: %v, want unexpected EOF", err)
	}
}

// TestStreamTransportTimeout: a slow upstream fails with a timeout within
// the pool's ReadTimeout and its slack (never before the timeout).
func TestStreamTransportTimeout(t *testing.T) {
	up := startRaw(t, func(string) string { time.Sleep(3 * time.Second); return "" })
	const timeout = 320 * time.Millisecond
	hc := streamClient(t, up.ln.Addr().String(), timeout)
	req, r := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI("http://" + up.ln.Addr().String() + "/slow")
	start := time.Now()
	err := hc.Do(req, r)
	d := time.Since(start)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		if !errors.Is(err, fasthttp.ErrTimeout) {
			t.Fatalf("error %v, want a timeout", err)
		}
	}
	if d < timeout || d > timeout+timeout/16+time.Second {
		t.Fatalf("timed out after %v (timeout %v)", d, timeout)
	}
}

// fakeDeadlines records the deadlines armed on it.
type fakeDeadlines struct {
	net.Conn
	armed []time.Time
}

func (f *fakeDeadlines) SetReadDeadline(t time.Time) error {
	f.armed = append(f.armed, t)
	return nil
}

func (f *fakeDeadlines) SetWriteDeadline(t time.Time) error { return f.SetReadDeadline(t) }

// TestCoarseConn: a deadline is armed slack late at most, never early; one
// within the slack of the armed one re-arms nothing; a zero time clears.
func TestCoarseConn(t *testing.T) {
	base := time.Unix(1000, 0)
	const slack = time.Second
	for _, tc := range []struct {
		name  string
		calls []time.Time
		armed []time.Time
	}{
		{"first arms with slack", []time.Time{base}, []time.Time{base.Add(slack)}},
		{"later within slack: kept", []time.Time{base, base.Add(slack / 2), base.Add(slack)},
			[]time.Time{base.Add(slack)}},
		{"past the armed one: re-armed", []time.Time{base, base.Add(slack + 1)},
			[]time.Time{base.Add(slack), base.Add(2*slack + 1)}},
		{"earlier than the armed one by more than slack: re-armed", []time.Time{base.Add(5 * slack), base},
			[]time.Time{base.Add(6 * slack), base.Add(slack)}},
		{"zero clears, then arms again", []time.Time{base, {}, base},
			[]time.Time{base.Add(slack), {}, base.Add(slack)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeDeadlines{}
			c := &coarseConn{Conn: f, slack: slack}
			for _, d := range tc.calls {
				if err := c.SetReadDeadline(d); err != nil {
					t.Fatal(err)
				}
				if a := c.rd.armed; !d.IsZero() && (a.Before(d) || a.Sub(d) > slack) {
					t.Fatalf("armed %v for %v", a, d)
				}
			}
			if len(f.armed) != len(tc.armed) {
				t.Fatalf("armed %v, want %v", f.armed, tc.armed)
			}
			for i := range f.armed {
				if !f.armed[i].Equal(tc.armed[i]) {
					t.Fatalf("armed %v, want %v", f.armed, tc.armed)
				}
			}
		})
	}
}

// TestCoarseWrites: connections of a CoarseServerDeadlines listener without
// a read timeout carry data both ways, arm write deadlines coarsely (never
// early: a write past its deadline still fails), and pass read deadlines
// through exactly.
func TestCoarseWrites(t *testing.T) {
	inner, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if CoarseServerDeadlines(inner, 0, 0) != inner {
		t.Fatal("no write timeout: the listener must be returned as is")
	}
	client, c := coarsePair(t, inner, 0, 160*time.Millisecond)
	cw, ok := c.(*coarseServerConn)
	if !ok {
		t.Fatalf("accepted %T", c)
	}
	now := time.Now()
	if err := c.SetWriteDeadline(now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	armed := cw.wd.armed
	if armed.Before(now.Add(time.Second)) || armed.Sub(now.Add(time.Second)) > 10*time.Millisecond {
		t.Fatalf("armed %v for %v", armed, now.Add(time.Second))
	}
	if err := c.SetWriteDeadline(now.Add(time.Second + 5*time.Millisecond)); err != nil || !cw.wd.armed.Equal(armed) {
		t.Fatalf("re-armed within the slack: %v", cw.wd.armed)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("%q, %v", buf, err)
	}
	// Read deadlines are exact: a read with nothing to read times out.
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(buf); err == nil {
		t.Fatal("read without data did not time out")
	}
	// A deadline in the past fails writes at once.
	if err := c.SetDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("write past its deadline succeeded")
	}
}

// TestCoarseReadDeadline: fasthttp's alternation (idle, then read timeout,
// per request) re-arms nothing while the armed deadline is no later than
// slack past the asked one; a deadline earlier than the armed one by more
// than slack is armed; zero clears; Retry re-arms an early fire and leaves
// a due one.
func TestCoarseReadDeadline(t *testing.T) {
	base := time.Now().Add(time.Hour) // Retry compares with the clock
	const slack, read, idle = time.Second, 30 * time.Second, 60 * time.Second
	for _, tc := range []struct {
		name  string
		calls []time.Time
		armed []time.Time
	}{
		{"first arms with slack", []time.Time{base.Add(read)}, []time.Time{base.Add(read + slack)}},
		{"idle then read, request after request: armed once",
			[]time.Time{base.Add(read), base.Add(idle), base.Add(read + 1), base.Add(idle + 2), base.Add(read + 3)},
			[]time.Time{base.Add(read + slack)}},
		{"asked earlier than the armed one by more than slack: armed",
			[]time.Time{base.Add(idle), base.Add(read)}, []time.Time{base.Add(idle + slack), base.Add(read + slack)}},
		{"asked later within slack: kept", []time.Time{base.Add(read), base.Add(read + slack/2)},
			[]time.Time{base.Add(read + slack)}},
		{"asked earlier at all: armed (never more than slack late)", []time.Time{base.Add(read), base.Add(read - slack/2)},
			[]time.Time{base.Add(read + slack), base.Add(read + slack/2)}},
		{"zero clears, then arms again", []time.Time{base, {}, {}, base},
			[]time.Time{base.Add(slack), {}, base.Add(slack)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeDeadlines{}
			var d CoarseReadDeadline
			for _, at := range tc.calls {
				if err := d.Set(at, slack, f.SetReadDeadline); err != nil {
					t.Fatal(err)
				}
				if !at.IsZero() && (d.armed.IsZero() || d.armed.After(at.Add(slack))) {
					t.Fatalf("armed %v for %v: later than slack", d.armed, at)
				}
			}
			if len(f.armed) != len(tc.armed) {
				t.Fatalf("armed %v, want %v", f.armed, tc.armed)
			}
			for i := range f.armed {
				if !f.armed[i].Equal(tc.armed[i]) {
					t.Fatalf("armed %v, want %v", f.armed, tc.armed)
				}
			}
		})
	}
	t.Run("retry", func(t *testing.T) {
		f := &fakeDeadlines{}
		var d CoarseReadDeadline
		_ = d.Set(base.Add(read), slack, f.SetReadDeadline)
		_ = d.Set(base.Add(idle), slack, f.SetReadDeadline) // kept: fires early
		if !d.Retry(slack, f.SetReadDeadline) || !d.armed.Equal(base.Add(idle+slack)) {
			t.Fatalf("early fire: retry armed %v, want %v", d.armed, base.Add(idle+slack))
		}
		past := time.Now().Add(-time.Millisecond)
		_ = d.SetExact(past, f.SetReadDeadline)
		if !d.armed.Equal(past) {
			t.Fatalf("SetExact armed %v", d.armed)
		}
		if d.Retry(slack, f.SetReadDeadline) {
			t.Fatal("a deadline that passed must stand")
		}
		_ = d.SetExact(time.Time{}, f.SetReadDeadline)
		if !d.Retry(slack, f.SetReadDeadline) || !d.armed.IsZero() {
			t.Fatal("no deadline asked: retry must clear and retry")
		}
	})
}

// TestCoarseServerReads: read deadlines of a CoarseServerDeadlines
// listener's connections, lengthened after a shorter one (fasthttp's idle,
// then read timeout), are honoured at most the slack late, never early.
func TestCoarseServerReads(t *testing.T) {
	inner, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const readTimeout = 640 * time.Millisecond // slack 40 ms
	client, c := coarsePair(t, inner, readTimeout, 0)
	deadlinetest.Reads(t, client, c, readTimeout/16)
}

// coarsePair wraps inner in CoarseServerDeadlines and returns a client
// connection and the server side of it (both closed at the test's end).
func coarsePair(t *testing.T, inner net.Listener, readTimeout, writeTimeout time.Duration) (client, server net.Conn) {
	t.Helper()
	ln := CoarseServerDeadlines(inner, readTimeout, writeTimeout)
	t.Cleanup(func() { _ = ln.Close() })
	client, err := net.Dial("tcp4", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	return client, server
}
