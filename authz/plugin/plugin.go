// Package plugin is the reference external authorization plugin of keygate:
// a small fasthttp server implementing the interface documented in
// configs/authz-plugin.openapi.yaml from a YAML rules file (see Rules). It is
// what `keygate authz-plugin-example` runs, a starting point for real
// plugins, and the plugin the authz tests run against.
//
// Endpoints:
//
//	POST   /v1/authorize          decide tuples (AuthorizeRequest → AuthorizeResponse)
//	POST   /v1/principals/{name}  principal created     DELETE: deleted
//	POST   /v1/domains/{name}     domain created        DELETE: deleted
//	GET    /v1/principals         known principals and every notification received (debug)
//	GET    /v1/domains            known domains (debug)
//	GET    /healthz               200, never signed
//
// When a secret is set every other request must carry a valid
// X-Keygate-Timestamp / X-Keygate-Signature pair (authz.VerifySignature,
// skew at most 5 minutes): otherwise 401.
package plugin

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/authz"
)

// Server timeouts; every one is explicit.
const (
	serverReadTimeout  = 10 * time.Second
	serverWriteTimeout = 10 * time.Second
	serverIdleTimeout  = 30 * time.Second
)

// Event is a lifecycle notification the plugin received.
type Event struct {
	ID   string    `json:"id,omitempty"` // X-Keygate-Notification-Id
	Op   string    `json:"op"`           // create | delete
	Kind string    `json:"kind"`         // principal | domain
	Name string    `json:"name"`
	At   time.Time `json:"at"`
}

// Server is the reference plugin. It is safe for concurrent use.
type Server struct {
	rules   atomic.Pointer[Rules]
	secret  string
	log     *zap.Logger
	now     func() time.Time
	maxSkew time.Duration

	authorizeCalls atomic.Uint64

	mu         sync.Mutex
	events     []Event
	principals map[string]struct{}
	domains    map[string]struct{}

	srvMu sync.Mutex
	srv   *fasthttp.Server
}

// New builds a Server deciding with rules. secret "" disables signature
// checks. A nil logger logs nothing.
func New(rules Rules, secret string, logger *zap.Logger) *Server {
	if logger == nil {
		logger = zap.NewNop()
	}
	s := &Server{
		secret:     secret,
		log:        logger,
		now:        time.Now,
		maxSkew:    authz.DefaultMaxSkew,
		principals: map[string]struct{}{},
		domains:    map[string]struct{}{},
	}
	s.SetRules(rules)
	return s
}

// SetRules replaces the rules atomically (a rules value built by hand, not
// by ParseRules, is validated here; invalid rules deny everything).
func (s *Server) SetRules(r Rules) {
	if r.compiled == nil && len(r.Rules) > 0 {
		if err := r.compile(); err != nil {
			s.log.Error("invalid rules: denying everything", zap.Error(err))
			r = Rules{}
		}
	}
	s.rules.Store(&r)
}

// AuthorizeCalls counts POST /v1/authorize requests that reached the rules.
func (s *Server) AuthorizeCalls() uint64 { return s.authorizeCalls.Load() }

// Events returns a copy of the notifications received, in arrival order.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// Serve serves on ln until Shutdown. It returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	srv := &fasthttp.Server{
		Handler:                      s.Handler,
		Name:                         "keygate-authz-plugin",
		ReadTimeout:                  serverReadTimeout,
		WriteTimeout:                 serverWriteTimeout,
		IdleTimeout:                  serverIdleTimeout,
		MaxRequestBodySize:           authz.MaxPluginBody,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultDate:                true,
	}
	s.srvMu.Lock()
	s.srv = srv
	s.srvMu.Unlock()
	return srv.Serve(ln)
}

// Shutdown stops Serve, letting requests in flight finish until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.srvMu.Lock()
	srv := s.srv
	s.srvMu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.ShutdownWithContext(ctx)
}

