package httpx

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// streamTransport is the fasthttp.RoundTripper of pools whose responses are
// streamed (HostClientConfig.StreamResponseBody): the proxy's upstreams.
//
// fasthttp v1.74's own transport streams every response and allocates four
// objects per request to do it (a clientStreamBody and three closures over
// the pooled connection). This one reads the response header, then:
//
//   - a body with a declared length up to small is read whole into the
//     response (no stream, nothing allocated) and the connection goes back
//     to the pool at once;
//   - any other body (larger, chunked, or delimited by the close) is
//     streamed as before through a pooled upstreamStream, which returns the
//     connection to the pool when the stream ends (or closes it when the
//     body was not read to its end), never holding the body whole.
//
// It reads the clock once per request. The request's deadline is the pool's
// ReadTimeout (the proxy gives each route's pool its timeout as
// ReadTimeout and DoDeadline the same bound): writing gets min(WriteTimeout,
// ReadTimeout), the response ReadTimeout, both from that one clock reading.
// Deadlines are armed on the connection through coarseConn (see there).
//
// Responses are read, closed and released on the caller's goroutine (the
// server's, which writes the streamed body to the client and then closes
// it): unlike fasthttp's clientStreamBody, upstreamStream has no lock
// against a Close racing a Read, because keygate never closes a body
// stream from another goroutine.
type streamTransport struct {
	small int
}

// RoundTrip implements fasthttp.RoundTripper.
func (t *streamTransport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	return roundTrip(t, hc, req, resp, (*fasthttp.HostClient).AcquireConn, (*fasthttp.HostClient).ReleaseConn, (*fasthttp.HostClient).CloseConn)
}

// pooledConn is fasthttp's *clientConn (unexported): the type parameter of
// roundTrip lets it be held and handed back without naming it.
type pooledConn interface{ Conn() net.Conn }

func roundTrip[C pooledConn](t *streamTransport, hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response,
	acquire func(*fasthttp.HostClient, time.Duration, bool) (C, error), release, closeConn func(*fasthttp.HostClient, C),
) (bool, error) {
	skipBody := resp.SkipBody || req.Header.IsHead()
	timeout := hc.ReadTimeout
	cc, err := acquire(hc, timeout, req.ConnectionClose())
	if err != nil {
		return false, err
	}
	conn := cc.Conn()
	now := time.Now()
	wt := timeout
	if hc.WriteTimeout > 0 && (wt <= 0 || hc.WriteTimeout < wt) {
		wt = hc.WriteTimeout
	}
	if wt > 0 {
		if err := conn.SetWriteDeadline(now.Add(wt)); err != nil {
			closeConn(hc, cc)
			return true, err
		}
	}
	bw := hc.AcquireWriter(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if err != nil {
		closeConn(hc, cc)
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			err = fasthttp.ErrTimeout
		}
		return true, err
	}
	if timeout > 0 {
		if err := conn.SetReadDeadline(now.Add(timeout)); err != nil {
			closeConn(hc, cc)
			return true, err
		}
	}

	br := hc.AcquireReader(conn)
	if err := readHeader(resp, br); err != nil {
		hc.ReleaseReader(br)
		closeConn(hc, cc)
		return true, err
	}
	st := resp.StatusCode()
	cl := resp.Header.ContentLength()
	// After a 101 the connection speaks another protocol: never pooled
	// (keygate strips Upgrade, so an upstream has no reason to send one).
	closing := req.ConnectionClose() || resp.ConnectionClose() || st == fasthttp.StatusSwitchingProtocols
	switch {
	case skipBody || st < 200 || st == fasthttp.StatusNoContent || st == fasthttp.StatusNotModified:
		resp.SkipBody = skipBody
	case cl >= 0 && cl <= t.small:
		resp.StreamBody = false
		if err := resp.ReadBody(br, 0); err != nil {
			hc.ReleaseReader(br)
			closeConn(hc, cc)
			return true, err
		}
	default:
		s := acquireStream[C]()
		s.hc, s.cc, s.br, s.release, s.closeConn = hc, cc, br, release, closeConn
		s.closing = closing || cl == -2
		s.in.StreamBody = true
		s.in.Header.SetContentLength(cl)
		if err := s.in.ReadBody(br, 0); err != nil {
			s.done(true)
			return true, err
		}
		if cl < 0 {
			cl = -1 // sent on to the client chunked, as fasthttp does with any stream of unknown length
		}
		resp.SetBodyStream(s, cl)
		return false, nil
	}
	hc.ReleaseReader(br)
	if closing {
		closeConn(hc, cc)
	} else {
		release(hc, cc)
	}
	return false, nil
}

const maxInterim = 100

var errInterim = errors.New("upstream sent too many 1xx responses")

