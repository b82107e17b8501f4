package ui

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/store"
)

const (
	get  = fasthttp.MethodGet
	post = fasthttp.MethodPost
)

func (u *UI) routes() {
	u.router.Handle(get, Prefix+"/static/{file}", func(ctx *fasthttp.RequestCtx, _ admin.Params) { u.static(ctx) })
	u.handle(get, "/login", public, u.loginPage)
	u.handle(post, "/login", public, u.login)
	u.handle(post, "/logout", signed, u.logout)

	// The caller's own keys and password.
	u.handle(get, "/keys", signed, u.keysPage(self))
	u.handle(get, "/keys/new", signed, u.newKeyPage(self))
	u.handle(post, "/keys/new", signed, u.createKey(self))
	u.handle(get, "/keys/created", signed, u.createdPage)
	u.handle(get, "/keys/{id}/revoke", signed, u.revokePage(self))
	u.handle(post, "/keys/{id}/revoke", signed, u.revoke(self))
	u.handle(get, "/keys/{id}/edit", signed, u.editKeyPage(self))
	u.handle(post, "/keys/{id}/edit", signed, u.editKey(self))
	u.handle(get, "/keys/{id}/rotate", signed, u.rotatePage(self))
	u.handle(post, "/keys/{id}/rotate", signed, u.rotate(self))
	u.handle(get, "/password", signed, u.passwordPage)
	u.handle(post, "/password", signed, u.changePassword)

	// Admins: accounts → users → a user's keys; bulk revocation.
	u.handle(get, "/accounts", signed, u.accountsPage)
	u.handle(post, "/accounts", signed, u.createAccount)
	u.handle(post, "/accounts/{account}/state", signed, u.accountState)
	u.handle(post, "/accounts/{account}/limits", signed, u.accountLimits)
	u.handle(get, "/accounts/{account}", signed, u.usersPage)
	u.handle(post, "/accounts/{account}/users", signed, u.createUser)
	u.handle(get, "/accounts/{account}/users/{username}", signed, u.keysPage(other))
	u.handle(post, "/accounts/{account}/users/{username}", signed, u.updateUser)
	u.handle(get, "/accounts/{account}/users/{username}/keys/new", signed, u.newKeyPage(other))
	u.handle(post, "/accounts/{account}/users/{username}/keys/new", signed, u.createKey(other))
	u.handle(get, "/accounts/{account}/users/{username}/keys/{id}/revoke", signed, u.revokePage(other))
	u.handle(post, "/accounts/{account}/users/{username}/keys/{id}/revoke", signed, u.revoke(other))
	u.handle(get, "/accounts/{account}/users/{username}/keys/{id}/edit", signed, u.editKeyPage(other))
	u.handle(post, "/accounts/{account}/users/{username}/keys/{id}/edit", signed, u.editKey(other))
	u.handle(get, "/accounts/{account}/users/{username}/keys/{id}/rotate", signed, u.rotatePage(other))
	u.handle(post, "/accounts/{account}/users/{username}/keys/{id}/rotate", signed, u.rotate(other))
	u.handle(get, "/bulk-revoke", signed, u.bulkPage)
	u.handle(post, "/bulk-revoke", signed, u.bulkRevoke)
	u.upstreamRoutes()
}

// Login and logout.

type loginData struct {
	Token, Username string
}

func (u *UI) loginPage(r *req) {
	if u.loadSession(r) {
		r.ctx.Redirect(Prefix+"/keys", fasthttp.StatusSeeOther)
		return
	}
	u.renderLogin(r, fasthttp.StatusOK, "", "")
}

func (u *UI) renderLogin(r *req, status int, username, msg string) {
	nonce := randomID()
	u.setCookie(r.ctx, loginCookie, nonce, 15*time.Minute)
	u.render(r, status, "login", &view{Title: "Log in", Error: msg, Data: loginData{Token: u.keys.loginToken(nonce), Username: username}})
}

