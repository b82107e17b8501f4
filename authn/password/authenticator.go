package password

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/principal"
	"github.com/keygate/keygate/store"
)

// DefaultAuthTimeout bounds the store calls and the wait for a hashing slot
// of one authentication.
const DefaultAuthTimeout = 3 * time.Second

// AuthOptions are the collaborators of an Authenticator.
type AuthOptions struct {
	// Timeout bounds one authentication (store calls and the wait for a
	// hashing slot; default DefaultAuthTimeout), on top of the caller's
	// context. A background rehash gets its own budget of the same length.
	Timeout time.Duration
	// Accounts tells whether the user's account is enabled (nil: the
	// account is read from the store on every miss).
	Accounts authn.AccountStates
	// NeedsRehash, when set, is called (with the username) after a
	// successful login whose stored hash uses parameters other than the
	// Hasher's, whether or not the background rehash (see Authenticator)
	// runs or succeeds. It must not block.
	NeedsRehash func(username string)
	// Logger receives debug lines about background rehashes (nil: none).
	// They name the user, never a password or a hash.
	Logger *zap.Logger
}

// Authenticator authenticates Basic username:password credentials against a
// store.Store with a Hasher, and its Check verifies the password grant of
// the token endpoint the same way (share one Authenticator between the two:
// one rehash gate, one NeedsRehash). It is safe for concurrent use.
//
// Rehash on login: after a successful login whose stored hash was made with
// parameters other than the Hasher's, the authenticator stores a new hash of
// the same password in the background. At most one rehash runs at a time
// (per Authenticator); a login that finds one running skips its own, and
// the next login of that user tries again. The rehash holds its own copy of
// the password, which it zeroes when done; it hashes through the Hasher, so
// it takes one of the auth.max_hash_concurrency slots like a login; and it
// writes with
//
//	UpdateUser(ctx, username, UserUpdate{PasswordHash: &new, IfPasswordHash: &old, Rehash: true})
//
// which is a compare-and-set on the hash the password was verified against
// (a password changed meanwhile wins: the rehash gets store.ErrConflict and
// is dropped) and, being a rehash, bumps no Generation and publishes no
// invalidation, so the user's cached identities and tokens stay valid.
// Failures are logged at debug level and otherwise ignored: the old hash
// keeps working.
type Authenticator struct {
	s           store.Store
	h           *Hasher
	timeout     time.Duration
	accounts    authn.AccountStates
	needsRehash func(string)
	log         *zap.Logger
	// rehashing holds a token while a background rehash runs.
	rehashing chan struct{}

	// Test hooks (nil in production): beforeRehashWrite runs in the
	// rehash goroutine after hashing, before UpdateUser; rehashDone runs
	// last, with UpdateUser's error (or the hashing error).
	beforeRehashWrite func(username string)
	rehashDone        func(username string, err error)
}

