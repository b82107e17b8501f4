// Package admin is keygate's admin listener (DESIGN.md §6): liveness,
// readiness, Prometheus metrics, the REST API (api*.go), the OpenAPI
// document and opt-in pprof, on a small method + path-segments router.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"go.uber.org/zap"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/store"
)

// ReadyTimeout bounds the checks of GET /readyz.
const ReadyTimeout = time.Second

// Options are the admin server's collaborators.
type Options struct {
	// Logger receives operational logs; nil means no logging.
	Logger *zap.Logger
	// Gatherer is what GET /metrics exposes. Required.
	Gatherer prometheus.Gatherer
	// Store's readiness checks are run by GET /readyz. Required.
	Store store.Readiness
	// Auth authenticates GET /metrics when admin.metrics_roles is set
	// (required then).
	Auth Authenticator
	// ReadyChecks are run by GET /readyz before the store's own checks
	// (e.g. serve's "startup" while the store is not initialised yet).
	ReadyChecks []ReadyCheck
}

// ReadyCheck is one named readiness check of GET /readyz.
type ReadyCheck struct {
	// Name is snake_case; it is the check's key in the JSON.
	Name string
	// Check returns nil when the check passes. A *ReadyState error sets
	// the response's status word and reason; any other error's text goes
	// to the log only.
	Check func(ctx context.Context) error
}

// ReadyState is a ReadyCheck error whose Status (e.g. "starting") and
// Reason go into the /readyz response. Both must be safe to show.
type ReadyState struct {
	Status, Reason string
}

func (e *ReadyState) Error() string { return e.Status + ": " + e.Reason }

// Server is the admin listener's handler and routes.
type Server struct {
	// metricsAuth and metricsRoles restrict GET /metrics
	// (admin.metrics_roles); nil: open.
	metricsAuth  Authenticator
	metricsRoles []string
	realm        string

	limits      configs.Limits
	log         *zap.Logger
	store       store.Readiness
	readyChecks []ReadyCheck
	router      Router
	metrics     fasthttp.RequestHandler
	// mounts serve whole path prefixes (the web UI under /ui).
	mounts []mount
}

type mount struct {
	prefix string
	h      fasthttp.RequestHandler
}

// Config is what the admin server reads of keygate's configuration,
// normalised and validated by configs.
type Config struct {
	Limits       configs.Limits
	MetricsRoles []string // admin.metrics_roles; empty: GET /metrics is open
	Realm        string   // auth.realm, of the /metrics challenge
}

// ConfigOf is the admin server's part of c. It shares c's slices: c must
// stay unchanged while the server runs.
func ConfigOf(c *configs.Config) Config {
	return Config{Limits: c.Limits, MetricsRoles: c.Admin.MetricsRoles, Realm: c.Auth.Realm}
}

// New builds the admin server. cfg is read, never modified, and must stay
// unchanged while the server runs.
func New(cfg Config, opts Options) (*Server, error) {
	if opts.Gatherer == nil {
		return nil, errors.New("admin: a metrics gatherer is required")
	}
	if opts.Store == nil {
		return nil, errors.New("admin: a store is required")
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{
		limits:      cfg.Limits,
		log:         log,
		store:       opts.Store,
		readyChecks: opts.ReadyChecks,
		metrics: fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{
			ErrorLog: zap.NewStdLog(log),
		})),
	}
	if len(cfg.MetricsRoles) > 0 {
		if opts.Auth == nil {
			return nil, errors.New("admin: admin.metrics_roles needs an authenticator")
		}
		s.metricsAuth, s.metricsRoles = opts.Auth, cfg.MetricsRoles
		s.realm = httpx.Challenge("Basic", cfg.Realm, "")
	}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	s.router.Handle(fasthttp.MethodGet, "/healthz", s.healthz)
	s.router.Handle(fasthttp.MethodGet, "/readyz", s.readyz)
	s.router.Handle(fasthttp.MethodGet, "/metrics", s.handleMetrics)
}

// Handle adds a route to the admin router (see Router.Handle). Call it before
// the server starts serving.
func (s *Server) Handle(method, pattern string, h HandlerFunc) {
	s.router.Handle(method, pattern, h)
}

// Mount hands every request whose path is prefix or starts with prefix+"/"
// to h (the web UI, admin/ui). Call it before the server starts serving.
func (s *Server) Mount(prefix string, h fasthttp.RequestHandler) {
	s.mounts = append(s.mounts, mount{prefix: prefix, h: h})
}

