package proxy

import (
	"fmt"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// UpstreamCredentials supplies the header keygate sends upstream on a route
// with upstream_credential (DESIGN.md §12); upstreamcred.Manager implements
// it. Both methods are on the request path: a warm Header must neither
// allocate nor do I/O.
type UpstreamCredentials interface {
	// Header returns the header for the credential name on behalf of a
	// caller of account ("" when anonymous): missing when neither the
	// account nor account admin has it, err when no usable token could be
	// had. key and value are read-only and valid for the request.
	Header(name, account string, now time.Time) (key, value []byte, missing bool, err error)
	// Rejected is told that the upstream answered 401 to value; ok says
	// there is a new value to retry with.
	Rejected(name, account string, value []byte) (key, newValue []byte, ok bool)
}

// Upstream credential errors.
var (
	ErrUpstreamCredentialMissing     = &HTTPError{Status: fasthttp.StatusForbidden, Code: "upstream_credential_missing", Message: "no upstream credential of this route's name for the caller's account"}
	ErrUpstreamCredentialUnavailable = &HTTPError{Status: fasthttp.StatusBadGateway, Code: "upstream_credential_unavailable", Message: "the upstream credential could not be obtained"}
)

// retryBodyMax bounds the body of a request retried after an upstream 401:
// the request is kept whole in memory (it was read before forwarding).
const retryBodyMax = 64 << 10

// checkUpstreamCredentials reports routes that name a credential when
// there is nothing to supply it.
func checkUpstreamCredentials(routes []*Route, uc UpstreamCredentials) []error {
	var errs []error
	for _, r := range routes {
		if r.UpstreamCredential != "" && uc == nil {
			errs = append(errs, fmt.Errorf("route %s names upstream credential %q but no upstream credentials are configured", r.Name, r.UpstreamCredential))
		}
	}
	return errs
}

// setUpstreamCredential puts the route's credential on req (the client's
// Authorization is already gone) and remembers the value sent, for a
// retry after a 401.
func (p *Proxy) setUpstreamCredential(req *fasthttp.Request, s *scratch, route *Route, acct string) error {
	key, value, missing, err := p.ucred.Header(route.UpstreamCredential, acct, s.now)
	switch {
	case err != nil:
		p.log.Warn("proxy: upstream credential unavailable", zap.String("route", route.Name),
			zap.String("credential", route.UpstreamCredential), zap.String("account", acct))
		return ErrUpstreamCredentialUnavailable
	case missing:
		return ErrUpstreamCredentialMissing
	}
	// Every client copy of the header goes first (SetBytesKV replaces
	// only one).
	req.Header.DelBytes(key)
	req.Header.SetBytesKV(key, value)
	s.credValue = value
	return nil
}

// retryAfter401 retries once with a refreshed credential when the upstream
// refused the one sent, for idempotent methods whose body is small: the
// 401 response is discarded (its stream closed), the new header set, and
// the request sent again before the same deadline.
func (p *Proxy) retryAfter401(ctx *fasthttp.RequestCtx, s *scratch, route *Route, acct string, deadline time.Time) error {
	req := &ctx.Request
	if !idempotent(req.Header.Method()) || len(req.Body()) > retryBodyMax {
		return nil
	}
	key, value, ok := p.ucred.Rejected(route.UpstreamCredential, acct, s.credValue)
	if !ok {
		return nil
	}
	if ctx.Response.IsBodyStream() {
		_ = ctx.Response.CloseBodyStream()
	}
	ctx.Response.Reset()
	req.Header.SetBytesKV(key, value)
	return route.lb.DoDeadline(req, &ctx.Response, deadline)
}

// idempotent reports the methods RFC 9110 §9.2.2 calls idempotent.
func idempotent(m []byte) bool {
	switch string(m) {
	case fasthttp.MethodGet, fasthttp.MethodHead, fasthttp.MethodOptions, fasthttp.MethodPut,
		fasthttp.MethodDelete, fasthttp.MethodTrace:
		return true
	}
	return false
}
