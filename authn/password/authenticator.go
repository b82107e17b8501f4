package password

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/store"
)

// DefaultAuthTimeout bounds the store calls and the wait for a hashing slot
// of one authentication.
const DefaultAuthTimeout = 3 * time.Second

// AuthOptions are the collaborators of an Authenticator.
type AuthOptions struct {
	// Timeout bounds one authentication (store calls and the wait for a
	// hashing slot; default DefaultAuthTimeout), on top of the caller's
	// context.
	Timeout time.Duration
	// Accounts tells whether the user's account is enabled (nil: the
	// account is read from the store on every miss).
	Accounts authn.AccountStates
	// NeedsRehash, when set, is called (with the username) after a
	// successful login whose stored hash uses parameters other than the
	// Hasher's. The authenticator does not rehash by itself: see
	// Authenticator.
	NeedsRehash func(username string)
}

// Authenticator authenticates Basic username:password credentials against a
// store.Store with a Hasher. It is safe for concurrent use.
//
// Rehash on login is deliberately not done here: Store.UpdateUser has no
// compare-and-set, so a rehash racing an administrator's password change
// could write the old password back; and UpdateUser bumps the user's
// Generation, which would revoke every token and cached identity of the
// user on their next login after a parameter change. AuthOptions.NeedsRehash
// reports such users so an operator (or a future CAS-capable store call) can
// act.
type Authenticator struct {
	s           store.Store
	h           *Hasher
	timeout     time.Duration
	accounts    authn.AccountStates
	needsRehash func(string)
}

// NewAuthenticator returns the Basic authenticator for s, hashing with h.
func NewAuthenticator(s store.Store, h *Hasher, opts AuthOptions) *Authenticator {
	a := &Authenticator{s: s, h: h, timeout: opts.Timeout, accounts: opts.Accounts, needsRehash: opts.NeedsRehash}
	if a.timeout <= 0 {
		a.timeout = DefaultAuthTimeout
	}
	if a.accounts == nil {
		a.accounts = storeAccounts{s}
	}
	return a
}

// Failure errors. Unknown user and wrong password are one error: the audit
// log cannot tell them apart either (it records the username).
var (
	errInvalid  = fmt.Errorf("%w: unknown user or wrong password", authn.ErrInvalidCredentials)
	errUser     = fmt.Errorf("%w: user disabled", authn.ErrDisabled)
	errAccount  = fmt.Errorf("%w: account disabled", authn.ErrDisabled)
	errBadStore = fmt.Errorf("%w: stored password hash unusable", authn.ErrInvalidCredentials)
)

// Authenticate implements authn.Authenticator for authn.KindBasic (other
// kinds: authn.ErrNotResponsible). Order: GetUser; the password is verified
// against the stored hash (against the Hasher's fake hash for an unknown
// user or an unusable stored hash, so every failure costs one argon2id);
// only then the user's and the account's state.
//
// Hashing capacity: when no hashing slot frees up before the timeout (a
// flood of wrong passwords holds all auth.max_hash_concurrency slots), the
// error wraps both authn.ErrUnavailable and ErrBusy: 503 with Retry-After,
// never cached, never "invalid" (a legitimate user is told to retry, not
// that their password is wrong). The failure limiter (429) is what slows the
// flood itself.
func (a *Authenticator) Authenticate(ctx context.Context, c *authn.Credentials) (*authn.Identity, error) {
	if c.Kind != authn.KindBasic {
		return nil, authn.ErrNotResponsible
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	pw := string(c.Password)
	u, err := a.s.GetUser(ctx, string(c.Username))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			if err := a.h.VerifyUnknown(ctx, pw); err != nil {
				return nil, busy(err)
			}
			return nil, errInvalid
		}
		return nil, unavailable(err)
	}
	ok, rehash, err := a.h.Verify(ctx, u.PasswordHash, pw)
	switch {
	case errors.Is(err, ErrBusy):
		return nil, busy(err)
	case err != nil:
		// Malformed or unsafe stored hash: nobody can log in with it. Spend
		// the same work as a wrong password.
		if err := a.h.VerifyUnknown(ctx, pw); err != nil {
			return nil, busy(err)
		}
		return nil, errBadStore
	case !ok:
		return nil, errInvalid
	}
	if u.State != store.StateEnabled {
		return nil, errUser
	}
	enabled, err := a.accounts.Enabled(ctx, u.Account)
	if err != nil {
		return nil, unavailable(err)
	}
	if !enabled {
		return nil, errAccount
	}
	if rehash && a.needsRehash != nil {
		a.needsRehash(u.Username)
	}
	roles := sortedRoles(u.Roles)
	return &authn.Identity{
		Username:    u.Username,
		Account:     u.Account,
		UserType:    string(u.Type),
		Roles:       roles,
		RolesHeader: strings.Join(roles, ","),
		Method:      authn.MethodBasic,
		Generation:  u.Generation,
	}, nil
}

func unavailable(err error) error { return fmt.Errorf("%w: %w", authn.ErrUnavailable, err) }

// busy reports a hashing slot not obtained in time (err wraps ErrBusy).
func busy(err error) error { return fmt.Errorf("%w: %w", authn.ErrUnavailable, err) }

// sortedRoles returns roles sorted, without duplicates or empty names, in a
// new slice (nil when empty).
func sortedRoles(roles []string) []string {
	var out []string
	for _, r := range roles {
		if r != "" {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return slices.Clip(slices.Compact(out))
}

// storeAccounts asks the store every time (AuthOptions.Accounts unset).
type storeAccounts struct{ s store.Store }

func (sa storeAccounts) Enabled(ctx context.Context, account string) (bool, error) {
	acc, err := sa.s.GetAccount(ctx, account)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return acc.State == store.StateEnabled, nil
}

var _ authn.Authenticator = (*Authenticator)(nil)
