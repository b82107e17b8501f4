// Package proxy is keygate's public listener: the request pipeline that
// rejects malformed and ambiguous requests, strips hop-by-hop and spoofed
// identity headers, matches a route on the exact path it forwards, calls the
// authentication seam, injects identity headers and forwards the request to
// the route's upstream pool (DESIGN.md §1, §4).
//
// Order of Handler: request id; framing checks fasthttp lets through
// (CL+TE, obs-fold, bare LF, odd header names), duplicate Authorization,
// missing/duplicate/malformed Host (canonicalised: lower case, no trailing
// dot; internal/reqtarget); request target (origin-form only, raw path
// checked for ambiguity by internal/reqtarget, shared with forward-auth);
// Options.Extra; route match on the canonical host (404), method (405),
// _method query (400); header hygiene (strip first, override headers too);
// authentication (401/403); _method form field (400); identity,
// request id and X-Forwarded-* headers (inject last); forward with the
// route's deadline (502/503/504); response hygiene.
//
// Bodies. fasthttp streams request bodies (Server.StreamRequestBody): the
// pipeline decides on the headers alone (steps up to authentication) and
// reads a body only for a request it forwards or serves itself, whole,
// within limits.max_body and the in-flight budget limits.max_body_in_flight
// (503 + Retry-After beyond). Reading it whole before forwarding keeps the
// guarantees of the old fully-buffered design: chunked trailers, which
// fasthttp merges into the headers after the body (past the sanitiser),
// are seen before anything is sent upstream, and a request carrying any is
// refused with 400; an idempotent request can still be retried. A body left
// unread by an early answer is discarded when small, otherwise the
// connection is closed after a bounded drain (body.go, conns.go).
// Expect: 100-continue is answered by the ExpectHandler after the same
// header decision, so no 100 is sent to a refused request. Upstream
// responses are streamed (HostClient.StreamResponseBody); those up to
// 64 KiB are read whole so their connection is pooled at once.
package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/internal/httpx/hdr"
	"github.com/keygate/keygate/internal/reqtarget"
	"github.com/keygate/keygate/ratelimit"
)

// Authenticator is the authentication seam.
type Authenticator interface {
	// Authenticate returns the identity for the request or an error. Called
	// only on routes with auth required/optional. Errors that are
	// *HTTPError keep their status; any other error is a 500 whose text is
	// not shown. On a 401 the pipeline adds WWW-Authenticate Basic and
	// Bearer challenges unless the Authenticator already set one on
	// ctx.Response. A nil identity with a nil error means anonymous (a 401 on
	// routes with auth required). ctx and everything read from it must not
	// be kept after Authenticate returns.
	//
	// client is the client's address: the peer, or, when the peer is a
	// trusted proxy, the rightmost X-Forwarded-For hop that is not trusted.
	Authenticate(ctx *fasthttp.RequestCtx, route *Route, client netip.Addr) (*authn.Identity, error)
}

// Options are the collaborators of a Proxy.
type Options struct {
	Logger        *zap.Logger           // nil: zap.NewNop()
	Registerer    prometheus.Registerer // nil: no metrics registered
	Authenticator Authenticator         // nil: auth required → 401, optional → anonymous
	// Native is the route rule every request passes after authentication:
	// the route's roles (any of). Set (the native handler), it counts the
	// decisions; nil, the roles are enforced all the same, uncounted.
	Native *authz.Native
	// Authorizer (the external handler; nil: none) is asked after the
	// route's roles pass, with one (method, "<route>:<forwarded path>")
	// tuple; its failures are 403 or 503, never an allow.
	Authorizer authz.Authorizer
	// Extra are exact raw paths served by keygate itself before routing
	// (after the framing, Host and duplicate-Authorization checks).
	Extra map[string]fasthttp.RequestHandler
	// UpstreamCredentials supplies routes' upstream_credential (nil: a
	// route naming one is a configuration error).
	UpstreamCredentials UpstreamCredentials
	// RateLimiter (nil: none) enforces rate limits and quotas after
	// authentication and authorization (ratelimit.Limiter).
	RateLimiter *ratelimit.Limiter
}

