package admin

// The admin REST API (DESIGN.md §6): accounts, users and API keys, with the
// authorization rules of the issue "Admin API and CLI for accounts, users and
// API keys" and SECURITY.md ("admin privilege"). This file holds the
// plumbing: dependencies, registration, authentication of every request,
// error mapping and the audit log. The handlers are in api_accounts.go,
// api_users.go and api_keys.go.
//
// Authorization (privileges come from the caller's current store record,
// not from the possibly cached identity):
//
//   - A caller authenticated by API key may only read itself: GET /v1/user
//     and its owner's keys under /v1/user/api-keys. Everything else is 403,
//     including revoking its own key and changing its owner's password.
//   - A global admin (type admin) may do everything, within the invariants:
//     the account "admin" is never disabled or deleted (403 reserved); the
//     last enabled global admin is never deleted, disabled or demoted (409
//     last_admin).
//   - An account admin manages the users and keys of their own account.
//     Another account's name in a path, query or body answers 404 as if it
//     did not exist, with no side effect; searches are confined to their
//     account. They cannot create or promote global admins, change their
//     own type, touch a global admin or their keys, grant roles they do not
//     hold, set the password of a user holding such roles, or create a key
//     carrying them.
//   - A user reaches only /v1/user…: identity, own password (with the
//     current one), own keys.
//   - A key's roles are a subset of its owner's (422 unknown_role);
//     omitted, they are the owner's roles at creation.
//   - Revoking a key answers 200 with the key (status revoked), the first
//     time and every later time (revoked_at unchanged).

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/upstreamcred"
)

// Authenticator is what the API needs of the authentication chain
// (*authn.Chain implements it).
type Authenticator interface {
	Authenticate(ctx context.Context, authorization []byte, clientIP netip.Addr) (*authn.Identity, error)
}

// APIDeps are the admin API's collaborators.
type APIDeps struct {
	// Store is the system of record. Required.
	Store store.Store
	// Auth authenticates every request (the same chain as the proxy).
	// Required.
	Auth Authenticator
	// Hasher hashes new passwords and verifies the current one on a password
	// change. Required.
	Hasher *password.Hasher
	// Logger receives one audit line per write (nil: no audit log).
	Logger *zap.Logger
	// APIKeys are the key lifetime rules (api_keys.max_lifetime).
	APIKeys configs.APIKeys
	// Realm is the realm of the WWW-Authenticate challenges (auth.realm of
	// the normalised config).
	Realm string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Authorizer (authorization.handler: external) is asked about every
	// write after the API's own role checks pass: one (action,
	// "admin:<path>") tuple with the target account as domain. A denial is
	// 403, an unavailable plugin 503. The rule that an API-key caller cannot
	// write holds whatever it answers (it is checked first). nil (the native
	// handler): the API's own rules only.
	Authorizer authz.Authorizer
	// Notifier, when set, is told about users and accounts created or
	// deleted (after the store write succeeded), for the external plugin's
	// lifecycle notifications.
	Notifier Notifier
	// Pprof (admin.pprof) adds the Go runtime profiles under /debug/pprof/
	// for global admins (see pprof.go). false: nothing is registered there,
	// so those paths answer as any unknown path does.
	Pprof bool
	// VerifyRoles (forward_auth.verify_roles): a caller of POST /v1/verify
	// needs one of them (global admins always may).
	VerifyRoles []string
	// UpstreamCredentials serves /v1/accounts/{account}/upstream-credentials
	// (nil: those answer 503).
	UpstreamCredentials *upstreamcred.Manager
	// RateLimits are the policies keys, users and accounts may be assigned
	// (rate_limits); the assignments live in the store (store.LimitStore).
	RateLimits configs.RateLimits
	// LimitsChanged, when set, runs after the assignment of (scope, id) was
	// written, before the answer: this instance's limiter reloads it at
	// once (the others on the invalidation).
	LimitsChanged func(ctx context.Context, scope store.LimitScope, id string)
}

// Notifier receives lifecycle events (authz.Notifier implements it).
type Notifier interface {
	Notify(ctx context.Context, op, kind, name string) error
}