// NewAuthenticator returns the Basic authenticator for s, hashing with h.
func NewAuthenticator(s store.Store, h *Hasher, opts AuthOptions) *Authenticator {
	a := &Authenticator{s: s, h: h, timeout: opts.Timeout, accounts: opts.Accounts, needsRehash: opts.NeedsRehash,
		log: opts.Logger, rehashing: make(chan struct{}, 1)}
	if a.timeout <= 0 {
		a.timeout = DefaultAuthTimeout
	}
	if a.accounts == nil {
		a.accounts = principal.StoreAccounts(s)
	}
	if a.log == nil {
		a.log = zap.NewNop()
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
// kinds: authn.ErrNotResponsible): Check, then the identity of the user.
func (a *Authenticator) Authenticate(ctx context.Context, c *authn.Credentials) (*authn.Identity, error) {
	if c.Kind != authn.KindBasic {
		return nil, authn.ErrNotResponsible
	}
	u, err := a.Check(ctx, string(c.Username), c.Password)
	if err != nil {
		return nil, err
	}
	return principal.UserIdentity(u, authn.MethodBasic), nil
}

// Check verifies username and password and returns the user: the one
// password check of keygate, shared by Basic (Authenticate) and the token
// endpoint's password grant. Order: GetUser; the password is verified
// against the stored hash (against the Hasher's fake hash for an unknown
// user or an unusable stored hash, so every failure costs one argon2id);
// only then the user's and the account's state; last, a hash made with
// other parameters than the Hasher's is rehashed in the background (see
// Authenticator). pw is not kept: the rehash takes its own copy.
//
// Errors: authn.ErrInvalidCredentials (unknown user, wrong password,
// unusable stored hash: one class, the audit log cannot tell them apart
// either), authn.ErrDisabled (user or account disabled, reported only after
// the password verified), authn.ErrUnavailable (store unreachable, or no
// hashing slot: see below). None contains the password or the hash.
//
// Hashing capacity: when no hashing slot frees up before the timeout (a
// flood of wrong passwords holds all auth.max_hash_concurrency slots), the
// error wraps both authn.ErrUnavailable and ErrBusy: 503 with Retry-After,
// never cached, never "invalid" (a legitimate user is told to retry, not
// that their password is wrong). The failure limiter (429) is what slows the
// flood itself; it stays with the callers (authn.Chain, the token endpoint),
// which count a failure for every authn.ErrInvalidCredentials.
func (a *Authenticator) Check(ctx context.Context, username string, pw []byte) (*store.User, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	pws := string(pw)
	u, err := store.LookupUser(ctx, a.s, username) // "ADMIN", "ａｄｍｉｎ" find "admin"
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			if err := a.h.VerifyUnknown(ctx, pws); err != nil {
				return nil, busy(err)
			}
			return nil, errInvalid
		}
		return nil, unavailable(err)
	}
	if u.Type == store.TypeService {
		// A service account has no password (DESIGN.md §13): it is
		// refused as a wrong password is, after the same work.
		if err := a.h.VerifyUnknown(ctx, pws); err != nil {
			return nil, busy(err)
		}
		return nil, errInvalid
	}
	ok, rehash, err := a.h.Verify(ctx, u.PasswordHash, pws)
	switch {
	case errors.Is(err, ErrBusy):
		return nil, busy(err)
	case err != nil:
		// Malformed or unsafe stored hash: nobody can log in with it. Spend
		// the same work as a wrong password.
		if err := a.h.VerifyUnknown(ctx, pws); err != nil {
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
	if rehash {
		if a.needsRehash != nil {
			a.needsRehash(u.Username)
		}
		a.startRehash(u.Username, u.PasswordHash, pw)
	}
	return u, nil
}

// startRehash starts the background rehash of pw for username, whose stored
// hash is old, unless one is already running. pw is copied: the caller's
// bytes may be reused once Authenticate returns.
func (a *Authenticator) startRehash(username, old string, pw []byte) {
	select {
	case a.rehashing <- struct{}{}:
	default:
		a.log.Debug("password rehash skipped: another one is running", zap.String("username", username))
		return
	}
	buf := bytes.Clone(pw)
	go func() {
		err := a.rehash(username, old, buf)
		clear(buf)
		<-a.rehashing
		if a.rehashDone != nil {
			a.rehashDone(username, err)
		}
	}()
}

// rehash hashes pw with the Hasher's parameters and stores the result if
// the stored hash is still old.
func (a *Authenticator) rehash(username, old string, pw []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	phc, err := a.h.hashBytes(ctx, pw)
	if err != nil {
		a.log.Debug("password rehash skipped: no hashing slot", zap.String("username", username), zap.Error(err))
		return err
	}
	if a.beforeRehashWrite != nil {
		a.beforeRehashWrite(username)
	}
	_, err = a.s.UpdateUser(ctx, username, store.UserUpdate{PasswordHash: &phc, IfPasswordHash: &old, Rehash: true})
	switch {
	case err == nil:
		a.log.Debug("password rehashed with the current parameters", zap.String("username", username))
	case errors.Is(err, store.ErrConflict):
		a.log.Debug("password rehash dropped: the password changed meanwhile", zap.String("username", username))
	default:
		// Store errors name records, never hashes (store contract).
		a.log.Debug("password rehash failed", zap.String("username", username), zap.Error(err))
	}
	return err
}

func unavailable(err error) error { return fmt.Errorf("%w: %w", authn.ErrUnavailable, err) }

// busy reports a hashing slot not obtained in time (err wraps ErrBusy).
func busy(err error) error { return fmt.Errorf("%w: %w", authn.ErrUnavailable, err) }

var _ authn.Authenticator = (*Authenticator)(nil)