// Config is what the proxy reads of keygate's configuration, normalised and
// validated by configs (the proxy applies no default of its own).
type Config struct {
	Routes         []configs.Route
	Limits         configs.Limits
	Headers        configs.Headers
	TLS            configs.TLS
	TrustedProxies []string // trusted_proxies
	Realm          string   // auth.realm, of the WWW-Authenticate challenges
	AccessLog      bool     // log.access
	AccessSample   int      // log.access_sample: one request in N is logged
	// KeyExpiryWarning is api_keys.expiry_warning (0: no Keygate-Key-Expires).
	KeyExpiryWarning time.Duration
}

// ConfigOf is the proxy's part of c. It shares c's slices: c must stay
// unchanged while the proxy runs.
func ConfigOf(c *configs.Config) Config {
	return Config{
		Routes:         c.Routes,
		Limits:         c.Limits,
		Headers:        c.Headers,
		TLS:            c.TLS,
		TrustedProxies: c.TrustedProxies,
		Realm:          c.Auth.Realm,
		AccessLog:      c.Log.Access,
		AccessSample:   c.Log.AccessSample,

		KeyExpiryWarning: c.APIKeys.ExpiryWarning.D(),
	}
}

// Proxy is the public listener's handler pipeline. It is safe for
// concurrent use.
type Proxy struct {
	cfg     Config
	log     *zap.Logger
	authr   Authenticator
	native  *authz.Native    // route roles; nil: not counted
	ext     authz.Authorizer // asked after the route roles; nil: none
	limiter *ratelimit.Limiter
	extra   map[string]fasthttp.RequestHandler
	ucred   UpstreamCredentials
	routes  []*Route
	router  *router
	san     sanitizer
	trusted []netip.Prefix

	ridName                                          []byte
	ridNorm                                          string // ridName normalised (normalizeName)
	hUser, hAccount, hRoles, hMethod, hKeyID, hKeyNm []byte
	// canon holds the same names in fasthttp's canonical form (hdr.Canonical),
	// set with SetCanonical: no copy-and-normalise of the name per request.
	canon               headerNames
	wwwBasic, wwwBearer string

	noRoute   *routeMetrics
	untrusted untrustedForwarded
	accessLog bool
	sample    uint64
	seq       atomic.Uint64

	maxConns int
	maxBody  int        // limits.max_body
	bodies   bodyBudget // limits.max_body_in_flight
	maxResp  int        // limits.max_response (0: unlimited)
	pool     sync.Pool
	serverMu sync.Mutex
	server   *fasthttp.Server
}

