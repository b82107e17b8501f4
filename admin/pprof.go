package admin

// Go runtime profiles on the admin listener (admin.pprof, off by default):
// the endpoints of net/http/pprof under /debug/pprof (the index) and
// /debug/pprof/<profile>, so that operators and
// the load-test tool can take CPU, heap, goroutine… profiles and execution
// traces of a running gateway.
//
// They are opt-in and for global admins only: a profile shows the program's
// internals (function names, goroutine stacks with their arguments'
// addresses, allocation sites) and a CPU profile or trace costs CPU while it
// runs. Callers authenticate through the API's chain (wrap, access class
// read): anonymous is 401 with the API's challenges, an API-key caller 403,
// and the caller's current store record must be a global admin (403
// otherwise), so a demotion takes effect on the next request.

import (
	"io"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// MaxPprofSeconds caps the seconds parameter of the CPU profile, the
// execution trace and the delta profiles (heap?seconds=N…): the request
// holds a connection, and a CPU profile or trace costs CPU, that long.
const MaxPprofSeconds = 60

// pprofProfiles are the runtime/pprof profiles served by name under
// /debug/pprof/ (besides the index, cmdline, profile, symbol and trace).
// block and mutex stay empty: keygate does not turn on their sampling, which
// costs on every contended lock.
var pprofProfiles = []string{"allocs", "block", "goroutine", "heap", "mutex", "threadcreate"}

// oneAtATime is a profile the runtime takes one of at a time, process-wide
// (a CPU profile, an execution trace): a second caller gets 409 at once
// instead of net/http/pprof's 500.
type oneAtATime struct {
	sync.Mutex
	what string
}

var (
	cpuProfiling = &oneAtATime{what: "CPU profile"}
	tracing      = &oneAtATime{what: "execution trace"}
)

// pprofRoute is one GET /debug/pprof/… endpoint.
type pprofRoute struct {
	pattern string
	h       http.Handler
	seconds bool        // takes ?seconds= (capped at MaxPprofSeconds)
	busy    *oneAtATime // nil: no limit
}

func pprofRoutes() []pprofRoute {
	const p = "/debug/pprof/"
	rs := []pprofRoute{
		// The index is /debug/pprof: no admin path ends in '/' (see
		// Router).
		{pattern: "/debug/pprof", h: http.HandlerFunc(pprofIndex)},
		// cmdline shows os.Args. That holds no secret: `keygate serve`
		// takes only --config and --demo as flags; secrets come from files
		// or KEYGATE_* variables, never from the command line.
		{pattern: p + "cmdline", h: http.HandlerFunc(pprof.Cmdline)},
		{pattern: p + "profile", h: http.HandlerFunc(pprof.Profile), seconds: true, busy: cpuProfiling},
		{pattern: p + "symbol", h: http.HandlerFunc(pprof.Symbol)},
		{pattern: p + "trace", h: http.HandlerFunc(pprof.Trace), seconds: true, busy: tracing},
	}
	for _, name := range pprofProfiles {
		rs = append(rs, pprofRoute{pattern: p + name, h: pprof.Handler(name), seconds: true})
	}
	return rs
}

// pprofIndex is net/http/pprof's index served at /debug/pprof. Its links
// are relative to /debug/pprof/ (href='heap?debug=1'), so the page gets a
// <base> naming that directory, and the handler is shown the path it
// expects.
func pprofIndex(w http.ResponseWriter, r *http.Request) {
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath = "/debug/pprof/", ""
	rec := &pprofIndexWriter{ResponseWriter: w}
	pprof.Index(rec, r2)
}

// pprofIndexWriter inserts <base href="/debug/pprof/"> after the index's
// <head>.
type pprofIndexWriter struct {
	http.ResponseWriter
	done bool
}

func (w *pprofIndexWriter) Write(b []byte) (int, error) {
	if !w.done {
		if i := strings.Index(string(b), "<head>"); i >= 0 {
			w.done = true
			n1, err := w.ResponseWriter.Write(b[:i+len("<head>")])
			if err != nil {
				return n1, err
			}
			if _, err := io.WriteString(w.ResponseWriter, `<base href="/debug/pprof/">`); err != nil {
				return n1, err
			}
			n2, err := w.ResponseWriter.Write(b[i+len("<head>"):])
			return n1 + n2, err
		}
	}
	return w.ResponseWriter.Write(b)
}

var (
	errPprofForbidden = errorf(fasthttp.StatusForbidden, "forbidden", "only a global admin may read runtime profiles")
	errPprofSeconds   = errorf(fasthttp.StatusBadRequest, "bad_request",
		"seconds must be given once, as a whole number from 1 to %d", MaxPprofSeconds)
	errPprofURI = errorf(fasthttp.StatusBadRequest, "bad_request", "malformed request URI")
)

// registerPprof adds the /debug/pprof routes to r.
func (a *api) registerPprof(r Registrar) {
	for _, pr := range pprofRoutes() {
		r.Handle(fasthttp.MethodGet, pr.pattern, a.wrap(read, "", pprofHandler(pr)))
	}
}

// pprofHandler serves pr to a global admin.
func pprofHandler(pr pprofRoute) apiHandler {
	h := fasthttpadaptor.NewFastHTTPHandler(pr.h)
	return func(r *request) error {
		if !r.isGlobalAdmin() {
			return errPprofForbidden
		}
		if err := checkPprofQuery(r.ctx, pr.seconds); err != nil {
			return err
		}
		if pr.busy != nil {
			if !pr.busy.TryLock() {
				return errorf(fasthttp.StatusConflict, "conflict",
					"another %s is being taken (the runtime takes one at a time); retry when it ends", pr.busy.what)
			}
			defer pr.busy.Unlock()
		}
		// The handler runs until it is done (a CPU profile: seconds, default
		// 30) or the server shuts down (the RequestCtx is its context).
		h(r.ctx)
		return pprofResult(r.ctx)
	}
}

// checkPprofQuery checks the request URI and, when seconds is set, the
// seconds parameter. The URI is parsed exactly as fasthttpadaptor and
// net/http/pprof will parse it (url.ParseRequestURI, then the query), so
// the value checked is the value used: fasthttp's own query parser differs
// (it ends the query at '#', net/url does not), and a seconds it did not
// see would run unchecked. A URI net/url refuses would be the adaptor's 500.
func checkPprofQuery(ctx *fasthttp.RequestCtx, seconds bool) error {
	u, err := url.ParseRequestURI(string(ctx.Request.Header.RequestURI()))
	if err != nil {
		return errPprofURI
	}
	if !seconds {
		return nil
	}
	vs, ok := u.Query()["seconds"]
	if !ok {
		return nil
	}
	if len(vs) == 1 {
		if n, err := strconv.Atoi(vs[0]); err == nil && n >= 1 && n <= MaxPprofSeconds {
			return nil
		}
	}
	return errPprofSeconds
}

// pprofResult tidies what net/http/pprof wrote: its X-Content-Type-Options
// joins the one Server.Handler set (one is kept), and its own errors
// (text/plain, marked X-Go-Pprof: seconds together with debug, a profile
// started by someone else, shutdown) become the admin API's JSON error. Its
// 5xx are all transient, so 503.
func pprofResult(ctx *fasthttp.RequestCtx) error {
	h := &ctx.Response.Header
	h.Del("X-Content-Type-Options")
	h.Set("X-Content-Type-Options", "nosniff")
	if len(h.Peek("X-Go-Pprof")) == 0 {
		return nil
	}
	h.Del("X-Go-Pprof")
	status, code := ctx.Response.StatusCode(), "bad_request"
	switch {
	case status == fasthttp.StatusNotFound:
		code = "not_found"
	case status != fasthttp.StatusBadRequest:
		status, code = fasthttp.StatusServiceUnavailable, "unavailable"
	}
	return errorf(status, code, "%s", clip(strings.TrimSpace(string(ctx.Response.Body())), 200))
}