// errLogin is every refused password, a service account's too (it has no
// password; telling it apart would tell which names are service accounts).
var errLogin = "Wrong username or password. Service accounts cannot log in: they authenticate with their API keys."

// login checks the password through the authentication chain, as Basic:
// the same failure limits (429), fake hash for unknown users, audit of
// failures. API keys cannot log in (the "_api_key" Basic form is refused
// before any check, and only a password identity is accepted).
func (u *UI) login(r *req) {
	args := r.ctx.PostArgs()
	if !u.keys.checkLogin(string(r.ctx.Request.Header.Cookie(loginCookie)), string(args.Peek("token"))) {
		u.renderLogin(r, fasthttp.StatusForbidden, "", "The login form expired: try again.")
		return
	}
	username, pw := string(args.Peek("username")), args.Peek("password")
	if username == "" || len(pw) == 0 || strings.ContainsAny(username, ":\x00") || username == "_api_key" || len(username) > 256 || len(pw) > 1024 {
		u.renderLogin(r, fasthttp.StatusUnauthorized, username, errLogin)
		return
	}
	hdr := make([]byte, 0, 6+base64.StdEncoding.EncodedLen(len(username)+1+len(pw)))
	hdr = append(hdr, "Basic "...)
	cred := append(append([]byte(username), ':'), pw...)
	hdr = base64.StdEncoding.AppendEncode(hdr, cred)
	clear(cred)
	id, err := u.auth.Authenticate(r.c, hdr, peer(r.ctx))
	clear(hdr)
	if err == nil && (id == nil || id.Method != authn.MethodBasic) {
		err = authn.ErrInvalidCredentials
	}
	if err != nil {
		status, _, _ := authn.Status(err)
		msg := errLogin
		switch status {
		case fasthttp.StatusTooManyRequests:
			httpx.SetRetryAfter(&r.ctx.Response.Header, max(time.Second, authn.RetryAfter(err)))
			msg = "Too many failed attempts: wait a minute and try again."
		case fasthttp.StatusServiceUnavailable, fasthttp.StatusInternalServerError:
			msg = "Login is temporarily unavailable: try again shortly."
		case fasthttp.StatusForbidden:
			msg = "This user or account is disabled."
		default:
			status = fasthttp.StatusUnauthorized
		}
		u.renderLogin(r, status, username, msg)
		return
	}
	usr, gerr := u.st.GetUser(r.c, id.Username)
	if gerr != nil || usr.State != store.StateEnabled {
		u.renderLogin(r, fasthttp.StatusUnauthorized, username, errLogin)
		return
	}
	now := u.now().Unix()
	s := &session{V: 1, User: usr.Username, Gen: usr.Generation, Start: now, Seen: now, SID: randomID()}
	u.clearCookie(r.ctx, loginCookie)
	u.setCookie(r.ctx, sessionCookie, u.keys.encodeSession(s), 0)
	r.ctx.Redirect(Prefix+"/keys", fasthttp.StatusSeeOther)
}

// logout ends the session in the store (every instance refuses it from the
// next request, a copy of the cookie too) until its absolute expiry, and
// clears the cookie.
func (u *UI) logout(r *req) {
	u.clearCookie(r.ctx, sessionCookie)
	until := time.Unix(r.sess.Start, 0).Add(u.maxAge + time.Minute)
	if err := u.ended.EndSession(r.c, r.sess.SID, until); err != nil {
		u.log.Warn("ui: cannot record the end of a session", zap.Error(err))
		u.fail(r, fasthttp.StatusServiceUnavailable,
			"The cookie of this browser is cleared, but the session could not be ended on the server: log in and out again, or change your password to end every session.")
		return
	}
	r.ctx.Redirect(Prefix+"/login", fasthttp.StatusSeeOther)
}

// Keys: one set of handlers for the caller's own keys (/keys…) and a
// user's keys under an account (/accounts/{account}/users/{username}…).

type owner int

const (
	self owner = iota
	other
)

