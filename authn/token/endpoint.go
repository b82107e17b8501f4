package token

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/authn/principal"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/store"
)

// Paths.
const (
	// V1Path always answers, whatever tokens.path is.
	V1Path = "/v1/oauth/token"
	// JWKSPath serves the JWKS (asymmetric algorithms only).
	JWKSPath = "/.well-known/jwks.json"
	// AnonymousClient is the only client_id accepted (the default).
	AnonymousClient = "anonymous"
	// MaxRequestBody bounds the form the endpoint reads.
	MaxRequestBody = 16 << 10
)

// EndpointOptions are the collaborators of an Endpoint.
type EndpointOptions struct {
	// Store finds users and accounts (required).
	Store store.Store
	// Refresh stores refresh tokens; nil disables them (no refresh_token in
	// responses, and the refresh_token grant is unsupported_grant_type).
	// serve passes its store.Driver, which always has them.
	Refresh store.RefreshStore
	// Passwords verifies the password grant (required): give the Basic
	// authenticator of the Chain, so both check passwords the same way
	// (fake hash, state checks, rehash on login) and
	// auth.max_hash_concurrency bounds both.
	Passwords *password.Authenticator
	// Accounts tells whether an account is enabled (nil: read from Store).
	Accounts authn.AccountStates
	// IPLimiter counts failures per client IP (IPv6 per /64), UserLimiter
	// per username (auth.failures); nil limits nothing. Share the Chain's.
	IPLimiter, UserLimiter authn.FailureLimiter
	// ClientIP is the client address of a request (default: the TCP peer).
	// Give the proxy's trusted-proxy-aware function when there is one.
	ClientIP func(*fasthttp.RequestCtx) netip.Addr
	// Realm is the realm of the WWW-Authenticate challenge of
	// invalid_client (auth.realm of the normalised config).
	Realm string
	// Timeout bounds the store calls and the wait for a hashing slot of one
	// request (default DefaultTimeout).
	Timeout time.Duration
	// Now is the clock of refresh tokens (default time.Now); access tokens
	// use the Signer's.
	Now func() time.Time
	// Logger receives one audit line per failure (nil: no-op). It never
	// receives a password or a token.
	Logger *zap.Logger
	// Registerer receives keygate_token_requests_total{grant_type,result}
	// (nil registers nothing).
	Registerer prometheus.Registerer
	// Keys, when set, enables grant_type=client_credentials for service
	// accounts: give the gateway's authn.Chain, so the key is checked as
	// on the proxy (cache, failure limits, allowed_cidrs).
	Keys KeyAuthenticator
}

// Endpoint is the OAuth2 token endpoint (RFC 6749 §4.3 password grant and
// §6 refresh, responses per §5.1 and §5.2). It is safe for concurrent use.
//
// Responses, all with Cache-Control: no-store and Pragma: no-cache and a
// JSON body:
//
//	200 {"access_token","token_type":"Bearer","expires_in","refresh_token"}
//	400 invalid_request         missing or repeated parameter, a body that
//	                            is neither a form nor a JSON object of
//	                            strings, credentials in the query string
//	401 invalid_client          a client other than the public client
//	                            "anonymous", or a non-empty client secret
//	                            (see authenticateClient for the accepted
//	                            forms; WWW-Authenticate: Basic realm="…")
//	400 invalid_grant           unknown user or wrong password (one body,
//	                            one argon2id either way), disabled user or
//	                            account, an API key as the password (or user
//	                            _api_key), an unknown, expired, used or
//	                            revoked refresh token, or one of a user whose
//	                            generation changed
//	400 unsupported_grant_type  anything but password, refresh_token and
//	                            (with EndpointOptions.Keys) client_credentials
//	405 invalid_request         a method other than POST (Allow: POST)
//	429 invalid_request         "too many attempts": the client IP or the
//	                            username is over auth.failures (Retry-After).
//	                            RFC 6749 has no code for it; the status
//	                            carries the meaning.
//	503 temporarily_unavailable the store or hashing capacity is unavailable
//	                            (Retry-After)
//
// grant_type=client_credentials (a service account's API key as the client:
// see clientCredentialsGrant) answers 401 invalid_client for any failure of
// the key, 403 invalid_client for a key used outside its allowed_cidrs,
// 429 and 503 as above; its tokens have no refresh token.
//
// Refresh tokens are opaque ("<family>.<secret>", 22 + 1 + 43 base64url
// characters), single use, and rotated: each refresh_token grant spends one
// and returns its successor, valid tokens.refresh_lifetime from then. Using
// one twice revokes its whole family, so a stolen token and its legitimate
// copy both die. Only a SHA-256 of the value is stored.
type Endpoint struct {
	signer          *Signer
	s               store.Store
	refresh         store.RefreshStore
	pw              *password.Authenticator
	accounts        authn.AccountStates
	ipLim           authn.FailureLimiter
	userLim         authn.FailureLimiter
	clientIP        func(*fasthttp.RequestCtx) netip.Addr
	timeout         time.Duration
	now             func() time.Time
	log             *zap.Logger
	paths           []string
	refreshLifetime time.Duration
	challenge       string
	requests        [nGrants][nResults]prometheus.Counter
	meta            *serverMetadata
	keys            KeyAuthenticator // client_credentials; nil: unsupported
}

