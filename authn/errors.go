package authn

import "errors"

// Sentinel errors of authentication. Authenticators and ParseAuthorization
// return these, often wrapped with %w and a fixed detail; callers match with
// errors.Is and map them to HTTP statuses as documented on each. No error
// message ever contains a password, a secret, a token or a key value.
var (
	// ErrNoCredentials: the request carries no credential (no or empty
	// Authorization header). On a protected route → 401 with the Basic and
	// Bearer WWW-Authenticate challenges; on an optional route the request
	// continues anonymously.
	ErrNoCredentials = errors.New("authn: no credentials")

	// ErrMalformedCredentials: the Authorization header cannot be parsed:
	// unknown scheme, missing space, bad base64, no ':' in Basic, empty
	// username, invalid UTF-8 or control characters, API key of the wrong
	// shape, ApiKey id not matching the key, token too long or outside the
	// token68 alphabet. → 401 (DESIGN.md §3; not 400: the duplicate
	// Authorization header is the only credential problem that is a 400).
	ErrMalformedCredentials = errors.New("authn: malformed credentials")

	// ErrInvalidCredentials: a well-formed credential that is wrong: unknown
	// user or key id, wrong password or secret, API key checksum mismatch
	// (detected without a store lookup), bad token signature or claims.
	// → 401 (bearer: error="invalid_token").
	ErrInvalidCredentials = errors.New("authn: invalid credentials")

	// ErrNotResponsible: an authenticator does not handle this credential
	// form; the chain moves on to the next one. Never reaches a client: if no
	// authenticator is responsible the chain reports ErrInvalidCredentials.
	ErrNotResponsible = errors.New("authn: authenticator not responsible for credential")

	// ErrExpired: a token that was valid has expired (exp passed, beyond
	// the leeway). Reported only after the signature verified. → 401. An
	// expired (or revoked) API key is ErrInvalidCredentials with
	// ErrSecretVerified instead: one code for every refused key, so nothing
	// tells a client that the key exists.
	ErrExpired = errors.New("authn: credentials expired")

	// ErrDisabled: the credential is correct but its user (for an API key:
	// its owner) or account is disabled. → 401.
	ErrDisabled = errors.New("authn: principal disabled")

	// ErrSecretVerified is wrapped, together with ErrInvalidCredentials, by
	// the refusal of a credential whose secret verified but which is no
	// longer good: an API key revoked or expired, a token of a user deleted
	// or changed (password, generation) since it was issued. Clients see
	// ErrInvalidCredentials (401, one code: nothing tells them the key
	// exists); ErrSecretVerified only tells the failure limiter that the
	// attempt was not a guess (see Verified).
	ErrSecretVerified = errors.New("authn: secret verified")

	// ErrUnavailable: the credential could not be checked because the store
	// is unreachable or hashing capacity is exhausted. → 503 (never 401, never
	// cached as invalid).
	ErrUnavailable = errors.New("authn: authentication unavailable")

	// ErrForbidden: authenticated, but not allowed to do this. → 403.
	ErrForbidden = errors.New("authn: forbidden")

	// ErrAddressNotAllowed: a valid credential (an API key with
	// allowed_cidrs) used from a client address outside its allow-list.
	// → 403 address_not_allowed. Not a guess: no failure budget is spent and
	// the owner is not counted as failing.
	ErrAddressNotAllowed = errors.New("authn: client address not allowed for this credential")
)

// Verified reports whether err refuses a credential whose secret verified:
// it is revoked, expired or disabled (ErrSecretVerified, ErrExpired,
// ErrDisabled).
// Such a refusal is not a guess: it spends no failure budget (DESIGN.md
// §13), since retrying it learns nothing and a client stuck on a revoked
// key must not lock out the valid clients sharing its address.
func Verified(err error) bool {
	return errors.Is(err, ErrSecretVerified) || errors.Is(err, ErrExpired) || errors.Is(err, ErrDisabled)
}
