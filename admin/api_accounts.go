package admin

import (
	"errors"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store"
)

var errGlobalAdminOnly = errorf(fasthttp.StatusForbidden, "forbidden", "only a global admin may manage accounts")

func (a *api) listAccounts(r *request) error {
	if !r.isGlobalAdmin() {
		return errGlobalAdminOnly
	}
	list, err := a.st.ListAccounts(r.c)
	if err != nil {
		return err
	}
	out := adminapi.Accounts{Accounts: make([]adminapi.Account, len(list))}
	for i := range list {
		out.Accounts[i].Account = list[i]
	}
	return respond(r, fasthttp.StatusOK, out)
}

func (a *api) createAccount(r *request) error {
	if !r.isGlobalAdmin() {
		return errGlobalAdminOnly
	}
	var b adminapi.CreateAccount
	if err := decode(r, &b); err != nil {
		return err
	}
	if b.Name == "" {
		return errorf(fasthttp.StatusUnprocessableEntity, "invalid", `name is required: send {"name":"<account>"}`)
	}
	r.target = "account:" + b.Name
	// A new name is stored in its canonical form ("Acme" → "acme"; see
	// store/names.go); the response says which.
	name, err := store.CanonicalAccountName(b.Name)
	if err != nil {
		return err
	}
	r.target = "account:" + name
	acc := &store.Account{Name: name, State: store.StateEnabled}
	if err := store.ValidateAccount(acc, r.now); err != nil {
		return err
	}
	if err := a.st.CreateAccount(r.c, acc); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errorf(fasthttp.StatusConflict, "conflict", "an account with this name already exists")
		}
		return err
	}
	r.events = append(r.events, lifecycleEvent{authz.OpCreate, authz.KindDomain, acc.Name})
	return respond(r, fasthttp.StatusCreated, acc)
}

func (a *api) getAccount(r *request) error {
	name := r.p.Get("account")
	// An account admin may read their own account.
	if !r.isGlobalAdmin() {
		if r.user.Type == store.TypeAccountAdmin && r.user.Account != name {
			return errAccountNotFound
		}
		if r.user.Type != store.TypeAccountAdmin {
			return errGlobalAdminOnly
		}
	}
	acc, err := a.st.GetAccount(r.c, name)
	if errors.Is(err, store.ErrNotFound) {
		return errAccountNotFound
	}
	if err != nil {
		return err
	}
	return respond(r, fasthttp.StatusOK, adminapi.Account{Account: *acc, Limits: a.limitsOf(r, store.ScopeAccount, acc.Name)})
}

func (a *api) updateAccount(r *request) error {
	name := r.p.Get("account")
	r.target = "account:" + name
	if !r.isGlobalAdmin() {
		if r.user.Type == store.TypeAccountAdmin && r.user.Account != name {
			return errAccountNotFound
		}
		return errGlobalAdminOnly
	}
	var b adminapi.UpdateAccount
	if err := decode(r, &b); err != nil {
		return err
	}
	if b.State == nil && !b.Any() {
		return errorf(fasthttp.StatusUnprocessableEntity, "invalid", `nothing to change: send {"state":"disabled"} or {"state":"enabled"}, "rate_limit" or "quota"`)
	}
	if err := a.checkLimits(&b.SetLimits); err != nil {
		return err
	}
	var acc *store.Account
	var err error
	if b.State != nil {
		if err := store.ValidateState(*b.State); err != nil {
			return err
		}
		if name == store.AdminAccount && *b.State != store.StateEnabled {
			return errorf(fasthttp.StatusForbidden, "reserved", "the account %q cannot be disabled", store.AdminAccount)
		}
		acc, err = a.st.SetAccountState(r.c, name, *b.State)
		r.fields = append(r.fields, zap.String("state", string(*b.State)))
	} else {
		acc, err = a.st.GetAccount(r.c, name)
	}
	if errors.Is(err, store.ErrNotFound) {
		return errAccountNotFound
	}
	if err != nil {
		return err
	}
	if err := a.applyLimits(r, store.ScopeAccount, acc.Name, &b.SetLimits); err != nil {
		return err
	}
	return respond(r, fasthttp.StatusOK, adminapi.Account{Account: *acc, Limits: a.limitsOf(r, store.ScopeAccount, acc.Name)})
}

func (a *api) deleteAccount(r *request) error {
	name := r.p.Get("account")
	r.target = "account:" + name
	if !r.isGlobalAdmin() {
		if r.user.Type == store.TypeAccountAdmin && r.user.Account != name {
			return errAccountNotFound
		}
		return errGlobalAdminOnly
	}
	if name == store.AdminAccount {
		return errorf(fasthttp.StatusForbidden, "reserved", "the account %q cannot be deleted", store.AdminAccount)
	}
	// The account's users go with it: the plugin hears of each (listed
	// first; a user created during the delete is caught by the cascade but
	// not notified — the plugin's domain deletion covers it).
	users, err := a.st.ListUsers(r.c, name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := a.st.DeleteAccount(r.c, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errAccountNotFound
		}
		return err
	}
	for _, u := range users {
		r.events = append(r.events, lifecycleEvent{authz.OpDelete, authz.KindPrincipal, u.Username})
	}
	r.events = append(r.events, lifecycleEvent{authz.OpDelete, authz.KindDomain, name})
	a.dropLimits(r, store.ScopeAccount, name)
	for _, u := range users {
		a.dropLimits(r, store.ScopeUser, u.Username)
	}
	return noContent(r)
}