// Metric labels of keygate_token_requests_total.
const (
	grantPassword = iota
	grantRefresh
	grantClientCredentials
	grantOther // missing, unsupported, or refused before the grant was read
	nGrants
)

var grantLabels = [nGrants]string{"password", "refresh_token", "client_credentials", "other"}

const (
	resIssued = iota
	resInvalidRequest
	resInvalidClient
	resInvalidGrant
	resUnsupported
	resRateLimited
	resUnavailable
	nResults
)

var resultLabels = [nResults]string{"issued", "invalid_request", "invalid_client", "invalid_grant",
	"unsupported_grant_type", "rate_limited", "unavailable"}

// NewEndpoint returns the token endpoint issuing tokens with signer.
func NewEndpoint(cfg configs.Tokens, signer *Signer, opts EndpointOptions) (*Endpoint, error) {
	if signer == nil || opts.Store == nil || opts.Passwords == nil {
		return nil, errors.New("token: endpoint needs a signer, a store and a password authenticator")
	}
	if opts.Refresh != nil && cfg.RefreshLifetime <= 0 {
		return nil, errors.New("token: tokens.refresh_lifetime must be positive")
	}
	e := &Endpoint{
		signer:          signer,
		s:               opts.Store,
		refresh:         opts.Refresh,
		pw:              opts.Passwords,
		accounts:        opts.Accounts,
		ipLim:           opts.IPLimiter,
		userLim:         opts.UserLimiter,
		clientIP:        opts.ClientIP,
		timeout:         opts.Timeout,
		now:             opts.Now,
		log:             opts.Logger,
		refreshLifetime: cfg.RefreshLifetime.D(),
		keys:            opts.Keys,
	}
	if e.accounts == nil {
		e.accounts = principal.StoreAccounts(e.s)
	}
	if e.clientIP == nil {
		e.clientIP = httpx.PeerAddr
	}
	if e.timeout <= 0 {
		e.timeout = DefaultTimeout
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = zap.NewNop()
	}
	e.challenge = httpx.Challenge("Basic", opts.Realm, "")
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_token_requests_total",
		Help: "Token endpoint requests by grant type and result.",
	}, []string{"grant_type", "result"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(requests); err != nil {
			return nil, fmt.Errorf("token: metrics: %w", err)
		}
	}
	for g, gl := range grantLabels {
		for r, rl := range resultLabels {
			e.requests[g][r] = requests.WithLabelValues(gl, rl)
		}
	}
	e.paths = []string{V1Path}
	if cfg.Path != V1Path {
		e.paths = []string{cfg.Path, V1Path}
	}
	e.meta = newServerMetadata(signer.issuer, e.paths[0], signer.Verifier().JWKS() != nil, e.refresh != nil, e.keys != nil)
	return e, nil
}

// Paths are the exact paths the endpoint answers on: tokens.path and
// /v1/oauth/token. Register Handler for each (proxy Options.Extra).
func (e *Endpoint) Paths() []string { return append([]string(nil), e.paths...) }

