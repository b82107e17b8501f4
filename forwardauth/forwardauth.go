// Package forwardauth is keygate as the auth service of another proxy
// (DESIGN.md §11): an HTTP listener where every request is a check of an
// original request (nginx auth_request, Caddy forward_auth, Traefik
// ForwardAuth, Envoy HTTP ext_authz) and an Envoy ext_authz gRPC v3 server.
//
// It only translates: the front proxy's request into the original request,
// handed to the proxy's decision (proxy.Proxy.Check: the same ambiguity
// checks, route match, authentication, cache, failure limits, route roles
// and authorizer as a proxied request), and the decision into the front
// proxy's answer. Allowed: 200, empty body, every configured identity
// header in the response (empty when anonymous). Denied: 401 with the
// challenges, 403, 429 or 503 with Retry-After, a JSON error body; never any
// other status (nginx turns them into 500s).
//
// Where the original request is read from, by the first matching rule:
//
//   - X-Forwarded-Uri (Traefik, Caddy): method from X-Forwarded-Method, host
//     from X-Forwarded-Host, each falling back to the check's own;
//   - X-Original-URI (nginx auth_request): method from X-Original-Method,
//     host from the check's Host (proxy_set_header Host $host);
//   - neither (Envoy HTTP ext_authz): the check's request line, minus
//     forward_auth.path_prefix, and its Host.
//
// A check carrying both X-Forwarded-Uri and X-Original-URI, or any of them
// twice, is refused (403): a client could have added the one its front
// proxy does not set. Every check from a peer outside
// forward_auth.trusted_proxies is refused (403 untrusted_peer).
package forwardauth

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/internal/httpx/hdr"
	"github.com/keygate/keygate/proxy"
)

// Mode is how a check described its original request (the mode label of
// keygate_forward_auth_checks_total).
type Mode uint8

// Modes.
const (
	ModeForwarded Mode = iota // X-Forwarded-Method/-Host/-Uri (Traefik, Caddy)
	ModeOriginal              // X-Original-Method/-URI (nginx auth_request)
	ModeEnvoyHTTP             // request line minus path_prefix (Envoy HTTP ext_authz)
	ModeEnvoyGRPC             // envoy.service.auth.v3.Authorization/Check
	numModes
)

var modeNames = [numModes]string{"forwarded", "original", "envoy_http", "envoy_grpc"}

func (m Mode) String() string { return modeNames[m] }

// result labels, by answer status.
const (
	resAllowed = iota
	resUnauthorized
	resForbidden
	resRateLimited
	resUnavailable
	numResults
)

var resultNames = [numResults]string{"allowed", "unauthorized", "forbidden", "rate_limited", "unavailable"}

func resultOf(status int) int {
	switch status {
	case fasthttp.StatusOK:
		return resAllowed
	case fasthttp.StatusUnauthorized:
		return resUnauthorized
	case fasthttp.StatusTooManyRequests:
		return resRateLimited
	case fasthttp.StatusServiceUnavailable:
		return resUnavailable
	}
	return resForbidden
}

// Options are the collaborators of a Server.
type Options struct {
	Logger     *zap.Logger           // nil: zap.NewNop()
	Registerer prometheus.Registerer // nil: no metrics
}

// Server answers checks over HTTP (Handler, Server) and Envoy ext_authz
// gRPC (GRPCServer). It is safe for concurrent use.
type Server struct {
	cfg     *configs.Config
	prx     *proxy.Proxy
	log     *zap.Logger
	trusted []netip.Prefix
	prefix  []byte
	names   proxy.HeaderNames
	// canon: the same names in fasthttp's canonical form (hdr.Canonical),
	// set on an allowed check's response with SetCanonical.
	canon proxy.HeaderNames
	// identity header names in Envoy's spelling (lower case), for gRPC.
	lowerNames [6]string
	checks     [numModes][numResults]prometheus.Counter
	server     *fasthttp.Server
}