// New compiles cfg into a Proxy. It reports every configuration problem it
// finds at once. Metrics are registered on opts.Registerer (if any).
func New(cfg Config, opts Options) (*Proxy, error) {
	p := &Proxy{
		cfg:       cfg,
		log:       opts.Logger,
		authr:     opts.Authenticator,
		limiter:   opts.RateLimiter,
		native:    opts.Native,
		ext:       opts.Authorizer,
		extra:     opts.Extra,
		ucred:     opts.UpstreamCredentials,
		accessLog: cfg.AccessLog,
		sample:    uint64(cfg.AccessSample), //nolint:gosec // configs validates log.access_sample >= 1
		maxConns:  cfg.Limits.Concurrency,
		maxBody:   cfg.Limits.MaxBody.Int(),
		maxResp:   cfg.Limits.MaxResponse.Int(),
	}
	// The budget holds at least one body of max_body.
	p.bodies.max = max(int64(cfg.Limits.MaxBodyInFlight), int64(p.maxBody))
	if p.log == nil {
		p.log = zap.NewNop()
	}
	p.untrusted.log = p.log
	p.pool.New = func() any { return new(scratch) }
	var errs []error
	if cfg.AccessSample < 1 {
		errs = append(errs, fmt.Errorf("log.access_sample must be at least 1 (got %d)", cfg.AccessSample))
	}

	h := cfg.Headers
	p.ridName = []byte(h.RequestID)
	p.ridNorm = normalizeName(string(p.ridName))
	p.hUser = []byte(h.User)
	p.hAccount = []byte(h.Account)
	p.hRoles = []byte(h.Roles)
	p.hMethod = []byte(h.Method)
	p.hKeyID = []byte(h.KeyID)
	p.hKeyNm = []byte(h.KeyName)
	for _, n := range [][]byte{p.ridName, p.hUser, p.hAccount, p.hRoles, p.hMethod, p.hKeyID, p.hKeyNm} {
		if !validHeaderName(n) {
			errs = append(errs, fmt.Errorf("headers: %q is not a valid header name", n))
		}
	}
	for _, n := range [][]byte{p.hUser, p.hAccount, p.hRoles, p.hMethod, p.hKeyID, p.hKeyNm} {
		p.san.identity = append(p.san.identity, normalizeName(string(n)))
	}
	p.san.ridName = p.ridName
	p.canon = headerNames{rid: hdr.Canonical(h.RequestID), user: hdr.Canonical(h.User), account: hdr.Canonical(h.Account),
		roles: hdr.Canonical(h.Roles), method: hdr.Canonical(h.Method), keyID: hdr.Canonical(h.KeyID), keyName: hdr.Canonical(h.KeyName)}
	p.san.override = strippedOverrides(h.KeepOverrideHeaders)
	p.san.prepare()
	if normHasPrefix(p.ridName, identityPrefix) || normEqual(p.ridName, normalizeName(string(p.hUser))) {
		errs = append(errs, errors.New("headers.request_id must not look like an identity header"))
	}
	p.wwwBasic = httpx.Challenge("Basic", cfg.Realm, "")
	p.wwwBearer = httpx.Challenge("Bearer", cfg.Realm, "")

	for i, s := range cfg.TrustedProxies {
		s = strings.TrimSpace(s)
		if pf, err := netip.ParsePrefix(s); err == nil {
			p.trusted = append(p.trusted, pf.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			a = a.Unmap()
			p.trusted = append(p.trusted, netip.PrefixFrom(a, a.BitLen()))
		} else {
			errs = append(errs, fmt.Errorf("trusted_proxies[%d]: %q is not an IP or CIDR", i, s))
		}
	}

	var reqs *prometheus.CounterVec
	var dur, up *prometheus.HistogramVec
	if opts.Registerer != nil {
		reqs = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_requests_total", Help: "Requests on the public listener by route and status code.",
		}, []string{"route", "code"})
		dur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keygate_request_duration_seconds", Help: "Time to answer a request on the public listener.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"})
		up = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keygate_upstream_duration_seconds", Help: "Time the upstream took to answer.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"})
		p.untrusted.count = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keygate_untrusted_forwarded_total",
			Help: "Requests carrying X-Forwarded-For or Forwarded from a peer not in trusted_proxies (the headers are ignored).",
		})
		for _, c := range []prometheus.Collector{reqs, dur, up, p.untrusted.count} {
			if err := opts.Registerer.Register(c); err != nil {
				errs = append(errs, fmt.Errorf("metrics: %w", err))
			}
		}
	}

	names := map[string]bool{}
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		if rc.Name == "" {
			errs = append(errs, fmt.Errorf("routes[%d]: name is required", i))
		} else if names[rc.Name] {
			errs = append(errs, fmt.Errorf("routes[%d]: duplicate name %q", i, rc.Name))
		}
		names[rc.Name] = true
		r, err := compileRoute(i, rc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if opts.RateLimiter != nil && rc.RateLimit != "" {
			if r.rateLimit = opts.RateLimiter.Route(rc.Name, rc.RateLimit); r.rateLimit == nil {
				errs = append(errs, fmt.Errorf("routes[%d]: unknown rate_limit %q", i, rc.RateLimit))
			}
		}
		p.routes = append(p.routes, r)
	}
	errs = append(errs, checkUpstreamCredentials(p.routes, p.ucred)...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("proxy: invalid configuration: %w", errors.Join(errs...))
	}
	if reqs != nil {
		p.noRoute = newRouteMetrics("", reqs, dur, up)
		for _, r := range p.routes {
			r.m = newRouteMetrics(r.Name, reqs, dur, up)
		}
	}
	p.router = newRouter(p.routes)
	reqtarget.Prepare()
	return p, nil
}

// canonicalHost checks the Host header and puts its canonical form
// (reqtarget.AppendHost: lower case, one trailing dot and a zero port
// dropped) in s.host, the name part's length in s.hostName. HTTP/1.1 needs
// a Host; HTTP/1.0 may have none (s.host stays empty).
func (s *scratch) canonicalHost(req *fasthttp.Request) error {
	host := req.Header.Host()
	if len(host) == 0 {
		if req.Header.IsHTTP11() {
			return ErrBadHost
		}
		return nil
	}
	var err error
	if s.host, s.hostName, err = reqtarget.AppendHost(s.host[:0], host); err != nil {
		return badHost(err)
	}
	return nil
}

