// Package ui is keygate's web UI (DESIGN.md §14), served by the admin
// listener under /ui/: server-rendered html/template pages, every asset
// embedded (static/), plain forms with POST-redirect-GET so that every page
// works without JavaScript (static/copy.js only adds the copy buttons),
// and a strict Content-Security-Policy (no inline script or style).
//
// The UI holds no rule of its own: every read and write goes through
// admin.API, which runs the JSON API's handlers (decide.go, error codes,
// audit lines). The UI authenticates the browser (password login through
// the same authentication chain as Basic, so the same failure limits and
// fake-hash timing apply; see session.go for the session cookie) and turns
// the API's answers into pages.
//
// Adding a page: a template in templates/ (defining "main"), a handler
// (pages.go) and a line in routes().
package ui

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/principal"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/store"
)

// Prefix is where the UI is mounted on the admin listener.
const Prefix = "/ui"

// Defaults of Options.
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxAge      = 12 * time.Hour
	// MaxFormBody caps a form post.
	MaxFormBody = 64 << 10
)

// Cookie names. The session cookie is scoped to /ui.
const (
	sessionCookie = "kg_session"
	loginCookie   = "kg_login"
	flashCookie   = "kg_once"
)

// The headers of every UI response. Cache-Control: no-store on every page
// (some show a key value; none should be kept).
const (
	csp = "default-src 'self'; frame-ancestors 'none'"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options are the UI's collaborators.
type Options struct {
	// API runs every operation (admin.NewAPI). Required.
	API *admin.API
	// Store is read on every request: the session user's current record
	// (generation, state), account state and whether the session was ended
	// by a logout (it must implement store.EndedSessions). Required.
	Store store.Store
	// Auth checks login passwords: the authentication chain, so failure
	// limits, fake-hash timing and the audit of failures are Basic's.
	// Required.
	Auth admin.Authenticator
	// Secret signs the session cookies; instances that share sessions
	// (behind one load balancer) need the same. At least 32 bytes.
	Secret []byte
	// TLS marks the cookies Secure on every response (the UI is reached
	// over HTTPS, e.g. through a TLS-terminating proxy); they are Secure
	// anyway on a request that arrived over TLS.
	TLS bool
	// IdleTimeout and MaxAge end a session after that long without a
	// request, and that long after the login (defaults above).
	IdleTimeout, MaxAge time.Duration
	// ExpiryWarning is api_keys.expiry_warning: key lists flag the active
	// keys that expire within it (0: none flagged).
	ExpiryWarning time.Duration
	// Logger receives operational errors (nil: none).
	Logger *zap.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// UI is the web UI's handler.
type UI struct {
	api    *admin.API
	st     store.Store
	ended  store.EndedSessions
	auth   admin.Authenticator
	keys   keys
	tls    bool
	idle   time.Duration
	maxAge time.Duration
	// expiryWarning: Options.ExpiryWarning.
	expiryWarning time.Duration
	log           *zap.Logger
	now           func() time.Time
	router        admin.Router
	pages         map[string]*template.Template
	static        fasthttp.RequestHandler
}

// New builds the UI.
func New(o Options) (*UI, error) {
	switch {
	case o.API == nil, o.Store == nil, o.Auth == nil:
		return nil, errors.New("ui: API, Store and Auth are required")
	case len(o.Secret) < 32:
		return nil, errors.New("ui: the session secret must be at least 32 bytes")
	}
	ended, ok := o.Store.(store.EndedSessions)
	if !ok {
		return nil, errors.New("ui: the store does not record ended sessions (store.EndedSessions): logout could not end a session")
	}
	k, err := deriveKeys(o.Secret)
	if err != nil {
		return nil, err
	}
	u := &UI{api: o.API, st: o.Store, ended: ended, auth: o.Auth, keys: k, tls: o.TLS, idle: o.IdleTimeout, maxAge: o.MaxAge,
		expiryWarning: o.ExpiryWarning, log: o.Logger, now: o.Now}
	if u.idle <= 0 {
		u.idle = DefaultIdleTimeout
	}
	if u.maxAge <= 0 {
		u.maxAge = DefaultMaxAge
	}
	if u.log == nil {
		u.log = zap.NewNop()
	}
	if u.now == nil {
		u.now = time.Now
	}
	if u.pages, err = parseTemplates(); err != nil {
		return nil, err
	}
	if u.static, err = staticHandler(); err != nil {
		return nil, err
	}
	u.routes()
	// Addresses under /ui/ that name no page get the HTML error page, not
	// the admin API's JSON body.
	u.router.Fail = func(ctx *fasthttp.RequestCtx, status int, _, _ string) {
		msg := "There is no such page."
		switch status {
		case fasthttp.StatusMethodNotAllowed:
			msg = "This page does not accept that kind of request."
		case fasthttp.StatusBadRequest:
			msg = "The address is malformed."
		}
		u.fail(&req{u: u, ctx: ctx}, status, msg)
	}
	return u, nil
}

// Handler serves every request under Prefix.
func (u *UI) Handler(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set(fasthttp.HeaderCacheControl, "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	switch string(ctx.Path()) {
	case Prefix, Prefix + "/":
		ctx.Redirect(Prefix+"/keys", fasthttp.StatusSeeOther)
		return
	}
	u.router.Serve(ctx)
}

// Mount adds the UI to the admin server under Prefix.
func (u *UI) Mount(s *admin.Server) { s.Mount(Prefix, u.Handler) }

// req is one UI request being served.
type req struct {
	u   *UI
	ctx *fasthttp.RequestCtx
	p   admin.Params
	c   context.Context
	// The session (nil on public pages) and the caller it stands for.
	sess   *session
	caller admin.Caller
}

func (r *req) user() *store.User { return r.caller.User }

type handler func(r *req)

// access classes of a route.
const (
	public = iota // no session needed (login, static)
	signed        // a session
)

func (u *UI) handle(method, pattern string, acc int, h handler) {
	u.router.Handle(method, Prefix+pattern, func(ctx *fasthttp.RequestCtx, p admin.Params) {
		c, cancel := context.WithTimeout(context.Background(), admin.APITimeout)
		defer cancel()
		r := &req{u: u, ctx: ctx, p: p, c: c}
		if method == fasthttp.MethodPost {
			if !u.sameOrigin(ctx) {
				u.fail(r, fasthttp.StatusForbidden, "This form was sent from another site and was refused.")
				return
			}
			if len(ctx.Request.Body()) > MaxFormBody {
				u.fail(r, fasthttp.StatusRequestEntityTooLarge, "The form is too large.")
				return
			}
		}
		if acc == signed {
			if !u.loadSession(r) {
				u.toLogin(r)
				return
			}
			if method == fasthttp.MethodPost && !u.keys.checkCSRF(r.sess.SID, string(ctx.PostArgs().Peek("csrf"))) {
				u.fail(r, fasthttp.StatusForbidden, "The form's security token is missing or stale: reload the page and try again.")
				return
			}
		}
		h(r)
	})
}

// sameOrigin refuses cross-site form posts: Sec-Fetch-Site (sent by every
// current browser) must be same-origin, and an Origin header naming an
// origin must be this listener's own. Together with SameSite=Strict cookies and the CSRF token
// of every form.
func (u *UI) sameOrigin(ctx *fasthttp.RequestCtx) bool {
	if s := ctx.Request.Header.Peek("Sec-Fetch-Site"); len(s) > 0 && string(s) != "same-origin" {
		return false
	}
	o := ctx.Request.Header.Peek("Origin")
	if len(o) == 0 || string(o) == "null" {
		// Browsers send "null" under Referrer-Policy: no-referrer; they
		// also send Sec-Fetch-Site, checked above.
		return true
	}
	scheme := "http://"
	if ctx.IsTLS() {
		scheme = "https://"
	}
	return string(o) == scheme+string(ctx.Host())
}

// loadSession verifies the session cookie and loads the caller: the user's
// current record must be enabled, of the same generation as at login, in
// an enabled account.
func (u *UI) loadSession(r *req) bool {
	v := r.ctx.Request.Header.Cookie(sessionCookie)
	if len(v) == 0 {
		return false
	}
	s, err := u.keys.decodeSession(string(v))
	now := u.now()
	if err != nil || s.expired(now, u.idle, u.maxAge) {
		u.clearCookie(r.ctx, sessionCookie)
		return false
	}
	// A session ended by a logout, on any instance: refused even if a copy
	// of its cookie is still around.
	if ended, err := u.ended.SessionEnded(r.c, s.SID); ended || err != nil {
		if err != nil {
			u.log.Warn("ui: cannot check whether the session was ended", zap.Error(err))
		}
		u.clearCookie(r.ctx, sessionCookie)
		return false
	}
	usr, err := u.st.GetUser(r.c, s.User)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			u.log.Warn("ui: cannot read the session's user", zap.Error(err))
		}
		u.clearCookie(r.ctx, sessionCookie)
		return false
	}
	if usr.Generation != s.Gen || usr.State != store.StateEnabled {
		u.clearCookie(r.ctx, sessionCookie)
		return false
	}
	acc, err := u.st.GetAccount(r.c, usr.Account)
	if err != nil || acc.State != store.StateEnabled {
		u.clearCookie(r.ctx, sessionCookie)
		return false
	}
	if now.Unix()-s.Seen >= 60 { // idle expiry slides, a minute at a time
		s.Seen = now.Unix()
		u.setCookie(r.ctx, sessionCookie, u.keys.encodeSession(s), 0)
	}
	r.sess = s
	r.caller = admin.Caller{Identity: principal.UserIdentity(usr, authn.MethodBasic), User: usr, IP: peer(r.ctx), Via: "ui"}
	return true
}