// New builds the forward-auth server deciding with prx. Metrics are
// registered on opts.Registerer.
func New(cfg *configs.Config, prx *proxy.Proxy, opts Options) (*Server, error) {
	if cfg == nil || prx == nil {
		return nil, errors.New("forwardauth: nil config or proxy")
	}
	f := &Server{cfg: cfg, prx: prx, log: opts.Logger, names: prx.HeaderNames(), prefix: []byte(cfg.ForwardAuth.PathPrefix)}
	if f.log == nil {
		f.log = zap.NewNop()
	}
	var errs []error
	for i, s := range cfg.ForwardAuth.TrustedProxies {
		s = strings.TrimSpace(s)
		if pf, err := netip.ParsePrefix(s); err == nil {
			f.trusted = append(f.trusted, pf.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			a = a.Unmap()
			f.trusted = append(f.trusted, netip.PrefixFrom(a, a.BitLen()))
		} else {
			errs = append(errs, fmt.Errorf("forward_auth.trusted_proxies[%d]: %q is not an IP or CIDR", i, s))
		}
	}
	n := f.names
	for i, b := range [][]byte{n.User, n.Account, n.Roles, n.Method, n.KeyID, n.KeyName} {
		f.lowerNames[i] = strings.ToLower(string(b))
	}
	c := func(b []byte) []byte { return hdr.Canonical(string(b)) }
	f.canon = proxy.HeaderNames{User: c(n.User), Account: c(n.Account), Roles: c(n.Roles), Method: c(n.Method),
		KeyID: c(n.KeyID), KeyName: c(n.KeyName), RequestID: c(n.RequestID)}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_forward_auth_checks_total",
		Help: "Forward-auth checks by mode (forwarded, original, envoy_http, envoy_grpc) and result.",
	}, []string{"mode", "result"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(vec); err != nil {
			errs = append(errs, fmt.Errorf("metrics: %w", err))
		}
	}
	for m := range numModes {
		for r := range numResults {
			f.checks[m][r] = vec.WithLabelValues(modeNames[m], resultNames[r])
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("forwardauth: invalid configuration: %w", errors.Join(errs...))
	}
	return f, nil
}

func (f *Server) isTrusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, pf := range f.trusted {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

var (
	hXFMethod   = []byte("X-Forwarded-Method")
	hXFHost     = []byte("X-Forwarded-Host")
	hXFURI      = []byte("X-Forwarded-Uri")
	hXOMethod   = []byte("X-Original-Method")
	hXOURI      = []byte("X-Original-URI")
	hEnvoyRm    = []byte("X-Envoy-Auth-Headers-To-Remove")
	authzLower  = []byte("authorization")
	emptyValue  = []byte{}
	slash       = []byte("/")
	retryAfter1 = "1"
)

// Errors of the translation itself (all 403: nothing else is allowed).
var (
	errAmbiguousOriginal = &proxy.HTTPError{Status: fasthttp.StatusForbidden, Code: "ambiguous_original",
		Message: "the check names its original request more than once (X-Forwarded-Uri and X-Original-URI, or one of them twice)"}
	errNoPrefix = &proxy.HTTPError{Status: fasthttp.StatusForbidden, Code: "bad_path",
		Message: "the check path does not start with forward_auth.path_prefix"}
	errBadOriginal = &proxy.HTTPError{Status: fasthttp.StatusForbidden, Code: "bad_request",
		Message: "malformed or empty original method, host or URI"}
)

// original is the original request as the check's headers describe it:
// views of their values, valid while the headers are not changed.
type original struct {
	method, host, uri []byte
}

// The original-request headers mode counts, by index.
const (
	iFU = iota // X-Forwarded-Uri
	iFM        // X-Forwarded-Method
	iFH        // X-Forwarded-Host
	iOU        // X-Original-URI
	iOM        // X-Original-Method
	numOrig
)

var origNames = [numOrig][]byte{iFU: hXFURI, iFM: hXFMethod, iFH: hXFHost, iOU: hXOURI, iOM: hXOMethod}

// origByLen[n] is the index in origNames of the one name n bytes long, or
// -1: the five names differ in length, so one table load finds the only
// candidate a header can match (every header of every check passes here).
var origByLen = func() (t [19]int8) {
	for i := range t {
		t[i] = -1
	}
	for i, name := range origNames {
		if t[len(name)] != -1 {
			panic("forwardauth: two original-request header names of one length")
		}
		t[len(name)] = int8(i) //nolint:gosec // i < numOrig
	}
	return t
}()

// mode tells how the check describes its original request, refusing
// repeated or conflicting descriptions, and collects that description in
// o (one pass over the headers, no lookup per name afterwards). The five
// names have five lengths: a header is compared with one of them at most.
// It allocates nothing.
func mode(h *fasthttp.RequestHeader, o *original) (Mode, error) {
	var n [numOrig]int
	var v [numOrig][]byte
	for k, val := range h.All() {
		if len(k) >= len(origByLen) {
			continue
		}
		if i := origByLen[len(k)]; i >= 0 && hdr.EqualFold(k, origNames[i]) {
			n[i]++
			v[i] = val
		}
	}
	switch {
	case n[iFU] > 0:
		*o = original{method: v[iFM], host: v[iFH], uri: v[iFU]}
	case n[iOU] > 0:
		*o = original{method: v[iOM], uri: v[iOU]} // nginx: no host
	}
	switch {
	case n[iFU] > 1 || n[iFM] > 1 || n[iFH] > 1 || n[iOU] > 1 || n[iOM] > 1, n[iFU] > 0 && n[iOU] > 0:
		return ModeForwarded, errAmbiguousOriginal
	case n[iFU] > 0:
		return ModeForwarded, nil
	case n[iOU] > 0:
		return ModeOriginal, nil
	}
	return ModeEnvoyHTTP, nil
}

// rewrite puts the original method, request URI and Host into the check's
// request, which the decision then reads as if it had been sent to the
// proxy. The header values are copied by fasthttp (method, URI and Host
// are kept in their own buffers).
func (f *Server) rewrite(h *fasthttp.RequestHeader, m Mode, o *original) error {
	var method, host, uri []byte
	switch m {
	case ModeForwarded, ModeOriginal:
		method, host, uri = o.method, o.host, o.uri
	case ModeEnvoyHTTP:
		uri = h.RequestURI()
		if len(f.prefix) > 0 {
			if !bytes.HasPrefix(uri, f.prefix) {
				return errNoPrefix
			}
			uri = uri[len(f.prefix):]
			switch {
			case len(uri) == 0:
				uri = slash
			case uri[0] == '?':
				// "/check?x" is "/?x" (rare: Envoy always appends a path).
				h.SetRequestURIBytes(append([]byte{'/'}, uri...))
				return nil
			case uri[0] != '/':
				return errNoPrefix
			}
			h.SetRequestURIBytes(uri)
		}
		return nil
	default: // ModeEnvoyGRPC builds its request itself (grpc.go): nothing to rewrite here
	}
	if len(uri) == 0 {
		// Present but empty: fasthttp would read it as "/".
		return errBadOriginal
	}
	if len(method) > 0 {
		if !validToken(method) {
			return errBadOriginal
		}
		h.SetMethodBytes(method)
	}
	if len(host) > 0 {
		h.SetHostBytes(host)
	}
	h.SetRequestURIBytes(uri)
	return nil
}

func validToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`"(),/:;<=>?@[\]{}`), c) >= 0 {
			return false
		}
	}
	return len(b) > 0
}

