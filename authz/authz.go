// Package authz is keygate's authorization step (DESIGN.md §1, §9): after a
// request has been authenticated, an Authorizer decides whether the identity
// may perform every action the request carries.
//
// Every proxied request passes the native rule of its route (Native): the
// route's roles, the caller needs any of them (none configured means any
// caller). Account and user state are not checked here: they are enforced
// by authentication (a disabled user or account does not authenticate, and
// an invalidation evicts its cached identities), and the effective roles of
// an API key (key roles ∩ the owner's current roles) are already in
// Identity.Roles. authorization.handler selects what comes on top:
//
//   - native (default): nothing; Native counts its decisions.
//   - external (External, the one Authorizer): an HTTP sidecar ("plugin")
//     at authorization.external.endpoint answers POST /v1/authorize for the
//     proxy's requests that passed the route's roles and for the admin
//     API's writes that passed its own rules; decisions are cached for
//     cache_ttl. The plugin is told about principals and domains being
//     created and deleted by a Notifier that delivers from a durable Outbox
//     (at least once, in order per name).
//
// The interface of the plugin is documented in
// configs/authz-plugin.openapi.yaml; authz/plugin is the reference
// implementation.
//
// # Errors
//
// Authorize returns a Decision and nil when every action is allowed. It never
// allows on a failure: a denial is an error wrapping ErrDenied (→ 403), an
// authorizer that cannot decide (plugin refused, timed out, answered 5xx) an
// error wrapping ErrUnavailable (→ 503). A plugin answer that is malformed or
// incomplete is a denial. Status maps an error to its HTTP status.
//
// # Use on the request path
//
//	// every request; nat is nil with the external handler (not counted)
//	if !nat.Allow(ident, route.Roles) { 403 }  // no Request at all
//
//	// then, with the external handler only
//	r := authz.AcquireRequest()
//	r.Identity, r.Domain, r.Now = ident, ident.Account, start
//	r.AddRouteAction(method, route.Name, forwardedRawPath) // copies the bytes
//	_, err := ext.Authorize(ctx, r)                        // own timeout inside
//	authz.ReleaseRequest(r)
//	if err != nil { authz.Status(err) → 403 | 503 }
//
// A warm decision-cache hit, like the native path, costs no allocation and
// no I/O. Wire External.Invalidate to the store's invalidations next to the
// identity cache.
package authz

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/internal/httpx/hdr"
)

// Sentinel errors. Authorizers wrap them with %w; match with errors.Is.
var (
	// ErrDenied: the identity may not perform at least one of the actions,
	// or the external decision could not be trusted (malformed, incomplete,
	// unexpected status). → 403.
	ErrDenied = errors.New("authz: denied")
	// ErrUnavailable: no decision could be obtained in time (plugin refused
	// the connection, hung past authorization.external.timeout, answered 5xx
	// or 429, or ctx was already done). → 503. Never cached.
	ErrUnavailable = errors.New("authz: authorizer unavailable")
)

// Status returns the HTTP status for an Authorize error: 200 for nil, 403 for
// ErrDenied, 503 for ErrUnavailable and 403 for anything else (a failure is
// never an allow).
func Status(err error) int {
	switch {
	case err == nil:
		return 200
	case errors.Is(err, ErrUnavailable):
		return 503
	default:
		return 403
	}
}

// Authorizer decides whether an authenticated identity may perform actions:
// the seam of the external handler (External; tests fake it), asked by the
// proxy and the admin API after their own rules allowed the request. With the
// native handler there is none (the route's roles are Native's, asked
// directly). Implementations are safe for concurrent use.
type Authorizer interface {
	// Authorize allows the request only if every action in req.Actions is
	// allowed; an empty list or a nil identity is denied. On a denial the
	// error wraps ErrDenied, when no decision is possible ErrUnavailable.
	// Authorize neither keeps req nor anything it points to after it
	// returns. ctx bounds the call (its deadline and cancellation are
	// honoured before any I/O; the external handler also applies its own
	// timeout, so a fasthttp RequestCtx or context.Background() is fine).
	Authorize(ctx context.Context, req *Request) (Decision, error)
}

// Anonymous is the identity an Authorizer is asked about for a caller
// without credentials on an auth: optional route: no name, no account, no
// roles, type "anonymous" (principal {"name":"","type":"anonymous"} and
// domain "" for the plugin). Read-only.
var Anonymous = &authn.Identity{UserType: AnonymousType}

// AnonymousType is the principal type of Anonymous.
const AnonymousType = "anonymous"

// Decision is the outcome of an allowed (or denied) Authorize call.
type Decision struct {
	// Allowed is true only when Authorize returned nil.
	Allowed bool
	// Cached reports that every tuple was decided from the decision cache
	// (external handler only).
	Cached bool
}

// Action is one (action, target) tuple. For proxied requests Action is the
// HTTP method (upper case) and Target is "<route name>:<raw path>" — the raw
// path exactly as it is forwarded. Admin actions use their own action names
// and targets.
type Action struct {
	Action string `json:"action"`
	Target string `json:"target"`
}