// Registrar is where RegisterAPI adds its routes: *Router and *Server both
// implement it.
type Registrar interface {
	Handle(method, pattern string, h HandlerFunc)
}

// Limits of the admin API.
const (
	// MaxAPIBody caps a request body of the admin API (413 past it).
	MaxAPIBody = 64 << 10
	// APITimeout bounds the store work of one admin request.
	APITimeout = 10 * time.Second
	// MaxBulkKeys caps how many keys one bulk revocation looks at.
	MaxBulkKeys = 10000
	// MaxBulkIDs caps the ids of one bulk revocation request.
	MaxBulkIDs = 1000
)

// Audit action names: an external authorizer is asked about these same
// names, so they are part of the contract.
const (
	ActionCreateAccount     = "createAccount"
	ActionUpdateAccount     = "updateAccount"
	ActionDeleteAccount     = "deleteAccount"
	ActionCreateUser        = "createUser"
	ActionUpdateUser        = "updateUser"
	ActionDeleteUser        = "deleteUser"
	ActionChangePassword    = "changePassword"
	ActionCreateAPIKey      = "createApiKey"
	ActionRevokeAPIKey      = "revokeApiKey"
	ActionBulkRevokeAPIKeys = "bulkRevokeApiKeys" //nolint:gosec // a name, not a credential
)

//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the OpenAPI 3 document of the admin API (served at
// GET /openapi.json). The slice is shared: do not modify it.
func OpenAPI() []byte { return openAPIDoc }

// api is the admin API's state.
type api struct {
	st          store.Store
	auth        Authenticator
	hasher      *password.Hasher
	audit       *zap.Logger
	maxLifetime time.Duration
	realm       string // auth.realm, of the WWW-Authenticate challenges
	now         func() time.Time
	ext         authz.Authorizer // external authorizer; nil: none
	notifier    Notifier
	verifyRoles []string
	ucred       *upstreamcred.Manager
	policies    configs.RateLimits
	ls          store.LimitStore // nil: the store keeps no limits
	limitsHook  func(ctx context.Context, scope store.LimitScope, id string)
	// adminMu serialises the changes that can remove an enabled global
	// admin, so that two concurrent ones cannot remove the last (within
	// one instance; instances sharing a store can still race).
	adminMu sync.Mutex
}

// access says who may reach an endpoint before its own checks.
type access uint8

const (
	// selfRead: any authenticated caller, API keys included (reads of the
	// caller's own identity and keys).
	selfRead access = iota
	// read: callers authenticated by password or token; an API key is
	// refused (it may only read itself).
	read
	// write: as read, and the request is audited.
	write
)

// RegisterAPI adds the admin API's routes (DESIGN.md §6), GET /openapi.json
// and, with d.Pprof, GET /debug/pprof/… to r. Call it before the server
// starts serving. NewAPI and Register do the same in two steps, for callers
// that also need the API's operations (API, ops.go: the web UI).
func RegisterAPI(r Registrar, d APIDeps) error {
	if r == nil {
		return errors.New("admin: RegisterAPI: nil router")
	}
	x, err := NewAPI(d)
	if err != nil {
		return err
	}
	x.Register(r)
	return nil
}

// NewAPI builds the admin API of d without registering it (see Register).
func NewAPI(d APIDeps) (*API, error) {
	switch {
	case d.Store == nil:
		return nil, errors.New("admin: RegisterAPI: a store is required")
	case d.Auth == nil:
		return nil, errors.New("admin: RegisterAPI: an authenticator is required")
	case d.Hasher == nil:
		return nil, errors.New("admin: RegisterAPI: a password hasher is required")
	case d.APIKeys.MaxLifetime < 0:
		return nil, errors.New("admin: RegisterAPI: negative api_keys.max_lifetime")
	}
	a := &api{
		st:          d.Store,
		auth:        d.Auth,
		hasher:      d.Hasher,
		audit:       d.Logger,
		maxLifetime: d.APIKeys.MaxLifetime.D(),
		realm:       d.Realm,
		now:         d.Now,
		ext:         d.Authorizer,
		verifyRoles: d.VerifyRoles,
		ucred:       d.UpstreamCredentials,
		policies:    d.RateLimits,
		limitsHook:  d.LimitsChanged,
	}
	a.ls, _ = d.Store.(store.LimitStore)
	a.notifier = d.Notifier
	if a.audit == nil {
		a.audit = zap.NewNop()
	}
	if a.now == nil {
		a.now = time.Now
	}
	x := &API{a: a, ops: map[string]apiRoute{}, pprof: d.Pprof}
	for _, rt := range a.apiRoutes() {
		x.ops[rt.method+" "+rt.pattern] = rt
	}
	return x, nil
}

