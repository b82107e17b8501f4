package httpx

import (
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/configs"
)

// The error body is byte for byte what encoding/json writes for the same
// shape (the admin API's writer was encoding/json; DESIGN.md §6).
func TestAppendErrorJSONMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " and \ backslash`, "<script>&amp;", "ctl \x00\x01\b\f\n\r\t\x1f\x7f",
		"utf-8 é ü 漢字 🙂", "bad \xff\xfe utf-8", "sep \u2028 \u2029", "truncated \xe6\xbc",
	} {
		got := AppendErrorJSON(nil, "some_code", s)
		var want struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		want.Error.Code, want.Error.Message = "some_code", s
		wb, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(wb) {
			t.Errorf("%q:\n got %s\nwant %s", s, got, wb)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "<>&", "\x00\x7f", "\xff", "\u2028", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := AppendJSONString([]byte("x"), s)
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "x"+string(want) {
			t.Fatalf("%q: got %s want %s", s, got[1:], want)
		}
	})
}

func TestWriteError(t *testing.T) {
	var ctx fasthttp.RequestCtx
	ctx.Response.Header.Set("X-Keep", "1")
	ctx.Response.SetBodyString("old body")
	WriteError(&ctx, &Error{Status: 418, Code: "teapot", Message: "short and stout"})
	if ctx.Response.StatusCode() != 418 || string(ctx.Response.Header.ContentType()) != "application/json" ||
		string(ctx.Response.Header.Peek("X-Keep")) != "1" ||
		string(ctx.Response.Body()) != `{"error":{"code":"teapot","message":"short and stout"}}` {
		t.Fatalf("got %d %q %q", ctx.Response.StatusCode(), ctx.Response.Header.ContentType(), ctx.Response.Body())
	}
	if e := (&Error{Code: "c", Message: "m"}); e.Error() != "c: m" {
		t.Fatalf("Error() = %q", e.Error())
	}
}