func validHeaderName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// Routes returns the compiled routes in configuration order (read-only).
func (p *Proxy) Routes() []*Route { return p.routes }

// Close closes idle upstream connections. In-flight requests finish.
func (p *Proxy) Close() {
	for _, r := range p.routes {
		for _, hc := range r.clients {
			hc.CloseIdleConnections()
		}
	}
}

// Handler is the whole pipeline (order in the package documentation). Every
// answer, including errors, carries the request id header.
func (p *Proxy) Handler(ctx *fasthttp.RequestCtx) {
	// The server read the clock when the request arrived (a RequestCtx
	// set up by hand, as in tests, has no time).
	start := ctx.Time()
	if start.IsZero() {
		start = time.Now()
	}
	// A request with Expect: 100-continue was checked and authenticated by
	// expect before its body was read: continue with that decision.
	s, ok := ctx.UserValue(decidedKey{}).(*scratch)
	if ok {
		ctx.RemoveUserValue(decidedKey{})
	} else {
		s = p.begin(ctx)
	}
	s.now = start
	route, ident, err := p.serve(ctx, s)
	p.finish(ctx, s, route, ident, err, start)
}

// scratchFor takes a reset scratch from the pool with the request id set
// first, so every answer carries it: the request's valid X-Request-Id, or a
// new one.
func (p *Proxy) scratchFor(ctx *fasthttp.RequestCtx) *scratch {
	s := p.pool.Get().(*scratch)
	s.reset()
	if v := ctx.Request.Header.PeekCanonical(p.canon.rid); validRequestID(v) {
		s.rid = append(s.rid, v...)
	} else {
		s.rid = appendNewRequestID(s.rid, s)
	}
	return s
}

// begin takes a scratch for a new request and sets its request id (and the
// access log path when sampled).
func (p *Proxy) begin(ctx *fasthttp.RequestCtx) *scratch {
	s := p.scratchFor(ctx)
	s.sampled = p.accessLog && (p.sample == 1 || p.seq.Add(1)%p.sample == 0)
	if s.sampled {
		// The path as the client sent it (serve rewrites the URI).
		t := ctx.Request.Header.RequestURI()
		if i := bytes.IndexByte(t, '?'); i >= 0 {
			t = t[:i]
		}
		s.path = append(s.path, t[:min(len(t), 2048)]...)
	}
	return s
}

// finish answers err (if any), settles the request body (release of its
// in-flight bytes, discard or close when unread), counts and logs the
// request, and returns s to the pool.
func (p *Proxy) finish(ctx *fasthttp.RequestCtx, s *scratch, route *Route, ident *authn.Identity, err error, start time.Time) {
	if err != nil {
		p.writeErr(ctx, s, err)
		// Admitted by the rate limiter, then failed (502, 504, a response
		// too large): the answer still reports what the request spent.
		s.rl.Set(&ctx.Response.Header)
	}
	ctx.Response.Header.SetCanonical(p.canon.rid, s.rid)
	setKeyExpires(&ctx.Response.Header, ident, p.cfg.KeyExpiryWarning, start)
	p.settleBody(ctx, s)
	if s.close {
		ctx.SetConnectionClose()
	}

	status := ctx.Response.StatusCode()
	m := p.noRoute
	if route != nil {
		m = route.m
	}
	if m != nil || s.sampled {
		// One clock reading ends the request and, when it was
		// forwarded, the upstream's part of it.
		end := time.Now()
		if m != nil {
			m.counter(status).Inc()
			m.duration.Observe(end.Sub(start).Seconds())
			if !s.upStart.IsZero() {
				m.upstream.Observe(end.Sub(s.upStart).Seconds())
			}
		}
		if s.sampled {
			p.logAccess(ctx, s, route, ident, status, end.Sub(start))
		}
	}
	s.route, s.ident = nil, nil
	p.pool.Put(s)
}

// writeErr answers err as JSON, with WWW-Authenticate on 401.
func (p *Proxy) writeErr(ctx *fasthttp.RequestCtx, s *scratch, err error) {
	var he *HTTPError
	if errors.As(err, &he) {
		switch he.Status {
		case fasthttp.StatusUnauthorized:
			// An Authenticator may have set its own challenge (e.g.
			// error="invalid_token"); otherwise offer both schemes.
			if len(ctx.Response.Header.Peek(fasthttp.HeaderWWWAuthenticate)) == 0 {
				ctx.Response.Header.Add(fasthttp.HeaderWWWAuthenticate, p.wwwBasic)
				ctx.Response.Header.Add(fasthttp.HeaderWWWAuthenticate, p.wwwBearer)
			}
		case fasthttp.StatusBadRequest:
			// The framing of what follows on this connection may be
			// ambiguous: never read another request from it.
			s.close = true
		}
	} else {
		p.log.Error("proxy: internal error", zap.Error(err))
	}
	WriteError(ctx, err)
}