// oauthError is one RFC 6749 §5.2 error response.
type oauthError struct {
	status int
	body   []byte
	retry  bool // set Retry-After
}

func newOAuthError(status int, code, desc string) *oauthError {
	b, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{code, desc})
	return &oauthError{status: status, body: b}
}

// Error responses. Fixed bodies: nothing from the request is echoed.
var (
	errMethod         = newOAuthError(fasthttp.StatusMethodNotAllowed, "invalid_request", "the token endpoint accepts POST only")
	errContentType    = newOAuthError(fasthttp.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded (or application/json)")
	errJSONBody       = newOAuthError(fasthttp.StatusBadRequest, "invalid_request", "a JSON body must be one object whose values are strings")
	errBodyTooLarge   = newOAuthError(fasthttp.StatusBadRequest, "invalid_request", "request body too large")
	errDuplicate      = newOAuthError(fasthttp.StatusBadRequest, "invalid_request", "a parameter is repeated")
	errInQuery        = newOAuthError(fasthttp.StatusBadRequest, "invalid_request", "credentials must be sent in the request body, not the query string")
	errNoGrantType    = newOAuthError(fasthttp.StatusBadRequest, "invalid_request", "grant_type is required")
	errNoCredentials  = newOAuthError(fasthttp.StatusBadRequest, "invalid_request", "username and password are required")
	errNoRefresh      = newOAuthError(fasthttp.StatusBadRequest, "invalid_request", "refresh_token is required")
	errClient         = newOAuthError(fasthttp.StatusUnauthorized, "invalid_client", `unknown client: use client_id "anonymous" without a secret`)
	errUnsupported    = newOAuthError(fasthttp.StatusBadRequest, "unsupported_grant_type", "supported grant types: password, refresh_token")
	errBadGrant       = newOAuthError(fasthttp.StatusBadRequest, "invalid_grant", "invalid username or password")
	errBadRefresh     = newOAuthError(fasthttp.StatusBadRequest, "invalid_grant", "invalid, expired or revoked refresh token")
	errRateLimited    = newOAuthError(fasthttp.StatusTooManyRequests, "invalid_request", "too many attempts")
	errUnavailableRes = &oauthError{status: fasthttp.StatusServiceUnavailable, retry: true,
		body: newOAuthError(0, "temporarily_unavailable", "authentication is temporarily unavailable; retry later").body}
)

// form parameters the endpoint reads.
const (
	pGrantType = iota
	pUsername
	pPassword
	pRefreshToken
	pClientID
	pClientSecret
	pScope
	nParams
)

var paramNames = [nParams]string{"grant_type", "username", "password", "refresh_token", "client_id", "client_secret", "scope"}

// sensitive parameters may not appear in the query string.
var sensitive = [nParams]bool{pUsername: true, pPassword: true, pRefreshToken: true, pClientSecret: true}

type tokenRequest struct {
	v     [nParams]string
	ip    netip.Addr
	ipKey [16]byte
	hasIP bool
	grant string

	// client is the client id authenticated by authenticateClient.
	client string
	// ipStamp, userStamp are the failure-limiter reservations of the
	// request (0: none); counted says a failed guess keeps them.
	ipStamp, userStamp int64
	counted            bool
}

// Handler serves a token request. Nothing of ctx is kept after it returns.
func (e *Endpoint) Handler(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set(fasthttp.HeaderCacheControl, "no-store")
	h.Set(fasthttp.HeaderPragma, "no-cache")
	h.SetContentType("application/json;charset=UTF-8")
	r := &tokenRequest{ip: e.clientIP(ctx)}
	r.ipKey, r.hasIP = authn.LimiterKey(r.ip)
	res, ra, err := e.serve(ctx, r)
	if !r.counted {
		e.giveBack(r) // not a guess: issued, unavailable, refused before any check
	}
	g := grantOther
	switch r.grant {
	case "password":
		g = grantPassword
	case "refresh_token":
		g = grantRefresh
	case GrantClientCredentials:
		if e.keys != nil { // otherwise an unsupported grant like any other
			g = grantClientCredentials
		}
	}
	if err != nil {
		e.requests[g][resultOf(err)].Inc()
		e.fail(ctx, err, ra)
		return
	}
	e.requests[g][resIssued].Inc()
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBody(res)
}

func resultOf(err *oauthError) int {
	switch {
	case err == errRateLimited:
		return resRateLimited
	case err == errUnavailableRes:
		return resUnavailable
	case err == errClient, err == errKeyClient, err == errKeyForbidden:
		return resInvalidClient
	case err == errUnsupported:
		return resUnsupported
	case err == errBadGrant, err == errBadRefresh:
		return resInvalidGrant
	}
	return resInvalidRequest
}

func (e *Endpoint) fail(ctx *fasthttp.RequestCtx, err *oauthError, ra time.Duration) {
	ctx.SetStatusCode(err.status)
	switch {
	case err.status == fasthttp.StatusMethodNotAllowed:
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "POST")
	case err == errClient, err == errKeyClient:
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, e.challenge)
	case err.retry:
		httpx.SetRetryAfter(&ctx.Response.Header, authn.UnavailableRetryAfter)
	case err == errRateLimited:
		httpx.SetRetryAfter(&ctx.Response.Header, ra)
	}
	ctx.SetBody(err.body)
}