// Retry-After is rounded up to a whole second and never 0.
func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "1"},
		{0, "1"},
		{time.Nanosecond, "1"},
		{999 * time.Millisecond, "1"},
		{time.Second, "1"},
		{time.Second + time.Nanosecond, "2"},
		{1500 * time.Millisecond, "2"},
		{59*time.Second + 1, "60"},
		{5 * time.Second, "5"},
		{time.Hour, "3600"},
	} {
		var h fasthttp.ResponseHeader
		SetRetryAfter(&h, tc.d)
		if got := string(h.Peek(fasthttp.HeaderRetryAfter)); got != tc.want {
			t.Errorf("SetRetryAfter(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestChallenge(t *testing.T) {
	for _, tc := range []struct {
		scheme, realm, errCode, want string
	}{
		{"Basic", "keygate", "", `Basic realm="keygate"`},
		{"Bearer", "keygate", "", `Bearer realm="keygate"`},
		{"Bearer", "keygate", "invalid_token", `Bearer realm="keygate", error="invalid_token"`},
		{"Basic", "my realm é", "", `Basic realm="my realm é"`},
		{"Basic", `a"b\c`, "", `Basic realm="a\"b\\c"`},
		{"Basic", "a\r\nX-Injected: 1\x7f", "", `Basic realm="aX-Injected: 1"`},
		{"Basic", "", "", `Basic realm=""`},
	} {
		if got := Challenge(tc.scheme, tc.realm, tc.errCode); got != tc.want {
			t.Errorf("Challenge(%q, %q, %q) = %s, want %s", tc.scheme, tc.realm, tc.errCode, got, tc.want)
		}
	}
}

func TestPeerAddr(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want netip.Addr
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1}, netip.MustParseAddr("192.0.2.1")},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, netip.MustParseAddr("2001:db8::1")},
		{&net.UnixAddr{Name: "/x", Net: "unix"}, netip.IPv4Unspecified()}, // fasthttp's RemoteIP
	} {
		var ctx fasthttp.RequestCtx
		ctx.Init(&fasthttp.Request{}, tc.addr, nil)
		if got := PeerAddr(&ctx); got != tc.want {
			t.Errorf("PeerAddr(%v) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestErrorHandler(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want *Error
	}{
		{&fasthttp.ErrSmallBuffer{}, ErrHeaderTooLarge},
		{fasthttp.ErrBodyTooLarge, ErrBodyTooLarge},
		{timeoutErr{}, ErrRequestTimeout},
		{errors.New("cannot parse"), ErrBadRequest},
	} {
		var ctx fasthttp.RequestCtx
		ctx.Response.Header.Set("X-Stale", "1")
		ErrorHandler(&ctx, tc.err)
		if ctx.Response.StatusCode() != tc.want.Status || len(ctx.Response.Header.Peek("X-Stale")) != 0 ||
			string(ctx.Response.Body()) != string(AppendErrorJSON(nil, tc.want.Code, tc.want.Message)) {
			t.Errorf("%v: %d %s", tc.err, ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

func TestNewServer(t *testing.T) {
	l := configs.Default().Limits
	log := zap.NewNop()
	s := NewServer(l, func(*fasthttp.RequestCtx) {}, log)
	if s.ReadTimeout != l.ReadTimeout.D() || s.WriteTimeout != l.WriteTimeout.D() || s.IdleTimeout != l.IdleTimeout.D() ||
		s.MaxRequestBodySize != l.MaxBody.Int() || s.ReadBufferSize != l.MaxHeader.Int() || s.Concurrency != l.Concurrency ||
		!s.NoDefaultContentType || !s.CloseOnShutdown || !s.SecureErrorLogMessage || s.ErrorHandler == nil || s.Handler == nil {
		t.Fatalf("server %+v", s)
	}
}

func TestLogger(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	Logger{zap.New(core)}.Printf("conn %d: %s", 7, "closed")
	Logger{}.Printf("dropped %d", 1)
	if logs.Len() != 1 || logs.All()[0].Level != zapcore.DebugLevel || logs.All()[0].ContextMap()["detail"] != "conn 7: closed" {
		t.Fatalf("logs %+v", logs.All())
	}
	core, logs = observer.New(zapcore.InfoLevel)
	Logger{zap.New(core)}.Printf("quiet")
	if logs.Len() != 0 {
		t.Fatal("debug message logged at info level")
	}
}

func TestNewHostClient(t *testing.T) {
	for _, tc := range []struct{ url, addr string }{
		{"http://example.com", "example.com:80"},
		{"https://example.com", "example.com:443"},
		{"http://example.com:8080", "example.com:8080"},
		{"https://[2001:db8::1]", "[2001:db8::1]:443"},
		{"http://[2001:db8::1]:81/base", "[2001:db8::1]:81"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		hc := NewHostClient(u, HostClientConfig{ReadTimeout: time.Second, MaxConns: 3})
		if hc.Addr != tc.addr || hc.IsTLS != (u.Scheme == "https") || hc.ReadTimeout != time.Second || hc.MaxConns != 3 ||
			!hc.NoDefaultUserAgentHeader || !hc.DisablePathNormalizing || !hc.SecureErrorLogMessage {
			t.Errorf("%s: addr %s tls %v", tc.url, hc.Addr, hc.IsTLS)
		}
	}
}

// A stale keep-alive connection is retried once, only for a Retryable
// request; never after a timeout or a read error.
func TestHostClientRetry(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:1")
	onlyGET := func(r *fasthttp.Request) bool { return r.Header.IsGet() }
	get, post := &fasthttp.Request{}, &fasthttp.Request{}
	post.Header.SetMethod("POST")
	for _, tc := range []struct {
		name      string
		retryable func(*fasthttp.Request) bool
		req       *fasthttp.Request
		err       error
		want      bool
	}{
		{"eof get", onlyGET, get, os.ErrDeadlineExceeded, false},
		{"eof get", onlyGET, get, fasthttp.ErrConnectionClosed, true},
		{"eof post", onlyGET, post, fasthttp.ErrConnectionClosed, false},
		{"any request", nil, post, fasthttp.ErrConnectionClosed, true},
		{"timeout", nil, get, fasthttp.ErrTimeout, false},
	} {
		hc := NewHostClient(u, HostClientConfig{Retryable: tc.retryable})
		if reset, retry := hc.RetryIfErr(tc.req, 1, tc.err); reset || retry != tc.want {
			t.Errorf("%s: retry %v, want %v", tc.name, retry, tc.want)
		}
	}
}
