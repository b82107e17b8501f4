package authz

import (
	"slices"

	"github.com/keygate/keygate/authn"
)

// Native is the native rule of a route: its roles. The caller needs any of
// them; a route without roles admits any caller, the anonymous caller of an
// auth: optional route included. Methods are not part of it: the proxy's
// route answers 405 before anything is authorized.
//
// Native is not an Authorizer. The rule belongs to the route the proxy has
// already matched, so it is asked with that route's roles: no Request, no
// route table of its own to keep in step with the proxy's, no allocation.
// The proxy applies it to every request, whatever the handler; with the
// external handler the Authorizer is asked only after it passes.
//
// With the native handler each decision is counted in
// keygate_authz_decisions_total{handler="native"}; a nil *Native decides the
// same without counting (the external handler counts its own decisions).
// Native is read-only after NewNative and safe for concurrent use.
type Native struct {
	m *metrics
}

// NewNative returns the native rule, its decisions counted on
// opts.Registerer (nil: on unregistered counters).
func NewNative(opts Options) *Native {
	return &Native{m: newMetrics(opts.Registerer, handlerNative)}
}

// Allow reports whether id may use a route whose rule requires any of
// routeRoles (empty: any caller). id nil is an anonymous caller: it holds no
// role, so it is allowed only where routeRoles is empty. id.Roles must be
// sorted (authn guarantees it). Allow does not allocate.
func (n *Native) Allow(id *authn.Identity, routeRoles []string) bool {
	ok := holdsAny(id, routeRoles)
	if n != nil {
		if ok {
			n.m.allow.Inc()
		} else {
			n.m.deny.Inc()
		}
	}
	return ok
}

// holdsAny reports whether id holds any of roles (sorted id.Roles), or roles
// is empty.
func holdsAny(id *authn.Identity, roles []string) bool {
	if len(roles) == 0 {
		return true
	}
	if id == nil {
		return false
	}
	for _, want := range roles {
		if _, ok := slices.BinarySearch(id.Roles, want); ok {
			return true
		}
	}
	return false
}
