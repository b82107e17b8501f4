package store

import (
	"encoding/base64"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits shared by every implementation, so that both stores accept and
// reject exactly the same inputs.
const (
	// MaxNameLen bounds account names, usernames and key names, in bytes.
	MaxNameLen = 255
	// MaxDescriptionLen bounds a key description, in bytes.
	MaxDescriptionLen = 1024
	// MaxRoleLen bounds one role name, in bytes.
	MaxRoleLen = 64
	// MaxRoles bounds the number of roles of a user or key.
	MaxRoles = 64
	// MaxIDLen is the longest API key id (base62).
	MaxIDLen = 32
	// MaxHashLen bounds a stored key hash or password hash, in bytes.
	MaxHashLen = 1024
	// DefaultPageLimit and MaxPageLimit bound a ListAPIKeys page.
	DefaultPageLimit = 100
	MaxPageLimit     = 1000
)

// validName checks the rules common to every name: 1–255 bytes, valid UTF-8,
// no control characters, no leading or trailing white space. The returned
// message never repeats the value (it may be attacker-controlled).
func validName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s is empty: %w", kind, ErrInvalid)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%s is longer than %d bytes: %w", kind, MaxNameLen, ErrInvalid)
	case !utf8.ValidString(name):
		return fmt.Errorf("%s is not valid UTF-8: %w", kind, ErrInvalid)
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return fmt.Errorf("%s contains a control character: %w", kind, ErrInvalid)
		}
	}
	first, _ := utf8.DecodeRuneInString(name)
	last, _ := utf8.DecodeLastRuneInString(name)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return fmt.Errorf("%s starts or ends with white space: %w", kind, ErrInvalid)
	}
	return nil
}

// validPathName adds the rules for names that appear in admin API paths and
// Basic credentials: no '/', no ':' (RFC 7617 forbids ':' in a user-id), and
// not "." or "..".
func validPathName(kind, name string) error {
	if err := validName(kind, name); err != nil {
		return err
	}
	if name == "." || name == ".." {
		return fmt.Errorf("%s may not be \".\" or \"..\": %w", kind, ErrInvalid)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == ':' {
			return fmt.Errorf("%s contains %q: %w", kind, name[i], ErrInvalid)
		}
	}
	return nil
}

// ValidateAccountName checks that name may be the name of a stored account:
// 1–255 bytes of UTF-8, no control characters, no leading or trailing white
// space, no '/' or ':', not "." or "..". These are the rules names were
// created with before canonical names (names.go); a new account's name must
// also be canonical (CanonicalAccountName, checked by ValidateAccount).
// Errors wrap ErrInvalid.
func ValidateAccountName(name string) error { return validPathName("account name", name) }

// ValidateUsername checks that name may be the name of a stored user, with
// the same rules as ValidateAccountName: usernames appear in paths and in
// Basic credentials. A new user's name must also be canonical
// (CanonicalUsername, checked by ValidateNewUser).
func ValidateUsername(name string) error { return validPathName("username", name) }

// requireCanonical checks that name is its own canonical form.
func requireCanonical(kind, name string, canon func(string) (string, error)) error {
	c, err := canon(name)
	if err != nil {
		return err
	}
	if c != name {
		return fmt.Errorf("%s is not in canonical form (lower case, normalised): %w", kind, ErrInvalid)
	}
	return nil
}

// ValidateKeyName checks an API key name: 1–255 bytes of UTF-8, no control
// characters, no leading or trailing white space.
func ValidateKeyName(name string) error { return validName("key name", name) }

// ValidateDescription checks a key description: at most 1024 bytes of UTF-8,
// no control characters other than tab and newline. Empty is fine.
func ValidateDescription(d string) error {
	if len(d) > MaxDescriptionLen {
		return fmt.Errorf("description is longer than %d bytes: %w", MaxDescriptionLen, ErrInvalid)
	}
	if !utf8.ValidString(d) {
		return fmt.Errorf("description is not valid UTF-8: %w", ErrInvalid)
	}
	for _, r := range d {
		if r != '\t' && r != '\n' && unicode.IsControl(r) {
			return fmt.Errorf("description contains a control character: %w", ErrInvalid)
		}
	}
	return nil
}