// serve returns the success body, or the error to answer with (and the
// Retry-After of a 429).
func (e *Endpoint) serve(ctx *fasthttp.RequestCtx, r *tokenRequest) ([]byte, time.Duration, *oauthError) {
	req := &ctx.Request
	if !req.Header.IsPost() {
		return nil, 0, errMethod
	}
	format := bodyFormat(req.Header.ContentType())
	if format == formatNone {
		return nil, 0, errContentType
	}
	body := req.Body()
	if len(body) > MaxRequestBody {
		return nil, 0, errBodyTooLarge
	}
	for i, name := range paramNames {
		if sensitive[i] && req.URI().QueryArgs().Has(name) {
			return nil, 0, errInQuery
		}
	}
	var seen [nParams]bool
	dup := false
	set := func(k, v []byte) {
		for i, name := range paramNames {
			if string(k) == name {
				if seen[i] {
					dup = true
				}
				seen[i] = true
				r.v[i] = string(v)
			}
		}
	}
	if format == formatForm {
		var args fasthttp.Args
		args.ParseBytes(body)
		for k, v := range args.All() {
			set(k, v)
		}
	} else if parseJSONParams(body, set) != nil {
		return nil, 0, errJSONBody
	}
	if dup {
		return nil, 0, errDuplicate
	}
	if r.v[pGrantType] == GrantClientCredentials && e.keys != nil {
		// The client is a service account's API key, not the public client.
		r.grant = GrantClientCredentials
		c, cancel := context.WithTimeout(context.Background(), e.timeout)
		defer cancel()
		return e.clientCredentialsGrant(c, r, req.Header.Peek(fasthttp.HeaderAuthorization), seen[pClientID])
	}
	if !authenticateClient(req.Header.Peek(fasthttp.HeaderAuthorization), r.v[pClientID], seen[pClientID], r.v[pClientSecret]) {
		return nil, 0, errClient
	}
	r.client = AnonymousClient
	r.grant = r.v[pGrantType]
	switch r.grant {
	case "":
		return nil, 0, errNoGrantType
	case "password":
	case "refresh_token":
		if e.refresh == nil {
			return nil, 0, errUnsupported
		}
	default:
		return nil, 0, errUnsupported
	}
	if e.ipLim != nil && r.hasIP {
		// Reserved before any check, so concurrent guesses never exceed
		// the budget; given back unless the request fails as a guess.
		stamp, ok, ra := e.ipLim.Reserve(r.ipKey[:])
		if !ok {
			e.audit(r, "rate limited (ip)")
			return nil, ra, errRateLimited
		}
		r.ipStamp = stamp
	}
	c, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	if r.grant == "password" {
		return e.passwordGrant(c, r)
	}
	return e.refreshGrant(c, r)
}

