package proxy

import (
	"net"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/httpx"
)

// Server returns the fasthttp server for the public listener, built once:
// Handler, body and header limits, timeouts, Concurrency and an error
// handler that answers JSON (413 body too large, 431 header too large, 408
// read timeout, 400 anything malformed). Request bodies are streamed by
// fasthttp and read by the pipeline only after authentication (body.go).
//
// fasthttp answers connections over Concurrency itself with a text/plain
// 503; Serve wraps the listener so those get the JSON 503 instead.
func (p *Proxy) Server() *fasthttp.Server {
	p.serverMu.Lock()
	defer p.serverMu.Unlock()
	if p.server != nil {
		return p.server
	}
	s := httpx.NewServer(p.cfg.Limits, p.Handler, p.log)
	s.ErrorHandler = p.errorHandler
	s.NoDefaultServerHeader = true
	s.DisablePreParseMultipartForm = true
	// Bodies are read by the pipeline after authentication (body.go);
	// Expect: 100-continue is answered only once the headers passed.
	s.StreamRequestBody = true
	s.ExpectHandler = p.expect
	s.HeaderReceived = p.headerReceived
	p.server = s
	return s
}

// Serve serves the pipeline on ln until the server is shut down. With TLS
// configured it serves TLS with the configured certificate. At
// limits.concurrency open connections, the longest-idle keep-alive
// connection is closed to admit a new one; with none idle the new one gets
// a JSON 503 and is closed (TLS: closed). See limitListener.
func (p *Proxy) Serve(ln net.Listener) error {
	s := p.Server()
	limit := p.maxConns
	// The listener enforces the limit; fasthttp's own bound is kept a
	// little higher so the few microseconds between a connection's Close
	// and its worker going idle never produce its text 503.
	p.serverMu.Lock()
	s.Concurrency = limit + limit/8 + 8
	p.serverMu.Unlock()
	ll := newLimitListener(ln, int64(limit), s.IdleTimeout, p.cfg.TLS.Enabled())
	ll.writeSlack = s.WriteTimeout / 16
	ll.readSlack = s.ReadTimeout / 16
	p.serverMu.Lock()
	s.ConnState = ll.connState
	p.serverMu.Unlock()
	if p.cfg.TLS.Enabled() {
		return s.ServeTLS(ll, p.cfg.TLS.CertFile, p.cfg.TLS.KeyFile)
	}
	return s.Serve(ll)
}

// errorHandler answers requests fasthttp could not read.
func (p *Proxy) errorHandler(ctx *fasthttp.RequestCtx, err error) {
	out := httpx.ReadError(err)
	ctx.Response.Reset()
	httpx.WriteError(ctx, out)
	s := p.pool.Get().(*scratch)
	s.reset()
	s.rid = appendNewRequestID(s.rid, s)
	ctx.Response.Header.SetCanonical(p.canon.rid, s.rid)
	p.pool.Put(s)
	if p.noRoute != nil {
		p.noRoute.counter(out.Status).Inc()
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