// logAccess writes one access log line. Every field is copied out of ctx.
func (p *Proxy) logAccess(ctx *fasthttp.RequestCtx, s *scratch, r *Route, id *authn.Identity, status int, d time.Duration) {
	routeName, user := "", ""
	if r != nil {
		routeName = r.Name
	}
	if id != nil {
		user = id.Username
	}
	p.log.Info("access",
		zap.String("method", string(ctx.Method())),
		zap.String("path", string(s.path)),
		zap.Int("status", status),
		zap.Duration("duration", d),
		zap.String("route", routeName),
		zap.String("request_id", string(s.rid)),
		zap.String("user", user),
		zap.String("remote", ctx.RemoteIP().String()),
	)
}

// serve runs the pipeline up to and including the upstream call. It returns
// the matched route (nil if none), the identity (nil if anonymous) and the
// error to answer with, if any.
func (p *Proxy) serve(ctx *fasthttp.RequestCtx, s *scratch) (*Route, *authn.Identity, error) {
	if s.phase == phaseNone {
		if err := p.decide(ctx, s, false); err != nil || s.phase != phaseForward {
			return s.route, s.ident, err
		}
	}
	route, ident := s.route, s.ident
	req := &ctx.Request
	// The body is read only now, after authentication, within
	// limits.max_body and limits.max_body_in_flight.
	if err := p.readBody(ctx, s); err != nil {
		return route, ident, err
	}
	// A form field _method overrides the method as the query parameter does.
	if len(route.Methods) > 0 && hasFormMethodParam(req.Header.ContentType(), req.Body()) {
		return route, ident, ErrMethodOverride
	}

	// 6. Inject last. The body has been read whole: no Expect upstream.
	// Authorization goes upstream only when the route forwards it and the
	// client did not name it in Connection (hop-by-hop).
	// The sanitizer noted which of the headers removed here are present
	// (a Del copies and normalises its name even when there is nothing to
	// remove).
	if s.sawExpect {
		req.Header.Del(fasthttp.HeaderExpect)
	}
	// On a route with upstream_credential it is never forwarded: the
	// credential replaces it.
	if s.sawAuth && (!route.ForwardAuthorization || s.connAuth || route.UpstreamCredential != "") {
		req.Header.Del(fasthttp.HeaderAuthorization)
	}
	acct := ""
	if ident != nil {
		p.inject(&req.Header, ident)
		injectMeta(&req.Header, route, ident)
		acct = ident.Account
	}
	if route.UpstreamCredential != "" {
		if err := p.setUpstreamCredential(req, s, route, acct); err != nil {
			return route, ident, err
		}
	}
	if s.sawRID {
		req.Header.DelBytes(p.ridName)
	}
	req.Header.SetCanonical(p.canon.rid, s.rid)
	p.setForwarded(ctx, s, s.peer, s.trusted)

	// 7. Outgoing URI: the matched raw path minus strip_prefix, raw query.
	s.uri = append(s.uri, route.forwardPath(s.fpath)...)
	if s.hasQuery && len(s.fquery) > 0 {
		s.uri = append(s.uri, '?')
		s.uri = append(s.uri, s.fquery...)
	}
	// Unchanged (no strip_prefix, the query as sent: the common case), the
	// URI the server parsed is kept: it is written from its original path
	// and raw query string (DisablePathNormalizing; nothing on this path
	// parses the query arguments, which would re-encode them), so
	// re-parsing the same bytes is spared.
	if !bytes.Equal(s.uri, req.Header.RequestURI()) {
		req.SetRequestURIBytes(s.uri)
	}
	u := req.URI()
	u.DisablePathNormalizing = true
	u.SetSchemeBytes(route.scheme)
	req.UseHostHeader = true
	if len(s.host) == 0 { // HTTP/1.0 without Host
		req.Header.SetHostBytes(route.defaultHost)
		u.SetHostBytes(route.defaultHost)
	} else {
		req.Header.SetHostBytes(s.host) // the canonical host decided on
	}

	// 8. Forward. A large response body is streamed to the client (see
	// checkResponse), not buffered. With one upstream its pool is called
	// directly: its transport bounds the exchange by the route's timeout
	// (the pool's ReadTimeout) from its own clock reading; the balancer
	// would read the clock twice more to pass the same bound.
	s.upStart = time.Now()
	var err error
	if route.single != nil {
		err = route.single.Do(req, &ctx.Response)
	} else {
		err = route.lb.DoDeadline(req, &ctx.Response, s.upStart.Add(route.Timeout))
	}
	if err == nil && s.credValue != nil && ctx.Response.StatusCode() == fasthttp.StatusUnauthorized {
		err = p.retryAfter401(ctx, s, route, acct, s.upStart.Add(route.Timeout))
	}
	if err != nil {
		ctx.Response.Reset()
		return route, ident, p.upstreamError(route, err)
	}
	if err := p.checkResponse(ctx, s, route); err != nil {
		return route, ident, err
	}
	p.san.sanitizeResponse(&ctx.Response.Header, s)
	if s.upRID { // the upstream's own (finish sets keygate's)
		ctx.Response.Header.DelBytes(p.ridName)
	}
	s.rl.Set(&ctx.Response.Header)
	return route, ident, nil
}