// authenticateClient reports whether a token request authenticates as a
// registered client (RFC 6749 §2.3, §3.2.1). keygate has one: the public
// client "anonymous", which has no secret. Real clients present it in four
// ways, all accepted:
//
//   - not at all, or client_id=anonymous in the form (auth method "none";
//     x/oauth2 AuthStyleInParams, requests-oauthlib include_client_id=True);
//   - Authorization: Basic base64(anonymous:), the id and the empty secret
//     form-urlencoded first (§2.3.1; "client_secret_basic"): the default of
//     requests-oauthlib's fetch_token, of simple-oauth2, and x/oauth2
//     AuthStyleInHeader (AuthStyleAutoDetect tries it first);
//   - client_id=anonymous&client_secret= in the form ("client_secret_post"
//     with the empty secret): simple-oauth2 authorizationMethod "body".
//
// Refused (invalid_client): any other client id (no other is registered,
// the empty one included), a non-empty secret (the public client has
// none, so every secret is wrong), a scheme other than Basic or a malformed
// Basic value, and a header and a form that name different clients.
// authorization is the Authorization header ("" when absent); formID and
// formSecret are the form's client_id (hasFormID: present) and
// client_secret ("" when absent or empty).
func authenticateClient(authorization []byte, formID string, hasFormID bool, formSecret string) bool {
	if formSecret != "" || (hasFormID && formID != AnonymousClient) {
		return false
	}
	if len(authorization) == 0 {
		return true
	}
	var c authn.Credentials
	defer c.Reset()
	if authn.ParseAuthorization(authorization, &c) != nil || c.Kind != authn.KindBasic {
		return false
	}
	id, err := url.QueryUnescape(string(c.Username))
	if err != nil || id != AnonymousClient {
		return false
	}
	// The public client has no secret: only the empty one is right (and
	// only the empty string form-urlencodes to nothing), so a secret is
	// never decoded, copied or compared.
	return len(c.Password) == 0
}

// Body formats of a token request.
//
// RFC 6749 wants a form. A JSON object of strings is accepted too: it is
// what simple-oauth2 sends with bodyFormat "json", and what other token
// endpoints (Auth0, for one) take.
const (
	formatNone = iota
	formatForm // application/x-www-form-urlencoded
	formatJSON // application/json
)

// bodyFormat tells the format of a Content-Type (media type in any case,
// parameters such as charset allowed), formatNone for anything else.
func bodyFormat(ct []byte) int {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	switch {
	case bytes.EqualFold(ct, []byte("application/x-www-form-urlencoded")):
		return formatForm
	case bytes.EqualFold(ct, []byte("application/json")):
		return formatJSON
	}
	return formatNone
}

var errNotParams = errors.New("token: not a JSON object of strings")

// parseJSONParams reads body as one JSON object whose values are all
// strings, calling set for each member in order (so repeated names reach
// the duplicate check as in a form). Nested values, numbers, booleans,
// null and anything after the object are refused.
func parseJSONParams(body []byte, set func(k, v []byte)) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errNotParams
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return errNotParams
		}
		k, _ := kt.(string) // a member name is always a string
		vt, err := dec.Token()
		v, ok := vt.(string)
		if err != nil || !ok {
			return errNotParams
		}
		set([]byte(k), []byte(v))
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return errNotParams
	}
	if _, err := dec.Token(); err != io.EOF {
		return errNotParams
	}
	return nil
}

// refuse answers a failed guess: its reservations (the client IP's, and the
// username's when one was reserved) stay spent. username is kept for the
// callers' symmetry; the reservation was made by passwordGrant.
func (e *Endpoint) refuse(r *tokenRequest, _ string, err *oauthError, reason string) ([]byte, time.Duration, *oauthError) {
	r.counted = true
	e.audit(r, reason)
	return nil, 0, err
}

// refuseVerified answers a refusal that is not a guess (the password
// verified, the user or account is disabled): no failure budget is spent
// (DESIGN.md §13).
func (e *Endpoint) refuseVerified(r *tokenRequest, err *oauthError, reason string) ([]byte, time.Duration, *oauthError) {
	e.audit(r, reason)
	return nil, 0, err
}

