package admin

import (
	"errors"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/upstreamcred"
)

// Upstream credentials (DESIGN.md §12): global admins and the account's
// admins read and write them; the account's users read names and types
// only; API-key callers read only (as their owner may). The secret is
// never returned, logged or audited.

// Audit actions of upstream credentials.
const (
	ActionCreateUpstreamCredential = "createUpstreamCredential"
	ActionUpdateUpstreamCredential = "updateUpstreamCredential"
	ActionDeleteUpstreamCredential = "deleteUpstreamCredential"
)

func (a *api) upstreamCredentialRoutes() []apiRoute {
	const base = "/v1/accounts/{account}/upstream-credentials"
	return []apiRoute{
		{get, base, selfRead, "", a.listUpstreamCredentials},
		{post, base, write, ActionCreateUpstreamCredential, a.createUpstreamCredential},
		{get, base + "/{name}", selfRead, "", a.getUpstreamCredential},
		{patch, base + "/{name}", write, ActionUpdateUpstreamCredential, a.updateUpstreamCredential},
		{del, base + "/{name}", write, ActionDeleteUpstreamCredential, a.deleteUpstreamCredential},
	}
}

var (
	errNoUpstreamCredentials = errorf(fasthttp.StatusServiceUnavailable, "unavailable", "upstream credentials are not enabled on this gateway")
	errUpstreamCredNotFound  = errorf(fasthttp.StatusNotFound, "not_found", "upstream credential not found in this account")
	errNoEncryptionKey       = errorf(fasthttp.StatusUnprocessableEntity, "no_encryption_key",
		"no upstream credentials key is configured (upstream_credentials.key_file or KEYGATE_UPSTREAM_CREDENTIALS_KEY): keygate refuses to store a secret it cannot encrypt")
)

// readUpstreamAccess checks the caller may read account's credentials and
// says whether it sees everything (admins) or names and types (users of
// the account). Another account answers 404.
func (a *api) readUpstreamAccess(r *request, account string) (full bool, err error) {
	if a.ucred == nil {
		return false, errNoUpstreamCredentials
	}
	if r.user.Type == store.TypeUser {
		if r.user.Account != account {
			return false, errAccountNotFound
		}
		return false, nil
	}
	return true, a.manageAccount(r, account)
}

func (a *api) writeUpstreamAccess(r *request, account string) error {
	if a.ucred == nil {
		return errNoUpstreamCredentials
	}
	if r.user.Type == store.TypeUser {
		if r.user.Account != account {
			return errAccountNotFound
		}
		return errorf(fasthttp.StatusForbidden, "forbidden", "only a global admin or an admin of this account may change its upstream credentials")
	}
	return a.manageAccount(r, account)
}

func toUpstreamJSON(c *store.UpstreamCredential, full bool) adminapi.UpstreamCredential {
	out := adminapi.UpstreamCredential{Name: c.Name, Type: c.Type}
	if !full {
		return out
	}
	created, updated := c.CreatedAt, c.UpdatedAt
	out.Account, out.Fields, out.SecretSet = c.Account, c.Fields, len(c.Sealed) > 0
	out.CreatedAt, out.UpdatedAt, out.Validation = &created, &updated, c.Validation
	if !c.ValidatedAt.IsZero() {
		v := c.ValidatedAt
		out.ValidatedAt = &v
	}
	return out
}

func (a *api) listUpstreamCredentials(r *request) error {
	account := r.p.Get("account")
	full, err := a.readUpstreamAccess(r, account)
	if err != nil {
		return err
	}
	list, err := a.ucred.List(r.c, account)
	if err != nil {
		return err
	}
	out := adminapi.UpstreamCredentials{UpstreamCredentials: make([]adminapi.UpstreamCredential, 0, len(list))}
	for i := range list {
		out.UpstreamCredentials = append(out.UpstreamCredentials, toUpstreamJSON(&list[i], full))
	}
	return respond(r, fasthttp.StatusOK, out)
}

func (a *api) getUpstreamCredential(r *request) error {
	account, name := r.p.Get("account"), r.p.Get("name")
	full, err := a.readUpstreamAccess(r, account)
	if err != nil {
		return err
	}
	c, err := a.ucred.Get(r.c, account, name)
	if errors.Is(err, store.ErrNotFound) {
		return errUpstreamCredNotFound
	}
	if err != nil {
		return err
	}
	return respond(r, fasthttp.StatusOK, toUpstreamJSON(c, full))
}

