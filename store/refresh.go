package store

import (
	"context"
	"fmt"
	"time"
)

// RefreshToken is the record of one OAuth2 refresh token (authn/token). The
// token value itself is never stored: ID is a hash of it.
//
// Tokens are issued in families: the password grant starts a family, and
// every refresh_token grant uses (spends) one token of the family and
// issues its successor in the same family. A token used twice means it was
// copied: the store revokes the whole family (RFC 9700 §4.14.2).
type RefreshToken struct {
	// ID is the SHA-256 of the token value, base64url without padding (43
	// characters), never the value.
	ID string
	// Family is the id of the family: [A-Za-z0-9_-], 1 to 64 characters. It
	// is carried in the token value too, so a store can locate a token from
	// the value alone (the Redis store's hash tag).
	Family   string
	Username string
	// Generation and UserCreatedAt are the user's when the token was issued:
	// a password change, a disable or a role change (generation), or the
	// deletion and re-creation of the username (creation time), kills it.
	Generation    uint64
	UserCreatedAt time.Time
	IssuedAt      time.Time
	// ExpiresAt: after it the token is not usable (stores may drop it).
	ExpiresAt time.Time
	// UsedAt is when the token was spent (zero: not yet).
	UsedAt time.Time
}

// RefreshStore stores refresh tokens. Both store implementations provide it
// (a type assertion on a store.Store finds it). Every method honours ctx; an
// unreachable store returns an error wrapping ErrUnavailable.
type RefreshStore interface {
	// CreateRefreshToken stores t (UsedAt must be zero). ErrInvalid if a
	// field is malformed or ExpiresAt is not after IssuedAt; ErrConflict if
	// the ID exists or the family was revoked (a successor issued while the
	// family was being revoked for reuse is refused, not orphaned).
	CreateRefreshToken(ctx context.Context, t *RefreshToken) error
	// UseRefreshToken spends the token id of family at time at, atomically:
	// it returns the record with UsedAt set. ErrNotFound when it does not
	// exist, belongs to another family, has expired (ExpiresAt ≤ at) or its
	// family was revoked. When it was already used, the whole family is
	// revoked (every token of it, used or not, and any future one) and the
	// error wraps ErrConflict.
	UseRefreshToken(ctx context.Context, family, id string, at time.Time) (*RefreshToken, error)
	// RevokeRefreshFamily revokes every token of a family, present and
	// future. Revoking an unknown or revoked family is not an error.
	RevokeRefreshFamily(ctx context.Context, family string) error
	// RevokeUserRefreshTokens revokes every family of a user.
	RevokeUserRefreshTokens(ctx context.Context, username string) error
}

// RefreshPurger is called periodically, e.g. next to PurgeAPIKeys: a store
// whose refresh token records do not expire by themselves (boltstore)
// sweeps them; one whose records do (Redis) does nothing. It deletes tokens expired at or
// before `before`, and families none of whose tokens is still valid, and
// returns how many tokens went.
type RefreshPurger interface {
	PurgeRefreshTokens(ctx context.Context, before time.Time) (int, error)
}

// MaxRefreshFamilyLen bounds RefreshToken.Family.
const MaxRefreshFamilyLen = 64

// ValidRefreshFamily reports whether f is a well-formed family id:
// 1..MaxRefreshFamilyLen characters of [A-Za-z0-9_-].
func ValidRefreshFamily(f string) bool {
	if len(f) == 0 || len(f) > MaxRefreshFamilyLen {
		return false
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ValidRefreshID reports whether id has the shape of a RefreshToken.ID: 43
// characters of base64url (a SHA-256 without padding).
func ValidRefreshID(id string) bool {
	return len(id) == 43 && ValidRefreshFamily(id[:40]) && ValidRefreshFamily(id[40:])
}

// ValidateRefreshToken checks a record before CreateRefreshToken.
func ValidateRefreshToken(t *RefreshToken) error {
	switch {
	case t == nil:
		return fmt.Errorf("refresh token: nil record: %w", ErrInvalid)
	case !ValidRefreshID(t.ID):
		return fmt.Errorf("refresh token: malformed id: %w", ErrInvalid)
	case !ValidRefreshFamily(t.Family):
		return fmt.Errorf("refresh token: malformed family: %w", ErrInvalid)
	case t.Username == "":
		return fmt.Errorf("refresh token: empty username: %w", ErrInvalid)
	case t.IssuedAt.IsZero() || !t.ExpiresAt.After(t.IssuedAt):
		return fmt.Errorf("refresh token: expires_at must be after issued_at: %w", ErrInvalid)
	case !t.UsedAt.IsZero():
		return fmt.Errorf("refresh token: a new token cannot be used already: %w", ErrInvalid)
	}
	return nil
}