// apiRoute is one route of the JSON API: who may call it (acc), its audit
// and authorizer action (writes) and its handler.
type apiRoute struct {
	method, pattern string
	acc             access
	action          string
	h               apiHandler
}

func (a *api) apiRoutes() []apiRoute {
	routes := []apiRoute{
		{get, "/v1/user", selfRead, "", a.getSelf},
		{put, "/v1/user/password", write, ActionChangePassword, a.changePassword},
		{get, "/v1/user/api-keys", selfRead, "", a.listOwnKeys},
		{post, "/v1/user/api-keys", write, ActionCreateAPIKey, a.createOwnKey},
		{get, "/v1/user/api-keys/{id}", selfRead, "", a.getOwnKey},
		{del, "/v1/user/api-keys/{id}", write, ActionRevokeAPIKey, a.revokeOwnKey},
		{patch, "/v1/user/api-keys/{id}", write, ActionUpdateAPIKey, a.updateOwnKey},
		{post, "/v1/user/api-keys/{id}/rotate", write, ActionRotateAPIKey, a.rotateOwnKey},

		{get, "/v1/accounts", read, "", a.listAccounts},
		{post, "/v1/accounts", write, ActionCreateAccount, a.createAccount},
		{get, "/v1/accounts/{account}", read, "", a.getAccount},
		{patch, "/v1/accounts/{account}", write, ActionUpdateAccount, a.updateAccount},
		{del, "/v1/accounts/{account}", write, ActionDeleteAccount, a.deleteAccount},

		{get, "/v1/accounts/{account}/users", read, "", a.listUsers},
		{post, "/v1/accounts/{account}/users", write, ActionCreateUser, a.createUser},
		{get, "/v1/accounts/{account}/users/{username}", read, "", a.getUser},
		{patch, "/v1/accounts/{account}/users/{username}", write, ActionUpdateUser, a.updateUser},
		{del, "/v1/accounts/{account}/users/{username}", write, ActionDeleteUser, a.deleteUser},

		{get, "/v1/accounts/{account}/users/{username}/api-keys", read, "", a.listUserKeys},
		{post, "/v1/accounts/{account}/users/{username}/api-keys", write, ActionCreateAPIKey, a.createUserKey},
		{get, "/v1/accounts/{account}/users/{username}/api-keys/{id}", read, "", a.getUserKey},
		{del, "/v1/accounts/{account}/users/{username}/api-keys/{id}", write, ActionRevokeAPIKey, a.revokeUserKey},
		{patch, "/v1/accounts/{account}/users/{username}/api-keys/{id}", write, ActionUpdateAPIKey, a.updateUserKey},
		{post, "/v1/accounts/{account}/users/{username}/api-keys/{id}/rotate", write, ActionRotateAPIKey, a.rotateUserKey},

		{get, "/v1/api-keys", read, "", a.searchKeys},
		{del, "/v1/api-keys", write, ActionBulkRevokeAPIKeys, a.bulkRevoke},

		// selfRead: an API key may call it; verify checks the roles.
		{post, "/v1/verify", selfRead, "", a.verify},
	}
	return append(routes, a.upstreamCredentialRoutes()...)
}

// Register adds the API's routes to r (see RegisterAPI). Call it once,
// before the server starts serving.
func (x *API) Register(r Registrar) {
	a := x.a
	for _, rt := range a.apiRoutes() {
		r.Handle(rt.method, rt.pattern, a.wrap(rt.acc, rt.action, rt.h))
	}
	r.Handle(fasthttp.MethodGet, "/openapi.json", func(ctx *fasthttp.RequestCtx, _ Params) {
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("application/json")
		ctx.SetBody(openAPIDoc)
	})
	if x.pprof {
		a.registerPprof(r)
	}
}