// mounted reports whether path is prefix or below it.
func mounted(path []byte, prefix string) bool {
	return len(path) >= len(prefix) && string(path[:len(prefix)]) == prefix &&
		(len(path) == len(prefix) || path[len(prefix)] == '/')
}

// Handler is the admin listener's request handler.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	if len(s.mounts) > 0 {
		p := ctx.Path()
		for _, m := range s.mounts {
			if mounted(p, m.prefix) {
				m.h(ctx)
				return
			}
		}
	}
	s.router.Serve(ctx)
}

// Server returns a new fasthttp server for the admin listener, with the
// limits and timeouts of Config.Limits (internal/httpx.NewServer).
func (s *Server) Server() *fasthttp.Server {
	srv := httpx.NewServer(s.limits, s.Handler, s.log)
	srv.Name = "keygate"
	return srv
}

func (s *Server) healthz(ctx *fasthttp.RequestCtx, _ Params) {
	writeJSON(ctx, fasthttp.StatusOK, map[string]string{"status": "ok"})
}

// readyBody is the JSON of GET /readyz. Checks maps each check's name to
// "ok" or "failed"; Failed lists the failed ones in the order they ran.
// Error texts (which may name an address or a path) go to the log only.
type readyBody struct {
	Status string            `json:"status"`
	Store  string            `json:"store"`
	Reason string            `json:"reason,omitempty"`
	Failed []string          `json:"failed,omitempty"`
	Checks map[string]string `json:"checks"`
}

// readyz runs serve's checks, then the store's (store.Readiness), all
// within ReadyTimeout: 200 when every one passed,
// else 503 naming the failed checks.
func (s *Server) readyz(ctx *fasthttp.RequestCtx, _ Params) {
	c, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	body := readyBody{Status: "ready", Store: "ok", Checks: map[string]string{}}
	fail := func(name string, err error) {
		body.Checks[name] = "failed"
		body.Failed = append(body.Failed, name)
		var rs *ReadyState
		if errors.As(err, &rs) {
			if body.Reason == "" {
				body.Status, body.Reason = rs.Status, rs.Reason
			}
			return
		}
		// The error may name an address: log it, never send it.
		s.log.Warn("readiness check failed", zap.String("check", name), zap.Error(err))
	}
	for _, rc := range s.readyChecks {
		if err := rc.Check(c); err != nil {
			fail(rc.Name, err)
		} else {
			body.Checks[rc.Name] = "ok"
		}
	}
	for _, ch := range s.store.Ready(c) {
		if ch.Err != nil {
			body.Store = "unavailable"
			fail(ch.Name, ch.Err)
		} else {
			body.Checks[ch.Name] = "ok"
		}
	}
	if len(body.Failed) == 0 {
		writeJSON(ctx, fasthttp.StatusOK, body)
		return
	}
	if body.Status == "ready" {
		body.Status = "unavailable"
	}
	writeJSON(ctx, fasthttp.StatusServiceUnavailable, body)
}

func (s *Server) handleMetrics(ctx *fasthttp.RequestCtx, _ Params) {
	if s.metricsAuth != nil && !s.metricsAllowed(ctx) {
		return
	}
	s.metrics(ctx)
}

// metricsAllowed enforces admin.metrics_roles: the caller must authenticate
// and be a global admin or hold one of the roles. It writes the refusal.
func (s *Server) metricsAllowed(ctx *fasthttp.RequestCtx) bool {
	c, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	id, err := s.metricsAuth.Authenticate(c, ctx.Request.Header.Peek(fasthttp.HeaderAuthorization), httpx.PeerAddr(ctx))
	if err != nil || id == nil {
		status, code, _ := authn.Status(err)
		if id == nil && err == nil {
			status, code = fasthttp.StatusUnauthorized, "unauthorized"
		}
		if status == fasthttp.StatusUnauthorized {
			ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, s.realm)
		}
		httpx.Write(ctx, status, code, "GET /metrics needs a caller holding one of admin.metrics_roles")
		return false
	}
	if id.UserType == string(store.TypeAdmin) {
		return true
	}
	for _, r := range id.Roles {
		if slices.Contains(s.metricsRoles, r) {
			return true
		}
	}
	httpx.Write(ctx, fasthttp.StatusForbidden, "forbidden", "GET /metrics needs one of the roles in admin.metrics_roles")
	return false
}

// writeJSON writes v as the JSON response body with status.
func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = fasthttp.StatusInternalServerError
		body = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}