// keyOwner is whose keys a page is about.
type keyOwner struct {
	Self              bool
	Account, Username string
	// Base is the owner's page path (keys list); KeysBase the prefix of
	// its key pages (…/new, …/{id}/revoke).
	Base, KeysBase string
	// User is the owner's record as the API shows it (other only).
	User *adminapi.User
}

func (u *UI) ownerOf(r *req, o owner) (keyOwner, *httpx.Error) {
	if o == self {
		return keyOwner{Self: true, Account: r.user().Account, Username: r.user().Username, Base: Prefix + "/keys", KeysBase: Prefix + "/keys"}, nil
	}
	acc, name := r.p.Get("account"), r.p.Get("username")
	usr, e := u.api.GetUser(r.c, r.caller, acc, name)
	if e != nil {
		return keyOwner{}, e
	}
	base := Prefix + "/accounts/" + url.PathEscape(acc) + "/users/" + url.PathEscape(name)
	return keyOwner{Account: acc, Username: name, User: &usr, Base: base, KeysBase: base + "/keys"}, nil
}

type keysData struct {
	Owner      keyOwner
	ActiveOnly bool
	Keys       []adminapi.Key
	// Expiring: the ids of active keys that expire within
	// api_keys.expiry_warning (flagged in the list).
	Expiring map[string]bool
	// Limits: the user form's rate limit and quota fields (other only).
	Limits limitsData
	Types  []store.UserType
	States []store.State
	Errors map[string]string
	Form   map[string]string
}

func (u *UI) keysPage(o owner) handler {
	return func(r *req) {
		u.renderKeys(r, o, fasthttp.StatusOK, nil, nil)
	}
}

// renderKeys renders a key list; for another user, with the user's form
// (errs and form: a refused update).
func (u *UI) renderKeys(r *req, o owner, status int, errs, form map[string]string) {
	own, e := u.ownerOf(r, o)
	if e != nil {
		u.failAPI(r, e)
		return
	}
	q := r.ctx.QueryArgs()
	// The toggle "Show only active API keys": on unless the form was sent
	// (f=1) without it.
	activeOnly := !(string(q.Peek("f")) == "1" && len(q.Peek("active")) == 0)
	kq := admin.KeyQuery{Status: string(store.StatusAll), Limit: store.MaxPageLimit}
	if activeOnly {
		kq.Status = string(store.KeyActive)
	}
	var page adminapi.KeyPage
	if o == self {
		page, e = u.api.ListOwnKeys(r.c, r.caller, kq)
	} else {
		page, e = u.api.ListUserKeys(r.c, r.caller, own.Account, own.Username, kq)
	}
	if e != nil {
		u.failAPI(r, e)
		return
	}
	types := []store.UserType{store.TypeUser, store.TypeAccountAdmin, store.TypeAdmin}
	var limits limitsData
	title, nav := "API Keys", "keys"
	if o == other {
		if own.User.Type == store.TypeService { // a service account stays one
			types = []store.UserType{store.TypeService}
		}
		title, nav = "User "+own.Username, "accounts"
		if form == nil && own.User != nil {
			form = map[string]string{"type": string(own.User.Type), "roles": strings.Join(own.User.Roles, ", "), "state": string(own.User.State)}
			putLimitsForm(form, own.User.Limits)
		}
		limits = u.limitsData(form, errs, own.User.Quota)
	}
	u.render(r, status, "keys", &view{Title: title, Nav: nav, Notice: u.notice(r), Data: keysData{
		Owner: own, ActiveOnly: activeOnly, Keys: page.APIKeys, Errors: errs, Form: form,
		Expiring: u.expiring(page.APIKeys), Types: types, Limits: limits,
		States: []store.State{store.StateEnabled, store.StateDisabled},
	}})
}

type newKeyData struct {
	Owner  keyOwner
	Form   map[string]string
	Errors map[string]string
	// Today and Max bound the date input (UTC).
	Today, Max string
}