// request is one admin API request being served.
type request struct {
	// ctx is the HTTP request of the JSON API; nil for an operation called
	// in process (API's methods, ops.go), whose body is in and whose
	// answer goes to status and out.
	ctx *fasthttp.RequestCtx
	p   Params
	// path is the request's raw path (in process: the API path the
	// operation answers at): the external authorizer's target and the
	// default audit target.
	path string
	// in and query are an in-process operation's body (a pointer to the
	// type the handler decodes) and query; out and status its answer.
	in     any
	query  *fasthttp.Args
	out    any
	status int
	// c bounds the store work of the request (APITimeout).
	c   context.Context
	now time.Time
	ip  netip.Addr
	// id is the authenticated identity (shared, read-only) and user the
	// caller's current record: privileges come from the record, so a
	// demotion takes effect on the next request whatever is cached.
	id   *authn.Identity
	user *store.User
	// target names what a write acted on, for the audit log (default: the
	// path); extra audit fields may be added by the handler.
	target string
	fields []zap.Field
	// events are the lifecycle events of a successful write, sent to the
	// Notifier after the handler returns.
	events []lifecycleEvent
}

// lifecycleEvent is a principal or domain created or deleted.
type lifecycleEvent struct {
	op, kind, name string // authz.OpCreate|OpDelete, authz.KindPrincipal|KindDomain
}

// Errors of the external authorizer, fixed so nothing of the plugin leaks.
var (
	errExternalDenied      = errorf(fasthttp.StatusForbidden, "forbidden", "the authorization service does not allow this action")
	errExternalUnavailable = errorf(fasthttp.StatusServiceUnavailable, "authorizer_unavailable", "the authorization service is unavailable; retry later")
)

// authorizeExternal asks the external authorizer about a write: action is
// the operation's name (createUser, revokeApiKey, …), the target is
// "admin:<canonical path>" (canonicalPath: the path the router acted on,
// decoded and escaped one way, so "…/users/svc%2Dbot/…" is asked about as
// "…/users/svc-bot/…") and the domain the account named in the path, else
// the caller's own.
func (a *api) authorizeExternal(r *request, action string) error {
	domain := r.p.Get("account")
	if domain == "" {
		domain = r.id.Account
	}
	target, ok := canonicalPath(r.path)
	if !ok { // the router matched it: cannot happen
		return errExternalDenied
	}
	err := a.askExternal(r, action, domain, "admin:"+target)
	if errors.Is(err, errExternalUnavailable) && r.ctx != nil {
		httpx.SetRetryAfter(&r.ctx.Response.Header, time.Second)
	}
	return err
}

// askExternal asks the external authorizer whether r's caller may perform
// action on target in domain: nil, errExternalDenied (403) or
// errExternalUnavailable (503).
func (a *api) askExternal(r *request, action, domain, target string) error {
	req := authz.AcquireRequest()
	defer authz.ReleaseRequest(req)
	req.Identity, req.Domain, req.Now = r.id, domain, r.now
	req.AddAction(action, target)
	_, err := a.ext.Authorize(r.c, req)
	switch {
	case err == nil:
		return nil
	case authz.Status(err) == fasthttp.StatusServiceUnavailable:
		return errExternalUnavailable
	default:
		return errExternalDenied
	}
}

// notify hands the events of a successful write to the Notifier. A failure
// to enqueue is logged: the store write has happened and is not undone.
func (a *api) notify(r *request) {
	if a.notifier == nil {
		return
	}
	for _, ev := range r.events {
		if err := a.notifier.Notify(r.c, ev.op, ev.kind, ev.name); err != nil {
			a.audit.Error("admin: cannot queue a lifecycle notification",
				zap.String("op", ev.op), zap.String("kind", ev.kind), zap.String("name", ev.name), zap.Error(err))
		}
	}
}

// apiHandler serves an authenticated request. It writes the success response
// itself and returns an error for anything else (see writeErr).
type apiHandler func(r *request) error

