package store

import (
	"context"
	"fmt"
	"time"
)

// EndedSessions records web UI sessions ended before their expiry (logout:
// DESIGN.md §14). UI sessions are signed cookies that every instance
// accepts; a copy of one taken before a logout must be refused too, on
// every instance sharing the store, so the UI asks the store on every
// request (it reads the user's record there anyway) whether the session
// was ended. A record is kept until the session's absolute expiry, after
// which the cookie is refused anyway; then it may go (Redis drops it by
// itself, bolt sweeps expired ones at the next EndSession).
type EndedSessions interface {
	// EndSession records session id as ended until `until`. An invalid id
	// is ErrInvalid; ending an ended session again is not an error.
	EndSession(ctx context.Context, id string, until time.Time) error
	// SessionEnded reports whether id was ended and its record has not
	// expired by the store's clock. An unknown or malformed id is not
	// ended.
	SessionEnded(ctx context.Context, id string) (bool, error)
}

// ValidSessionID reports whether id can name a session: the charset and
// bound of a refresh token family (1..64 of [A-Za-z0-9_-]).
func ValidSessionID(id string) bool { return ValidRefreshFamily(id) }

// ValidateEndSession checks EndSession's arguments.
func ValidateEndSession(id string, until time.Time) error {
	if !ValidSessionID(id) {
		return fmt.Errorf("session id must be 1-%d characters [A-Za-z0-9_-]: %w", MaxRefreshFamilyLen, ErrInvalid)
	}
	if until.IsZero() {
		return fmt.Errorf("an ended session needs the time its record may go: %w", ErrInvalid)
	}
	return nil
}
