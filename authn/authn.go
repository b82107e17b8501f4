// Package authn is the leaf of keygate's authentication: the Identity a
// request is authenticated as, the credential forms, and sentinel errors.
// It imports no other keygate package.
package authn

import (
	"net/netip"
	"time"
)

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
	// ExpiresHeader is ExpiresAt in RFC 3339 (the Keygate-Key-Expires
	// header of API keys), built once; "" when ExpiresAt is zero.
	ExpiresHeader string
	// AllowedCIDRs, when not empty, are the only client addresses the
	// credential may be used from (an API key's allowed_cidrs).
	AllowedCIDRs []netip.Prefix
	// Meta are an API key's metadata members as header values (sanitised
	// and bounded: see KeyMeta), sorted by name; nil when none.
	Meta []KeyMeta
}

// KeyMeta is one metadata member of an API key as it is forwarded: a string
// value as it is, any other JSON value in its compact encoding, control
// characters (CR, LF, NUL…) replaced by a space and cut to MaxMetaValueLen
// bytes (at a UTF-8 boundary).
type KeyMeta struct {
	Name  string
	Value string
}

// MaxMetaValueLen bounds one forwarded metadata value, in bytes.
const MaxMetaValueLen = 256

// MetaValue returns the forwarded value of metadata member name, and whether
// there is one. It does not allocate.
func (id *Identity) MetaValue(name string) (string, bool) {
	for i := range id.Meta {
		if id.Meta[i].Name == name {
			return id.Meta[i].Value, true
		}
	}
	return "", false
}

// AllowsAddr reports whether the credential may be used from client address
// a: always without an allow-list; with one, only from an address inside it
// (an invalid address is outside every list). It does not allocate.
func (id *Identity) AllowsAddr(a netip.Addr) bool {
	if len(id.AllowedCIDRs) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range id.AllowedCIDRs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
