// Package store is keygate's system of record: accounts, users and API keys
// (DESIGN.md §5). It defines the Store interface, the records and the typed
// errors; store/redisstore and store/boltstore implement it and both pass the
// store/storetest conformance suite. store imports no other keygate package.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Typed errors. Implementations wrap them with %w and a message that names
// the record; callers match with errors.Is. A message never contains a
// password, a hash or a key value.
var (
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("conflict")
	ErrInvalid     = errors.New("invalid")
	ErrUnavailable = errors.New("store unavailable")
)

// State is the state of an account or a user.
type State string

// States.
const (
	StateEnabled  State = "enabled"
	StateDisabled State = "disabled"
)

// UserType is the kind of principal.
type UserType string

// User types. TypeAdmin (global admin) exists only in account AdminAccount.
const (
	TypeAdmin        UserType = "admin"
	TypeAccountAdmin UserType = "account_admin"
	TypeUser         UserType = "user"
	// TypeService is a service account: no password (Basic and the
	// password grant refuse it); it authenticates with its API keys, and
	// obtains tokens with the client_credentials grant (DESIGN.md §13).
	TypeService UserType = "service"
)

// AdminAccount is the account that exists from the first start.
const AdminAccount = "admin"

// Account is a domain.
type Account struct {
	Name      string    `json:"name"`
	State     State     `json:"state"`
	CreatedAt time.Time `json:"created_at"`
}

// User is a principal. Username is unique system-wide.
type User struct {
	Username string   `json:"username"`
	Account  string   `json:"account"`
	Type     UserType `json:"type"`
	Roles    []string `json:"roles"`
	State    State    `json:"state"`
	// PasswordHash is an argon2id PHC string. Never serialised to clients.
	PasswordHash string `json:"-"`
	// Generation is bumped by every change that can revoke access: password,
	// state, roles, type. Cached identities and tokens carry it.
	Generation uint64    `json:"generation"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// KeyStatus is derived from an API key record and the clock.
type KeyStatus string

// Key statuses.
const (
	KeyActive  KeyStatus = "active"
	KeyExpired KeyStatus = "expired"
	KeyRevoked KeyStatus = "revoked"
)

// APIKey is an API key record. Only a salted hash of the secret is stored.
type APIKey struct {
	// ID is assigned by the store on create: base62 ([0-9A-Za-z]), at most 32
	// characters. It appears in the key value kg_<id>_<secret><checksum>.
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Account     string   `json:"account"`
	Username    string   `json:"username"`
	Roles       []string `json:"roles"`
	// Hash is the salted hash of the secret (authn/apikey). Never serialised.
	Hash       []byte    `json:"-"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"` // zero: never expires
	RevokedAt  time.Time `json:"revoked_at,omitzero"` // zero: not revoked
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	// Metadata is a JSON object (ValidateMetadata: at most MaxMetadataLen
	// bytes, MaxMetadataKeys members), stored compact; nil when none.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// AllowedCIDRs, when not empty, are the client addresses the key may be
	// used from, as canonical prefixes (ValidateCIDRs).
	AllowedCIDRs []string `json:"allowed_cidrs,omitempty"`
	// RotatedTo is the id of the key that replaced this one
	// (RotateAPIKey); "" when the key was not rotated.
	RotatedTo string `json:"rotated_to,omitempty"`
}

// Status derives the key's status at now. Revoked wins over expired.
func (k *APIKey) Status(now time.Time) KeyStatus {
	switch {
	case !k.RevokedAt.IsZero():
		return KeyRevoked
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return KeyExpired
	default:
		return KeyActive
	}
}

// UserUpdate changes a user. Nil fields are left alone. Any non-nil field
// bumps the user's Generation and publishes an invalidation, except in a
// rehash (see Rehash).
type UserUpdate struct {
	PasswordHash *string
	State        *State
	Roles        *[]string
	Type         *UserType

	// IfPasswordHash, when set, makes the update conditional: it applies
	// only if the stored PasswordHash equals *IfPasswordHash, else the
	// update fails with ErrConflict and changes nothing (compare-and-set).
	// The comparison is atomic with the write. It may go with any other
	// field; on its own it checks and changes nothing.
	IfPasswordHash *string

	// Rehash marks an update that replaces the password hash with a new hash
	// of the same password (new parameters, e.g. after a successful login):
	// the credential is unchanged, so the update does not bump Generation,
	// does not change UpdatedAt and publishes no invalidation; cached
	// identities and tokens of the user stay valid. Rehash requires a
	// non-empty PasswordHash and IfPasswordHash (the hash the password was
	// verified against) and no other field, else ErrInvalid. Any update
	// without Rehash keeps the rules above.
	Rehash bool
}

