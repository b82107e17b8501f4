package httpx

import (
	"errors"
	"io"
	"net"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"
)

// HostClientConfig are the settings of an outgoing connection pool that
// differ between its users (the proxy's upstreams, the external
// authorizer). Every timeout is explicit: zero is not "a default".
type HostClientConfig struct {
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// MaxConnWaitTimeout is how long a request waits for a free connection
	// once MaxConns are busy.
	MaxConnWaitTimeout  time.Duration
	MaxIdleConnDuration time.Duration
	MaxConns            int
	ReadBufferSize      int  // 0: fasthttp's
	MaxResponseBodySize int  // 0: unlimited (with StreamResponseBody: not held whole)
	StreamResponseBody  bool // responses are streamed, not read whole (see streamTransport)
	// SmallResponse: with StreamResponseBody, a response declaring a
	// Content-Length up to this is read whole instead (no stream, no
	// allocation), its connection pooled at once.
	SmallResponse int
	// Retryable reports whether a request may be sent again; nil: every
	// request may.
	Retryable func(*fasthttp.Request) bool
}

// NewHostClient returns the pool for the http or https base URL u: its host
// with the scheme's port when none is given, TLS for https. Shared by every
// pool: no User-Agent of its own, paths and header names sent as given,
// request content kept out of error messages, and one retry, only when the
// connection failed before anything was read (a stale keep-alive
// connection; never after a timeout) and the request is Retryable.
func NewHostClient(u *url.URL, c HostClientConfig) *fasthttp.HostClient {
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	dial := c.DialTimeout
	retryable := c.Retryable
	dialer := func(a string) (net.Conn, error) {
		return fasthttp.DialTimeout(a, dial)
	}
	var transport fasthttp.RoundTripper
	if c.StreamResponseBody {
		// The proxy's pools: its own transport (no allocation per
		// request) and coarse deadlines (see streamTransport, coarseConn).
		transport = &streamTransport{small: c.SmallResponse}
		if c.ReadTimeout > 0 {
			dialer = coarseDial(dialer, c.ReadTimeout/16)
		}
	}
	return &fasthttp.HostClient{
		Addr:                          addr,
		Dial:                          dialer,
		Transport:                     transport,
		IsTLS:                         u.Scheme == "https",
		ReadTimeout:                   c.ReadTimeout,
		WriteTimeout:                  c.WriteTimeout,
		MaxConnWaitTimeout:            c.MaxConnWaitTimeout,
		MaxIdleConnDuration:           c.MaxIdleConnDuration,
		MaxConns:                      c.MaxConns,
		ReadBufferSize:                c.ReadBufferSize,
		MaxResponseBodySize:           c.MaxResponseBodySize,
		StreamResponseBody:            c.StreamResponseBody,
		NoDefaultUserAgentHeader:      true,
		DisablePathNormalizing:        true,
		DisableHeaderNamesNormalizing: false,
		SecureErrorLogMessage:         true,
		MaxIdemponentCallAttempts:     2,
		RetryIfErr: func(req *fasthttp.Request, _ int, err error) (bool, bool) {
			var nothing fasthttp.ErrNothingRead
			stale := errors.Is(err, io.EOF) || errors.Is(err, fasthttp.ErrConnectionClosed) || errors.As(err, &nothing)
			return false, stale && (retryable == nil || retryable(req))
		},
	}
}