func (u *UI) newKeyPage(o owner) handler {
	return func(r *req) {
		own, e := u.ownerOf(r, o)
		if e != nil {
			u.failAPI(r, e)
			return
		}
		u.renderNewKey(r, own, fasthttp.StatusOK, map[string]string{}, nil)
	}
}

func (u *UI) renderNewKey(r *req, own keyOwner, status int, form, errs map[string]string) {
	now := u.api.Now().UTC()
	d := newKeyData{Owner: own, Form: form, Errors: errs, Today: now.AddDate(0, 0, 1).Format(time.DateOnly)}
	if ml := u.api.MaxLifetime(); ml > 0 {
		d.Max = now.Add(ml).Format(time.DateOnly)
	}
	u.render(r, status, "newkey", &view{Title: "Create New API Key", Nav: navOf(own), Data: d})
}

func navOf(own keyOwner) string {
	if own.Self {
		return "keys"
	}
	return "accounts"
}

// createKey creates a key from the form: name, description, expiry date
// (the key expires at 00:00 UTC that day; empty: api_keys.max_lifetime)
// and roles (comma-separated; empty: the owner's). Errors are shown next
// to their field; a success redirects to the one-time page.
func (u *UI) createKey(o owner) handler {
	return func(r *req) {
		own, e := u.ownerOf(r, o)
		if e != nil {
			u.failAPI(r, e)
			return
		}
		args := r.ctx.PostArgs()
		form := map[string]string{
			"name": string(args.Peek("name")), "description": string(args.Peek("description")),
			"expires": string(args.Peek("expires")), "roles": string(args.Peek("roles")),
		}
		b := adminapi.CreateKey{Name: strings.TrimSpace(form["name"]), Description: form["description"]}
		if v := strings.TrimSpace(form["expires"]); v != "" {
			t, err := time.Parse(time.DateOnly, v)
			if err != nil {
				u.renderNewKey(r, own, fasthttp.StatusUnprocessableEntity, form, map[string]string{"expires": "Give a date as YYYY-MM-DD."})
				return
			}
			s := t.UTC().Format(time.RFC3339)
			b.ExpiresAt = &s
		}
		if roles := splitList(form["roles"]); roles != nil {
			b.Roles = &roles
		}
		var k adminapi.CreatedKey
		if o == self {
			k, e = u.api.CreateOwnKey(r.c, r.caller, b)
		} else {
			k, e = u.api.CreateUserKey(r.c, r.caller, own.Account, own.Username, b)
		}
		if e != nil {
			if f := keyField(e); f != "" {
				u.renderNewKey(r, own, e.Status, form, map[string]string{f: e.Message})
				return
			}
			u.failAPI(r, e)
			return
		}
		u.showOnce(r, createdData{Key: k, Back: own.Base})
	}
}

// showOnce redirects to the one-time page of a new key (POST-redirect-GET):
// the value travels once, sealed to this session, in a cookie the next
// page consumes.
func (u *UI) showOnce(r *req, d createdData) {
	raw, _ := json.Marshal(d)
	u.setCookie(r.ctx, flashCookie, u.keys.seal(raw, r.sess.SID), time.Minute)
	r.ctx.Redirect(Prefix+"/keys/created", fasthttp.StatusSeeOther)
}

// keyField is the form field an error of a key creation belongs to.
func keyField(e *httpx.Error) string {
	m := strings.ToLower(e.Message)
	if f := limitsField(e.Code, m); f != "" {
		return f
	}
	switch {
	case e.Code == "expiry_extended":
		return "expires"
	case strings.HasPrefix(m, "metadata"):
		return "metadata"
	case strings.Contains(m, "allowed_cidrs"):
		return "allowed_cidrs"
	case strings.HasPrefix(m, "grace"):
		return "grace"
	case e.Code == "unknown_role", strings.Contains(m, "role"):
		return "roles"
	case strings.Contains(m, "expir"), strings.Contains(m, "max_lifetime"):
		return "expires"
	case strings.Contains(m, "description"):
		return "description"
	case e.Code == "conflict", e.Code == "invalid" && strings.Contains(m, "name"):
		return "name"
	}
	return ""
}