// KeyFilter selects API keys for ListAPIKeys. Empty fields match everything.
type KeyFilter struct {
	Account  string
	Username string
	Name     string
	// Status: "" or KeyActive (default: active only), KeyExpired, KeyRevoked,
	// or "all".
	Status KeyStatus
	// ExpiresBefore, when set, keeps only keys with an expiry before it
	// (GET /v1/api-keys?expiring_within=).
	ExpiresBefore time.Time
	// Limit caps the page (0: 100; max 1000).
	Limit int
	// Cursor is the opaque NextCursor of the previous page.
	Cursor string
}

// StatusAll lists keys of every status.
const StatusAll KeyStatus = "all"

// KeyPage is one page of ListAPIKeys, ordered by ID.
type KeyPage struct {
	Keys       []APIKey
	NextCursor string // "" when this is the last page
}

// Invalidation tells caches that access derived from these records may have
// changed. Invalidation is per credential (DESIGN.md §13), so the scope is
// the narrowest record named:
//
//   - KeyID set: that API key only (every form of it: Basic _api_key,
//     ApiKey, Bearer kg_); Username names its owner, for consumers that
//     keep per-user state derived from the key (decision caches), and does
//     not widen the scope of a credential cache. A revoked or changed key
//     publishes this.
//   - Username (no KeyID): every credential of the user: password, keys,
//     and tokens issued to the user. Password, roles, type, state changes
//     and deletion publish this (a deletion also names each key).
//   - Account (no KeyID): every credential of the account's users.
//   - Flush, or nothing named: everything.
//
// Revalidate and Pos are set only on delivery (Watch), never published:
// Revalidate says a lost subscription was re-established and every
// invalidation missed meanwhile has been delivered (replayed from the
// store's invalidation log), so cached entries stay usable but must be
// revalidated before they are served as fresh; Flush is delivered instead
// when the missed invalidations could not all be replayed. Pos is the
// invalidation's position in that log ("" when the store keeps none).
type Invalidation struct {
	Account    string `json:"account,omitempty"`
	Username   string `json:"username,omitempty"`
	KeyID      string `json:"key_id,omitempty"`
	Flush      bool   `json:"flush,omitempty"`
	Revalidate bool   `json:"-"`
	Pos        string `json:"pos,omitempty"`
	// UpstreamCredential, when set, says that one upstream credential
	// changed or went (DESIGN.md §12); it concerns no client credential, so
	// identity caches ignore it. It is published alone.
	UpstreamCredential UpstreamCredentialRef `json:"uc,omitzero"`
}

// KeyOnly reports whether inv concerns one API key only (see Invalidation).
func (inv Invalidation) KeyOnly() bool {
	return !inv.Flush && !inv.Revalidate && inv.KeyID != ""
}

// All reports whether inv concerns every cached credential: a Flush, or an
// invalidation that names nothing (Revalidate is not one: it drops nothing).
func (inv Invalidation) All() bool {
	return inv.Flush || (!inv.Revalidate && inv.KeyID == "" && inv.Username == "" && inv.Account == "" &&
		inv.UpstreamCredential == (UpstreamCredentialRef{}))
}

// CredentialOnly reports whether inv concerns one upstream credential only
// (nothing an identity or decision cache holds).
func (inv Invalidation) CredentialOnly() bool {
	return !inv.Flush && !inv.Revalidate && inv.UpstreamCredential != (UpstreamCredentialRef{})
}