// errorf is an error with its response (the listeners' one error type).
func errorf(status int, code, format string, args ...any) *httpx.Error {
	return &httpx.Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// authFailure carries an error of the Authenticator (mapped by authn.Status).
type authFailure struct{ err error }

func (e *authFailure) Error() string { return e.err.Error() }

var (
	errKeyForbidden = errorf(fasthttp.StatusForbidden, "forbidden",
		"a caller authenticated by API key may only read its own identity and keys; authenticate with a password or token to change accounts, users, roles or keys")
	errDuplicateAuth = errorf(fasthttp.StatusBadRequest, "bad_request", "send exactly one Authorization header")
)

// wrap authenticates a request, applies the access class, runs h, maps its
// error and audits writes.
func (a *api) wrap(acc access, action string, h apiHandler) HandlerFunc {
	return func(ctx *fasthttp.RequestCtx, p Params) {
		c, cancel := context.WithTimeout(context.Background(), APITimeout)
		defer cancel()
		// The peer's address: the admin listener trusts no proxy header.
		r := &request{ctx: ctx, p: p, c: c, now: a.now().UTC(), ip: httpx.PeerAddr(ctx), path: rawPath(ctx)}
		err := a.authenticate(r)
		if err != nil {
			a.writeErr(r, err)
			if acc == write {
				a.auditLog(r, action, err)
			}
			return
		}
		if err := a.serve(r, acc, action, h); err != nil {
			a.writeErr(r, err)
		}
	}
}

// serve runs h for r's authenticated caller: the access class, the
// external authorizer (writes), h, then the lifecycle notifications of a
// success and the audit line of a write. It returns h's error (or the
// refusal) for the caller to answer with; the audit line records it.
func (a *api) serve(r *request, acc access, action string, h apiHandler) error {
	var err error
	if acc != selfRead && r.id.Method == authn.MethodAPIKey {
		err = errKeyForbidden
	}
	if err == nil && acc == write && a.ext != nil {
		err = a.authorizeExternal(r, action)
	}
	if err == nil {
		err = h(r)
	}
	if err != nil {
		r.status = a.errorOf(r, err).Status
	} else {
		a.notify(r)
	}
	if acc == write {
		a.auditLog(r, action, err)
	}
	return err
}

// authenticate sets r.id and r.user.
func (a *api) authenticate(r *request) error {
	hs := r.ctx.Request.Header.PeekAll(fasthttp.HeaderAuthorization)
	if len(hs) > 1 {
		return errDuplicateAuth
	}
	var h []byte
	if len(hs) == 1 {
		h = hs[0]
	}
	id, err := a.auth.Authenticate(r.c, h, r.ip)
	if err != nil {
		return &authFailure{err}
	}
	if id == nil {
		return &authFailure{authn.ErrInvalidCredentials}
	}
	u, err := a.st.GetUser(r.c, id.Username)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Deleted since the identity was cached.
		return &authFailure{authn.ErrInvalidCredentials}
	case err != nil:
		return err
	case u.State != store.StateEnabled || u.Account != id.Account:
		return &authFailure{authn.ErrDisabled}
	}
	r.id, r.user = id, u
	return nil
}

// writeErr writes the response for err.
func (a *api) writeErr(r *request, err error) {
	ctx := r.ctx
	e := a.errorOf(r, err)
	r.status = e.Status
	var af *authFailure
	if errors.As(err, &af) {
		if e.Status == fasthttp.StatusUnauthorized {
			_, _, tokenErr := authn.Status(af.err)
			ctx.Response.Header.Add(fasthttp.HeaderWWWAuthenticate, httpx.Challenge("Basic", a.realm, ""))
			ctx.Response.Header.Add(fasthttp.HeaderWWWAuthenticate, httpx.Challenge("Bearer", a.realm, tokenErr))
		}
	}
	if d := retryAfterOf(err, e); d > 0 {
		setRetryAfter(ctx, d)
	}
	httpx.WriteError(ctx, e)
}