// giveBack releases the request's reservations.
func (e *Endpoint) giveBack(r *tokenRequest) {
	if r.ipStamp != 0 {
		e.ipLim.Release(r.ipKey[:], r.ipStamp)
		r.ipStamp = 0
	}
	if r.userStamp != 0 {
		e.userLim.Release([]byte(r.v[pUsername]), r.userStamp)
		r.userStamp = 0
	}
}

func (e *Endpoint) unavailable(r *tokenRequest, err error) ([]byte, time.Duration, *oauthError) {
	e.log.Warn("token endpoint: store or hashing unavailable", zap.String("grant_type", r.grant), zap.Error(err))
	return nil, 0, errUnavailableRes
}

func (e *Endpoint) audit(r *tokenRequest, reason string) {
	if ce := e.log.Check(zap.InfoLevel, "token request refused"); ce != nil {
		fields := []zap.Field{zap.String("event", "token_failure"), zap.String("grant_type", r.grant), zap.String("reason", reason)}
		if r.grant == "password" && r.v[pUsername] != "" {
			fields = append(fields, zap.String("username", r.v[pUsername]))
		}
		if r.grant == GrantClientCredentials && r.client != "" {
			fields = append(fields, zap.String("key_id", r.client)) // the id only, never the key
		}
		if r.ip.IsValid() {
			fields = append(fields, zap.String("client_ip", r.ip.String()))
		}
		ce.Write(fields...)
	}
}

func (e *Endpoint) passwordGrant(ctx context.Context, r *tokenRequest) ([]byte, time.Duration, *oauthError) {
	username, pw := r.v[pUsername], r.v[pPassword]
	if username == "" || pw == "" {
		return nil, 0, errNoCredentials
	}
	if e.userLim != nil {
		stamp, ok, ra := e.userLim.Reserve([]byte(username))
		if !ok {
			e.audit(r, "rate limited (user)")
			return nil, ra, errRateLimited
		}
		r.userStamp = stamp
	}
	// An API key is not a password: it cannot be exchanged for a token
	// (a token would outlive the key's revocation).
	if username == authn.APIKeyUser || apikey.LooksLikeKey([]byte(pw)) {
		return e.refuse(r, username, errBadGrant, "api key presented to the token endpoint")
	}
	// The same check as Basic (password.Authenticator.Check): lookup, one
	// argon2id whatever fails, state only after the password, rehash.
	u, err := e.pw.Check(ctx, username, []byte(pw))
	switch {
	case err == nil:
	case errors.Is(err, authn.ErrUnavailable):
		return e.unavailable(r, err)
	case authn.Verified(err):
		// The password was right (the user or account is disabled): not a
		// guess, no failure budget spent (DESIGN.md §13).
		return e.refuseVerified(r, errBadGrant, err.Error())
	default:
		// The reason as authn.Chain's audit line gives it for Basic.
		return e.refuse(r, username, errBadGrant, err.Error())
	}
	return e.issue(ctx, r, u, "")
}

// usable reports why u may not get a token ("" if it may).
func (e *Endpoint) usable(ctx context.Context, u *store.User) (string, error) {
	if u.State != store.StateEnabled {
		return "user disabled", nil
	}
	ok, err := e.accounts.Enabled(ctx, u.Account)
	if err != nil {
		return "", err
	}
	if !ok {
		return "account disabled", nil
	}
	return "", nil
}

// refreshValueLen is the length of a refresh token value.
const (
	familyLen       = 22 // 16 random bytes
	refreshValueLen = familyLen + 1 + 43
)