// decide runs the checks, routing and authentication that need only the
// request headers (steps 1-5) and leaves the outcome in s: phaseForward
// (forward the request), phaseDone (answered: OPTIONS *, Options.Extra) or,
// when probe (Expect: 100-continue, body not read yet), phaseExtra for an
// Options.Extra path that Handler serves later. A non-nil error is the
// answer.
func (p *Proxy) decide(ctx *fasthttp.RequestCtx, s *scratch, probe bool) error {
	req := &ctx.Request
	s.phase = phaseDone
	// 1. Framing and duplicates fasthttp lets through.
	if err := checkRawHeaders(req.Header.RawHeaders()); err != nil {
		return err
	}
	if err := s.canonicalHost(req); err != nil {
		return err
	}
	// A declared body over limits.max_body: 413 before anything is read.
	if cl := req.Header.ContentLength(); cl > p.maxBody && !s.check {
		return ErrBodyTooLarge
	}

	// 2. Request target: origin-form only ("*" only for OPTIONS).
	target := req.Header.RequestURI()
	if len(target) == 1 && target[0] == '*' {
		if req.Header.IsOptions() && !s.check {
			ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
			ctx.SetStatusCode(fasthttp.StatusNoContent)
			return nil
		}
		return ErrBadPath
	}
	path, query, hasQuery, err := splitTarget(target)
	if err != nil {
		return err
	}
	if p.extra != nil && !s.check {
		if h, ok := p.extra[string(path)]; ok {
			if probe {
				s.phase = phaseExtra
				return nil
			}
			// keygate's own endpoints read the body whole: the same bounds.
			if err := p.readBody(ctx, s); err != nil {
				return err
			}
			h(ctx)
			return nil
		}
	}

	// 3. Route on exactly the path that is forwarded.
	if p.router.windows && reqtarget.HasShortName(path) {
		return badPath(reqtarget.ErrShortName)
	}
	route := p.router.match(s.host[:s.hostName], path)
	if route == nil {
		return ErrNotFound
	}
	s.route = route
	if !route.allowsMethod(req.Header.Method()) {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, route.allow)
		return ErrMethodNotAllowed
	}
	if len(route.Methods) > 0 && hasMethodParam(query) {
		return ErrMethodOverride
	}

	// 4. Header hygiene: strip first (Authorization, even when named in
	// Connection, stays until authentication has read it).
	// A forward-auth check comes from a peer Check's caller trusts.
	peer := httpx.PeerAddr(ctx)
	trusted := s.check || p.isTrusted(peer)
	if s.check {
		// A check is never forwarded: what the sanitizer removes cannot
		// reach anyone, and nothing it removes takes part in the
		// decision. Only what the decision reads is collected.
		p.san.collectForCheck(&req.Header, s)
	} else {
		p.san.sanitizeRequest(&req.Header, s, trusted)
	}
	if s.untrustedFwd {
		p.untrusted.note(peer)
	}

	// 5. Authentication seam, then authorization: the route's roles and the
	// external authorizer apply to anonymous callers of optional routes too.
	var ident *authn.Identity
	if route.Auth != configs.AuthNone {
		if p.authr != nil {
			if ident, err = p.authr.Authenticate(ctx, route, p.clientAddr(peer, trusted, s.xff)); err != nil {
				return err
			}
		}
		if ident == nil && route.Auth == configs.AuthRequired {
			return ErrUnauthorized
		}
		s.ident = ident
		if err := p.authorize(ctx, route, ident, path); err != nil {
			return err
		}
	}
	s.ident = ident
	// 5b. Rate limits and quotas, after authentication and authorization so
	// that refused requests spend nothing (ctx.Time: the clock the request
	// already read).
	if p.limiter != nil {
		var client netip.Addr // keys an anonymous caller's route budget
		if ident == nil && route.rateLimit != nil {
			client = p.clientAddr(peer, trusted, s.xff)
		}
		now := ctx.Time() // set by the server per request
		if now.IsZero() { // a RequestCtx not from a fasthttp.Server
			now = time.Now()
		}
		if s.rl, err = p.limiter.Limit(&ctx.Response.Header, route.rateLimit, ident, client, now); err != nil {
			return err
		}
	}
	s.peer, s.trusted = peer, trusted
	s.fpath, s.fquery, s.hasQuery = path, query, hasQuery
	s.phase = phaseForward
	return nil
}

