package echo

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// startEcho runs NewServer on a real 127.0.0.1 listener for the test.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer()
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return ln.Addr().String()
}

// rawRoundTrip writes raw bytes to addr and parses one HTTP response.
func rawRoundTrip(t *testing.T, addr, raw string) (int, Response) {
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
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	var r Response
	if resp.StatusCode == http.StatusOK {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("content-type = %q", ct)
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatalf("decode: %v", err)
		}
	}
	return resp.StatusCode, r
}

func TestEchoDescribesRequest(t *testing.T) {
	addr := startEcho(t)
	tests := []struct {
		name     string
		raw      string
		method   string
		path     string
		query    string
		bodySize int
		headers  map[string][]string // subset that must be present exactly
		absent   []string
	}{
		{
			name:    "simple get",
			raw:     "GET /hello?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
			method:  "GET",
			path:    "/hello",
			query:   "x=1",
			headers: map[string][]string{"Host": {"a"}},
		},
		{
			name:   "raw path is not normalised",
			raw:    "GET /a/../b/%2e%2e//c%2Fd?q=/x&y HTTP/1.1\r\nHost: a\r\n\r\n",
			method: "GET",
			path:   "/a/../b/%2e%2e//c%2Fd",
			query:  "q=/x&y",
		},
		{
			name:   "no query",
			raw:    "DELETE /things/1 HTTP/1.1\r\nHost: a\r\n\r\n",
			method: "DELETE",
			path:   "/things/1",
		},
		{
			name:     "body with content-length",
			raw:      "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
			method:   "POST",
			path:     "/p",
			bodySize: 5,
			headers:  map[string][]string{"Content-Length": {"5"}, "Content-Type": {"text/plain"}},
		},
		{
			name:     "chunked body",
			raw:      "PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
			method:   "PUT",
			path:     "/c",
			bodySize: 7,
		},
		{
			name:   "original spelling and repeated headers",
			raw:    "GET / HTTP/1.1\r\nHost: a\r\nx-auth-USER: one\r\nX_Auth_User: two\r\nX.Auth.User: three\r\nX-Rep: 1\r\nX-Rep: 2\r\nuser-agent: ua\r\n\r\n",
			method: "GET",
			path:   "/",
			headers: map[string][]string{
				"x-auth-USER": {"one"},
				"X_Auth_User": {"two"},
				"X.Auth.User": {"three"},
				"X-Rep":       {"1", "2"},
				"user-agent":  {"ua"},
			},
			absent: []string{"X-Auth-User"},
		},
		{
			name:    "connection header listed",
			raw:     "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Foo, keep-alive\r\nX-Foo: bar\r\n\r\n",
			method:  "GET",
			path:    "/",
			headers: map[string][]string{"Connection": {"X-Foo, keep-alive"}, "X-Foo": {"bar"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, r := rawRoundTrip(t, addr, tc.raw)
			if code != http.StatusOK {
				t.Fatalf("status = %d", code)
			}
			if r.Method != tc.method || r.Path != tc.path || r.Query != tc.query || r.BodySize != tc.bodySize {
				t.Errorf("got method=%q path=%q query=%q body_size=%d; want %q %q %q %d",
					r.Method, r.Path, r.Query, r.BodySize, tc.method, tc.path, tc.query, tc.bodySize)
			}
			for name, want := range tc.headers {
				if got := r.Headers[name]; strings.Join(got, "\x00") != strings.Join(want, "\x00") {
					t.Errorf("header %q = %q, want %q (all: %v)", name, got, want, r.Headers)
				}
			}
			for _, name := range tc.absent {
				if v, ok := r.Headers[name]; ok {
					t.Errorf("header %q present: %q", name, v)
				}
			}
		})
	}
}

func TestEchoLargeHeaderAndBody(t *testing.T) {
	addr := startEcho(t)
	big := strings.Repeat("a", 100<<10)
	body := strings.Repeat("b", 1<<20)
	raw := "POST /big HTTP/1.1\r\nHost: a\r\nX-Big: " + big + "\r\nContent-Length: 1048576\r\n\r\n" + body
	code, r := rawRoundTrip(t, addr, raw)
	if code != http.StatusOK {
		t.Fatalf("status = %d", code)
	}
	if r.BodySize != len(body) || len(r.Headers["X-Big"]) != 1 || len(r.Headers["X-Big"][0]) != len(big) {
		t.Errorf("body_size=%d header len mismatch", r.BodySize)
	}
}

func TestEchoJSONShape(t *testing.T) {
	addr := startEcho(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var m map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"method", "path", "query", "headers", "body_size"} {
		if _, ok := m[k]; !ok {
			t.Errorf("key %q missing from %v", k, m)
		}
	}
	if len(m) != 5 {
		t.Errorf("unexpected keys: %v", m)
	}
}

// FuzzDescribe parses arbitrary requests and checks that Describe never
// panics and that path and query put back together give the request-target.
func FuzzDescribe(f *testing.F) {
	for _, s := range []string{
		"GET /a?b=c HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /%2e%2e/x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nX_A: 1\r\nx-a: 2\r\n\r\nabc",
		"GET /p?q#frag HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET http://h/abs?x HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			return
		}
		r := Describe(&req)
		uri := string(req.Header.RequestURI())
		got := r.Path
		if strings.Contains(uri, "?") {
			got += "?" + r.Query
		}
		if !strings.HasPrefix(uri, got) {
			t.Fatalf("path %q + query %q do not rebuild %q", r.Path, r.Query, uri)
		}
		if r.BodySize != len(req.Body()) {
			t.Fatalf("body_size %d, body %d", r.BodySize, len(req.Body()))
		}
		if _, err := json.Marshal(r); err != nil {
			t.Fatal(err)
		}
	})
}