// readHeader reads the response header, skipping interim (1xx) responses
// other than 101, as fasthttp's Response.ReadLimitBody does.
func readHeader(resp *fasthttp.Response, br *bufio.Reader) error {
	for n := 0; ; n++ {
		if err := resp.Header.Read(br); err != nil {
			return err
		}
		if st := resp.StatusCode(); st < 100 || st > 199 || st == fasthttp.StatusSwitchingProtocols {
			return nil
		}
		if n >= maxInterim {
			return errInterim
		}
	}
}

// upstreamStream is a streamed upstream response body (a large, chunked or
// close-delimited one). It reads through in, a pooled fasthttp.Response
// whose stream decodes the framing (its header receives the trailers, which
// are not passed on), and on Close gives the connection back to the pool
// when the body was read to its end, else closes it.
type upstreamStream[C pooledConn] struct {
	in        fasthttp.Response
	hc        *fasthttp.HostClient
	cc        C
	br        *bufio.Reader
	release   func(*fasthttp.HostClient, C)
	closeConn func(*fasthttp.HostClient, C)
	closing   bool // the connection cannot be reused whatever happens
	eof       bool
	released  bool
}

// streamPool holds *upstreamStream[C] for the one C in use (fasthttp's
// connection type); anything else found in it is dropped.
var streamPool sync.Pool

func acquireStream[C pooledConn]() *upstreamStream[C] {
	s, ok := streamPool.Get().(*upstreamStream[C])
	if !ok {
		s = new(upstreamStream[C])
	}
	s.eof, s.released = false, false
	return s
}

// Read implements io.Reader.
func (s *upstreamStream[C]) Read(p []byte) (int, error) {
	if s.released {
		return 0, io.ErrClosedPipe
	}
	n, err := s.in.BodyStream().Read(p)
	if err == io.EOF {
		s.eof = true
	}
	return n, err
}

// CloseWithError implements fasthttp.ReadCloserWithError: fasthttp calls
// it once the body was written to the client (err nil) or writing failed.
// err only decides the connection's fate (closed, not pooled); closing
// itself cannot fail.
func (s *upstreamStream[C]) CloseWithError(err error) error {
	s.done(err != nil || !s.eof)
	return nil //nolint:nilerr // err is the writer's, reported by fasthttp itself
}

// done releases the connection (discard: close it) and returns s to its
// pool. It is idempotent until s is acquired again.
func (s *upstreamStream[C]) done(discard bool) {
	if s.released {
		return
	}
	s.released = true
	_ = s.in.CloseBodyStream()
	s.hc.ReleaseReader(s.br)
	if discard || s.closing {
		s.closeConn(s.hc, s.cc)
	} else {
		s.release(s.hc, s.cc)
	}
	var zero C
	s.hc, s.cc, s.br, s.release, s.closeConn = nil, zero, nil, nil, nil
	s.in.Reset()
	streamPool.Put(s)
}

// CoarseDeadline arms a connection deadline coarsely: a deadline asked for
// at t is armed at t+slack, and a later request whose t lies within slack
// before the armed one leaves it as it is. On a busy keep-alive connection
// that is one timer update every slack instead of one or two per request
// (each an update of the runtime's timer heap under its lock). A deadline
// fires at most slack late, never early. A zero time clears the deadline at
// once. Not safe for concurrent use (one per connection and direction).
type CoarseDeadline struct {
	armed time.Time // zero: none
}

// Set asks for deadline t; arm is the connection's SetReadDeadline or
// SetWriteDeadline.
func (d *CoarseDeadline) Set(t time.Time, slack time.Duration, arm func(time.Time) error) error {
	if !t.IsZero() {
		if !d.armed.IsZero() && !d.armed.Before(t) && d.armed.Sub(t) <= slack {
			return nil
		}
		t = t.Add(slack)
	}
	if err := arm(t); err != nil {
		d.armed = time.Time{}
		return err
	}
	d.armed = t
	return nil
}

// CoarseReadDeadline arms a server connection's read deadline coarsely
// where the asked deadline alternates between two timeouts: fasthttp's
// server asks for now+idle_timeout before each keep-alive request and
// now+read_timeout once its first byte is in, two timer updates per request
// that CoarseDeadline cannot spare (the shorter one would be armed late).
//
// Here the armed deadline may be earlier than the one asked for (never more
// than slack later): Set leaves an armed deadline as it is unless it lies
// more than slack after t. A read that times out before the asked deadline
// (fired early) is re-armed and retried by Retry, so a reader sees a timeout
// only at or after the deadline it asked for, at most slack late, as with
// CoarseDeadline. On a busy keep-alive connection that is about two timer
// updates per read_timeout instead of two per request. A zero time clears
// the deadline at once. Not safe for concurrent use (the connection's
// server goroutine sets and reads).
type CoarseReadDeadline struct {
	want  time.Time // asked for (zero: none)
	armed time.Time // on the connection (zero: none)
}

