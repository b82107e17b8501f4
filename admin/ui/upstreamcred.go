package ui

// Upstream credentials of an account (issue 17, DESIGN.md §12): global
// admins and the account's admins list them (name, type, fields, whether a
// secret is set, the last validation), add, update and delete them; the
// account's users see names and types only. The secret is a password field
// that is sent once and never shown again (the API never returns it).
// Every action is the JSON route's (admin.API).

import (
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/upstreamcred"
)

func (u *UI) upstreamRoutes() {
	const base = "/accounts/{account}/upstream-credentials"
	u.handle(get, base, signed, u.upstreamPage)
	u.handle(post, base, signed, u.createUpstream)
	u.handle(get, base+"/{name}", signed, u.upstreamEditPage)
	u.handle(post, base+"/{name}", signed, u.updateUpstream)
	u.handle(get, base+"/{name}/delete", signed, u.upstreamDeletePage)
	u.handle(post, base+"/{name}/delete", signed, u.deleteUpstream)
}

// upstreamBase is the list page of account's credentials.
func upstreamBase(account string) string {
	return Prefix + "/accounts/" + url.PathEscape(account) + "/upstream-credentials"
}

type upstreamData struct {
	Account string
	Base    string
	// Manage: the caller may change them (admins); otherwise names and
	// types only are shown.
	Manage bool
	Creds  []adminapi.UpstreamCredential
	Cred   adminapi.UpstreamCredential // the edit and delete pages
	Types  []string
	Form   map[string]string
	Errors map[string]string
}

// manages reports whether the caller may change account's credentials as
// far as the page goes (the API decides).
func manages(r *req) bool { return r.user().Type != store.TypeUser }

func (u *UI) upstreamPage(r *req) { u.renderUpstream(r, fasthttp.StatusOK, nil, nil) }

func (u *UI) renderUpstream(r *req, status int, form, errs map[string]string) {
	account := r.p.Get("account")
	list, e := u.api.ListUpstreamCredentials(r.c, r.caller, account)
	if e != nil {
		u.failAPI(r, e)
		return
	}
	if form == nil {
		form = map[string]string{"type": "bearer", "validate": "1"}
	}
	u.render(r, status, "upstream", &view{Title: "Upstream credentials of " + account, Nav: "upstream", Notice: u.notice(r),
		Data: upstreamData{Account: account, Base: upstreamBase(account), Manage: manages(r), Creds: list.UpstreamCredentials,
			Types: upstreamcred.TypeNames(), Form: form, Errors: errs}})
}

// parseFields reads the fields text area: one name=value a line (blank
// lines ignored).
func parseFields(s string) (map[string]string, string) {
	out := map[string]string{}
	for i, line := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, "Line " + strconv.Itoa(i+1) + ": write name=value."
		}
		out[k] = strings.TrimSpace(v)
	}
	return out, ""
}

// fieldsText is fields as the text area shows them, sorted by name.
func fieldsText(f map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(f)) {
		b.WriteString(k + "=" + f[k] + "\n")
	}
	return b.String()
}

// upstreamField is the form field an API error of a credential belongs to.
func upstreamField(e *httpx.Error) string {
	m := strings.ToLower(e.Message)
	switch {
	case e.Code == "credential_invalid", e.Code == "no_encryption_key":
		return "secret"
	case e.Code == "conflict", strings.Contains(m, "credential name"), strings.Contains(m, "name and type"):
		return "name"
	case strings.Contains(m, "unknown type"):
		return "type"
	case strings.Contains(m, "secret"):
		return "secret"
	case e.Status == fasthttp.StatusUnprocessableEntity:
		return "fields" // a type's check of its fields
	}
	return ""
}

// upstreamFormField is the form field e is shown next to, "" when e is not
// about the form (not found, forbidden, unavailable: the error page).
func upstreamFormField(e *httpx.Error) string {
	if e.Status >= 500 || e.Status == fasthttp.StatusNotFound || e.Status == fasthttp.StatusForbidden {
		return ""
	}
	return upstreamField(e)
}