type createdData struct {
	Key  adminapi.CreatedKey `json:"key"`
	Back string              `json:"back"`
	// Grace: a rotation's grace (the old key works that long).
	Grace string `json:"grace,omitempty"`
}

// createdPage shows a new key's value once: the cookie is cleared with
// this answer, so a reload or a visit through history shows nothing.
func (u *UI) createdPage(r *req) {
	v := r.ctx.Request.Header.Cookie(flashCookie)
	var d *createdData
	if len(v) > 0 {
		u.clearCookie(r.ctx, flashCookie)
		if raw, ok := u.keys.open(string(v), r.sess.SID); ok {
			d = new(createdData)
			if json.Unmarshal(raw, d) != nil {
				d = nil
			}
		}
	}
	u.render(r, fasthttp.StatusOK, "created", &view{Title: "API key created", Nav: "keys", Data: d})
}

type revokeData struct {
	Owner keyOwner
	Key   adminapi.Key
}

// onKey reads (or, with revoke, revokes) key {id} of the page's owner
// through the API; false: the error page is written.
func (u *UI) onKey(r *req, o owner, revoke bool) (keyOwner, adminapi.Key, bool) {
	var k adminapi.Key
	own, e := u.ownerOf(r, o)
	if e == nil {
		id := r.p.Get("id")
		switch {
		case o == self && revoke:
			k, e = u.api.RevokeOwnKey(r.c, r.caller, id)
		case o == self:
			k, e = u.api.GetOwnKey(r.c, r.caller, id)
		case revoke:
			k, e = u.api.RevokeUserKey(r.c, r.caller, own.Account, own.Username, id)
		default:
			k, e = u.api.GetUserKey(r.c, r.caller, own.Account, own.Username, id)
		}
	}
	if e != nil {
		u.failAPI(r, e)
		return own, k, false
	}
	return own, k, true
}

func (u *UI) revokePage(o owner) handler {
	return func(r *req) {
		if own, k, ok := u.onKey(r, o, false); ok {
			u.render(r, fasthttp.StatusOK, "revoke", &view{Title: "Revoke API key", Nav: navOf(own), Data: revokeData{Owner: own, Key: k}})
		}
	}
}

func (u *UI) revoke(o owner) handler {
	return func(r *req) {
		if own, k, ok := u.onKey(r, o, true); ok {
			u.redirect(r, own.Base, "API key "+k.Name+" revoked.")
		}
	}
}

// Password.

func (u *UI) passwordPage(r *req) {
	u.render(r, fasthttp.StatusOK, "password", &view{Title: "Change password", Nav: "password", Notice: u.notice(r)})
}

func (u *UI) changePassword(r *req) {
	args := r.ctx.PostArgs()
	cur, nw, again := string(args.Peek("current")), string(args.Peek("new")), string(args.Peek("confirm"))
	errs := map[string]string{}
	if nw != again {
		errs["confirm"] = "The two new passwords differ."
		u.render(r, fasthttp.StatusUnprocessableEntity, "password", &view{Title: "Change password", Nav: "password", Data: errs})
		return
	}
	if e := u.api.ChangePassword(r.c, r.caller, adminapi.ChangePassword{Current: &cur, New: &nw}); e != nil {
		f := "new"
		if e.Code == "invalid_current_password" {
			f = "current"
		}
		if e.Status >= 500 || e.Status == fasthttp.StatusConflict {
			u.failAPI(r, e)
			return
		}
		errs[f] = e.Message
		u.render(r, e.Status, "password", &view{Title: "Change password", Nav: "password", Data: errs})
		return
	}
	// The generation changed: this session (and every other) has ended.
	u.clearCookie(r.ctx, sessionCookie)
	r.ctx.Redirect(Prefix+"/login", fasthttp.StatusSeeOther)
}