// ValidateState checks s is StateEnabled or StateDisabled.
func ValidateState(s State) error {
	if s != StateEnabled && s != StateDisabled {
		return fmt.Errorf("state must be %q or %q: %w", StateEnabled, StateDisabled, ErrInvalid)
	}
	return nil
}

// ValidateUserType checks t is one of the user types.
func ValidateUserType(t UserType) error {
	switch t {
	case TypeAdmin, TypeAccountAdmin, TypeUser, TypeService:
		return nil
	}
	return fmt.Errorf("user type must be %q, %q, %q or %q: %w", TypeAdmin, TypeAccountAdmin, TypeUser, TypeService, ErrInvalid)
}

// ValidRole reports whether r is a role token: 1–64 bytes of [A-Za-z0-9_.:-].
func ValidRole(r string) bool {
	if r == "" || len(r) > MaxRoleLen {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '.' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// ValidateRoles checks every role is a token (ValidRole), there are no
// duplicates and at most MaxRoles. nil and empty are fine.
func ValidateRoles(roles []string) error {
	if len(roles) > MaxRoles {
		return fmt.Errorf("more than %d roles: %w", MaxRoles, ErrInvalid)
	}
	for i, r := range roles {
		if !ValidRole(r) {
			return fmt.Errorf("role %d is not a token of 1-%d characters [A-Za-z0-9_.:-]: %w", i, MaxRoleLen, ErrInvalid)
		}
		for _, o := range roles[:i] {
			if o == r {
				return fmt.Errorf("duplicate role %q: %w", r, ErrInvalid)
			}
		}
	}
	return nil
}

// IsBase62ID reports whether id is a well-formed API key id: 1–32 characters
// of [0-9A-Za-z].
func IsBase62ID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// validHash checks a stored hash is present and bounded. The message never
// contains the hash.
func validHash(kind string, n int, required bool) error {
	if required && n == 0 {
		return fmt.Errorf("%s is empty: %w", kind, ErrInvalid)
	}
	if n > MaxHashLen {
		return fmt.Errorf("%s is longer than %d bytes: %w", kind, MaxHashLen, ErrInvalid)
	}
	return nil
}

// ValidateAccount applies defaults to a new account (State "" becomes
// enabled, a zero CreatedAt becomes now) and validates it; the name must be
// canonical (CanonicalAccountName). Both stores call it first in
// CreateAccount.
func ValidateAccount(a *Account, now time.Time) error {
	if a == nil {
		return fmt.Errorf("nil account: %w", ErrInvalid)
	}
	if err := requireCanonical("account name", a.Name, CanonicalAccountName); err != nil {
		return err
	}
	if a.State == "" {
		a.State = StateEnabled
	}
	if err := ValidateState(a.State); err != nil {
		return err
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now
	}
	return nil
}

// ValidateNewUser applies defaults to a new user (Type "" becomes user,
// State "" enabled, Generation 1, CreatedAt and UpdatedAt now when zero) and
// validates it, including the rule that an admin lives only in AdminAccount.
// The username must be canonical (CanonicalUsername); the account only needs
// to be a name an account may have (it may predate canonical names). It
// does not check that the account exists.
func ValidateNewUser(u *User, now time.Time) error {
	if u == nil {
		return fmt.Errorf("nil user: %w", ErrInvalid)
	}
	if err := requireCanonical("username", u.Username, CanonicalUsername); err != nil {
		return err
	}
	if err := ValidateAccountName(u.Account); err != nil {
		return err
	}
	if u.Type == "" {
		u.Type = TypeUser
	}
	if err := ValidateUserType(u.Type); err != nil {
		return err
	}
	if u.Type == TypeAdmin && u.Account != AdminAccount {
		return fmt.Errorf("user type %q is allowed only in account %q: %w", TypeAdmin, AdminAccount, ErrInvalid)
	}
	if u.State == "" {
		u.State = StateEnabled
	}
	if err := ValidateState(u.State); err != nil {
		return err
	}
	if err := ValidateRoles(u.Roles); err != nil {
		return err
	}
	if err := validHash("password hash", len(u.PasswordHash), false); err != nil {
		return err
	}
	if u.Type == TypeService && u.PasswordHash != "" {
		return fmt.Errorf("a service account has no password: %w", ErrInvalid)
	}
	u.Generation = 1
	if u.CreatedAt.IsZero() {
		u.CreatedAt = now
	}
	u.UpdatedAt = u.CreatedAt
	return nil
}

// ValidateUserUpdate validates the non-nil fields of upd and the rule of a
// rehash: Rehash requires a non-empty PasswordHash and IfPasswordHash and no
// other field. Whether a Type of admin suits the user's account is checked
// by ApplyUserUpdate.
func ValidateUserUpdate(upd UserUpdate) error {
	if upd.PasswordHash != nil {
		if err := validHash("password hash", len(*upd.PasswordHash), false); err != nil {
			return err
		}
	}
	if upd.IfPasswordHash != nil {
		if err := validHash("expected password hash", len(*upd.IfPasswordHash), false); err != nil {
			return err
		}
	}
	if upd.Rehash {
		switch {
		case upd.PasswordHash == nil || *upd.PasswordHash == "":
			return fmt.Errorf("rehash without a new password hash: %w", ErrInvalid)
		case upd.IfPasswordHash == nil:
			return fmt.Errorf("rehash without the expected password hash: %w", ErrInvalid)
		case upd.State != nil || upd.Roles != nil || upd.Type != nil:
			return fmt.Errorf("rehash may change only the password hash: %w", ErrInvalid)
		}
	}
	if upd.State != nil {
		if err := ValidateState(*upd.State); err != nil {
			return err
		}
	}
	if upd.Roles != nil {
		if err := ValidateRoles(*upd.Roles); err != nil {
			return err
		}
	}
	if upd.Type != nil {
		if err := ValidateUserType(*upd.Type); err != nil {
			return err
		}
	}
	return nil
}

// ApplyUserUpdate validates upd against u and applies it: changed fields,
// Generation+1 when any field is set, UpdatedAt = now. When
// upd.IfPasswordHash is set and differs from u.PasswordHash it fails with
// ErrConflict. A rehash (upd.Rehash) sets only PasswordHash, leaving
// Generation and UpdatedAt alone. u is left unchanged on error. It reports
// whether u must be written back; the caller publishes an invalidation when
// it reports true, unless upd.Rehash is set. A store calls it on the record
// it read in the same transaction (or whose hash and Generation its write
// re-checks), which makes the compare-and-set atomic.
func ApplyUserUpdate(u *User, upd UserUpdate, now time.Time) (bool, error) {
	if err := ValidateUserUpdate(upd); err != nil {
		return false, err
	}
	if upd.Type != nil && *upd.Type == TypeAdmin && u.Account != AdminAccount {
		return false, fmt.Errorf("user type %q is allowed only in account %q: %w", TypeAdmin, AdminAccount, ErrInvalid)
	}
	if upd.Type != nil && (*upd.Type == TypeService) != (u.Type == TypeService) {
		return false, fmt.Errorf("user %q: the type of a service account is fixed, and no other user becomes one: %w", u.Username, ErrInvalid)
	}
	if u.Type == TypeService && upd.PasswordHash != nil && *upd.PasswordHash != "" {
		return false, fmt.Errorf("user %q: a service account has no password: %w", u.Username, ErrInvalid)
	}
	if upd.IfPasswordHash != nil && *upd.IfPasswordHash != u.PasswordHash {
		return false, fmt.Errorf("user %q: password hash changed meanwhile: %w", u.Username, ErrConflict)
	}
	if upd.Rehash {
		if *upd.PasswordHash == u.PasswordHash {
			return false, nil
		}
		u.PasswordHash = *upd.PasswordHash
		return true, nil
	}
	changed := false
	if upd.PasswordHash != nil {
		u.PasswordHash, changed = *upd.PasswordHash, true
	}
	if upd.State != nil {
		u.State, changed = *upd.State, true
	}
	if upd.Roles != nil {
		u.Roles, changed = append([]string(nil), (*upd.Roles)...), true
	}
	if upd.Type != nil {
		u.Type, changed = *upd.Type, true
	}
	if changed {
		u.Generation++
		u.UpdatedAt = now
	}
	return changed, nil
}

// ValidateNewAPIKey validates a new key (name, description, roles, hash
// present) and sets CreatedAt to now when zero. ID, Account, RevokedAt and
// LastUsedAt are the store's to set; the caller ignores what it was given.
// Whether the expiry is in the past or within the maximum lifetime is the
// admin API's rule, not the store's.
func ValidateNewAPIKey(k *APIKey, now time.Time) error {
	if k == nil {
		return fmt.Errorf("nil api key: %w", ErrInvalid)
	}
	if err := ValidateUsername(k.Username); err != nil {
		return err
	}
	if err := ValidateKeyName(k.Name); err != nil {
		return err
	}
	if err := ValidateDescription(k.Description); err != nil {
		return err
	}
	if err := ValidateRoles(k.Roles); err != nil {
		return err
	}
	if err := validHash("key hash", len(k.Hash), true); err != nil {
		return err
	}
	if err := ValidateKeyExtras(k); err != nil {
		return err
	}
	k.RotatedTo = ""
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now
	}
	return nil
}

// NormalizeKeyFilter validates f and returns it with defaults applied: Status
// "" becomes KeyActive, Limit 0 becomes DefaultPageLimit and a Limit above
// MaxPageLimit is capped. It also returns the id the page starts after
// ("" for the first page). Errors wrap ErrInvalid.
func NormalizeKeyFilter(f KeyFilter) (KeyFilter, string, error) {
	switch f.Status {
	case "":
		f.Status = KeyActive
	case KeyActive, KeyExpired, KeyRevoked, StatusAll:
	default:
		return f, "", fmt.Errorf("status must be active, expired, revoked or all: %w", ErrInvalid)
	}
	switch {
	case f.Limit < 0:
		return f, "", fmt.Errorf("negative limit: %w", ErrInvalid)
	case f.Limit == 0:
		f.Limit = DefaultPageLimit
	case f.Limit > MaxPageLimit:
		f.Limit = MaxPageLimit
	}
	after := ""
	if f.Cursor != "" {
		var err error
		if after, err = DecodeCursor(f.Cursor); err != nil {
			return f, "", err
		}
	}
	return f, after, nil
}

// MatchKey reports whether k passes the filter's Account, Username, Name and
// Status at now. f must be normalised.
func MatchKey(k *APIKey, f KeyFilter, now time.Time) bool {
	if f.Account != "" && k.Account != f.Account ||
		f.Username != "" && k.Username != f.Username ||
		f.Name != "" && k.Name != f.Name ||
		!f.ExpiresBefore.IsZero() && (k.ExpiresAt.IsZero() || !k.ExpiresAt.Before(f.ExpiresBefore)) {
		return false
	}
	return f.Status == StatusAll || k.Status(now) == f.Status
}

// cursorPrefix versions the cursor encoding.
const cursorPrefix = "k1."

// EncodeCursor returns the opaque cursor for a page that ends with key id
// lastID: base64url of a versioned form of the id.
func EncodeCursor(lastID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + lastID))
}

// DecodeCursor returns the key id a cursor made by EncodeCursor names.
// Anything else is an error wrapping ErrInvalid.
func DecodeCursor(c string) (string, error) {
	if len(c) > 64 {
		return "", fmt.Errorf("cursor too long: %w", ErrInvalid)
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) <= len(cursorPrefix) || string(b[:len(cursorPrefix)]) != cursorPrefix {
		return "", fmt.Errorf("malformed cursor: %w", ErrInvalid)
	}
	id := string(b[len(cursorPrefix):])
	if !IsBase62ID(id) {
		return "", fmt.Errorf("malformed cursor: %w", ErrInvalid)
	}
	return id, nil
}

// PurgeEligible reports whether PurgeAPIKeys(before) removes k at now: the key
// is revoked or expired, and became so before `before`.
func PurgeEligible(k *APIKey, before, now time.Time) bool {
	switch k.Status(now) {
	case KeyRevoked:
		end := k.RevokedAt
		if !k.ExpiresAt.IsZero() && k.ExpiresAt.Before(end) {
			end = k.ExpiresAt
		}
		return end.Before(before)
	case KeyExpired:
		return k.ExpiresAt.Before(before)
	default:
		return false
	}
}