// validateParam reads ?validate= (default true).
func validateParam(r *request) (bool, error) {
	v := r.queryArgs().Peek("validate")
	switch string(v) {
	case "", "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, errorf(fasthttp.StatusBadRequest, "bad_request", "validate must be true or false")
}

// upstreamError maps upstreamcred's errors to answers that never carry the
// secret (upstreamcred's messages never contain it).
func upstreamError(err error) error {
	var ve *upstreamcred.ValidationError
	switch {
	case errors.Is(err, upstreamcred.ErrNoKey):
		return errNoEncryptionKey
	case errors.As(err, &ve):
		return errorf(fasthttp.StatusUnprocessableEntity, "credential_invalid", "validation failed: %s", ve.Error())
	case errors.Is(err, upstreamcred.ErrBadRequest):
		return errorf(fasthttp.StatusUnprocessableEntity, "invalid", "%s", clip(err.Error(), 300))
	case errors.Is(err, store.ErrNotFound):
		return errUpstreamCredNotFound
	case errors.Is(err, store.ErrConflict):
		return errorf(fasthttp.StatusConflict, "conflict", "%s", storeMessage(err))
	}
	return err
}

func (a *api) createUpstreamCredential(r *request) error {
	account := r.p.Get("account")
	if err := a.writeUpstreamAccess(r, account); err != nil {
		return err
	}
	var b adminapi.CreateUpstreamCredential
	if err := decode(r, &b); err != nil {
		return err
	}
	r.target = "upstream_credential:" + account + "/" + b.Name
	r.fields = append(r.fields, zap.String("credential_type", b.Type))
	validate, err := validateParam(r)
	if err != nil {
		return err
	}
	if b.Name == "" || b.Type == "" {
		return errorf(fasthttp.StatusUnprocessableEntity, "invalid", `name and type are required: send {"name":…,"type":…,"fields":{…},"secret":…}`)
	}
	if b.Secret == nil || *b.Secret == "" {
		return errorf(fasthttp.StatusUnprocessableEntity, "invalid", "secret is required")
	}
	r.fields = append(r.fields, zap.Bool("validated", validate))
	c := &store.UpstreamCredential{Account: account, Name: b.Name, Type: b.Type, Fields: b.Fields}
	if err := a.ucred.Create(r.c, c, []byte(*b.Secret), validate); err != nil {
		return upstreamError(err)
	}
	return respond(r, fasthttp.StatusCreated, toUpstreamJSON(c, true))
}

func (a *api) updateUpstreamCredential(r *request) error {
	account, name := r.p.Get("account"), r.p.Get("name")
	r.target = "upstream_credential:" + account + "/" + name
	if err := a.writeUpstreamAccess(r, account); err != nil {
		return err
	}
	var b adminapi.UpdateUpstreamCredential
	if err := decode(r, &b); err != nil {
		return err
	}
	validate, err := validateParam(r)
	if err != nil {
		return err
	}
	if b.Fields == nil && b.Secret == nil {
		return errorf(fasthttp.StatusUnprocessableEntity, "invalid", `send {"fields":{…}} and/or {"secret":…}`)
	}
	var fields map[string]string
	if b.Fields != nil {
		fields = *b.Fields
		if fields == nil {
			fields = map[string]string{}
		}
	}
	var secret []byte
	if b.Secret != nil {
		if *b.Secret == "" {
			return errorf(fasthttp.StatusUnprocessableEntity, "invalid", "secret may not be empty")
		}
		secret = []byte(*b.Secret)
	}
	r.fields = append(r.fields, zap.Bool("secret_changed", secret != nil), zap.Bool("validated", validate))
	c, err := a.ucred.Update(r.c, account, name, fields, secret, validate)
	if err != nil {
		return upstreamError(err)
	}
	return respond(r, fasthttp.StatusOK, toUpstreamJSON(c, true))
}

func (a *api) deleteUpstreamCredential(r *request) error {
	account, name := r.p.Get("account"), r.p.Get("name")
	r.target = "upstream_credential:" + account + "/" + name
	if err := a.writeUpstreamAccess(r, account); err != nil {
		return err
	}
	if err := a.ucred.Delete(r.c, account, name); err != nil {
		return upstreamError(err)
	}
	return noContent(r)
}
