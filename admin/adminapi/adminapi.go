// Package adminapi holds the request and response bodies of keygate's admin
// REST API (DESIGN.md §6): the admin server (package admin) encodes and
// decodes them and the CLI (internal/cli) speaks them, so the two cannot
// drift. The JSON field names are the contract of admin/openapi.json; the
// admin package's TestOpenAPIConformance checks the answers against it.
//
// Request bodies use pointers where "absent" and "empty" differ (a PATCH
// changes only what it names); the server decodes them strictly (unknown
// fields are a 400), so a client sends only the fields it means.
package adminapi

import (
	"encoding/json"
	"time"

	"github.com/keygate/keygate/store"
)

// ErrorBody is every error answer: {"error":{"code","message"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the code (machine-readable, e.g. "not_found") and the
// message (for people) of an error answer.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Accounts is GET /v1/accounts.
type Accounts struct {
	Accounts []Account `json:"accounts"`
}

// CreateAccount is the body of POST /v1/accounts.
type CreateAccount struct {
	Name string `json:"name"`
}

// UpdateAccount is the body of PATCH /v1/accounts/{account}.
type UpdateAccount struct {
	State *store.State `json:"state,omitempty"`
	SetLimits
}

// User is a user as the API shows it: never a hash.
type User struct {
	Username  string         `json:"username"`
	Account   string         `json:"account"`
	Type      store.UserType `json:"type"`
	Roles     []string       `json:"roles"`
	State     store.State    `json:"state"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	Limits
}

// Users is GET /v1/accounts/{account}/users.
type Users struct {
	Users []User `json:"users"`
}

// Self is GET /v1/user: the caller's identity.
type Self struct {
	Username string         `json:"username"`
	Account  string         `json:"account"`
	Type     store.UserType `json:"type"`
	// Roles are the effective roles of this request (for an API key: the
	// key's roles ∩ the owner's).
	Roles   []string `json:"roles"`
	Method  string   `json:"method"`
	KeyID   string   `json:"key_id,omitempty"`
	KeyName string   `json:"key_name,omitempty"`
}

// CreateUser is the body of POST /v1/accounts/{account}/users.
type CreateUser struct {
	Username string         `json:"username"`
	Password *string        `json:"password,omitempty"`
	Type     store.UserType `json:"type,omitempty"`
	Roles    []string       `json:"roles"`
}

// UpdateUser is the body of PATCH /v1/accounts/{account}/users/{username}:
// each field given is changed (Roles is the complete new list; an empty
// one clears).
type UpdateUser struct {
	Roles    *[]string       `json:"roles,omitempty"`
	State    *store.State    `json:"state,omitempty"`
	Type     *store.UserType `json:"type,omitempty"`
	Password *string         `json:"password,omitempty"`
	SetLimits
}

// ChangePassword is the body of PUT /v1/user/password.
type ChangePassword struct {
	Current *string `json:"current"`
	New     *string `json:"new"`
}

// Key is an API key as the API shows it: never the hash or the value.
type Key struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Account     string          `json:"account"`
	Username    string          `json:"username"`
	Roles       []string        `json:"roles"`
	CreatedAt   time.Time       `json:"created_at"`
	ExpiresAt   *time.Time      `json:"expires_at"`
	RevokedAt   *time.Time      `json:"revoked_at"`
	LastUsedAt  *time.Time      `json:"last_used_at"`
	Status      store.KeyStatus `json:"status"`
	// Metadata is the key's JSON object, absent when none.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// AllowedCIDRs are the client addresses the key may be used from
	// (absent: any).
	AllowedCIDRs []string `json:"allowed_cidrs,omitempty"`
	// RotatedTo is the id of the key that replaced this one.
	RotatedTo string `json:"rotated_to,omitempty"`
	Limits
}

// KeyPage is a page of keys (the listings and the search).
type KeyPage struct {
	APIKeys    []Key  `json:"api_keys"`
	NextCursor string `json:"next_cursor"`
}

// CreateKey is the body of a key creation (POST …/api-keys).
type CreateKey struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	ExpiresAt   *string   `json:"expires_at,omitempty"`
	ExpiresIn   *string   `json:"expires_in,omitempty"`
	Roles       *[]string `json:"roles,omitempty"`
	// Metadata is a JSON object (at most 4 KiB, 32 members).
	Metadata     json.RawMessage `json:"metadata,omitempty"`
	AllowedCIDRs []string        `json:"allowed_cidrs,omitempty"`
	SetLimits
}

// UpdateKey is the body of PATCH …/api-keys/{id}: each field given is
// changed, the others are left alone. Metadata and AllowedCIDRs replace the
// whole value ({} and [] clear); the expiry may only move earlier
// (expires_at, or expires_in from now). Adding a field: one member here and
// one entry in the admin package's keyPatchFields.
type UpdateKey struct {
	Description  *string          `json:"description,omitempty"`
	Metadata     *json.RawMessage `json:"metadata,omitempty"`
	Roles        *[]string        `json:"roles,omitempty"`
	AllowedCIDRs *[]string        `json:"allowed_cidrs,omitempty"`
	ExpiresAt    *string          `json:"expires_at,omitempty"`
	ExpiresIn    *string          `json:"expires_in,omitempty"`
	// RateLimit and Quota (issue 19) are kept apart from the key record
	// (store.LimitStore): a PATCH of only these writes no key.
	SetLimits
}

// RotateKey is the body of POST …/api-keys/{id}/rotate: how long the old key
// keeps working ("24h"; "0" or "0s": it dies at once, the leak case).
// Absent, the grace is 0.
type RotateKey struct {
	Grace *string `json:"grace,omitempty"`
}

// CreatedKey is the 201 of a key creation: the only answer that holds the
// key value.
type CreatedKey struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	APIKey    string     `json:"api_key"`
	Encoded   string     `json:"encoded"`
	Roles     []string   `json:"roles"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	// RotatedFrom is the id of the key this one replaced (rotation only).
	RotatedFrom  string          `json:"rotated_from,omitempty"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
	AllowedCIDRs []string        `json:"allowed_cidrs,omitempty"`
}

// BulkRevoke is the body of DELETE /v1/api-keys: the keys named by IDs
// (each must also match the other fields given) or, without IDs, every key
// matching the filter.
type BulkRevoke struct {
	IDs      []string `json:"ids,omitempty"`
	Name     string   `json:"name,omitempty"`
	Username string   `json:"username,omitempty"`
	Account  string   `json:"account,omitempty"`
}

// BulkError is one entry of a bulk revocation's errors (no ID: the error
// is about the request, e.g. "too_many").
type BulkError struct {
	ID      string `json:"id,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// BulkResult is the answer of DELETE /v1/api-keys (Elasticsearch's
// invalidate API key response).
type BulkResult struct {
	Invalidated           []string    `json:"invalidated"`
	PreviouslyInvalidated []string    `json:"previously_invalidated"`
	ErrorCount            int         `json:"error_count"`
	Errors                []BulkError `json:"errors"`
}
