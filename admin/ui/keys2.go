package ui

// The key pages of issue 18: update (description, metadata, roles,
// allowed_cidrs, an earlier expiry) and rotation with a grace, on the
// caller's own keys and on a user's keys, through PATCH …/api-keys/{id} and
// POST …/api-keys/{id}/rotate (admin.API).

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/internal/httpx"
)

type editKeyData struct {
	Owner  keyOwner
	Key    adminapi.Key
	Form   map[string]string
	Errors map[string]string
	// Today is the earliest date the expiry can be set to (UTC).
	Today string
	// Limits: the rate limit and quota fields.
	Limits limitsData
}

// keyForm is the edit form of k as it stands.
func keyForm(k adminapi.Key) map[string]string {
	f := map[string]string{"description": k.Description, "roles": strings.Join(k.Roles, ", "),
		"allowed_cidrs": strings.Join(k.AllowedCIDRs, ", "), "metadata": metadataText(k.Metadata)}
	if k.ExpiresAt != nil {
		f["expires"] = k.ExpiresAt.UTC().Format(time.DateOnly)
	}
	putLimitsForm(f, k.Limits)
	return f
}

// metadataText is a key's metadata indented for the form ("" when none).
func metadataText(m json.RawMessage) string {
	if len(m) == 0 {
		return ""
	}
	var b bytes.Buffer
	if json.Indent(&b, m, "", "  ") != nil {
		return string(m)
	}
	return b.String()
}

func (u *UI) editKeyPage(o owner) handler {
	return func(r *req) {
		if own, k, ok := u.onKey(r, o, false); ok {
			u.renderEditKey(r, own, k, fasthttp.StatusOK, keyForm(k), nil)
		}
	}
}

func (u *UI) renderEditKey(r *req, own keyOwner, k adminapi.Key, status int, form, errs map[string]string) {
	d := editKeyData{Owner: own, Key: k, Form: form, Errors: errs, Today: u.api.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly),
		Limits: u.limitsData(form, errs, k.Quota)}
	u.render(r, status, "editkey", &view{Title: "Edit API key " + k.Name, Nav: navOf(own), Data: d})
}

// keyUpdate is the PATCH body of the edit form: only the fields that differ
// from k, as a PATCH would send them. A date that is not one is reported
// next to its field.
func keyUpdate(k adminapi.Key, form map[string]string) (adminapi.UpdateKey, map[string]string) {
	var b adminapi.UpdateKey
	cur := keyForm(k)
	if d := form["description"]; d != k.Description {
		b.Description = &d
	}
	if m := strings.TrimSpace(form["metadata"]); !sameJSON(m, string(k.Metadata)) {
		if m == "" {
			m = "{}" // an empty field clears the metadata
		}
		raw := json.RawMessage(m)
		b.Metadata = &raw
	}
	if roles := splitList(form["roles"]); !slices.Equal(roles, k.Roles) {
		if roles == nil {
			roles = []string{}
		}
		b.Roles = &roles
	}
	if c := splitList(form["allowed_cidrs"]); !slices.Equal(c, k.AllowedCIDRs) {
		if c == nil {
			c = []string{}
		}
		b.AllowedCIDRs = &c
	}
	if v := strings.TrimSpace(form["expires"]); v != cur["expires"] {
		if v == "" {
			return b, map[string]string{"expires": "A key's expiry cannot be removed: give an earlier date."}
		}
		t, err := time.Parse(time.DateOnly, v)
		if err != nil {
			return b, map[string]string{"expires": "Give a date as YYYY-MM-DD."}
		}
		s := t.UTC().Format(time.RFC3339)
		b.ExpiresAt = &s
	}
	var errs map[string]string
	b.SetLimits, errs = setLimits(k.Limits, form)
	return b, errs
}

// sameJSON reports whether a and b are the same JSON text but for spacing
// (both empty counts as the same; "{}" is no metadata).
func sameJSON(a, b string) bool {
	norm := func(s string) string {
		var c bytes.Buffer
		if json.Compact(&c, []byte(s)) != nil {
			return s
		}
		if c.String() == "{}" || c.String() == "null" {
			return ""
		}
		return c.String()
	}
	return norm(a) == norm(b)
}

func (u *UI) editKey(o owner) handler {
	return func(r *req) {
		own, k, ok := u.onKey(r, o, false)
		if !ok {
			return
		}
		args := r.ctx.PostArgs()
		form := map[string]string{}
		for _, f := range [...]string{"description", "metadata", "roles", "allowed_cidrs", "expires"} {
			form[f] = string(args.Peek(f))
		}
		for _, f := range limitsFields {
			form[f] = string(args.Peek(f))
		}
		b, errs := keyUpdate(k, form)
		if errs != nil {
			u.renderEditKey(r, own, k, fasthttp.StatusUnprocessableEntity, form, errs)
			return
		}
		if b == (adminapi.UpdateKey{}) {
			u.redirect(r, own.Base, "Nothing changed.")
			return
		}
		var e *httpx.Error
		if o == self {
			_, e = u.api.UpdateOwnKey(r.c, r.caller, k.ID, b)
		} else {
			_, e = u.api.UpdateUserKey(r.c, r.caller, own.Account, own.Username, k.ID, b)
		}
		if e != nil {
			if f := keyField(e); f != "" && e.Status < 500 {
				u.renderEditKey(r, own, k, e.Status, form, map[string]string{f: e.Message})
				return
			}
			u.failAPI(r, e)
			return
		}
		u.redirect(r, own.Base, "API key "+k.Name+" updated.")
	}
}

type rotateData struct {
	Owner  keyOwner
	Key    adminapi.Key
	Form   map[string]string
	Errors map[string]string
}

// defaultGrace is the grace the rotate form proposes.
const defaultGrace = "24h"

func (u *UI) rotatePage(o owner) handler {
	return func(r *req) {
		if own, k, ok := u.onKey(r, o, false); ok {
			u.renderRotate(r, own, k, fasthttp.StatusOK, map[string]string{"grace": defaultGrace}, nil)
		}
	}
}

func (u *UI) renderRotate(r *req, own keyOwner, k adminapi.Key, status int, form, errs map[string]string) {
	u.render(r, status, "rotate", &view{Title: "Rotate API key " + k.Name, Nav: navOf(own),
		Data: rotateData{Owner: own, Key: k, Form: form, Errors: errs}})
}

// rotate rotates the key with the form's grace and shows the new key once
// (the one-time page of a creation).
func (u *UI) rotate(o owner) handler {
	return func(r *req) {
		own, k, ok := u.onKey(r, o, false)
		if !ok {
			return
		}
		grace := strings.TrimSpace(string(r.ctx.PostArgs().Peek("grace")))
		if grace == "" {
			grace = "0s"
		}
		b := adminapi.RotateKey{Grace: &grace}
		var nk adminapi.CreatedKey
		var e *httpx.Error
		if o == self {
			nk, e = u.api.RotateOwnKey(r.c, r.caller, k.ID, b)
		} else {
			nk, e = u.api.RotateUserKey(r.c, r.caller, own.Account, own.Username, k.ID, b)
		}
		if e != nil {
			if keyField(e) == "grace" {
				u.renderRotate(r, own, k, e.Status, map[string]string{"grace": grace}, map[string]string{"grace": e.Message})
				return
			}
			u.failAPI(r, e)
			return
		}
		u.showOnce(r, createdData{Key: nk, Back: own.Base, Grace: grace})
	}
}