// Accounts (global admins) and users of an account (global admins, the
// account's admins).

type accountsData struct {
	Accounts []adminapi.Account
	Form     map[string]string
	Errors   map[string]string
}

func (u *UI) accountsPage(r *req) {
	if r.user().Type == store.TypeAccountAdmin {
		r.ctx.Redirect(Prefix+"/accounts/"+url.PathEscape(r.user().Account), fasthttp.StatusSeeOther)
		return
	}
	u.renderAccounts(r, fasthttp.StatusOK, nil, nil)
}

func (u *UI) renderAccounts(r *req, status int, form, errs map[string]string) {
	list, e := u.api.ListAccounts(r.c, r.caller)
	if e != nil {
		u.failAPI(r, e)
		return
	}
	u.render(r, status, "accounts", &view{Title: "Accounts", Nav: "accounts", Notice: u.notice(r),
		Data: accountsData{Accounts: list.Accounts, Form: form, Errors: errs}})
}

func (u *UI) createAccount(r *req) {
	name := string(r.ctx.PostArgs().Peek("name"))
	acc, e := u.api.CreateAccount(r.c, r.caller, adminapi.CreateAccount{Name: strings.TrimSpace(name)})
	if e != nil {
		if e.Status == fasthttp.StatusForbidden || e.Status >= 500 {
			u.failAPI(r, e)
			return
		}
		u.renderAccounts(r, e.Status, map[string]string{"name": name}, map[string]string{"name": e.Message})
		return
	}
	u.redirect(r, Prefix+"/accounts", "Account "+acc.Name+" created.")
}

// accountLimits sets an account's rate limit and quota (shared by all its
// users' keys) from the account page's form.
func (u *UI) accountLimits(r *req) {
	account := r.p.Get("account")
	acc, e := u.api.GetAccount(r.c, r.caller, account)
	if e != nil {
		u.failAPI(r, e)
		return
	}
	args := r.ctx.PostArgs()
	form := map[string]string{}
	for _, f := range limitsFields {
		form[f] = string(args.Peek(f))
	}
	b := adminapi.UpdateAccount{}
	var bad map[string]string
	if b.SetLimits, bad = setLimits(acc.Limits, form); bad != nil {
		u.renderUsers(r, fasthttp.StatusUnprocessableEntity, nil, nil, form, bad)
		return
	}
	base := Prefix + "/accounts/" + url.PathEscape(account)
	if !b.SetLimits.Any() {
		u.redirect(r, base, "Nothing changed.")
		return
	}
	if _, e := u.api.UpdateAccount(r.c, r.caller, account, b); e != nil {
		if f := limitsField(e.Code, strings.ToLower(e.Message)); f != "" && e.Status < 500 {
			u.renderUsers(r, e.Status, nil, nil, form, map[string]string{f: e.Message})
			return
		}
		u.failAPI(r, e)
		return
	}
	u.redirect(r, base, "Limits of account "+account+" saved.")
}

func (u *UI) accountState(r *req) {
	account := r.p.Get("account")
	st := store.State(r.ctx.PostArgs().Peek("state"))
	acc, e := u.api.UpdateAccount(r.c, r.caller, account, adminapi.UpdateAccount{State: &st})
	if e != nil {
		u.failAPI(r, e)
		return
	}
	u.redirect(r, Prefix+"/accounts", "Account "+acc.Name+" is now "+string(acc.State)+".")
}

type usersData struct {
	Account adminapi.Account
	Users   []adminapi.User
	Types   []store.UserType
	Form    map[string]string
	Errors  map[string]string
	// Upstream: the account's upstream credentials page ("": none).
	Upstream string
	// Limits: the account's rate limit and quota form (global admins).
	Limits limitsData
}

func (u *UI) usersPage(r *req) { u.renderUsers(r, fasthttp.StatusOK, nil, nil, nil, nil) }