// Handler is the fasthttp handler of the plugin.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	raw := ctx.Request.Header.RequestURI()
	path, _, _ := strings.Cut(string(raw), "?")
	method := string(ctx.Method())
	if path == "/healthz" {
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetBodyString("ok\n")
		return
	}
	if s.secret != "" {
		err := authz.VerifySignature(s.secret, method, path,
			string(ctx.Request.Header.Peek(authz.HeaderTimestamp)), ctx.Request.Body(),
			string(ctx.Request.Header.Peek(authz.HeaderSignature)), s.now(), s.maxSkew)
		if err != nil {
			s.log.Warn("rejected unsigned or badly signed request", zap.String("path", path), zap.Error(err))
			writeJSON(ctx, fasthttp.StatusUnauthorized, errorBody("unauthorized", err.Error()))
			return
		}
	}
	switch {
	case path == authz.PathAuthorize:
		if method != fasthttp.MethodPost {
			methodNotAllowed(ctx, "POST")
			return
		}
		s.authorize(ctx)
	case path == authz.PathPrincipals || path == authz.PathDomains:
		if method != fasthttp.MethodGet {
			methodNotAllowed(ctx, "GET")
			return
		}
		s.list(ctx, strings.TrimPrefix(path, "/v1/"))
	case strings.HasPrefix(path, authz.PathPrincipals+"/"):
		s.lifecycle(ctx, method, authz.KindPrincipal, path[len(authz.PathPrincipals)+1:])
	case strings.HasPrefix(path, authz.PathDomains+"/"):
		s.lifecycle(ctx, method, authz.KindDomain, path[len(authz.PathDomains)+1:])
	default:
		writeJSON(ctx, fasthttp.StatusNotFound, errorBody("not_found", "no such endpoint"))
	}
}

func (s *Server) authorize(ctx *fasthttp.RequestCtx) {
	var req authz.AuthorizeRequest
	// A principal has a name, except the anonymous caller of an
	// auth: optional route (type "anonymous", name "").
	if err := json.Unmarshal(ctx.Request.Body(), &req); err != nil ||
		(req.Principal.Name == "") != (req.Principal.Type == authz.AnonymousType) {
		writeJSON(ctx, fasthttp.StatusBadRequest, errorBody("bad_request", "body must be an authorize request with a principal name"))
		return
	}
	s.authorizeCalls.Add(1)
	rules := s.rules.Load()
	resp := authz.AuthorizeResponse{Allowed: []authz.Action{}, Denied: []authz.Action{}}
	for _, a := range req.Actions {
		if rules.Decide(req.Principal, req.Domain, a) {
			resp.Allowed = append(resp.Allowed, a)
		} else {
			resp.Denied = append(resp.Denied, a)
		}
	}
	writeJSON(ctx, fasthttp.StatusOK, resp)
}

func (s *Server) lifecycle(ctx *fasthttp.RequestCtx, method, kind, escaped string) {
	name, err := url.PathUnescape(escaped)
	if err != nil || name == "" || strings.Contains(escaped, "/") {
		writeJSON(ctx, fasthttp.StatusBadRequest, errorBody("bad_request", "malformed name"))
		return
	}
	var op string
	switch method {
	case fasthttp.MethodPost:
		op = authz.OpCreate
	case fasthttp.MethodDelete:
		op = authz.OpDelete
	default:
		methodNotAllowed(ctx, "POST, DELETE")
		return
	}
	s.mu.Lock()
	set := s.principals
	if kind == authz.KindDomain {
		set = s.domains
	}
	_, existed := set[name]
	if op == authz.OpCreate {
		set[name] = struct{}{}
	} else {
		delete(set, name)
	}
	s.events = append(s.events, Event{
		ID: string(ctx.Request.Header.Peek(authz.HeaderNotificationID)),
		Op: op, Kind: kind, Name: name, At: s.now().UTC(),
	})
	s.mu.Unlock()
	if op == authz.OpDelete && !existed {
		// keygate counts a 404 to a DELETE as delivered.
		writeJSON(ctx, fasthttp.StatusNotFound, errorBody("not_found", "unknown "+kind))
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// listing is the body of GET /v1/principals and GET /v1/domains.
type listing struct {
	Names  []string `json:"names"`
	Events []Event  `json:"events"`
}

func (s *Server) list(ctx *fasthttp.RequestCtx, what string) {
	kind := authz.KindPrincipal
	if what == "domains" {
		kind = authz.KindDomain
	}
	s.mu.Lock()
	set := s.principals
	if kind == authz.KindDomain {
		set = s.domains
	}
	out := listing{Names: make([]string, 0, len(set)), Events: []Event{}}
	for n := range set {
		out.Names = append(out.Names, n)
	}
	for _, e := range s.events {
		if e.Kind == kind {
			out.Events = append(out.Events, e)
		}
	}
	s.mu.Unlock()
	slices.Sort(out.Names)
	writeJSON(ctx, fasthttp.StatusOK, out)
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set(fasthttp.HeaderAllow, allow)
	writeJSON(ctx, fasthttp.StatusMethodNotAllowed, errorBody("method_not_allowed", "method not allowed"))
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func errorBody(code, msg string) apiError {
	var e apiError
	e.Error.Code, e.Error.Message = code, msg
	return e
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		ctx.Error("internal error", fasthttp.StatusInternalServerError)
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
}