// upstreamError maps a client error to 502/503/504 and logs it without
// request content.
func (p *Proxy) upstreamError(r *Route, err error) error {
	var out *HTTPError
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.As(err, &ne) && ne.Timeout():
		out = ErrUpstreamTimeout
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		out = ErrUpstreamBusy
	case errors.Is(err, fasthttp.ErrNoAvailableClients):
		out = errNoAvailableClient
	default:
		out = ErrBadGateway
	}
	p.log.Warn("proxy: upstream error", zap.String("route", r.Name), zap.Int("status", out.Status), zap.String("error", err.Error()))
	return out
}

// inject sets the identity headers. The sanitizer removed every client
// copy of them (any spelling) first, so setting is enough.
func (p *Proxy) inject(h *fasthttp.RequestHeader, id *authn.Identity) {
	c := &p.canon
	h.SetCanonical(c.user, hdr.BytesView(id.Username))
	h.SetCanonical(c.account, hdr.BytesView(id.Account))
	h.SetCanonical(c.roles, hdr.BytesView(id.RolesHeader))
	h.SetCanonical(c.method, hdr.BytesView(id.Method.String()))
	if id.Method == authn.MethodAPIKey {
		h.SetCanonical(c.keyID, hdr.BytesView(id.KeyID))
		h.SetCanonical(c.keyName, hdr.BytesView(id.KeyName))
	}
}

// headerNames are the configured header names in canonical form.
type headerNames struct {
	rid, user, account, roles, method, keyID, keyName []byte
}

// Forwarding header names (canonical) and values, built once.
var (
	hdrXFF   = []byte("X-Forwarded-For")
	hdrXFP   = []byte("X-Forwarded-Proto")
	hdrXFH   = []byte("X-Forwarded-Host")
	strHTTP  = []byte("http")
	strHTTPS = []byte("https")
)

// setForwarded sets X-Forwarded-For/-Proto/-Host. From a trusted peer the
// client's XFF (collected by the sanitizer) gets the peer appended and its
// -Proto/-Host are kept when present; otherwise they are keygate's own.
func (p *Proxy) setForwarded(ctx *fasthttp.RequestCtx, s *scratch, peer netip.Addr, trusted bool) {
	// From an untrusted peer the sanitizer removed every X-Forwarded-*
	// header (any spelling): setting is enough. From a trusted one, an
	// empty -Proto/-Host (or copies in another spelling) is replaced.
	h := &ctx.Request.Header
	s.ip = peer.AppendTo(s.ip[:0])
	if trusted && len(s.xff) > 0 {
		s.xff = append(s.xff, ", "...)
		s.xff = append(s.xff, s.ip...)
		h.SetCanonical(hdrXFF, s.xff)
	} else {
		h.SetCanonical(hdrXFF, s.ip)
	}
	if !trusted || len(h.PeekBytes(hdrXFP)) == 0 {
		if trusted {
			h.DelBytes(hdrXFP)
		}
		if ctx.IsTLS() {
			h.SetCanonical(hdrXFP, strHTTPS)
		} else {
			h.SetCanonical(hdrXFP, strHTTP)
		}
	}
	if !trusted || len(h.PeekBytes(hdrXFH)) == 0 {
		if trusted {
			h.DelBytes(hdrXFH)
		}
		if len(s.host) > 0 {
			h.SetCanonical(hdrXFH, s.host)
		}
	}
}

