package proxy

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/internal/reqtarget"
	"github.com/keygate/keygate/ratelimit"
)

// Upstream client defaults; every timeout is explicit.
const (
	defaultRouteTimeout    = 30 * time.Second
	upstreamDialTimeout    = 3 * time.Second
	upstreamWriteTimeout   = 30 * time.Second
	upstreamIdleConn       = 4 * time.Second // below common upstream keep-alive timeouts (Node: 5 s)
	upstreamConnWait       = 2 * time.Second
	upstreamMaxConns       = 1024
	upstreamReadBufferSize = 16 << 10
)

// Route is a compiled route: everything the request path needs, built once by
// New. Routes are read-only after New; an Authenticator may read them.
type Route struct {
	Name string
	// Host is the canonical host name (reqtarget.AppendHost, no port), or
	// "*." and one for a wildcard (one label, reqtarget.MatchHost); ""
	// matches any host.
	Host                 string
	PathPrefix           string // no trailing '/', except "/"
	CaseInsensitive      bool   // PathPrefix and StripPrefix match ignoring case
	Auth                 string // configs.AuthRequired | AuthOptional | AuthNone
	Roles                []string
	Methods              []string // upper case; empty: all
	Timeout              time.Duration
	StripPrefix          string // no trailing '/'; "" keeps the path
	ForwardAuthorization bool
	Upstreams            []string
	// UpstreamCredential names the credential sent upstream instead of
	// the client's Authorization ("" : none).
	UpstreamCredential string

	allow       string // Allow header value for 405
	defaultHost []byte // Host sent upstream when the client sent none (HTTP/1.0)
	scheme      []byte // "http" | "https"
	lb          *fasthttp.LBClient
	single      *fasthttp.HostClient // the one upstream's pool (nil with several): called without the balancer
	clients     []*fasthttp.HostClient
	m           *routeMetrics
	meta        []metaHeader     // forward_key_metadata
	rateLimit   *ratelimit.Route // routes[].rate_limit; nil: none
}

// compileRoute validates and compiles one configured route. Errors name the
// route and the field, never a secret.
func compileRoute(i int, rc *configs.Route) (*Route, error) {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("routes[%d] (%s): "+format, append([]any{i, rc.Name}, a...)...))
	}
	r := &Route{
		Name:                 rc.Name,
		Auth:                 rc.Auth,
		CaseInsensitive:      rc.CaseInsensitive,
		Roles:                slices.Clone(rc.Roles),
		Timeout:              rc.Timeout.D(),
		ForwardAuthorization: rc.ForwardAuthorization,
		Upstreams:            slices.Clone(rc.Upstreams),
		meta:                 metaHeaders(rc.ForwardKeyMetadata),
		UpstreamCredential:   rc.UpstreamCredential,
	}
	if r.Auth == "" {
		r.Auth = configs.AuthRequired
	}
	switch r.Auth {
	case configs.AuthRequired, configs.AuthOptional, configs.AuthNone:
	default:
		bad("auth must be required, optional or none, got %q", rc.Auth)
	}
	if r.Timeout <= 0 {
		r.Timeout = defaultRouteTimeout
	}
	if h, err := routeHost(rc.Host); err != nil {
		bad("host %q: %v", rc.Host, err)
	} else {
		r.Host = h
	}
	var err error
	if r.PathPrefix, err = cleanPrefix(rc.PathPrefix, "/"); err != nil {
		bad("path_prefix: %v", err)
	}
	if r.StripPrefix, err = cleanPrefix(rc.StripPrefix, ""); err != nil {
		bad("strip_prefix: %v", err)
	}
	if r.StripPrefix == "/" {
		r.StripPrefix = ""
	}
	for _, m := range rc.Methods {
		m = strings.ToUpper(strings.TrimSpace(m))
		if m == "" || strings.ContainsFunc(m, func(c rune) bool { return c < 'A' || c > 'Z' }) {
			bad("invalid method %q", m)
			continue
		}
		if !slices.Contains(r.Methods, m) {
			r.Methods = append(r.Methods, m)
		}
	}
	r.allow = strings.Join(r.Methods, ", ")
	if len(rc.Upstreams) == 0 {
		bad("no upstreams")
	}
	for _, u := range rc.Upstreams {
		hc, scheme, err := newHostClient(u, r.Timeout)
		if err != nil {
			bad("upstream %q: %v", configs.RedactURL(u), err)
			continue
		}
		if r.scheme != nil && string(r.scheme) != scheme {
			bad("upstreams mix http and https")
			continue
		}
		r.scheme = []byte(scheme)
		if r.defaultHost == nil {
			r.defaultHost = []byte(hc.Addr)
		}
		r.clients = append(r.clients, hc)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	lb := &fasthttp.LBClient{Timeout: r.Timeout}
	for _, hc := range r.clients {
		lb.Clients = append(lb.Clients, hc)
	}
	r.lb = lb
	if len(r.clients) == 1 {
		r.single = r.clients[0]
	}
	return r, nil
}