func (e *Endpoint) refreshGrant(ctx context.Context, r *tokenRequest) ([]byte, time.Duration, *oauthError) {
	v := r.v[pRefreshToken]
	if v == "" {
		return nil, 0, errNoRefresh
	}
	family, ok := parseRefresh(v)
	if !ok {
		return e.refuse(r, "", errBadRefresh, "malformed refresh token")
	}
	rt, err := e.refresh.UseRefreshToken(ctx, family, RefreshID(v), e.now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return e.refuse(r, "", errBadRefresh, "unknown, expired or revoked refresh token")
	case errors.Is(err, store.ErrConflict):
		e.log.Warn("refresh token reused: its family is revoked", zap.String("event", "refresh_token_reuse"),
			zap.String("family", family), zap.String("client_ip", r.ip.String()))
		return e.refuse(r, "", errBadRefresh, "refresh token reused")
	case err != nil:
		return e.unavailable(r, err)
	}
	u, err := e.s.GetUser(ctx, rt.Username)
	switch {
	case errors.Is(err, store.ErrNotFound):
		_ = e.refresh.RevokeRefreshFamily(ctx, family)
		return e.refuse(r, "", errBadRefresh, "refresh token of a deleted user")
	case err != nil:
		return e.unavailable(r, err)
	}
	// The refresh token record keeps the creation time whole: compare it
	// exactly (the access token's uct claim has seconds only).
	if !currentFor(u, u.Account, rt.Generation) || !sameInstant(u.CreatedAt, rt.UserCreatedAt) {
		_ = e.refresh.RevokeRefreshFamily(ctx, family)
		return e.refuse(r, "", errBadRefresh, "refresh token predates a change of its user")
	}
	if reason, err := e.usable(ctx, u); err != nil {
		return e.unavailable(r, err)
	} else if reason != "" {
		return e.refuseVerified(r, errBadRefresh, reason)
	}
	return e.issue(ctx, r, u, family)
}

// sameInstant reports whether a and b are the same instant, or both unset.
func sameInstant(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() && b.IsZero()
	}
	return a.Equal(b)
}

// parseRefresh checks the shape of a refresh token value and returns its
// family.
func parseRefresh(v string) (family string, ok bool) {
	if len(v) != refreshValueLen || v[familyLen] != '.' {
		return "", false
	}
	family = v[:familyLen]
	if !store.ValidRefreshFamily(family) || !store.ValidRefreshFamily(v[familyLen+1:]) {
		return "", false
	}
	return family, true
}

// RefreshID is the store.RefreshToken.ID of a refresh token value: its
// SHA-256, base64url without padding.
func RefreshID(value string) string {
	sum := sha256.Sum256([]byte(value))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// issue signs an access token for u and, with a refresh store, a refresh
// token of family (a new family when "").
func (e *Endpoint) issue(ctx context.Context, r *tokenRequest, u *store.User, family string) ([]byte, time.Duration, *oauthError) {
	roles := principal.SortedRoles(u.Roles)
	at, _, err := e.signer.Issue(Subject{ClientID: r.client, Username: u.Username, Account: u.Account, Roles: roles,
		Generation: u.Generation, UserCreated: u.CreatedAt})
	if err != nil {
		return e.unavailable(r, err)
	}
	res := tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(e.signer.Lifetime() / time.Second)}
	if e.refresh != nil {
		if family == "" {
			family = randomB64(16)
		}
		value := family + "." + randomB64(32)
		now := e.now()
		rec := &store.RefreshToken{
			ID:            RefreshID(value),
			Family:        family,
			Username:      u.Username,
			Generation:    u.Generation,
			UserCreatedAt: u.CreatedAt,
			IssuedAt:      now,
			ExpiresAt:     now.Add(e.refreshLifetime),
		}
		switch err := e.refresh.CreateRefreshToken(ctx, rec); {
		case errors.Is(err, store.ErrConflict):
			// The family was revoked (a reuse) while we were rotating.
			return e.refuse(r, "", errBadRefresh, "refresh token family revoked during rotation")
		case err != nil:
			return e.unavailable(r, err)
		}
		res.RefreshToken = value
	}
	b, err := json.Marshal(res) //nolint:gosec // the token endpoint answers with the token: that is its job
	if err != nil {
		return e.unavailable(r, err)
	}
	return b, 0, nil
}

func randomB64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// JWKSHandler serves the JWKS at JWKSPath: 200 with the public keys for
// EdDSA and RS256, 404 for HS256 (a shared secret has no public half).
// Errors use keygate's JSON error shape (DESIGN.md §6).
func (v *Verifier) JWKSHandler(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		writeAPIError(ctx, errGetOnly)
		return
	}
	if v.km.jwks == nil {
		writeAPIError(ctx, errNoJWKS)
		return
	}
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "public, max-age=300")
	ctx.SetContentType("application/jwk-set+json")
	ctx.SetBody(v.km.jwks)
}
