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
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

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
	if !k.ExpiresAt.IsZero() {
		id.ExpiresHeader = k.ExpiresAt.UTC().Format(time.RFC3339)
	}
	id.AllowedCIDRs = allowList(k.AllowedCIDRs)
	id.Meta = KeyMeta(k.Metadata)
	return id
}

// allowList parses a key's stored allow-list. An entry that does not parse
// (a damaged record) becomes an empty prefix that contains nothing: the key
// then fails closed rather than open.
func allowList(cidrs []string) []netip.Prefix {
	if len(cidrs) == 0 {
		return nil
	}
	out := make([]netip.Prefix, len(cidrs))
	for i, c := range cidrs {
		p, err := store.ParseCIDR(c)
		if err == nil {
			out[i] = p
		}
	}
	return out
}

// KeyMeta returns the members of a key's metadata (a JSON object) as the
// values forwarded upstream (authn.KeyMeta), sorted by name: a string as it
// is, anything else in its compact JSON; control characters replaced by a
// space, invalid UTF-8 by U+FFFD, cut to authn.MaxMetaValueLen bytes.
// Metadata that is not an object yields nil.
func KeyMeta(m json.RawMessage) []authn.KeyMeta {
	if len(m) == 0 {
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(m, &obj); err != nil || len(obj) == 0 {
		return nil
	}
	out := make([]authn.KeyMeta, 0, len(obj))
	for name, raw := range obj {
		v := string(raw)
		var s string
		if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
			v = s
		}
		out = append(out, authn.KeyMeta{Name: name, Value: SanitizeHeaderValue(v, authn.MaxMetaValueLen)})
	}
	slices.SortFunc(out, func(a, b authn.KeyMeta) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// SanitizeHeaderValue makes v safe as an HTTP header value: control
// characters (CR, LF, NUL, DEL, tab…) become a space, invalid UTF-8 becomes
// U+FFFD, leading and trailing spaces go, and the result is cut to max bytes
// at a rune boundary.
func SanitizeHeaderValue(v string, limit int) string {
	v = strings.ToValidUTF8(v, "\uFFFD")
	var b strings.Builder
	for _, r := range v {
		if unicode.IsControl(r) {
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > limit {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
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