// Set asks for deadline t; arm is the connection's SetReadDeadline.
func (d *CoarseReadDeadline) Set(t time.Time, slack time.Duration, arm func(time.Time) error) error {
	d.want = t
	if t.IsZero() {
		if d.armed.IsZero() {
			return nil
		}
	} else {
		if !d.armed.IsZero() && !d.armed.After(t.Add(slack)) {
			return nil // fires in time, or early (then Retry)
		}
		t = t.Add(slack)
	}
	return d.arm(t, arm)
}

// SetExact arms t as it is (a deadline that must not be late by slack).
func (d *CoarseReadDeadline) SetExact(t time.Time, arm func(time.Time) error) error {
	d.want = t
	return d.arm(t, arm)
}

func (d *CoarseReadDeadline) arm(t time.Time, arm func(time.Time) error) error {
	if err := arm(t); err != nil {
		d.armed = time.Time{}
		return err
	}
	d.armed = t
	return nil
}

// Retry is called when a read failed with os.ErrDeadlineExceeded having
// read nothing: when the deadline asked for has not passed (the armed one
// fired early), it arms that one (plus slack) and reports true, and the
// read is to be retried; otherwise the timeout stands.
func (d *CoarseReadDeadline) Retry(slack time.Duration, arm func(time.Time) error) bool {
	if !d.want.IsZero() {
		if !time.Now().Before(d.want) {
			return false
		}
		return d.arm(d.want.Add(slack), arm) == nil
	}
	return d.arm(time.Time{}, arm) == nil
}

// coarseConn arms its read and write deadlines with CoarseDeadline; slack
// is 1/16 of the pool's timeout (30 s: under 2 s).
type coarseConn struct {
	net.Conn
	slack  time.Duration
	rd, wd CoarseDeadline
}

func (c *coarseConn) SetReadDeadline(t time.Time) error {
	return c.rd.Set(t, c.slack, c.Conn.SetReadDeadline)
}

func (c *coarseConn) SetWriteDeadline(t time.Time) error {
	return c.wd.Set(t, c.slack, c.Conn.SetWriteDeadline)
}

func (c *coarseConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// coarseDial wraps the connections of dial in coarseConn.
func coarseDial(dial func(string) (net.Conn, error), slack time.Duration) func(string) (net.Conn, error) {
	return func(addr string) (net.Conn, error) {
		c, err := dial(addr)
		if err != nil {
			return nil, err
		}
		return &coarseConn{Conn: c, slack: slack}, nil
	}
}

var _ fasthttp.RoundTripper = (*streamTransport)(nil)

// CoarseServerDeadlines wraps ln, a fasthttp server's listener, so that
// the deadlines of its connections are armed coarsely: writes with
// CoarseDeadline (slack writeTimeout/16; the server arms one per response,
// write_timeout from now), reads with CoarseReadDeadline (slack
// readTimeout/16; the server asks idle_timeout, then read_timeout, per
// request). A timeout <= 0 leaves that direction exact; both: ln as is.
func CoarseServerDeadlines(ln net.Listener, readTimeout, writeTimeout time.Duration) net.Listener {
	if writeTimeout <= 0 && readTimeout <= 0 {
		return ln
	}
	return &coarseServerListener{Listener: ln, wslack: max(writeTimeout/16, 0), rslack: max(readTimeout/16, 0)}
}

type coarseServerListener struct {
	net.Listener
	wslack, rslack time.Duration
}

func (l *coarseServerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &coarseServerConn{Conn: c, wslack: l.wslack, rslack: l.rslack}, nil
}

// coarseServerConn is a server connection with coarse deadlines (the
// connection's server goroutine sets them and reads).
type coarseServerConn struct {
	net.Conn
	wslack, rslack time.Duration
	wd             CoarseDeadline
	rd             CoarseReadDeadline
}

func (c *coarseServerConn) SetWriteDeadline(t time.Time) error {
	if c.wslack <= 0 {
		return c.Conn.SetWriteDeadline(t)
	}
	return c.wd.Set(t, c.wslack, c.Conn.SetWriteDeadline)
}

func (c *coarseServerConn) SetReadDeadline(t time.Time) error {
	if c.rslack <= 0 {
		return c.Conn.SetReadDeadline(t)
	}
	return c.rd.Set(t, c.rslack, c.Conn.SetReadDeadline)
}

// Read retries a read whose armed deadline fired before the one asked for.
func (c *coarseServerConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	for n == 0 && err != nil && c.rslack > 0 && errors.Is(err, os.ErrDeadlineExceeded) &&
		c.rd.Retry(c.rslack, c.Conn.SetReadDeadline) {
		n, err = c.Conn.Read(b)
	}
	return n, err
}

func (c *coarseServerConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}
