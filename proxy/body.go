package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/ratelimit"
)

// Request bodies (issue 13 item 2, 12). fasthttp streams request bodies
// (Server.StreamRequestBody): the handler runs once the headers and at most
// 8 KiB of body have arrived. The pipeline decides on the headers alone —
// 413 on a declared length over limits.max_body, 400/404/405, 401/403 —
// and reads the body only when the request is going to be forwarded (or
// served by an Options.Extra endpoint). A body is then read whole, as
// before: fully read before forwarding keeps retries possible and lets the
// trailer check below run before anything is sent upstream. The bytes held
// by bodies being read or forwarded, across all connections, are bounded by
// limits.max_body_in_flight: a body that does not fit gets 503 +
// Retry-After.
//
// Trailers: fasthttp merges the trailer fields of a chunked body into the
// request headers once the body ends, after the sanitiser ran. keygate
// refuses such requests (400 "trailers are not accepted") before they are
// forwarded, so no header can arrive by that route; the Trailer header
// itself is dropped.
//
// A body left unread by an early answer is discarded when it is small
// (at most drainKeepAlive bytes declared; the connection stays usable);
// otherwise the connection is closed after the answer, and before closing
// keygate reads and discards up to drainMax bytes for at most drainTime, so
// a client that writes its whole body before reading sees the status
// instead of a reset.

const (
	prefetchMax    = 8 << 10  // fasthttp pre-reads up to this much body before the handler
	chunkGrow      = 64 << 10 // a chunked body's buffer grows (and is reserved) by at least this
	drainKeepAlive = 64 << 10 // unread declared bodies up to this are discarded in the handler
	smallResponse  = 64 << 10 // upstream responses up to this are read whole, larger ones streamed
)

var (
	errBodyBudget = &HTTPError{Status: fasthttp.StatusServiceUnavailable, Code: "overloaded", Message: "too many request bodies in flight; retry later"}
	errTrailers   = &HTTPError{Status: fasthttp.StatusBadRequest, Code: "bad_request", Message: "request trailers are not accepted"}
	errBadBody    = &HTTPError{Status: fasthttp.StatusBadRequest, Code: "bad_request", Message: "malformed or incomplete request body"}
	// ErrResponseTooLarge answers an upstream response over limits.max_response.
	ErrResponseTooLarge = &HTTPError{Status: fasthttp.StatusBadGateway, Code: "bad_gateway", Message: "upstream response too large"}
)

// phase is how far decide got with a request.
type phase uint8

const (
	phaseNone    phase = iota // not decided yet
	phaseDone                 // answered (or failed) by decide
	phaseExtra                // probe only: an Options.Extra path, served by Handler
	phaseForward              // checks and authentication passed: forward
)

// decidedKey is the user value under which expect leaves its scratch for
// Handler (user values are reset with every request).
type decidedKey struct{}

// reqState is the per-request state kept between the header decision and
// the forwarding (part of scratch).
type reqState struct {
	phase    phase
	sampled  bool
	hasQuery bool
	trusted  bool
	check    bool  // a forward-auth check (Check): never served, never forwarded
	bodyRead bool  // the request body was read whole (or there is none to read)
	reserved int64 // bytes held in the in-flight body budget
	route    *Route
	ident    *authn.Identity
	peer     netip.Addr
	fpath    []byte // raw path (view into the request URI)
	fquery   []byte
	rbuf     []byte // small upstream response bodies (reused)
	// upStart is when the request was sent upstream (zero: it was not).
	upStart time.Time
	rl      ratelimit.Decision
}

func (r *reqState) resetState() {
	b := r.rbuf[:0]
	*r = reqState{}
	r.rbuf = b
}

// bodyBudget bounds the request-body bytes held at once.
type bodyBudget struct {
	max  int64
	used atomic.Int64
}

func (b *bodyBudget) reserve(n int64) bool {
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *bodyBudget) release(n int64) { b.used.Add(-n) }

// readBody reads the request body whole, within limits.max_body and the
// in-flight budget. It is a no-op when there is no body or it was read.
func (p *Proxy) readBody(ctx *fasthttp.RequestCtx, s *scratch) error {
	if s.bodyRead {
		return nil
	}
	req := &ctx.Request
	st := ctx.RequestBodyStream()
	if st == nil {
		s.bodyRead = true
		return nil
	}
	cl := req.Header.ContentLength()
	switch {
	case cl > p.maxBody:
		return ErrBodyTooLarge
	case cl >= 0 && cl <= prefetchMax:
		// Already in memory (fasthttp pre-read it): no copy, no budget.
		_ = req.Body()
		s.bodyRead = true
		return nil
	case cl > 0:
		if !p.bodies.reserve(int64(cl)) {
			httpx.SetRetryAfter(&ctx.Response.Header, time.Second)
			return errBodyBudget
		}
		s.reserved += int64(cl)
		buf := make([]byte, cl)
		if _, err := io.ReadFull(st, buf); err != nil {
			s.close = true
			return bodyReadError(err)
		}
		req.SetBodyRaw(buf)
		s.bodyRead = true
		return nil
	}
	// Chunked: grow the buffer, reserving each growth, up to max_body.
	n0 := req.Header.Len()
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			grow := max(chunkGrow, cap(buf))
			grow = min(grow, p.maxBody+1-cap(buf)) // one byte over tells 413
			if grow <= 0 {
				return ErrBodyTooLarge
			}
			if !p.bodies.reserve(int64(grow)) {
				httpx.SetRetryAfter(&ctx.Response.Header, time.Second)
				return errBodyBudget
			}
			s.reserved += int64(grow)
			nb := make([]byte, len(buf), cap(buf)+grow)
			copy(nb, buf)
			buf = nb
		}
		n, err := st.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > p.maxBody {
			return ErrBodyTooLarge
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			s.close = true
			return bodyReadError(err)
		}
	}
	s.bodyRead = true
	// Trailer fields were merged into the headers after the sanitiser ran.
	if req.Header.Len() != n0 {
		s.close = true
		return errTrailers
	}
	req.Header.Del(fasthttp.HeaderTrailer)
	req.SetBodyRaw(buf)
	return nil
}

