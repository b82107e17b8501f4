// Package token issues and verifies keygate's access tokens (JWTs), serves
// the JWKS, authenticates "Authorization: Bearer <jwt>" for the authn.Chain,
// and implements the OAuth2 token endpoint (RFC 6749 password and
// refresh_token grants) of DESIGN.md §7.
//
// # Key material (tokens.signing)
//
// HS256: a shared secret of at least 32 bytes from secret_file (its content
// minus one trailing newline) or secret (KEYGATE_TOKENS_SIGNING_SECRET).
// Missing, short, low-entropy (fewer than 10 distinct bytes, a repeated
// pattern, a run like "abcd…") or well-known secrets ("secret", "changeme",
// "keygate", …) are refused: NewSigner and NewVerifier fail and serve must
// not start. The kid of an HS256 token is a hash of the secret under a fixed
// label, so every instance sharing the secret agrees on it.
//
// EdDSA (Ed25519) or RS256 (RSA ≥ 2048 bits): the PEM private key in
// private_key_file (PKCS#8 "PRIVATE KEY", or PKCS#1 "RSA PRIVATE KEY" for
// RSA; not encrypted). Its kid is its RFC 7638 thumbprint.
//
// # Key rotation (asymmetric algorithms)
//
// Previous keys go in <private_key_file>.prev, a PEM file of one or more
// public keys ("PUBLIC KEY" or "RSA PUBLIC KEY"; private keys are accepted
// too, and only their public half is used), of the same algorithm. Tokens
// are signed with the current key only; tokens signed with a current or a
// previous key verify (chosen by kid); the JWKS lists all of them. To
// rotate: append the current public key to .prev, replace the private key,
// restart the instances; remove the old key from .prev after
// tokens.lifetime. No new config key is needed. HS256 has no rotation: a
// new secret invalidates every token (clients log in again).
//
// # Tokens
//
// Header: alg (the configured one), typ "at+jwt" (RFC 9068), kid. Claims:
// iss, aud, sub (username), client_id (RFC 9068: the client of the grant,
// "anonymous"), acct, roles, gen (the user's generation), uct (the user's
// creation time in Unix seconds: a user deleted and created again under the
// same name gets none of the old user's tokens), iat, exp, jti. Every number
// stays below 2^53, so JavaScript verifiers read them exactly.
//
// Verification accepts only the configured algorithm, only the header
// fields alg, typ and kid (so jwk, jku, x5u, x5c, crit… are refused), a kid
// of [A-Za-z0-9_-]{1,64} naming a known key, typ at+jwt, and requires exp,
// iat, iss, aud, sub and gen; nbf is honoured; tokens.leeway of clock skew
// is tolerated on exp, nbf and iat. Tokens longer than authn.MaxTokenLen
// are refused before any parsing.
//
// # Wiring (cmd/keygate serve)
//
//	signer, err := token.NewSigner(cfg.Tokens) // error: refuse to start
//	// st is a store.Driver (store.AsDriver at start): it keeps refresh tokens
//	basic := password.NewAuthenticator(st, hasher, password.AuthOptions{Accounts: accountStates})
//	chainCfg.Authenticators[authn.KindBasic] = basic
//	chainCfg.Authenticators[authn.KindBearer] = token.NewAuthenticator(
//		signer.Verifier(), st, token.AuthOptions{Accounts: accountStates})
//	ep, err := token.NewEndpoint(cfg.Tokens, signer, token.EndpointOptions{
//		Store: st, Refresh: st, Passwords: basic, Accounts: accountStates,
//		IPLimiter: ipLim, UserLimiter: userLim, Realm: cfg.Auth.Realm,
//		Logger: log, Registerer: reg})
//	for _, p := range ep.Paths() { extra[p] = ep.Handler }
//	for _, p := range ep.MetadataPaths() { extra[p] = ep.MetadataHandler } // RFC 8414
//	extra[token.JWKSPath] = signer.Verifier().JWKSHandler // 404 with HS256
package token

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/configs"
)

// TokenType is the typ header of access tokens (RFC 9068).
const TokenType = "at+jwt"

// Claims are the claims of a keygate access token.
type Claims struct {
	jwt.RegisteredClaims
	// ClientID is the client the token was issued to (RFC 9068 §2.2). Tokens
	// issued before it was added lack it; they verify all the same.
	ClientID string   `json:"client_id,omitempty"`
	Account  string   `json:"acct"`
	Roles    []string `json:"roles,omitempty"`
	// Generation is the user's generation when the token was issued.
	Generation uint64 `json:"gen"`
	// UserCreated is the user's CreatedAt in Unix seconds (0 when unknown).
	// Tokens issued before keygate switched to seconds carry Unix
	// nanoseconds (above 2^53: JavaScript verifiers read them rounded);
	// see userCreatedMatches for how both are accepted.
	UserCreated int64 `json:"uct"`
	// KeyID is the API key a client_credentials token is bound to.
	KeyID string `json:"key_id,omitempty"`
}