// cleanPrefix checks a configured prefix and drops a trailing '/'.
func cleanPrefix(p, def string) (string, error) {
	if p == "" {
		return def, nil
	}
	if !validPrefix(p) {
		return "", fmt.Errorf("%q must be a plain absolute path", p)
	}
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	return p, nil
}

// newHostClient builds the pool for one upstream base URL.
func newHostClient(raw string, timeout time.Duration) (*fasthttp.HostClient, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, "", errors.New("scheme must be http or https")
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, "", errors.New("must be scheme://host[:port] with no path, query or credentials")
	}
	hc := httpx.NewHostClient(u, httpx.HostClientConfig{
		DialTimeout:         upstreamDialTimeout,
		ReadTimeout:         timeout,
		WriteTimeout:        upstreamWriteTimeout,
		MaxIdleConnDuration: upstreamIdleConn,
		MaxConnWaitTimeout:  upstreamConnWait,
		MaxConns:            upstreamMaxConns,
		ReadBufferSize:      upstreamReadBufferSize,
		// Responses are streamed to the client, never held whole (issue
		// 13 item 2); the upstream connection is released when the stream
		// ends.
		StreamResponseBody: true,
		// ... except small ones, read whole (no stream to allocate; the
		// connection is pooled at once). max_response is checked on both.
		SmallResponse: smallResponse,
		// A stale keep-alive connection is retried once, and only for
		// requests that are safe to repeat. Never for POST, PATCH, ...
		Retryable: func(req *fasthttp.Request) bool { return safeMethod(req.Header.Method()) },
	})
	return hc, u.Scheme, nil
}

func safeMethod(m []byte) bool {
	switch string(m) {
	case fasthttp.MethodGet, fasthttp.MethodHead, fasthttp.MethodOptions:
		return true
	}
	return false
}

// allowsMethod reports whether the route accepts method m.
func (r *Route) allowsMethod(m []byte) bool {
	if len(r.Methods) == 0 {
		return true
	}
	for _, x := range r.Methods {
		if x == string(m) {
			return true
		}
	}
	return false
}

// routeHost canonicalises a configured route host: "" stays "", a name or
// IP literal becomes its canonical name (the port, if any, is dropped: it
// takes no part in matching), "*." keeps its wildcard.
func routeHost(h string) (string, error) {
	if h == "" {
		return "", nil
	}
	wild := strings.HasPrefix(h, "*.")
	name := strings.TrimPrefix(h, "*.")
	out, n, err := reqtarget.AppendHost(nil, []byte(name))
	if err != nil {
		return "", err
	}
	if len(out) == 0 {
		return "", errors.New("empty host")
	}
	if wild {
		if out[0] == '[' {
			return "", errors.New("a wildcard needs a host name")
		}
		return "*." + string(out[:n]), nil
	}
	return string(out[:n]), nil
}