// Handler answers one check on the HTTP listener.
func (f *Server) Handler(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	var o original
	m, err := mode(h, &o)
	if err == nil && !f.isTrusted(httpx.PeerAddr(ctx)) {
		err = proxy.ErrUntrustedPeer
	}
	if err == nil {
		err = f.rewrite(h, m, &o)
	}
	var route *proxy.Route
	var ident *authn.Identity
	if err == nil {
		route, ident, err = f.prx.Check(ctx)
	}
	if err != nil {
		f.deny(ctx, m, err)
		return
	}
	f.allow(ctx, m, route, ident)
}

// allow answers 200 with every identity header (empty when anonymous).
func (f *Server) allow(ctx *fasthttp.RequestCtx, m Mode, route *proxy.Route, id *authn.Identity) {
	r := &ctx.Response
	r.ResetBody()
	r.SetStatusCode(fasthttp.StatusOK)
	h := &r.Header
	n := &f.canon
	if id == nil {
		for _, k := range [][]byte{n.User, n.Account, n.Roles, n.Method, n.KeyID, n.KeyName} {
			h.SetCanonical(k, emptyValue)
		}
	} else {
		h.SetCanonical(n.User, hdr.BytesView(id.Username))
		h.SetCanonical(n.Account, hdr.BytesView(id.Account))
		h.SetCanonical(n.Roles, hdr.BytesView(id.RolesHeader))
		h.SetCanonical(n.Method, hdr.BytesView(id.Method.String()))
		if id.Method == authn.MethodAPIKey {
			h.SetCanonical(n.KeyID, hdr.BytesView(id.KeyID))
			h.SetCanonical(n.KeyName, hdr.BytesView(id.KeyName))
		} else {
			h.SetCanonical(n.KeyID, emptyValue)
			h.SetCanonical(n.KeyName, emptyValue)
		}
	}
	f.prx.SetCheckKeyHeaders(h, route, id, ctx.Time())
	if m == ModeEnvoyHTTP && !route.ForwardAuthorization {
		// Envoy's HTTP ext_authz removes the headers named here from the
		// request it forwards.
		h.SetCanonical(hEnvoyRm, authzLower)
	}
	f.checks[m][resAllowed].Inc()
}