// uctNanoFloor separates the two units of the uct claim: Unix seconds stay
// below it until the year 36812, Unix nanoseconds are above it for every
// instant after 1970-01-01T00:18:20Z.
const uctNanoFloor = 1 << 40

// userCreatedUCT is the uct claim of a user created at created.
func userCreatedUCT(created time.Time) int64 {
	if created.IsZero() {
		return 0
	}
	return created.Unix()
}

// userCreatedMatches reports whether the uct claim of a token names the
// user created at created. Seconds, as issued now, match the second of
// created. Nanoseconds, as issued before, must match exactly: accepting them
// keeps the tokens issued before an upgrade working until they expire
// (tokens.lifetime) instead of logging every client out at once; once
// every instance has issued seconds for longer than tokens.lifetime, the
// nanosecond branch accepts nothing that is still valid and can go.
//
// Seconds are coarser than nanoseconds: if a user is created, given a
// token, deleted and created again under the same name all within one
// second, the first user's token carries the second user's uct too. It
// passes only if the account and the generation (1 for both while
// unchanged) match as well: scripted churn at that speed is the only case.
func userCreatedMatches(created time.Time, uct int64) bool {
	if uct >= uctNanoFloor {
		return !created.IsZero() && created.UnixNano() == uct
	}
	return userCreatedUCT(created) == uct
}

// Validate implements jwt.ClaimsValidator: the claims keygate requires on
// top of the registered ones.
func (c *Claims) Validate() error {
	switch {
	case c.IssuedAt == nil:
		return errors.New("token has no iat")
	case c.Subject == "":
		return errors.New("token has no sub")
	case c.Generation == 0:
		return errors.New("token has no gen")
	}
	return nil
}

// Subject is who a token is issued to.
type Subject struct {
	// ClientID is the OAuth client of the grant ("": AnonymousClient,
	// keygate's only client).
	ClientID    string
	Username    string
	Account     string
	Roles       []string
	Generation  uint64
	UserCreated time.Time
	// KeyID binds the token to the API key it was obtained with (the
	// client_credentials grant of a service account): the token is good
	// only while that key is (see Authenticator). "" for other tokens.
	KeyID string
	// NotAfter, when set, caps the token's expiry (the key's expires_at).
	NotAfter time.Time
}

// Option configures a Signer or a Verifier.
type Option func(*options)

type options struct {
	now func() time.Time
}

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

func buildOptions(opts []Option) options {
	o := options{now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	if o.now == nil {
		o.now = time.Now
	}
	return o
}

// Signer issues access tokens. It is safe for concurrent use.
type Signer struct {
	km       *keyMaterial
	method   jwt.SigningMethod
	issuer   string
	audience string
	lifetime time.Duration
	now      func() time.Time
	verifier *Verifier
}

// NewSigner loads the key material of cfg (see the package doc). Every
// error means serve must refuse to start; errors name the config key and
// never contain the secret.
func NewSigner(cfg configs.Tokens, opts ...Option) (*Signer, error) {
	km, err := loadKeys(cfg.Signing)
	if err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	if cfg.Lifetime <= 0 {
		return nil, fmt.Errorf("%w: tokens.lifetime must be positive", ErrKey)
	}
	s := &Signer{
		km:       km,
		method:   jwt.GetSigningMethod(km.alg),
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		lifetime: cfg.Lifetime.D(),
		now:      o.now,
	}
	s.verifier, err = newVerifier(cfg, km, o)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Verifier returns a Verifier of the Signer's tokens (same keys and config).
func (s *Signer) Verifier() *Verifier { return s.verifier }

// Lifetime is the lifetime of the tokens issued.
func (s *Signer) Lifetime() time.Duration { return s.lifetime }

// Issue signs an access token for sub, valid from now for tokens.lifetime.
func (s *Signer) Issue(sub Subject) (token string, exp time.Time, err error) {
	if sub.Username == "" || sub.Generation == 0 {
		return "", time.Time{}, errors.New("token: issue: subject needs a username and a generation")
	}
	now := s.now()
	iat := jwt.NewNumericDate(now)
	exp = iat.Add(s.lifetime)
	if !sub.NotAfter.IsZero() && sub.NotAfter.Before(exp) {
		if !sub.NotAfter.After(now) {
			return "", time.Time{}, errors.New("token: issue: the subject's credential has expired")
		}
		exp = sub.NotAfter
	}
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	client := sub.ClientID
	if client == "" {
		client = AnonymousClient
	}
	c := &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.issuer,
			Subject:   sub.Username,
			Audience:  jwt.ClaimStrings{s.audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			IssuedAt:  iat,
			ID:        base64.RawURLEncoding.EncodeToString(jti[:]),
		},
		ClientID:    client,
		Account:     sub.Account,
		Roles:       sub.Roles,
		Generation:  sub.Generation,
		UserCreated: userCreatedUCT(sub.UserCreated),
		KeyID:       sub.KeyID,
	}
	t := jwt.NewWithClaims(s.method, c)
	t.Header["typ"] = TokenType
	t.Header["kid"] = s.km.kid
	token, err = t.SignedString(s.km.sign)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token: sign: %w", err)
	}
	return token, exp, nil
}

