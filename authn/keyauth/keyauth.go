// Package keyauth is the authn.Authenticator of API keys (the miss path of
// "Basic _api_key", "ApiKey" and "Bearer kg_…"). What it shares with the
// other authenticators (roles, identities, account states) is in
// authn/principal.
//
// It is not part of package authn/apikey because authn imports authn/apikey
// (to parse keys) and an authenticator must import authn.
package keyauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/authn/principal"
	"github.com/keygate/keygate/store"
)

// DefaultTimeout bounds the store calls of one authentication.
const DefaultTimeout = 3 * time.Second

// Toucher records that a key was used (store.TouchBatcher).
type Toucher interface {
	Touch(id string, at time.Time)
}

// AuthOptions are the collaborators of an Authenticator.
type AuthOptions struct {
	// Now is the clock (default time.Now): key expiry is checked with it.
	Now func() time.Time
	// Touch receives the key id on every successful authentication from the
	// store (nil: last_used_at is not recorded). Cache hits do not touch, so
	// last_used_at is as precise as cache.ttl.
	Touch Toucher
	// Timeout bounds the store calls of one authentication (default
	// DefaultTimeout), on top of the caller's context.
	Timeout time.Duration
	// Accounts tells whether the owner's account is enabled (nil: the
	// account is read from the store on every miss).
	Accounts authn.AccountStates
}

// Authenticator authenticates API keys against a store.Store: one
// LookupAPIKey round trip (key and owner) per miss, the account from
// Accounts. It is safe for concurrent use.
type Authenticator struct {
	s        store.Store
	now      func() time.Time
	touch    Toucher
	timeout  time.Duration
	accounts authn.AccountStates
}

// NewAuthenticator returns the API key authenticator for s.
func NewAuthenticator(s store.Store, opts AuthOptions) *Authenticator {
	a := &Authenticator{s: s, now: opts.Now, touch: opts.Touch, timeout: opts.Timeout, accounts: opts.Accounts}
	if a.now == nil {
		a.now = time.Now
	}
	if a.timeout <= 0 {
		a.timeout = DefaultTimeout
	}
	if a.accounts == nil {
		a.accounts = principal.StoreAccounts(s)
	}
	return a
}

// Failure errors, all one status (401, one code: the details are for the
// audit log only). A revoked or expired key is reported only after its
// secret verified, as authn.ErrInvalidCredentials with
// authn.ErrSecretVerified (not ErrExpired: clients see the code of an
// unknown key); a disabled owner or account, also after the secret, as
// authn.ErrDisabled. Neither is a guess: no failure budget is spent
// (authn.Verified).
var (
	errInvalid  = fmt.Errorf("%w: unknown api key or wrong secret", authn.ErrInvalidCredentials)
	errRevoked  = fmt.Errorf("%w: %w: api key revoked", authn.ErrInvalidCredentials, authn.ErrSecretVerified)
	errExpired  = fmt.Errorf("%w: %w: api key expired", authn.ErrInvalidCredentials, authn.ErrSecretVerified)
	errOwner    = fmt.Errorf("%w: api key owner disabled", authn.ErrDisabled)
	errAccount  = fmt.Errorf("%w: account disabled", authn.ErrDisabled)
	errMismatch = fmt.Errorf("%w: api key account does not match its owner", authn.ErrInvalidCredentials)
)

// Authenticate implements authn.Authenticator for authn.KindAPIKey (other
// kinds: authn.ErrNotResponsible). Order: lookup; the secret is verified
// against the stored hash (against apikey.FakeHash for an unknown id, so an
// unknown id and a wrong secret cost the same); only then revocation and
// expiry, the owner's state and the account's state.
func (a *Authenticator) Authenticate(ctx context.Context, c *authn.Credentials) (*authn.Identity, error) {
	if c.Kind != authn.KindAPIKey {
		return nil, authn.ErrNotResponsible
	}
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > a.timeout {
		// The Chain's own miss timeout usually bounds ctx already; a
		// second timer per miss would only cost.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
		defer cancel()
	}
	id := string(c.KeyID)
	k, u, err := a.s.LookupAPIKey(ctx, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			apikey.Verify(apikey.FakeHash(), c.Secret)
			return nil, errInvalid
		}
		return nil, unavailable(err)
	}
	if !apikey.Verify(k.Hash, c.Secret) {
		return nil, errInvalid
	}
	now := a.now()
	switch k.Status(now) {
	case store.KeyRevoked:
		return nil, errRevoked
	case store.KeyExpired:
		return nil, errExpired
	default: // active
	}
	if u.State != store.StateEnabled {
		return nil, errOwner
	}
	if k.Account != "" && k.Account != u.Account {
		return nil, errMismatch
	}
	ok, err := a.accounts.Enabled(ctx, u.Account)
	if err != nil {
		return nil, unavailable(err)
	}
	if !ok {
		return nil, errAccount
	}
	ident := principal.KeyIdentity(k, u)
	if a.touch != nil {
		a.touch.Touch(k.ID, now)
	}
	return ident, nil
}

// unavailable reports a store failure as authn.ErrUnavailable: whatever went
// wrong, the credential was not found invalid.
func unavailable(err error) error {
	return fmt.Errorf("%w: %w", authn.ErrUnavailable, err)
}

var _ authn.Authenticator = (*Authenticator)(nil)