// Request is what is authorized: one identity, its domain (account) and every
// action tuple of one client request.
//
// A Request from AcquireRequest is reused: strings added with AddActionBytes
// alias the Request's own buffer and are valid only until ReleaseRequest or
// Reset. Authorizers copy whatever they keep.
type Request struct {
	Identity *authn.Identity
	// Domain is the account the action is performed in (normally
	// Identity.Account).
	Domain  string
	Actions []Action
	// Now, if set, is the time of the request; the decision cache judges
	// its TTL by it (saves a clock read on the hot path). Zero: the
	// authorizer reads its clock.
	Now time.Time

	buf []byte
}

var requestPool = sync.Pool{New: func() any { return new(Request) }}

// AcquireRequest returns an empty Request from a pool. Return it with
// ReleaseRequest once Authorize has returned.
func AcquireRequest() *Request { return requestPool.Get().(*Request) }

// ReleaseRequest resets r and returns it to the pool; r must not be used
// afterwards.
func ReleaseRequest(r *Request) {
	r.Reset()
	requestPool.Put(r)
}

// Reset empties r, keeping its buffers.
func (r *Request) Reset() {
	r.Identity = nil
	r.Domain = ""
	r.Now = time.Time{}
	clear(r.Actions)
	r.Actions = r.Actions[:0]
	r.buf = r.buf[:0]
}

// AddAction appends the tuple (action, target).
func (r *Request) AddAction(action, target string) {
	r.Actions = append(r.Actions, Action{Action: action, Target: target})
}

// AddRouteAction appends the tuple (method, "<route>:<path>") for a proxied
// request. method and path are copied into r's buffer (they may come from a
// fasthttp RequestCtx); the resulting strings live until Reset. It does not
// allocate once r's buffer has grown to the size of a typical request.
func (r *Request) AddRouteAction(method []byte, route string, path []byte) {
	start := len(r.buf)
	need := len(method) + len(route) + 1 + len(path)
	if cap(r.buf)-start < need {
		// Grow into a new array: strings already handed out keep aliasing
		// the old one, which is never written again.
		nb := make([]byte, start, max(2*cap(r.buf), start+need, 256))
		copy(nb, r.buf)
		r.buf = nb
	}
	r.buf = append(r.buf, method...)
	mEnd := len(r.buf)
	r.buf = append(r.buf, route...)
	r.buf = append(r.buf, ':')
	r.buf = append(r.buf, path...)
	r.Actions = append(r.Actions, Action{
		Action: hdr.StringView(r.buf[start:mEnd]),
		Target: hdr.StringView(r.buf[mEnd:]),
	})
}

// Options are the collaborators of the authorizers.
type Options struct {
	Logger     *zap.Logger           // nil: zap.NewNop()
	Registerer prometheus.Registerer // nil: metrics are not registered
	// Now is the clock of the decision cache (default time.Now).
	Now func() time.Time
	// MaxEntries bounds the external decision cache (default 100000).
	MaxEntries int64
}

func (o *Options) fill() {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 100_000
	}
}

// metrics are the authorizers' Prometheus collectors, children resolved once.
type metrics struct {
	allow, deny, errs prometheus.Counter
	duration          prometheus.Observer // external only
}

const (
	handlerNative   = "native"
	handlerExternal = "external"
)

// newMetrics resolves the children of handler. Collectors already registered
// on reg (by another authorizer) are reused.
func newMetrics(reg prometheus.Registerer, handler string) *metrics {
	decisions := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_authz_decisions_total",
		Help: "Authorization decisions by handler (native|external) and result (allow|deny|error).",
	}, []string{"handler", "result"}))
	m := &metrics{
		allow: decisions.WithLabelValues(handler, "allow"),
		deny:  decisions.WithLabelValues(handler, "deny"),
		errs:  decisions.WithLabelValues(handler, "error"),
	}
	if handler == handlerExternal {
		m.duration = register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keygate_authz_plugin_duration_seconds",
			Help:    "Duration of POST /v1/authorize calls to the external authorization plugin.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}))
	}
	return m
}

// notifierMetrics count lifecycle deliveries.
type notifierMetrics struct {
	delivered, retried prometheus.Counter
}

func newNotifierMetrics(reg prometheus.Registerer) *notifierMetrics {
	notes := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_authz_notifications_total",
		Help: "Lifecycle notifications to the authorization plugin by result (delivered|retry).",
	}, []string{"result"}))
	return &notifierMetrics{
		delivered: notes.WithLabelValues("delivered"),
		retried:   notes.WithLabelValues("retry"),
	}
}

// register registers c on reg, returning the collector already registered
// under the same descriptor if there is one. reg nil: c is returned
// unregistered.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(fmt.Sprintf("authz: registering metrics: %v", err))
	}
	return c
}
