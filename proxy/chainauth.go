package proxy

import (
	"errors"
	"net/netip"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/internal/httpx"
)

// ChainAuthenticator adapts an authn.Chain to the proxy's Authenticator seam:
// it hands the chain the request's Authorization header and the client
// address, and turns the chain's errors into HTTP errors with the right
// challenge and Retry-After headers.
type ChainAuthenticator struct {
	chain *authn.Chain
	// Challenges, built once: Basic and Bearer, and Bearer with
	// error="invalid_token" for a refused bearer token.
	basic, bearer, bearerInvalid string
	errs                         map[string]*HTTPError
}

// NewChainAuthenticator returns the seam for chain with realm in its
// WWW-Authenticate challenges.
func NewChainAuthenticator(chain *authn.Chain, realm string) *ChainAuthenticator {
	return &ChainAuthenticator{
		chain:         chain,
		basic:         httpx.Challenge("Basic", realm, ""),
		bearer:        httpx.Challenge("Bearer", realm, ""),
		bearerInvalid: httpx.Challenge("Bearer", realm, "invalid_token"),
		// Fixed messages per code: the chain's error text (which may name a
		// username or key id) never reaches the client.
		errs: map[string]*HTTPError{
			"unauthorized":        {Status: fasthttp.StatusUnauthorized, Code: "unauthorized", Message: "authentication required"},
			"invalid_credentials": {Status: fasthttp.StatusUnauthorized, Code: "invalid_credentials", Message: "invalid credentials"},
			"forbidden":           {Status: fasthttp.StatusForbidden, Code: "forbidden", Message: "not allowed"},
			"address_not_allowed": {Status: fasthttp.StatusForbidden, Code: "address_not_allowed", Message: "this credential may not be used from this client address"},
			"rate_limited":        {Status: fasthttp.StatusTooManyRequests, Code: "rate_limited", Message: "too many failed attempts; retry later"},
			"unavailable":         {Status: fasthttp.StatusServiceUnavailable, Code: "unavailable", Message: "the identity store is unavailable; retry later"},
		},
	}
}

// hdrAuthorization is the header name in fasthttp's canonical form: read
// with PeekCanonical, no per-request copy-and-normalise of the name.
var hdrAuthorization = []byte(fasthttp.HeaderAuthorization)

// Authenticate implements Authenticator. A request without credentials is
// anonymous (nil, nil): the pipeline answers 401 on routes that require
// authentication and forwards it on optional ones.
func (a *ChainAuthenticator) Authenticate(ctx *fasthttp.RequestCtx, _ *Route, client netip.Addr) (*authn.Identity, error) {
	id, err := a.chain.Authenticate(ctx, ctx.Request.Header.PeekCanonical(hdrAuthorization), client)
	if err == nil {
		return id, nil
	}
	if errors.Is(err, authn.ErrNoCredentials) {
		return nil, nil
	}
	status, code, wwwErr := authn.Status(err)
	h := &ctx.Response.Header
	switch status {
	case fasthttp.StatusUnauthorized:
		h.Add(fasthttp.HeaderWWWAuthenticate, a.basic)
		if wwwErr != "" { // always invalid_token (authn.Status)
			h.Add(fasthttp.HeaderWWWAuthenticate, a.bearerInvalid)
		} else {
			h.Add(fasthttp.HeaderWWWAuthenticate, a.bearer)
		}
	case fasthttp.StatusTooManyRequests, fasthttp.StatusServiceUnavailable:
		if d := authn.RetryAfter(err); d > 0 {
			httpx.SetRetryAfter(h, d) // rounded up, as authn documents
		}
	}
	if he := a.errs[code]; he != nil {
		return nil, he
	}
	return nil, errors.New("authentication failed") // 500 internal_error, text not shown
}

var _ Authenticator = (*ChainAuthenticator)(nil)