func (u *UI) createUpstream(r *req) {
	account := r.p.Get("account")
	args := r.ctx.PostArgs()
	form := map[string]string{"name": string(args.Peek("name")), "type": string(args.Peek("type")),
		"fields": string(args.Peek("fields")), "validate": string(args.Peek("validate"))}
	secret := string(args.Peek("secret")) // never put back into the form
	fields, bad := parseFields(form["fields"])
	if bad != "" {
		u.renderUpstream(r, fasthttp.StatusUnprocessableEntity, form, map[string]string{"fields": bad})
		return
	}
	b := adminapi.CreateUpstreamCredential{Name: strings.TrimSpace(form["name"]), Type: form["type"], Fields: fields, Secret: &secret}
	c, e := u.api.CreateUpstreamCredential(r.c, r.caller, account, b, form["validate"] != "")
	if e != nil {
		if f := upstreamFormField(e); f != "" {
			u.renderUpstream(r, e.Status, form, map[string]string{f: e.Message})
			return
		}
		u.failAPI(r, e)
		return
	}
	u.redirect(r, upstreamBase(account), "Upstream credential "+c.Name+" saved.")
}

// upstreamCred reads the page's credential {name} of {account}; false: the
// error page is written.
func (u *UI) upstreamCred(r *req) (adminapi.UpstreamCredential, bool) {
	c, e := u.api.GetUpstreamCredential(r.c, r.caller, r.p.Get("account"), r.p.Get("name"))
	if e != nil {
		u.failAPI(r, e)
		return c, false
	}
	return c, true
}

func (u *UI) upstreamEditPage(r *req) {
	c, ok := u.upstreamCred(r)
	if !ok {
		return
	}
	if !manages(r) {
		u.fail(r, fasthttp.StatusForbidden, "Only an admin of this account may change its upstream credentials.")
		return
	}
	u.renderUpstreamEdit(r, fasthttp.StatusOK, c, map[string]string{"fields": fieldsText(c.Fields), "validate": "1"}, nil)
}

func (u *UI) renderUpstreamEdit(r *req, status int, c adminapi.UpstreamCredential, form, errs map[string]string) {
	account := r.p.Get("account")
	u.render(r, status, "upstreamedit", &view{Title: "Upstream credential " + c.Name, Nav: "upstream",
		Data: upstreamData{Account: account, Base: upstreamBase(account), Manage: true, Cred: c, Form: form, Errors: errs}})
}

// updateUpstream replaces the fields (when they changed) and the secret
// (when one is given).
func (u *UI) updateUpstream(r *req) {
	c, ok := u.upstreamCred(r)
	if !ok {
		return
	}
	account, name := r.p.Get("account"), r.p.Get("name")
	args := r.ctx.PostArgs()
	form := map[string]string{"fields": string(args.Peek("fields")), "validate": string(args.Peek("validate"))}
	fields, bad := parseFields(form["fields"])
	if bad != "" {
		u.renderUpstreamEdit(r, fasthttp.StatusUnprocessableEntity, c, form, map[string]string{"fields": bad})
		return
	}
	var b adminapi.UpdateUpstreamCredential
	if !maps.Equal(fields, c.Fields) {
		b.Fields = &fields
	}
	if s := string(args.Peek("secret")); s != "" {
		b.Secret = &s
	}
	if b.Fields == nil && b.Secret == nil {
		u.redirect(r, upstreamBase(account), "Nothing changed.")
		return
	}
	if _, e := u.api.UpdateUpstreamCredential(r.c, r.caller, account, name, b, form["validate"] != ""); e != nil {
		if f := upstreamFormField(e); f != "" {
			if f == "name" || f == "type" {
				f = "fields"
			}
			u.renderUpstreamEdit(r, e.Status, c, form, map[string]string{f: e.Message})
			return
		}
		u.failAPI(r, e)
		return
	}
	u.redirect(r, upstreamBase(account), "Upstream credential "+name+" updated.")
}

func (u *UI) upstreamDeletePage(r *req) {
	c, ok := u.upstreamCred(r)
	if !ok {
		return
	}
	account := r.p.Get("account")
	u.render(r, fasthttp.StatusOK, "upstreamdelete", &view{Title: "Delete upstream credential " + c.Name, Nav: "upstream",
		Data: upstreamData{Account: account, Base: upstreamBase(account), Manage: manages(r), Cred: c}})
}

func (u *UI) deleteUpstream(r *req) {
	account, name := r.p.Get("account"), r.p.Get("name")
	if e := u.api.DeleteUpstreamCredential(r.c, r.caller, account, name); e != nil {
		u.failAPI(r, e)
		return
	}
	u.redirect(r, upstreamBase(account), "Upstream credential "+name+" deleted.")
}