// retryAfterOf is the Retry-After of the answer e to err (0: none).
func retryAfterOf(err error, e *httpx.Error) time.Duration {
	switch e.Status {
	case fasthttp.StatusTooManyRequests, fasthttp.StatusServiceUnavailable:
		var ae *httpx.Error
		if errors.As(err, &ae) {
			return 0 // the handler set its own
		}
		var af *authFailure
		if errors.As(err, &af) {
			if d := authn.RetryAfter(af.err); d > 0 {
				return d
			}
		}
		return authn.UnavailableRetryAfter
	}
	return 0
}

// errorOf is the answer to err: its status, code and message.
func (a *api) errorOf(r *request, err error) *httpx.Error {
	var ae *httpx.Error
	var af *authFailure
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &af):
		status, code, _ := authn.Status(af.err)
		msg := "invalid credentials"
		switch status {
		case fasthttp.StatusUnauthorized:
			if code == "unauthorized" {
				msg = "authentication required: send Basic, ApiKey or Bearer credentials"
			}
		case fasthttp.StatusTooManyRequests:
			msg = "too many failed authentication attempts; retry later"
		case fasthttp.StatusServiceUnavailable:
			msg = "authentication is temporarily unavailable; retry later"
		case fasthttp.StatusForbidden:
			msg = "forbidden"
			if code == "address_not_allowed" {
				msg = "this credential may not be used from this client address"
			}
		default:
			status, code, msg = fasthttp.StatusServiceUnavailable, "unavailable", "authentication is temporarily unavailable; retry later"
		}
		return &httpx.Error{Status: status, Code: code, Message: msg}
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, password.ErrBusy),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return errStoreUnavailable
	case errors.Is(err, store.ErrNotFound):
		return errNotFound
	case errors.Is(err, store.ErrConflict):
		return errorf(fasthttp.StatusConflict, "conflict", "%s", storeMessage(err))
	case errors.Is(err, store.ErrInvalid):
		return errorf(fasthttp.StatusUnprocessableEntity, "invalid", "%s", storeMessage(err))
	default:
		// Not the client's fault; the error may name an address: log it,
		// never send it.
		a.audit.Error("admin api: internal error", zap.Error(err), zap.String("path", r.path))
		return errInternal
	}
}

var (
	errStoreUnavailable = errorf(fasthttp.StatusServiceUnavailable, "unavailable", "the store is temporarily unavailable; retry later")
	errNotFound         = errorf(fasthttp.StatusNotFound, "not_found", "not found")
	errInternal         = errorf(fasthttp.StatusInternalServerError, "internal", "internal error")
)

// storeMessage is the client-facing text of a store ErrInvalid or
// ErrConflict: the store's message (which never holds a secret) without the
// trailing sentinel text.
func storeMessage(err error) string {
	msg := err.Error()
	for _, s := range []error{store.ErrInvalid, store.ErrConflict} {
		msg = strings.TrimSuffix(msg, ": "+s.Error())
	}
	if len(msg) > 300 {
		msg = msg[:300]
	}
	return msg
}

// setRetryAfter sets Retry-After to d, or to authn.UnavailableRetryAfter
// when the error named no delay.
func setRetryAfter(ctx *fasthttp.RequestCtx, d time.Duration) {
	if d <= 0 {
		d = authn.UnavailableRetryAfter
	}
	httpx.SetRetryAfter(&ctx.Response.Header, d)
}

// auditLog writes the audit line of a write: who, what, on what, from where,
// and the outcome. Never a password or a key value.
func (a *api) auditLog(r *request, action string, err error) {
	status := r.status
	result := "success"
	switch {
	case status == fasthttp.StatusUnauthorized, status == fasthttp.StatusForbidden:
		result = "denied"
	case err != nil:
		result = "failure"
	}
	target := r.target
	if target == "" {
		target = r.path
	}
	actor, actorAccount, method, keyID := "", "", authn.MethodNone.String(), ""
	if r.id != nil {
		actor, actorAccount, method, keyID = r.id.Username, r.id.Account, r.id.Method.String(), r.id.KeyID
	}
	fields := append([]zap.Field{
		zap.String("action", action),
		zap.String("actor", actor),
		zap.String("actor_account", actorAccount),
		zap.String("actor_method", method),
		zap.String("actor_key_id", keyID),
		zap.String("target", target),
		zap.String("result", result),
		zap.Int("status", status),
		zap.String("client", r.ip.String()),
	}, r.fields...)
	a.audit.Info("admin audit", fields...)
}