// matchPath reports whether the raw path falls under the route's prefix
// (ignoring case on case_insensitive routes).
func (r *Route) matchPath(path []byte) bool {
	if r.CaseInsensitive {
		_, ok := foldSegmentPrefix(path, r.PathPrefix)
		return ok
	}
	return hasSegmentPrefix(path, r.PathPrefix)
}

// forwardPath is the raw path sent upstream: path minus strip_prefix (read
// ignoring case on case_insensitive routes), "/" when nothing is left. It
// aliases path or slashPath.
func (r *Route) forwardPath(path []byte) []byte {
	fwd := path
	if r.StripPrefix != "" {
		if r.CaseInsensitive {
			if n, ok := foldSegmentPrefix(path, r.StripPrefix); ok {
				fwd = path[n:]
			}
		} else if hasSegmentPrefix(path, r.StripPrefix) {
			fwd = path[len(r.StripPrefix):]
		}
	}
	if len(fwd) == 0 {
		return slashPath
	}
	return fwd
}

// router holds the routes in match order.
type router struct {
	exact []*Route // routes with a Host name, longest prefix first
	wild  []*Route // routes with a "*." Host, longest prefix first
	any   []*Route // routes without a Host, longest prefix first
	// windows is set when a route is case_insensitive: the upstreams
	// include IIS-like servers, so 8.3 short names are refused.
	windows bool
}

func newRouter(routes []*Route) *router {
	rt := &router{}
	for _, r := range routes {
		rt.windows = rt.windows || r.CaseInsensitive
		switch {
		case r.Host == "":
			rt.any = append(rt.any, r)
		case strings.HasPrefix(r.Host, "*."):
			rt.wild = append(rt.wild, r)
		default:
			rt.exact = append(rt.exact, r)
		}
	}
	byLen := func(a, b *Route) int { return len(b.PathPrefix) - len(a.PathPrefix) }
	slices.SortStableFunc(rt.exact, byLen)
	slices.SortStableFunc(rt.wild, byLen)
	slices.SortStableFunc(rt.any, byLen)
	return rt
}

// match returns the route for the canonical host name (reqtarget.AppendHost,
// without port; empty when the request had no Host) and the raw path, or
// nil. Host specificity decides first: routes naming the host exactly, then
// wildcard routes matching it, then routes without a host; within each
// group the longest prefix wins.
func (rt *router) match(host, path []byte) *Route {
	if len(host) > 0 {
		for _, r := range rt.exact {
			if string(host) == r.Host && r.matchPath(path) {
				return r
			}
		}
		for _, r := range rt.wild {
			if reqtarget.MatchHost(host, r.Host) && r.matchPath(path) {
				return r
			}
		}
	}
	for _, r := range rt.any {
		if r.matchPath(path) {
			return r
		}
	}
	return nil
}

// routeMetrics are one route's metric children, built at start-up.
type routeMetrics struct {
	vec      *prometheus.CounterVec
	name     string
	codes    [600]atomic.Pointer[prometheus.Counter]
	duration prometheus.Observer
	upstream prometheus.Observer
}

var commonCodes = []int{200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 405, 408, 413, 431, 500, 502, 503, 504}

func newRouteMetrics(name string, reqs *prometheus.CounterVec, dur, up *prometheus.HistogramVec) *routeMetrics {
	m := &routeMetrics{vec: reqs, name: name}
	m.duration = dur.WithLabelValues(name)
	m.upstream = up.WithLabelValues(name)
	for _, c := range commonCodes {
		m.counter(c)
	}
	return m
}

// counter returns the child for code, creating it once.
func (m *routeMetrics) counter(code int) prometheus.Counter {
	if code < 100 || code >= len(m.codes) {
		code = 500
	}
	if c := m.codes[code].Load(); c != nil {
		return *c
	}
	c := m.vec.WithLabelValues(m.name, fmt.Sprint(code))
	m.codes[code].CompareAndSwap(nil, &c)
	return c
}
