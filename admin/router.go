package admin

import (
	"net/url"
	"slices"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/httpx"
)

// Params are the path parameters of a matched route, in pattern order. The
// values are decoded copies: they stay valid after the handler returns.
type Params []Param

// Param is one path parameter: {Name} in the pattern, Value from the path.
type Param struct {
	Name, Value string
}

// Get returns the value of the named parameter, or "".
func (p Params) Get(name string) string {
	for _, kv := range p {
		if kv.Name == name {
			return kv.Value
		}
	}
	return ""
}

// HandlerFunc handles an admin request whose route matched.
type HandlerFunc func(ctx *fasthttp.RequestCtx, p Params)

// Router is a small method + path-segments router. Patterns are absolute
// paths whose segments are literals or {name} parameters, e.g.
// "/v1/accounts/{account}/users/{username}". A parameter matches exactly one
// non-empty segment. Routes are matched in registration order; literal
// segments compare exactly (case-sensitive).
//
// Paths are split on '/' in their raw (undecoded) form and each segment is then
// percent-decoded, so "%2F" inside a segment is data, not a separator. Paths
// with empty segments inside ("//"), dot segments ("." or "..", raw or
// encoded) or bad escapes never match a route (400 malformed). No route
// ends in '/' (patterns may not: OpenAPI linters refuse such paths as
// ambiguous), so a path with a trailing '/' names no endpoint: 404, as any
// unknown path, whether or not the path without it exists.
type Router struct {
	routes []route
	// Fail, when set, answers the router's own refusals (400, 404, 405)
	// instead of the JSON error body: the web UI renders its HTML error
	// page with it. Allow is already set on a 405.
	Fail func(ctx *fasthttp.RequestCtx, status int, code, message string)
}

// fail answers a refusal of the router itself.
func (r *Router) fail(ctx *fasthttp.RequestCtx, status int, code, message string) {
	if r.Fail != nil {
		r.Fail(ctx, status, code, message)
		return
	}
	httpx.Write(ctx, status, code, message)
}

type route struct {
	method string
	segs   []string // literal, or "{name}" for a parameter
	h      HandlerFunc
}

// Handle registers h for method and pattern. It panics on a malformed
// pattern (no leading '/', an empty segment, a trailing '/'): patterns are
// program constants, so that is a programming error.
func (r *Router) Handle(method, pattern string, h HandlerFunc) {
	if !strings.HasPrefix(pattern, "/") || h == nil || method == "" {
		panic("admin: bad route " + method + " " + pattern)
	}
	segs := strings.Split(pattern[1:], "/")
	for _, s := range segs {
		if s == "" && pattern != "/" {
			panic("admin: empty segment (or trailing slash) in route " + pattern)
		}
	}
	if pattern == "/" {
		segs = nil
	}
	r.routes = append(r.routes, route{method: method, segs: segs, h: h})
}

// Serve dispatches ctx: the matching route's handler, or a JSON 404, 405 (with
// Allow) or 400 for a malformed path.
func (r *Router) Serve(ctx *fasthttp.RequestCtx) {
	raw := rawPath(ctx)
	dir := len(raw) > 1 && raw[len(raw)-1] == '/'
	if dir {
		raw = raw[:len(raw)-1]
	}
	segs, ok := splitPath(raw)
	if !ok || dir && raw == "/" { // "//" is an empty segment, not a trailing slash
		r.fail(ctx, fasthttp.StatusBadRequest, "bad_request", "malformed request path")
		return
	}
	if dir {
		// Well-formed but for the trailing slash: no such endpoint.
		r.fail(ctx, fasthttp.StatusNotFound, "not_found", "no such endpoint (paths take no trailing slash)")
		return
	}
	method := string(ctx.Method())
	var allow []string
	var params Params
	for i := range r.routes {
		rt := &r.routes[i]
		p, ok := rt.match(segs, params[:0])
		if !ok {
			continue
		}
		if rt.method == method || (method == fasthttp.MethodHead && rt.method == fasthttp.MethodGet) {
			rt.h(ctx, p)
			return
		}
		params = p
		if !slices.Contains(allow, rt.method) {
			allow = append(allow, rt.method)
			if rt.method == fasthttp.MethodGet {
				allow = append(allow, fasthttp.MethodHead)
			}
		}
	}
	if len(allow) > 0 {
		slices.Sort(allow)
		ctx.Response.Header.Set(fasthttp.HeaderAllow, strings.Join(allow, ", "))
		r.fail(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed", "method "+safeMethod(method)+" is not allowed here")
		return
	}
	r.fail(ctx, fasthttp.StatusNotFound, "not_found", "no such endpoint")
}

func (rt *route) match(segs []string, p Params) (Params, bool) {
	if len(segs) != len(rt.segs) {
		return p, false
	}
	for i, s := range rt.segs {
		if len(s) > 2 && s[0] == '{' && s[len(s)-1] == '}' {
			p = append(p, Param{Name: s[1 : len(s)-1], Value: segs[i]})
			continue
		}
		if s != segs[i] {
			return p, false
		}
	}
	return p, true
}

// rawPath returns a copy of the request-target's path as received.
func rawPath(ctx *fasthttp.RequestCtx) string {
	uri := ctx.Request.Header.RequestURI()
	if i := strings.IndexAny(string(uri), "?#"); i >= 0 {
		uri = uri[:i]
	}
	return string(uri)
}

// splitPath splits a raw absolute path into decoded segments. "/" is no
// segments. It reports false for anything a route must never match.
func splitPath(raw string) ([]string, bool) {
	if raw == "" || raw[0] != '/' {
		return nil, false
	}
	if raw == "/" {
		return nil, true
	}
	parts := strings.Split(raw[1:], "/")
	for i, s := range parts {
		if s == "" {
			return nil, false
		}
		d, err := url.PathUnescape(s)
		if err != nil || d == "." || d == ".." || strings.ContainsAny(d, "\x00") {
			return nil, false
		}
		parts[i] = d
	}
	return parts, true
}

// canonicalPath is the one spelling of a raw request path that the router
// acts on: each segment percent-decoded as the router decodes it, then
// escaped again the one way url.PathEscape does ("svc%2Dbot" and "svc-bot"
// are both "svc-bot"; a '/' inside a segment stays "%2F", so segments are
// not merged). A trailing '/' is kept. It reports false for a path the
// router refuses.
func canonicalPath(raw string) (string, bool) {
	dir := len(raw) > 1 && raw[len(raw)-1] == '/'
	if dir {
		raw = raw[:len(raw)-1]
	}
	segs, ok := splitPath(raw)
	if !ok {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(raw) + 8)
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	if len(segs) == 0 || dir {
		b.WriteByte('/')
	}
	return b.String(), true
}

// safeMethod keeps an echoed method printable and short.
func safeMethod(m string) string {
	if len(m) > 16 {
		m = m[:16]
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return "this method"
		}
	}
	return m
}
