package proxy

import (
	"errors"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn"
)

// Check is the decision of the pipeline (decide: framing and duplicate
// checks, canonical Host, request-target ambiguity checks, route match on
// host and path, method, header hygiene, authentication, route roles and
// the external authorizer) for a forward-auth check (DESIGN.md §11). It
// never serves Options.Extra paths, never reads a body and never forwards.
//
// The caller (package forwardauth) has put the original method, request
// URI and Host in ctx.Request and has made sure the peer may send checks:
// the peer is treated as a trusted proxy, so its X-Forwarded-For names the
// client whose failures are counted. On a refusal ctx.Response may carry
// WWW-Authenticate (always, on a 401) and Retry-After; the returned error is
// an *HTTPError of the proxy (see CheckError for the answer of a check). The
// route and identity are valid until the next request on ctx; the identity
// may be shared with the cache and must not be changed.
//
// The request id (the request's valid X-Request-Id or a new one) is set on
// ctx.Response. A cache hit allocates nothing.
func (p *Proxy) Check(ctx *fasthttp.RequestCtx) (*Route, *authn.Identity, error) {
	s := p.scratchFor(ctx)
	ctx.Response.Header.SetCanonical(p.canon.rid, s.rid)
	s.check = true
	err := p.decide(ctx, s, true)
	route, ident := s.route, s.ident
	if err == nil && s.phase != phaseForward {
		err = ErrBadPath // unreachable: decide serves nothing for a check
	}
	if err != nil {
		p.challenge(ctx, err)
	} else {
		s.rl.Set(&ctx.Response.Header) // RateLimit headers of an allowed check
	}
	s.route, s.ident = nil, nil
	p.pool.Put(s)
	return route, ident, err
}

// challenge adds the Basic and Bearer challenges to a 401 whose seam set
// none. Kept out of Check: errors.As makes its target escape.
func (p *Proxy) challenge(ctx *fasthttp.RequestCtx, err error) {
	var he *HTTPError
	if errors.As(err, &he) && he.Status == fasthttp.StatusUnauthorized &&
		len(ctx.Response.Header.Peek(fasthttp.HeaderWWWAuthenticate)) == 0 {
		ctx.Response.Header.Add(fasthttp.HeaderWWWAuthenticate, p.wwwBasic)
		ctx.Response.Header.Add(fasthttp.HeaderWWWAuthenticate, p.wwwBearer)
	}
}

// HeaderNames are the configured identity header names (DESIGN.md §4), in
// their configured spelling. Read-only.
type HeaderNames struct {
	User, Account, Roles, Method, KeyID, KeyName, RequestID []byte
}

// HeaderNames returns the configured identity and request id header names.
func (p *Proxy) HeaderNames() HeaderNames {
	return HeaderNames{p.hUser, p.hAccount, p.hRoles, p.hMethod, p.hKeyID, p.hKeyNm, p.ridName}
}

// IsIdentityHeader reports whether a header named k is, for the gateway,
// an identity header: a configured name or anything starting with X-Auth-,
// compared in any case with '_' and '.' read as '-'. Client copies of these
// never reach an upstream.
func (p *Proxy) IsIdentityHeader(k []byte) bool { return p.san.isIdentityHeader(k) }

// IsRequestIDHeader reports whether k names the request id header (same
// comparison as IsIdentityHeader).
func (p *Proxy) IsRequestIDHeader(k []byte) bool { return normEqual(k, p.ridNorm) }

// ErrUntrustedPeer answers a check from a peer outside
// forward_auth.trusted_proxies.
var ErrUntrustedPeer = &HTTPError{Status: fasthttp.StatusForbidden, Code: "untrusted_peer", Message: "checks are accepted from forward_auth.trusted_proxies only"}

// errCheckUnavailable answers a check whose decision failed inside keygate.
var errCheckUnavailable = &HTTPError{Status: fasthttp.StatusServiceUnavailable, Code: "unavailable", Message: "the check could not be made; retry later"}

// checkErrs maps the pipeline's answers that a front proxy must not see
// (nginx turns any code but 2xx/401/403 into a 500) to 403 with the same
// code and message; no route is "no_route". The pipeline's answers are a
// finite set of values built once (per-reason bad_path/bad_host included),
// so each is translated once and reused: refusing a check allocates
// nothing after the first refusal of its kind.
var checkErrs sync.Map // *HTTPError → *HTTPError

func checkErr(he *HTTPError) *HTTPError {
	if v, ok := checkErrs.Load(he); ok {
		return v.(*HTTPError)
	}
	code := he.Code
	if he == ErrNotFound {
		code = "no_route"
	}
	v, _ := checkErrs.LoadOrStore(he, &HTTPError{Status: fasthttp.StatusForbidden, Code: code, Message: he.Message})
	return v.(*HTTPError)
}

// CheckError is the answer of a refused check: 401, 403, 429 and 503 stay;
// every other refusal of the pipeline (400 ambiguous or malformed, 404 no
// route, 405 method, 413) is 403 with the reason's code and message; an
// internal failure is 503. The result is always an *HTTPError with one of
// those four statuses, and needsRetryAfter tells whether the answer must
// carry Retry-After (429 and 503; keep one the seam set).
func CheckError(err error) (he *HTTPError, needsRetryAfter bool) {
	if !errors.As(err, &he) || he == nil {
		return errCheckUnavailable, true
	}
	switch he.Status {
	case fasthttp.StatusUnauthorized, fasthttp.StatusForbidden:
		return he, false
	case fasthttp.StatusTooManyRequests, fasthttp.StatusServiceUnavailable:
		return he, true
	}
	if he.Status >= 400 && he.Status < 500 {
		return checkErr(he), false
	}
	return errCheckUnavailable, true
}