// renderUsers renders an account's page; form and errs are the user
// creation form's, lform and lerrs the account limits form's (nil: as
// they stand).
func (u *UI) renderUsers(r *req, status int, form, errs, lform, lerrs map[string]string) {
	account := r.p.Get("account")
	acc, e := u.api.GetAccount(r.c, r.caller, account)
	if e != nil {
		u.failAPI(r, e)
		return
	}
	list, e := u.api.ListUsers(r.c, r.caller, account)
	if e != nil {
		u.failAPI(r, e)
		return
	}
	if form == nil {
		form = map[string]string{"type": string(store.TypeUser)}
	}
	types := []store.UserType{store.TypeUser, store.TypeAccountAdmin, store.TypeService}
	if r.user().Type == store.TypeAdmin && account == store.AdminAccount {
		types = append(types, store.TypeAdmin)
	}
	if lform == nil {
		lform = map[string]string{}
		putLimitsForm(lform, acc.Limits)
	}
	u.render(r, status, "users", &view{Title: "Account " + acc.Name, Nav: "accounts", Notice: u.notice(r),
		Data: usersData{Account: acc, Users: list.Users, Types: types, Form: form, Errors: errs, Upstream: u.upstreamLink(acc.Name),
			Limits: u.limitsData(lform, lerrs, acc.Quota)}})
}

func (u *UI) createUser(r *req) {
	account := r.p.Get("account")
	args := r.ctx.PostArgs()
	form := map[string]string{"username": string(args.Peek("username")), "type": string(args.Peek("type")), "roles": string(args.Peek("roles"))}
	b := adminapi.CreateUser{Username: strings.TrimSpace(form["username"]), Type: store.UserType(form["type"]),
		Roles: splitList(form["roles"])}
	// A service account has no password: an empty field sends none (one
	// given is refused by the API, next to the field).
	if pw := string(args.Peek("password")); pw != "" || b.Type != store.TypeService {
		b.Password = &pw
	}
	usr, e := u.api.CreateUser(r.c, r.caller, account, b)
	if e != nil {
		if e.Status == fasthttp.StatusNotFound || e.Status >= 500 {
			u.failAPI(r, e)
			return
		}
		u.renderUsers(r, e.Status, form, map[string]string{userField(e): e.Message}, nil, nil)
		return
	}
	u.redirect(r, Prefix+"/accounts/"+url.PathEscape(account), "User "+usr.Username+" created.")
}

// userField is the form field an error of a user creation or change
// belongs to.
func userField(e *httpx.Error) string {
	m := strings.ToLower(e.Message)
	if f := limitsField(e.Code, m); f != "" {
		return f
	}
	switch {
	case e.Code == "weak_password", strings.Contains(m, "password"):
		return "password"
	case strings.Contains(m, "role"):
		return "roles"
	case strings.Contains(m, "type"), strings.Contains(m, "global admin"), e.Code == "last_admin":
		return "type"
	case strings.Contains(m, "state"):
		return "state"
	}
	return "username"
}

// updateUser applies the user form (type, roles, state): only the fields
// that differ from the record are sent, as a PATCH would.
func (u *UI) updateUser(r *req) {
	own, e := u.ownerOf(r, other)
	if e != nil {
		u.failAPI(r, e)
		return
	}
	args := r.ctx.PostArgs()
	form := map[string]string{"type": string(args.Peek("type")), "roles": string(args.Peek("roles")), "state": string(args.Peek("state"))}
	for _, f := range limitsFields {
		form[f] = string(args.Peek(f))
	}
	var b adminapi.UpdateUser
	if t := store.UserType(form["type"]); t != own.User.Type {
		b.Type = &t
	}
	if roles := splitList(form["roles"]); strings.Join(roles, ",") != strings.Join(own.User.Roles, ",") {
		if roles == nil {
			roles = []string{}
		}
		b.Roles = &roles
	}
	if s := store.State(form["state"]); s != own.User.State {
		b.State = &s
	}
	var bad map[string]string
	if b.SetLimits, bad = setLimits(own.User.Limits, form); bad != nil {
		u.renderKeys(r, other, fasthttp.StatusUnprocessableEntity, bad, form)
		return
	}
	if b.Type == nil && b.Roles == nil && b.State == nil && !b.SetLimits.Any() {
		u.redirect(r, own.Base, "Nothing changed.")
		return
	}
	if _, e := u.api.UpdateUser(r.c, r.caller, own.Account, own.Username, b); e != nil {
		if e.Status == fasthttp.StatusNotFound || e.Status >= 500 {
			u.failAPI(r, e)
			return
		}
		u.renderKeys(r, other, e.Status, map[string]string{userField(e): e.Message}, form)
		return
	}
	u.redirect(r, own.Base, "User "+own.Username+" updated.")
}