// Verifier verifies access tokens. It is safe for concurrent use.
type Verifier struct {
	km     *keyMaterial
	parser *jwt.Parser
	now    func() time.Time
}

// NewVerifier loads the key material of cfg and returns a verifier pinned to
// cfg.Signing.Algorithm, cfg.Issuer and cfg.Audience, with cfg.Leeway.
// Instances sharing the secret (or key pair) verify each other's tokens.
func NewVerifier(cfg configs.Tokens, opts ...Option) (*Verifier, error) {
	km, err := loadKeys(cfg.Signing)
	if err != nil {
		return nil, err
	}
	return newVerifier(cfg, km, buildOptions(opts))
}

func newVerifier(cfg configs.Tokens, km *keyMaterial, o options) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, fmt.Errorf("%w: tokens.issuer and tokens.audience are required", ErrKey)
	}
	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("%w: tokens.leeway must not be negative", ErrKey)
	}
	return &Verifier{
		km:  km,
		now: o.now,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{km.alg}),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(cfg.Leeway.D()),
			jwt.WithTimeFunc(o.now),
			jwt.WithStrictDecoding(),
		),
	}, nil
}

// Verification errors. All wrap authn.ErrInvalidCredentials except an
// expired token (authn.ErrExpired); the reason is for logs only.
var (
	errTooLong    = fmt.Errorf("%w: token too long", authn.ErrMalformedCredentials)
	errShape      = fmt.Errorf("%w: not a JWT", authn.ErrMalformedCredentials)
	errHeader     = fmt.Errorf("%w: token header has a field other than alg, typ, kid", authn.ErrInvalidCredentials)
	errKid        = fmt.Errorf("%w: token kid missing, malformed or unknown", authn.ErrInvalidCredentials)
	errTyp        = fmt.Errorf("%w: token typ is not at+jwt", authn.ErrInvalidCredentials)
	errExpired    = fmt.Errorf("%w: token expired", authn.ErrExpired)
	errSignature  = fmt.Errorf("%w: bad token signature or algorithm", authn.ErrInvalidCredentials)
	errClaims     = fmt.Errorf("%w: token claims invalid", authn.ErrInvalidCredentials)
	errMalformedT = fmt.Errorf("%w: token malformed", authn.ErrInvalidCredentials)
)

// Verify checks token and returns its claims. Errors wrap
// authn.ErrMalformedCredentials (too long, not three segments),
// authn.ErrExpired (exp passed, beyond the leeway) or
// authn.ErrInvalidCredentials (everything else); none contains the token.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if len(token) > authn.MaxTokenLen {
		return nil, errTooLong
	}
	if strings.Count(token, ".") != 2 {
		return nil, errShape
	}
	c := &Claims{}
	var hdrErr error
	_, err := v.parser.ParseWithClaims(token, c, func(t *jwt.Token) (any, error) {
		if hdrErr = checkHeader(t.Header); hdrErr != nil {
			return nil, hdrErr
		}
		kid, _ := t.Header["kid"].(string)
		k, ok := v.km.verify[kid]
		if !ok {
			hdrErr = errKid
			return nil, errKid
		}
		return k, nil
	})
	switch {
	case err == nil:
		return c, nil
	case hdrErr != nil:
		return nil, hdrErr
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, errExpired
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return nil, errSignature
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, errMalformedT
	}
	return nil, errClaims
}

// checkHeader allows exactly alg, typ (at+jwt, any case, optionally with
// "application/") and a well-formed kid naming a known key: the kid lookup
// happens in the key function, which returns nil (unverifiable) for an
// unknown one.
func checkHeader(h map[string]any) error {
	for k := range h {
		if k != "alg" && k != "typ" && k != "kid" {
			return errHeader
		}
	}
	typ, _ := h["typ"].(string)
	typ = strings.ToLower(typ)
	if typ != TokenType && typ != "application/"+TokenType {
		return errTyp
	}
	kid, ok := h["kid"].(string)
	if !ok || !validKid(kid) {
		return errKid
	}
	return nil
}

func validKid(kid string) bool {
	if len(kid) == 0 || len(kid) > 64 {
		return false
	}
	for i := 0; i < len(kid); i++ {
		c := kid[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Algorithm is the pinned algorithm.
func (v *Verifier) Algorithm() string { return v.km.alg }

// JWKS is the JSON Web Key Set of the verification keys (the current key
// first, then the previous ones), or nil for HS256. The slice is shared: do
// not modify it.
func (v *Verifier) JWKS() []byte { return v.km.jwks }