func bodyReadError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, fasthttp.ErrTimeout) {
		return ErrRequestTimeout
	}
	return errBadBody
}

// settleBody runs after the answer is set: it releases the body's budget
// and, when an early answer left the body unread, discards a small one or
// marks the connection to close (after a bounded drain, see limitConn).
func (p *Proxy) settleBody(ctx *fasthttp.RequestCtx, s *scratch) {
	if s.reserved > 0 {
		p.bodies.release(s.reserved)
		s.reserved = 0
	}
	if s.bodyRead {
		return
	}
	st := ctx.RequestBodyStream()
	if st == nil {
		return
	}
	cl := ctx.Request.Header.ContentLength()
	if cl == 0 || cl == -2 {
		return
	}
	if cl > 0 && cl <= drainKeepAlive && !s.close {
		if n, err := io.CopyN(io.Discard, st, int64(cl)); err == nil && n == int64(cl) {
			return
		}
	}
	s.close = true
	if lc := asLimitConn(ctx.Conn()); lc != nil {
		lc.drain.Store(true)
	}
}

// checkResponse bounds a streamed upstream response by limits.max_response:
// a declared length over it is a 502. Bodies of unknown length or over
// smallResponse stay streamed (fasthttp copies them to the client and
// releases the upstream connection at the end); small ones are read here.
func (p *Proxy) checkResponse(ctx *fasthttp.RequestCtx, s *scratch, route *Route) error {
	resp := &ctx.Response
	if !resp.IsBodyStream() {
		// Read whole by the transport (small, see httpx.streamTransport).
		if p.maxResp > 0 && len(resp.Body()) > p.maxResp {
			resp.Reset()
			return ErrResponseTooLarge
		}
		return nil
	}
	cl := resp.Header.ContentLength()
	if p.maxResp > 0 && cl > p.maxResp {
		_ = resp.CloseBodyStream()
		resp.Reset()
		return ErrResponseTooLarge
	}
	if cl < 0 || cl > smallResponse {
		return nil
	}
	// Small: read it now (through a reused buffer) so the upstream
	// connection goes back to the pool at once.
	st := resp.BodyStream()
	if cap(s.rbuf) < cl {
		s.rbuf = make([]byte, 0, max(cl, 4<<10))
	}
	b := s.rbuf[:cl]
	if _, err := io.ReadFull(st, b); err != nil {
		_ = resp.CloseBodyStream()
		resp.Reset()
		return p.upstreamError(route, err)
	}
	_, _ = st.Read(nil) // observe the end: the connection is reusable
	resp.SetBody(b)
	return nil
}

// headerReceived is the Server.HeaderReceived hook. A request declaring a
// body over limits.max_body is turned into an Expect: 100-continue request,
// so fasthttp does not pre-read any of its body: expect answers 413 on the
// headers (no 100 is sent) and the connection is drained and closed.
func (p *Proxy) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if h.ContentLength() > p.maxBody {
		h.Set(fasthttp.HeaderExpect, "100-continue")
	}
	return fasthttp.RequestConfig{}
}

// asLimitConn finds keygate's connection wrapper under c (plain or TLS).
func asLimitConn(c net.Conn) *limitConn {
	switch v := c.(type) {
	case *limitConn:
		return v
	case *tls.Conn:
		lc, _ := v.NetConn().(*limitConn)
		return lc
	}
	return nil
}

// expect is the Server.ExpectHandler: for Expect: 100-continue it runs the
// header checks and authentication before anything of the body is read, so
// no 100 Continue is sent to a request that is refused. A refusal gets its
// JSON answer here (fasthttp then closes the connection, the body unread);
// an acceptance leaves the decision for Handler.
func (p *Proxy) expect(ctx *fasthttp.RequestCtx) int {
	start := time.Now()
	s := p.begin(ctx)
	err := p.decide(ctx, s, true)
	switch {
	case err == nil && s.phase == phaseForward:
		ctx.SetUserValue(decidedKey{}, s)
		return fasthttp.StatusContinue
	case err == nil && s.phase == phaseExtra:
		s.route, s.ident = nil, nil
		p.pool.Put(s)
		return fasthttp.StatusContinue
	}
	// Refused (or OPTIONS *): fasthttp closes the connection. A client
	// that asked for 100-continue has not sent its body; one whose
	// oversize body made it an Expect request (headerReceived) may be
	// sending it: drain before closing so it sees the 413.
	s.bodyRead = true
	if errors.Is(err, ErrBodyTooLarge) {
		if lc := asLimitConn(ctx.Conn()); lc != nil {
			lc.drain.Store(true)
		}
	}
	p.finish(ctx, s, s.route, s.ident, err, start)
	return ctx.Response.StatusCode()
}
