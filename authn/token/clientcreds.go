package token

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/store"
)

// KeyAuthenticator authenticates an API key credential exactly as the
// gateway does (*authn.Chain: cache, failure limits, allowed_cidrs): the
// client_credentials grant hands it "Bearer <key>".
type KeyAuthenticator interface {
	Authenticate(ctx context.Context, authorization []byte, clientIP netip.Addr) (*authn.Identity, error)
}

// GrantClientCredentials is the grant of a service account (DESIGN.md §13).
const GrantClientCredentials = "client_credentials"

var (
	// errKeyClient answers every failure of a service account's key as
	// the client credential: unknown id, wrong key, a key of another user
	// type, revoked, expired, disabled; one body whatever the reason.
	errKeyClient = newOAuthError(fasthttp.StatusUnauthorized, "invalid_client",
		"client authentication failed: client_id is a service account's API key id, client_secret the key")
	errKeyForbidden = newOAuthError(fasthttp.StatusForbidden, "invalid_client",
		"this API key may not be used from this client address")
)

// keyClient reads the client credentials of a client_credentials request:
// client_id and client_secret in the form, or HTTP Basic with them
// form-urlencoded (RFC 6749 §2.3.1), not both. ok is false when neither
// or a mix is given, or the Basic value is malformed.
func keyClient(authorization []byte, formID string, hasFormID bool, formSecret string) (id, secret string, ok bool) {
	if len(authorization) == 0 {
		return formID, formSecret, formID != "" && formSecret != ""
	}
	if formSecret != "" {
		return "", "", false
	}
	var c authn.Credentials
	defer c.Reset()
	if authn.ParseAuthorization(authorization, &c) != nil || c.Kind != authn.KindBasic {
		return "", "", false
	}
	id, err1 := url.QueryUnescape(string(c.Username))
	secret, err2 := url.QueryUnescape(string(c.Password))
	if err1 != nil || err2 != nil || id == "" || secret == "" || hasFormID && formID != id {
		return "", "", false
	}
	return id, secret, true
}

// clientCredentialsGrant issues a token to the service account owning the
// key presented as client credentials. The key is authenticated by the
// gateway's chain (its failures and limits are the chain's), must be the
// key client_id names, and must belong to a service account: the keys of
// other users still cannot obtain tokens. The token is bound to the key
// (Subject.KeyID): revoking or expiring the key ends it everywhere.
func (e *Endpoint) clientCredentialsGrant(ctx context.Context, r *tokenRequest, authorization []byte, hasFormID bool) ([]byte, time.Duration, *oauthError) {
	id, secret, ok := keyClient(authorization, r.v[pClientID], hasFormID, r.v[pClientSecret])
	if !ok {
		return e.refuseVerified(r, errKeyClient, "client credentials missing or malformed")
	}
	kid, _, err := apikey.Parse([]byte(secret))
	if err != nil || string(kid) != id {
		// Not a key, or one whose id is not client_id: nothing to look up.
		return e.refuseVerified(r, errKeyClient, "client_secret is not the api key of client_id")
	}
	r.client = id
	h := make([]byte, 0, len("Bearer ")+len(secret))
	h = append(append(h, "Bearer "...), secret...)
	ident, err := e.keys.Authenticate(ctx, h, r.ip)
	clear(h)
	var rl *authn.RateLimitedError
	switch {
	case err == nil:
	case errors.As(err, &rl):
		e.audit(r, "rate limited")
		return nil, rl.RetryAfter, errRateLimited
	case errors.Is(err, authn.ErrUnavailable):
		return e.unavailable(r, err)
	case errors.Is(err, authn.ErrAddressNotAllowed):
		return e.refuseVerified(r, errKeyForbidden, "api key used from an address outside its allowed_cidrs")
	default:
		return e.refuseVerified(r, errKeyClient, err.Error())
	}
	if ident.Method != authn.MethodAPIKey || ident.KeyID != id {
		return e.refuseVerified(r, errKeyClient, "client credentials are not an api key")
	}
	if ident.UserType != string(store.TypeService) {
		return e.refuseVerified(r, errKeyClient, "only the api keys of service accounts obtain tokens")
	}
	u, err := e.s.GetUser(ctx, ident.Username)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return e.refuseVerified(r, errKeyClient, "service account gone")
	case err != nil:
		return e.unavailable(r, err)
	}
	if u.Type != store.TypeService || u.Account != ident.Account || u.Generation != ident.Generation {
		return e.refuseVerified(r, errKeyClient, "service account changed meanwhile")
	}
	at, exp, err := e.signer.Issue(Subject{ClientID: id, Username: u.Username, Account: u.Account, Roles: ident.Roles,
		Generation: u.Generation, UserCreated: u.CreatedAt, KeyID: id, NotAfter: ident.ExpiresAt})
	if err != nil {
		return e.unavailable(r, err)
	}
	// No refresh token: the client holds its credentials and asks again.
	res := tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: max(1, int64(exp.Sub(e.signer.now()).Round(time.Second)/time.Second))}
	b, err := json.Marshal(res) //nolint:gosec // the token endpoint answers with the token: that is its job
	if err != nil {
		return e.unavailable(r, err)
	}
	return b, 0, nil
}
