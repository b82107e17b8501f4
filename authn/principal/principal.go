// Package principal is what the authenticators (authn/keyauth,
// authn/password, the bearer authenticator and token endpoint of
// authn/token) share about the principal a credential belongs to: role
// sets (SortedRoles, Intersect), the Identity of a user (UserIdentity,
// KeyIdentity) and whether its account is enabled (AccountStates,
// StoreAccounts).
//
// It imports authn and store, never an authenticator, so each
// authenticator depends on it rather than on another authenticator.
package principal

import (
	"slices"
	"strings"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/store"
)

// UserIdentity returns the identity of u authenticated by m (password or
// token): u's roles sorted without duplicates (SortedRoles), joined for the
// roles header. The caller sets ExpiresAt when the credential expires.
func UserIdentity(u *store.User, m authn.Method) *authn.Identity {
	return identity(u, m, SortedRoles(u.Roles))
}

// KeyIdentity returns the identity of u authenticated by its API key k: the
// effective roles are the key's that u still holds (Intersect), and the key's
// id, name and expiry are recorded.
func KeyIdentity(k *store.APIKey, u *store.User) *authn.Identity {
	id := identity(u, authn.MethodAPIKey, Intersect(k.Roles, u.Roles))
	id.KeyID, id.KeyName, id.ExpiresAt = k.ID, k.Name, k.ExpiresAt
	return id
}

func identity(u *store.User, m authn.Method, roles []string) *authn.Identity {
	return &authn.Identity{
		Username:    u.Username,
		Account:     u.Account,
		UserType:    string(u.Type),
		Roles:       roles,
		RolesHeader: strings.Join(roles, ","),
		Method:      m,
		Generation:  u.Generation,
	}
}

// Intersect returns the roles in both a and b, sorted and without
// duplicates, in a new slice (nil when there are none).
func Intersect(a, b []string) []string {
	var out []string
	for _, r := range a {
		if slices.Contains(b, r) {
			out = append(out, r)
		}
	}
	return SortedRoles(out)
}

// SortedRoles returns roles sorted, without duplicates or empty names, in a
// new slice (nil when empty).
func SortedRoles(roles []string) []string {
	var out []string
	for _, r := range roles {
		if r != "" {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return slices.Clip(slices.Compact(out))
}
