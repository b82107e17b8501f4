// Package authn is the leaf of keygate's authentication: the Identity a
// request is authenticated as, the credential forms, and sentinel errors.
// It imports no other keygate package.
package authn

import "time"

// Method is how a request was authenticated (X-Auth-Method).
type Method uint8

// Methods.
const (
	MethodNone Method = iota
	MethodBasic
	MethodAPIKey
	MethodBearer
)

// String returns the X-Auth-Method value.
func (m Method) String() string {
	switch m {
	case MethodBasic:
		return "basic"
	case MethodAPIKey:
		return "api_key"
	case MethodBearer:
		return "bearer"
	default:
		return "none"
	}
}

// Identity is who a request is authenticated as. Identities held in the cache
// are shared and must be treated as read-only.
type Identity struct {
	Username string
	Account  string
	UserType string
	// Roles are the effective roles, sorted (for an API key: key roles ∩
	// owner roles).
	Roles []string
	// RolesHeader is Roles joined with ",", built once.
	RolesHeader string
	Method      Method
	KeyID       string
	KeyName     string
	// Generation is the owner's generation when this identity was built.
	Generation uint64
	// ExpiresAt is when the credential stops being valid (zero: never).
	ExpiresAt time.Time
}