func peer(ctx *fasthttp.RequestCtx) netip.Addr { return httpx.PeerAddr(ctx) }

func (u *UI) toLogin(r *req) {
	if r.ctx.IsGet() {
		r.ctx.Redirect(Prefix+"/login", fasthttp.StatusSeeOther)
		return
	}
	u.fail(r, fasthttp.StatusUnauthorized, "Your session has ended: log in again.")
}

// setCookie sets an HttpOnly, SameSite=Strict cookie under Prefix (Secure
// under TLS); maxAge 0: a session cookie.
func (u *UI) setCookie(ctx *fasthttp.RequestCtx, name, value string, maxAge time.Duration) {
	c := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(c)
	c.SetKey(name)
	c.SetValue(value)
	c.SetPath(Prefix)
	c.SetHTTPOnly(true)
	c.SetSecure(u.tls || ctx.IsTLS())
	c.SetSameSite(fasthttp.CookieSameSiteStrictMode)
	if maxAge > 0 {
		c.SetMaxAge(int(maxAge / time.Second))
	}
	ctx.Response.Header.SetCookie(c)
}

func (u *UI) clearCookie(ctx *fasthttp.RequestCtx, name string) {
	c := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(c)
	c.SetKey(name)
	c.SetPath(Prefix)
	c.SetHTTPOnly(true)
	c.SetSecure(u.tls || ctx.IsTLS())
	c.SetSameSite(fasthttp.CookieSameSiteStrictMode)
	c.SetExpire(fasthttp.CookieExpireDelete)
	ctx.Response.Header.SetCookie(c)
}