// Bulk revocation by name (global admins; account admins in their account).

type bulkData struct {
	Form   map[string]string
	Errors map[string]string
	Result *adminapi.BulkResult
	Scoped bool // an account admin: the account is theirs
}

func (u *UI) bulkPage(r *req) {
	form := map[string]string{}
	if r.user().Type == store.TypeAccountAdmin {
		form["account"] = r.user().Account
	}
	u.render(r, fasthttp.StatusOK, "bulk", &view{Title: "Revoke API keys by name", Nav: "bulk",
		Data: bulkData{Form: form, Scoped: r.user().Type == store.TypeAccountAdmin}})
}

func (u *UI) bulkRevoke(r *req) {
	args := r.ctx.PostArgs()
	form := map[string]string{"name": string(args.Peek("name")), "account": string(args.Peek("account")), "username": string(args.Peek("username"))}
	b := adminapi.BulkRevoke{Name: strings.TrimSpace(form["name"]), Account: strings.TrimSpace(form["account"]), Username: strings.TrimSpace(form["username"])}
	d := bulkData{Form: form, Scoped: r.user().Type == store.TypeAccountAdmin}
	if b.Name == "" {
		d.Errors = map[string]string{"name": "Give the name of the keys to revoke."}
		u.render(r, fasthttp.StatusUnprocessableEntity, "bulk", &view{Title: "Revoke API keys by name", Nav: "bulk", Data: d})
		return
	}
	res, e := u.api.BulkRevoke(r.c, r.caller, b)
	if e != nil {
		if e.Status == fasthttp.StatusForbidden || e.Status >= 500 {
			u.failAPI(r, e)
			return
		}
		d.Errors = map[string]string{"name": e.Message}
		if e.Status == fasthttp.StatusNotFound {
			d.Errors = map[string]string{"account": "No such account."}
		}
		u.render(r, e.Status, "bulk", &view{Title: "Revoke API keys by name", Nav: "bulk", Data: d})
		return
	}
	d.Result = &res
	u.render(r, fasthttp.StatusOK, "bulk", &view{Title: "Revoke API keys by name", Nav: "bulk", Data: d})
}

// splitList splits a comma- or space-separated list (nil when empty).
func splitList(s string) []string {
	var out []string
	for f := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' }) {
		out = append(out, f)
	}
	return out
}

// expiring returns the ids of the active keys among ks that expire within
// api_keys.expiry_warning (nil when none, or no warning is configured).
func (u *UI) expiring(ks []adminapi.Key) map[string]bool {
	if u.expiryWarning <= 0 {
		return nil
	}
	var out map[string]bool
	limit := u.api.Now().Add(u.expiryWarning)
	for _, k := range ks {
		if k.Status == store.KeyActive && k.ExpiresAt != nil && !k.ExpiresAt.After(limit) {
			if out == nil {
				out = map[string]bool{}
			}
			out[k.ID] = true
		}
	}
	return out
}

// upstreamLink is account's upstream credentials page, "" when the gateway
// has none.
func (u *UI) upstreamLink(account string) string {
	if !u.api.UpstreamCredentialsEnabled() {
		return ""
	}
	return upstreamBase(account)
}
