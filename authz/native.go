package authz

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unsafe"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/configs"
)

// RouteRule is the native rule of one route.
type RouteRule struct {
	// Name is the route name: the part of a target before the first ':'.
	Name string
	// Roles: the caller needs any of them; empty: any authenticated caller.
	Roles []string
	// Methods allowed (upper case); empty: all.
	Methods []string
}

// NativeRoutes extracts the native rules of configured routes.
func NativeRoutes(routes []configs.Route) []RouteRule {
	out := make([]RouteRule, 0, len(routes))
	for _, r := range routes {
		out = append(out, RouteRule{Name: r.Name, Roles: r.Roles, Methods: r.Methods})
	}
	return out
}

// Native is the default authorizer: route roles and methods.
//
// It does not look at account or user state: authentication enforces it (a
// disabled user or account does not authenticate, and invalidations evict
// cached identities), and Identity.Roles already holds the effective roles
// (for an API key, key roles ∩ the owner's current roles).
//
// The proxy's hot path calls AllowRoute directly (no Request, no
// allocation); Authorize serves callers that go through the Authorizer
// interface. Native is read-only after NewNative and safe for concurrent use.
type Native struct {
	routes []RouteRule // sorted by Name; roles and methods as compiled
	m      *metrics
}

// NewNative compiles rules: role lists are trimmed and de-duplicated,
// methods upper-cased. Route names must be unique and must not contain ':'.
// A nil rules list is valid: AllowRoute works, and Authorize denies every
// target (no route is known).
func NewNative(rules []RouteRule, opts Options) (*Native, error) {
	opts.fill()
	n := &Native{m: newMetrics(opts.Registerer, handlerNative)}
	for i, r := range rules {
		if r.Name == "" || strings.ContainsRune(r.Name, ':') {
			return nil, fmt.Errorf("authz: routes[%d]: name %q must be non-empty and contain no ':'", i, r.Name)
		}
		c := RouteRule{Name: r.Name}
		for _, role := range r.Roles {
			if role = strings.TrimSpace(role); role != "" && !slices.Contains(c.Roles, role) {
				c.Roles = append(c.Roles, role)
			}
		}
		for _, m := range r.Methods {
			if m = strings.ToUpper(strings.TrimSpace(m)); m != "" && !slices.Contains(c.Methods, m) {
				c.Methods = append(c.Methods, m)
			}
		}
		n.routes = append(n.routes, c)
	}
	slices.SortFunc(n.routes, func(a, b RouteRule) int { return strings.Compare(a.Name, b.Name) })
	for i := 1; i < len(n.routes); i++ {
		if n.routes[i].Name == n.routes[i-1].Name {
			return nil, fmt.Errorf("authz: route %q defined twice", n.routes[i].Name)
		}
	}
	return n, nil
}

// AllowRoute reports whether id may use a route whose rule requires any of
// routeRoles (empty: any authenticated identity). id.Roles must be sorted
// (authn guarantees it). A nil id is never allowed. It does not allocate.
func AllowRoute(id *authn.Identity, routeRoles []string) bool {
	if id == nil {
		return false
	}
	if len(routeRoles) == 0 {
		return true
	}
	for _, want := range routeRoles {
		if _, ok := slices.BinarySearch(id.Roles, want); ok {
			return true
		}
	}
	return false
}

// AllowRoute is AllowRoute that also counts the decision in
// keygate_authz_decisions_total{handler="native"}. It does not allocate.
func (n *Native) AllowRoute(id *authn.Identity, routeRoles []string) bool {
	ok := AllowRoute(id, routeRoles)
	if ok {
		n.m.allow.Inc()
	} else {
		n.m.deny.Inc()
	}
	return ok
}

// Count counts a route decision made without an identity (an anonymous
// caller of an auth: optional route: allowed only where the route has no
// roles) in keygate_authz_decisions_total{handler="native"}.
func (n *Native) Count(allowed bool) {
	if allowed {
		n.m.allow.Inc()
	} else {
		n.m.deny.Inc()
	}
}

// Authorize allows req if every action targets a known route
// ("<route>:<path>"), uses a method the route accepts, and the identity holds
// one of the route's roles. It does not allocate.
func (n *Native) Authorize(_ context.Context, req *Request) (Decision, error) {
	if req == nil || req.Identity == nil || len(req.Actions) == 0 {
		n.m.deny.Inc()
		return Decision{}, ErrDenied
	}
	for i := range req.Actions {
		if !n.allowAction(req.Identity, &req.Actions[i]) {
			n.m.deny.Inc()
			return Decision{}, ErrDenied
		}
	}
	n.m.allow.Inc()
	return Decision{Allowed: true}, nil
}

func (n *Native) allowAction(id *authn.Identity, a *Action) bool {
	name, _, ok := strings.Cut(a.Target, ":")
	if !ok {
		return false
	}
	i, found := slices.BinarySearchFunc(n.routes, name, func(r RouteRule, s string) int { return strings.Compare(r.Name, s) })
	if !found {
		return false
	}
	r := &n.routes[i]
	if len(r.Methods) > 0 && !slices.Contains(r.Methods, a.Action) {
		return false
	}
	return AllowRoute(id, r.Roles)
}

// b2s returns b as a string without copying; b must not change while the
// string is in use.
func b2s(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

var _ Authorizer = (*Native)(nil)
