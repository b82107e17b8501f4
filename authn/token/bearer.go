package token

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/principal"
	"github.com/keygate/keygate/store"
)

// DefaultTimeout bounds the store calls of one authentication or one token
// request.
const DefaultTimeout = 3 * time.Second

// AuthOptions are the collaborators of an Authenticator.
type AuthOptions struct {
	// Accounts tells whether the user's account is enabled (nil: the
	// account is read from the store on every miss). Share the
	// principal.AccountStates of the other authenticators.
	Accounts authn.AccountStates
	// Timeout bounds the store calls of one authentication (default
	// DefaultTimeout).
	Timeout time.Duration
}

// Authenticator is the authn.Authenticator of Bearer JWTs (authn.KindBearer):
// the token's signature and claims, then the user's current state in the
// store (one GetUser, the account from Accounts). The Chain caches the
// identity until the token's exp (or cache.ttl, or an invalidation of the
// user), so a repeat costs no signature check. It is safe for concurrent
// use.
type Authenticator struct {
	v        *Verifier
	s        store.Store
	accounts authn.AccountStates
	timeout  time.Duration
}

// NewAuthenticator returns the Bearer JWT authenticator.
func NewAuthenticator(v *Verifier, s store.Store, opts AuthOptions) *Authenticator {
	a := &Authenticator{v: v, s: s, accounts: opts.Accounts, timeout: opts.Timeout}
	if a.accounts == nil {
		a.accounts = principal.StoreAccounts(s)
	}
	if a.timeout <= 0 {
		a.timeout = DefaultTimeout
	}
	return a
}

// Failures after the token verified. The token outlived its grounds
// (authn.ErrSecretVerified: not a guess, no failure budget spent), or its user or
// account is disabled; details for the audit log.
var (
	errUserGone     = fmt.Errorf("%w: %w: token subject no longer exists", authn.ErrInvalidCredentials, authn.ErrSecretVerified)
	errStale        = fmt.Errorf("%w: %w: token predates a change of its user (generation, account or re-creation)", authn.ErrInvalidCredentials, authn.ErrSecretVerified)
	errUserDisabled = fmt.Errorf("%w: user disabled", authn.ErrDisabled)
	errKeyGone      = fmt.Errorf("%w: %w: the api key of this token is revoked, expired or gone", authn.ErrInvalidCredentials, authn.ErrSecretVerified)
	errAcctDisabled = fmt.Errorf("%w: account disabled", authn.ErrDisabled)
)

// Authenticate implements authn.Authenticator for authn.KindBearer (other
// kinds: authn.ErrNotResponsible). Every failure of the credential is an
// *authn.TokenError (401 with error="invalid_token") wrapping
// authn.ErrMalformedCredentials, ErrInvalidCredentials (with
// ErrSecretVerified when the token verified), ErrExpired or ErrDisabled; a store failure wraps authn.ErrUnavailable (503).
func (a *Authenticator) Authenticate(ctx context.Context, c *authn.Credentials) (*authn.Identity, error) {
	if c.Kind != authn.KindBearer {
		return nil, authn.ErrNotResponsible
	}
	claims, err := a.v.Verify(string(c.Token))
	if err != nil {
		return nil, &authn.TokenError{Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	if claims.KeyID != "" {
		return a.keyBound(ctx, claims)
	}
	u, err := a.s.GetUser(ctx, claims.Subject)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, &authn.TokenError{Err: errUserGone}
	case err != nil:
		return nil, fmt.Errorf("%w: %w", authn.ErrUnavailable, err)
	}
	if !currentFor(u, claims.Account, claims.Generation) || !userCreatedMatches(u.CreatedAt, claims.UserCreated) {
		return nil, &authn.TokenError{Err: errStale}
	}
	if err := a.enabled(ctx, u); err != nil {
		return nil, err
	}
	id := principal.UserIdentity(u, authn.MethodBearer)
	id.ExpiresAt = claims.ExpiresAt.Time
	return id, nil
}

// currentFor reports whether a token (or refresh token) issued for account
// and generation still belongs to u; the caller also compares u's creation
// time (a user deleted and created again starts at the same generation).
func currentFor(u *store.User, account string, gen uint64) bool {
	return u.Account == account && u.Generation == gen
}

var _ authn.Authenticator = (*Authenticator)(nil)

// keyBound authenticates a token bound to an API key (client_credentials,
// DESIGN.md §13): it dies with the key. One LookupAPIKey reads the key and
// its owner: the key must be active and still belong to the token's
// subject, a service account of the same account, generation and creation
// as at issue. The identity is the key's (its effective roles and
// allow-list, its id, so that an invalidation of the key drops the cached
// token too), authenticated by bearer, expiring with the token or the key.
func (a *Authenticator) keyBound(ctx context.Context, claims *Claims) (*authn.Identity, error) {
	k, u, err := a.s.LookupAPIKey(ctx, claims.KeyID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, &authn.TokenError{Err: errKeyGone}
	case err != nil:
		return nil, fmt.Errorf("%w: %w", authn.ErrUnavailable, err)
	}
	if k.Status(a.v.now()) != store.KeyActive {
		return nil, &authn.TokenError{Err: errKeyGone}
	}
	if u.Username != claims.Subject || u.Type != store.TypeService || k.Account != u.Account ||
		!currentFor(u, claims.Account, claims.Generation) || !userCreatedMatches(u.CreatedAt, claims.UserCreated) {
		return nil, &authn.TokenError{Err: errStale}
	}
	if err := a.enabled(ctx, u); err != nil {
		return nil, err
	}
	id := principal.KeyIdentity(k, u)
	id.Method, id.ExpiresHeader = authn.MethodBearer, ""
	id.ExpiresAt = claims.ExpiresAt.Time
	if !k.ExpiresAt.IsZero() && k.ExpiresAt.Before(id.ExpiresAt) {
		id.ExpiresAt = k.ExpiresAt
	}
	return id, nil
}

// enabled checks a token's user and its account are enabled.
func (a *Authenticator) enabled(ctx context.Context, u *store.User) error {
	if u.State != store.StateEnabled {
		return &authn.TokenError{Err: errUserDisabled}
	}
	ok, err := a.accounts.Enabled(ctx, u.Account)
	if err != nil {
		return fmt.Errorf("%w: %w", authn.ErrUnavailable, err)
	}
	if !ok {
		return &authn.TokenError{Err: errAcctDisabled}
	}
	return nil
}