// view is what every page template gets.
type view struct {
	Title  string
	Nav    string
	User   *store.User
	CSRF   string
	Notice string
	Error  string
	Data   any
	// Upstream is the caller's link to their account's upstream
	// credentials ("" when the gateway has none, and for global admins,
	// who reach every account's from its page).
	Upstream string
}

func (v *view) IsAdmin() bool { return v.User != nil && v.User.Type == store.TypeAdmin }
func (v *view) IsAccountAdmin() bool {
	return v.User != nil && v.User.Type == store.TypeAccountAdmin
}

// render writes page with status.
func (u *UI) render(r *req, status int, page string, v *view) {
	t := u.pages[page]
	if t == nil {
		panic("ui: no template " + page)
	}
	if r.sess != nil {
		v.User = r.user()
		v.CSRF = u.keys.csrfToken(r.sess.SID)
		if v.User.Type != store.TypeAdmin {
			v.Upstream = u.upstreamLink(v.User.Account)
		}
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		u.log.Error("ui: template", zap.String("page", page), zap.Error(err))
		r.ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		r.ctx.SetContentType("text/plain; charset=utf-8")
		r.ctx.SetBodyString("internal error")
		return
	}
	r.ctx.SetStatusCode(status)
	r.ctx.SetContentType("text/html; charset=utf-8")
	r.ctx.SetBody(buf.Bytes())
}

// fail renders the error page.
func (u *UI) fail(r *req, status int, msg string) {
	u.render(r, status, "error", &view{Title: fasthttp.StatusMessage(status), Error: msg})
}

// failAPI renders an API error that belongs to no form field.
func (u *UI) failAPI(r *req, e *httpx.Error) {
	if e.Status == fasthttp.StatusNotFound {
		u.fail(r, e.Status, "Not found.")
		return
	}
	u.fail(r, e.Status, e.Message)
}

// redirect answers a POST with 303 to path (POST-redirect-GET), with an
// optional notice shown once on the next page.
func (u *UI) redirect(r *req, path, notice string) {
	if notice != "" && r.sess != nil {
		u.setCookie(r.ctx, "kg_notice", u.keys.seal([]byte(notice), r.sess.SID), time.Minute)
	}
	r.ctx.Redirect(path, fasthttp.StatusSeeOther)
}

// notice returns and clears the one-time notice of the last redirect.
func (u *UI) notice(r *req) string {
	v := r.ctx.Request.Header.Cookie("kg_notice")
	if len(v) == 0 || r.sess == nil {
		return ""
	}
	u.clearCookie(r.ctx, "kg_notice")
	b, ok := u.keys.open(string(v), r.sess.SID)
	if !ok {
		return ""
	}
	return string(b)
}

var funcs = template.FuncMap{
	"date": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		case *time.Time:
			if v == nil || v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		}
		return "—"
	},
	"join":       strings.Join,
	"pathEscape": url.PathEscape,
}

// parseTemplates parses templates/layout.html with each page.
func parseTemplates() (map[string]*template.Template, error) {
	layout, err := template.New("layout").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}

// staticHandler serves static/ (embedded) under Prefix/static/.
func staticHandler() (fasthttp.RequestHandler, error) {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		files[p] = b
		return err
	})
	if err != nil {
		return nil, err
	}
	return func(ctx *fasthttp.RequestCtx) {
		name := strings.TrimPrefix(string(ctx.Path()), Prefix+"/static/")
		b, ok := files[name]
		if !ok {
			ctx.SetStatusCode(fasthttp.StatusNotFound)
			return
		}
		switch {
		case strings.HasSuffix(name, ".css"):
			ctx.SetContentType("text/css; charset=utf-8")
		case strings.HasSuffix(name, ".js"):
			ctx.SetContentType("text/javascript; charset=utf-8")
		case strings.HasSuffix(name, ".svg"):
			ctx.SetContentType("image/svg+xml")
		}
		ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "public, max-age=3600")
		ctx.SetBody(b)
	}, nil
}