// clientAddr is the address failures are counted against: the peer, unless
// the peer is a trusted proxy, then the rightmost X-Forwarded-For hop that is
// not itself trusted (hops left of it are the client's own claims). It does
// not allocate.
func (p *Proxy) clientAddr(peer netip.Addr, trusted bool, xff []byte) netip.Addr {
	if !trusted || len(xff) == 0 {
		return peer
	}
	for end := len(xff); end > 0; {
		start := bytes.LastIndexByte(xff[:end], ',') + 1
		hop := bytes.TrimSpace(xff[start:end])
		a, err := netip.ParseAddr(hdr.StringView(hop))
		if err != nil {
			return peer // a malformed hop: trust nothing left of it
		}
		a = a.Unmap()
		if !p.isTrusted(a) {
			return a
		}
		end = start - 1
	}
	return peer
}

func (p *Proxy) isTrusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, pf := range p.trusted {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

// Authorization errors, fixed so no plugin detail reaches the client.
var (
	errAuthzDenied      = &HTTPError{Status: fasthttp.StatusForbidden, Code: "forbidden", Message: "not allowed"}
	errAuthzUnavailable = &HTTPError{Status: fasthttp.StatusServiceUnavailable, Code: "authorizer_unavailable", Message: "the authorization service is unavailable; retry later"}
)

// authorize decides on exactly the path that will be forwarded (the matched
// raw path minus strip_prefix). The route's roles are always enforced; the
// external authorizer, when configured, is asked on top.
//
// An anonymous caller (ident nil, on an auth: optional route) gets the same
// rules with no identity: it holds no role, so a route with roles refuses
// it, and the external authorizer is asked about principal authz.Anonymous.
// A refusal of an anonymous caller is 401 with the challenges (credentials
// may help), of an authenticated one 403.
func (p *Proxy) authorize(ctx *fasthttp.RequestCtx, route *Route, ident *authn.Identity, path []byte) error {
	denied := ErrForbidden
	if ident == nil {
		denied = ErrUnauthorized
	}
	if !p.native.Allow(ident, route.Roles) {
		return denied
	}
	if p.ext == nil {
		return nil
	}
	fwd := route.forwardPath(path)
	r := authz.AcquireRequest()
	if ident == nil {
		r.Identity, r.Domain = authz.Anonymous, ""
	} else {
		r.Identity, r.Domain = ident, ident.Account
	}
	r.Now = time.Now()
	r.AddRouteAction(ctx.Method(), route.Name, fwd)
	_, err := p.ext.Authorize(ctx, r)
	authz.ReleaseRequest(r)
	switch {
	case err == nil:
		return nil
	case authz.Status(err) == fasthttp.StatusServiceUnavailable:
		httpx.SetRetryAfter(&ctx.Response.Header, time.Second)
		return errAuthzUnavailable
	case ident == nil:
		return denied
	default:
		return errAuthzDenied
	}
}

var slashPath = []byte("/")

// ClientAddr is the client address of a request that has not been through
// the pipeline (keygate's own endpoints, Options.Extra, such as the token
// endpoint): the same rule as the pipeline's (clientAddr over every
// X-Forwarded-For line, read the way the sanitizer collects them). A
// forwarding header from an untrusted peer is noted (see
// untrustedForwarded) as in the pipeline.
func (p *Proxy) ClientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	peer := httpx.PeerAddr(ctx)
	trusted := p.isTrusted(peer)
	s := p.pool.Get().(*scratch)
	s.xff = s.xff[:0]
	untrusted := false
	for k, v := range ctx.Request.Header.All() {
		switch {
		case normEqual(k, "x-forwarded-for"):
			if !trusted {
				untrusted = true
			} else {
				s.xff = appendXFF(s.xff, v)
			}
		case normEqual(k, forwardingHeaders[0]):
			untrusted = untrusted || !trusted
		}
	}
	if untrusted {
		p.untrusted.note(peer)
	}
	a := p.clientAddr(peer, trusted, s.xff)
	p.pool.Put(s)
	return a
}