// deny answers a refusal: 401, 403, 429 or 503 (with Retry-After), JSON.
func (f *Server) deny(ctx *fasthttp.RequestCtx, m Mode, err error) {
	he, retry := proxy.CheckError(err)
	h := &ctx.Response.Header
	if he.Status != fasthttp.StatusUnauthorized {
		h.Del(fasthttp.HeaderWWWAuthenticate)
	}
	if retry {
		if len(h.Peek(fasthttp.HeaderRetryAfter)) == 0 {
			h.Set(fasthttp.HeaderRetryAfter, retryAfter1)
		}
	} else {
		h.Del(fasthttp.HeaderRetryAfter)
	}
	proxy.WriteError(ctx, he)
	f.checks[m][resultOf(he.Status)].Inc()
}

// Server returns the fasthttp server of the HTTP check listener, built
// once, with the limits of the public listener. Malformed requests are
// answered 403 (a front proxy must see nothing but 200/401/403/429/503).
func (f *Server) Server() *fasthttp.Server {
	if f.server != nil {
		return f.server
	}
	s := httpx.NewServer(f.cfg.Limits, f.Handler, f.log)
	s.ErrorHandler = f.errorHandler
	s.NoDefaultServerHeader = true
	s.NoDefaultDate = true
	// An allow has no body, so no Content-Type; a denial sets its own (JSON).
	s.NoDefaultContentType = true
	s.DisablePreParseMultipartForm = true
	// Checks carry no body (Envoy's with_request_body is not used).
	s.MaxRequestBodySize = 64 << 10
	f.server = s
	return s
}

var errMalformedCheck = &proxy.HTTPError{Status: fasthttp.StatusForbidden, Code: "bad_request", Message: "malformed check request"}

func (f *Server) errorHandler(ctx *fasthttp.RequestCtx, err error) {
	ctx.SetConnectionClose()
	proxy.WriteError(ctx, errMalformedCheck)
	f.checks[ModeForwarded][resForbidden].Inc()
}