// decode reads the JSON request body into v strictly: a JSON content type,
// at most MaxAPIBody bytes, one value, no unknown fields. An in-process
// operation's body is r.in, a *T.
func decode[T any](r *request, v *T) error {
	if r.ctx == nil {
		in, ok := r.in.(*T)
		if !ok || in == nil {
			return fmt.Errorf("admin: operation body %T, want %T", r.in, v)
		}
		*v = *in
		return nil
	}
	ct := r.ctx.Request.Header.ContentType()
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	if !bytes.EqualFold(ct, []byte("application/json")) {
		// Also keeps browsers' cross-site form posts (text/plain, which
		// would carry cached Basic credentials) away from the API.
		return errorf(fasthttp.StatusUnsupportedMediaType, "unsupported_media_type",
			"send the request body as JSON with Content-Type: application/json")
	}
	body := r.ctx.Request.Body()
	if len(body) > MaxAPIBody {
		return errorf(fasthttp.StatusRequestEntityTooLarge, "body_too_large", "request body larger than %d bytes", MaxAPIBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errorf(fasthttp.StatusBadRequest, "bad_request", "the request body is empty: send a JSON object")
		}
		return errorf(fasthttp.StatusBadRequest, "bad_request", "malformed JSON body: %s", clip(strings.TrimPrefix(err.Error(), "json: "), 200))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errorf(fasthttp.StatusBadRequest, "bad_request", "malformed JSON body: more than one JSON value")
	}
	return nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// respond writes v as JSON with status (in process: keeps both).
func respond(r *request, status int, v any) error {
	r.status, r.out = status, v
	if r.ctx != nil {
		writeJSON(r.ctx, status, v)
	}
	return nil
}

// noContent answers 204.
func noContent(r *request) error {
	r.status = fasthttp.StatusNoContent
	if r.ctx != nil {
		r.ctx.SetStatusCode(fasthttp.StatusNoContent)
		r.ctx.ResetBody()
	}
	return nil
}

// queryArgs is the request's query (in process: r.query, maybe nil).
func (r *request) queryArgs() *fasthttp.Args {
	if r.ctx != nil {
		return r.ctx.QueryArgs()
	}
	if r.query == nil {
		return &fasthttp.Args{}
	}
	return r.query
}

// Caller predicates. Privileges come from r.user, the current record.

func (r *request) isGlobalAdmin() bool { return r.user.Type == store.TypeAdmin }

var errAccountNotFound = errorf(fasthttp.StatusNotFound, "not_found", "account not found")

// manageAccount checks the caller may manage the users and keys of account:
// a global admin (the account must exist), or an admin of that account.
// Another account's name answers 404 to an account admin, as if it did not
// exist.
func (a *api) manageAccount(r *request, account string) error {
	switch r.user.Type {
	case store.TypeAdmin:
		if _, err := a.st.GetAccount(r.c, account); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return errAccountNotFound
			}
			return err
		}
		return nil
	case store.TypeAccountAdmin:
		if r.user.Account == account {
			return nil
		}
		return errAccountNotFound
	default:
		return errorf(fasthttp.StatusForbidden, "forbidden",
			"only a global admin or an admin of this account may manage its users and keys; use /v1/user for your own identity and keys")
	}
}

var errUserNotFound = errorf(fasthttp.StatusNotFound, "not_found", "user not found in this account")

// pathUser resolves {account} and {username} of the path after
// manageAccount: the user must be in that account.
func (a *api) pathUser(r *request) (*store.User, error) {
	account, username := r.p.Get("account"), r.p.Get("username")
	if err := a.manageAccount(r, account); err != nil {
		return nil, err
	}
	u, err := a.st.GetUser(r.c, username)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errUserNotFound
	case err != nil:
		return nil, err
	case u.Account != account:
		return nil, errUserNotFound
	}
	return u, nil
}

// nonNil returns s, or an empty slice for nil (JSON [] rather than null).
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