// Store is the system of record. Every method honours ctx (deadline and
// cancellation); a store that cannot be reached returns an error wrapping
// ErrUnavailable, never ErrNotFound.
type Store interface {
	// CreateAccount creates an enabled account (State defaults to enabled,
	// CreatedAt to now). ErrConflict if the name exists.
	CreateAccount(ctx context.Context, a *Account) error
	GetAccount(ctx context.Context, name string) (*Account, error)
	ListAccounts(ctx context.Context) ([]Account, error)
	// SetAccountState enables or disables an account; it publishes an
	// invalidation for the account.
	SetAccountState(ctx context.Context, name string, s State) (*Account, error)
	// DeleteAccount deletes the account, its users and their keys, and
	// publishes invalidations for all of them.
	DeleteAccount(ctx context.Context, name string) error

	// CreateUser creates a user in an existing account (ErrNotFound if the
	// account does not exist, ErrConflict if the username is taken anywhere,
	// ErrInvalid if Type is admin outside the admin account). Generation
	// starts at 1.
	CreateUser(ctx context.Context, u *User) error
	GetUser(ctx context.Context, username string) (*User, error)
	// ListUsers lists an account's users, ordered by username.
	ListUsers(ctx context.Context, account string) ([]User, error)
	// UpdateUser applies upd atomically, bumps Generation, publishes an
	// invalidation, and returns the new record. With upd.IfPasswordHash set
	// it applies only if the stored hash still equals it (ErrConflict
	// otherwise, nothing changed); with upd.Rehash it neither bumps
	// Generation nor publishes (see UserUpdate).
	UpdateUser(ctx context.Context, username string, upd UserUpdate) (*User, error)
	// DeleteUser deletes a user and their keys, publishing invalidations.
	DeleteUser(ctx context.Context, username string) error

	// CreateAPIKey assigns k.ID (and k.CreatedAt if zero) and stores the key.
	// The owner must exist (ErrNotFound). Name is unique among the owner's
	// keys that are neither revoked nor expired, enforced atomically
	// (ErrConflict). Account is taken from the owner.
	CreateAPIKey(ctx context.Context, k *APIKey) error
	GetAPIKey(ctx context.Context, id string) (*APIKey, error)
	// LookupAPIKey returns a key and its owner in one round trip: the hot
	// path of an API key cache miss.
	LookupAPIKey(ctx context.Context, id string) (*APIKey, *User, error)
	ListAPIKeys(ctx context.Context, f KeyFilter) (*KeyPage, error)
	// RevokeAPIKey sets RevokedAt (irreversible). It reports alreadyRevoked
	// when the key was revoked before (RevokedAt unchanged), and publishes an
	// invalidation.
	RevokeAPIKey(ctx context.Context, id string, at time.Time) (k *APIKey, alreadyRevoked bool, err error)
	// UpdateAPIKey applies upd to an active key atomically (ApplyKeyUpdate:
	// a revoked or expired key is ErrConflict, a later expiry ErrInvalid),
	// publishes an invalidation of that key only, and returns the new
	// record.
	UpdateAPIKey(ctx context.Context, id string, upd KeyUpdate) (*APIKey, error)
	// RotateAPIKey replaces an active key that was not rotated before by a
	// new one (NewRotatedKey) in one atomic step: the new key takes the
	// name; the old one expires at min(its expiry, now + r.Grace) and
	// records RotatedTo. Of concurrent rotations of one key exactly one
	// succeeds; the others get ErrConflict. It publishes an invalidation of
	// the old key and returns both records.
	RotateAPIKey(ctx context.Context, id string, r KeyRotation) (newKey, oldKey *APIKey, err error)
	// TouchAPIKeys records last-used times in one batch; unknown ids are
	// ignored and a time never moves backwards.
	TouchAPIKeys(ctx context.Context, used map[string]time.Time) error
	// PurgeAPIKeys deletes keys revoked or expired before `before` and
	// returns how many went.
	PurgeAPIKeys(ctx context.Context, before time.Time) (int, error)

	// Watch delivers invalidations from every instance sharing this store
	// until ctx ends. After a lost subscription is re-established it delivers
	// the invalidations missed meanwhile followed by
	// Invalidation{Revalidate: true} when it can replay them, else
	// Invalidation{Flush: true}. fn must not block for long.
	Watch(ctx context.Context, fn func(Invalidation)) error

	// Ping checks the store is reachable (readiness).
	Ping(ctx context.Context) error
	Close() error
}
