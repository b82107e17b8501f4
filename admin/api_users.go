package admin

import (
	"errors"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store"
)

func toUserJSON(u *store.User) adminapi.User {
	return adminapi.User{Username: u.Username, Account: u.Account, Type: u.Type, Roles: nonNil(u.Roles),
		State: u.State, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

func (a *api) getSelf(r *request) error {
	return respond(r, fasthttp.StatusOK, adminapi.Self{
		Username: r.user.Username, Account: r.user.Account, Type: r.user.Type,
		Roles: nonNil(r.id.Roles), Method: r.id.Method.String(), KeyID: r.id.KeyID, KeyName: r.id.KeyName,
	})
}

func (a *api) changePassword(r *request) error {
	r.target = "user:" + r.user.Username
	var b adminapi.ChangePassword
	if err := decode(r, &b); err != nil {
		return err
	}
	if b.Current == nil || b.New == nil {
		return errorf(fasthttp.StatusUnprocessableEntity, "invalid", `send {"current":"<current password>","new":"<new password>"}`)
	}
	ok, _, err := a.hasher.Verify(r.c, r.user.PasswordHash, *b.Current)
	if errors.Is(err, password.ErrBusy) {
		return err
	}
	if err != nil || !ok {
		return errorf(fasthttp.StatusForbidden, "invalid_current_password", "the current password is wrong")
	}
	if *b.New == *b.Current {
		return errorf(fasthttp.StatusUnprocessableEntity, "weak_password", "the new password must differ from the current one")
	}
	if err := password.CheckPolicy(*b.New, r.user.Username); err != nil {
		return errorf(fasthttp.StatusUnprocessableEntity, "weak_password", "%s", err.Error())
	}
	h, err := a.hasher.Hash(*b.New)
	if err != nil {
		return err
	}
	// Compare-and-set against the hash the current password was verified
	// with: a change made meanwhile (by an admin, or another session) is
	// not overwritten by someone who only knew the old password.
	old := r.user.PasswordHash
	if _, err := a.st.UpdateUser(r.c, r.user.Username, store.UserUpdate{PasswordHash: &h, IfPasswordHash: &old}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errorf(fasthttp.StatusConflict, "conflict", "the password changed while this request ran: retry with the current password")
		}
		return err
	}
	return noContent(r)
}

func (a *api) listUsers(r *request) error {
	account := r.p.Get("account")
	if err := a.manageAccount(r, account); err != nil {
		return err
	}
	list, err := a.st.ListUsers(r.c, account)
	if errors.Is(err, store.ErrNotFound) {
		return errAccountNotFound
	}
	if err != nil {
		return err
	}
	out := adminapi.Users{Users: make([]adminapi.User, 0, len(list))}
	for i := range list {
		out.Users = append(out.Users, toUserJSON(&list[i]))
	}
	return respond(r, fasthttp.StatusOK, out)
}

// errUsernameTaken is the answer to creating a user whose canonical name is
// taken, in this account or any other.
var errUsernameTaken = errorf(fasthttp.StatusConflict, "conflict",
	"this username is not available: choose another")

func (a *api) createUser(r *request) error {
	account := r.p.Get("account")
	if err := a.manageAccount(r, account); err != nil {
		return err
	}
	var b adminapi.CreateUser
	if err := decode(r, &b); err != nil {
		return err
	}
	r.target = "user:" + account + "/" + b.Username
	if b.Username == "" {
		return errorf(fasthttp.StatusUnprocessableEntity, "invalid", `username is required: send {"username":…,"password":…}`)
	}
	// A new name is stored in its canonical form ("Alice", "ａｌｉｃｅ" →
	// "alice"; see store/names.go); the response says which.
	name, err := store.CanonicalUsername(b.Username)
	if err != nil {
		return err
	}
	b.Username = name
	r.target = "user:" + account + "/" + name
	if b.Type == "" {
		b.Type = store.TypeUser
	}
	if err := store.ValidateUserType(b.Type); err != nil {
		return err
	}
	if b.Type == store.TypeAdmin && !r.isGlobalAdmin() {
		return errorf(fasthttp.StatusForbidden, "forbidden", "only a global admin may create a global admin")
	}
	if err := store.ValidateRoles(b.Roles); err != nil {
		return err
	}
	if err := checkGrant(r.user, b.Roles, "cannot grant"); err != nil {
		return err
	}
	service := b.Type == store.TypeService
	switch {
	case service && b.Password != nil:
		return errorf(fasthttp.StatusUnprocessableEntity, "invalid", "a service account has no password: it authenticates with its API keys (and client_credentials)")
	case !service && (b.Password == nil || *b.Password == ""):
		return errorf(fasthttp.StatusUnprocessableEntity, "invalid", "password is required")
	case !service:
		if err := password.CheckPolicy(*b.Password, b.Username); err != nil {
			return errorf(fasthttp.StatusUnprocessableEntity, "weak_password", "%s", err.Error())
		}
	}
	u := &store.User{Username: b.Username, Account: account, Type: b.Type, Roles: b.Roles, State: store.StateEnabled}
	if err := store.ValidateNewUser(u, r.now); err != nil {
		return err
	}
	if !service {
		h, err := a.hasher.Hash(*b.Password)
		if err != nil {
			return err
		}
		u.PasswordHash = h
	}
	if err := a.st.CreateUser(r.c, u); err != nil {
		switch {
		case errors.Is(err, store.ErrConflict):
			// One answer for every taken name, whoever holds it: it must
			// not tell an account admin that a name exists in another
			// account, or which (the 404 rule for other accounts).
			return errUsernameTaken
		case errors.Is(err, store.ErrNotFound):
			return errAccountNotFound
		}
		return err
	}
	r.events = append(r.events, lifecycleEvent{authz.OpCreate, authz.KindPrincipal, u.Username})
	return respond(r, fasthttp.StatusCreated, toUserJSON(u))
}

func (a *api) getUser(r *request) error {
	u, err := a.pathUser(r)
	if err != nil {
		return err
	}
	return respond(r, fasthttp.StatusOK, a.userWithLimits(r, u))
}

// userWithLimits is u as GET shows it, with its rate limit and quota.
func (a *api) userWithLimits(r *request, u *store.User) adminapi.User {
	out := toUserJSON(u)
	out.Limits = a.limitsOf(r, store.ScopeUser, u.Username)
	return out
}

func (a *api) updateUser(r *request) error {
	r.target = "user:" + r.p.Get("account") + "/" + r.p.Get("username")
	u, err := a.pathUser(r)
	if err != nil {
		return err
	}
	if err := checkTouch(r.user, u); err != nil {
		return err
	}
	var b adminapi.UpdateUser
	if err := decode(r, &b); err != nil {
		return err
	}
	if err := a.checkLimits(&b.SetLimits); err != nil {
		return err
	}
	if b.Roles == nil && b.State == nil && b.Type == nil && b.Password == nil && b.Any() {
		// Limits only: the user record (and its generation) is unchanged.
		if err := a.applyLimits(r, store.ScopeUser, u.Username, &b.SetLimits); err != nil {
			return err
		}
		return respond(r, fasthttp.StatusOK, a.userWithLimits(r, u))
	}
	c, err := decideUserUpdate(r.user, u, &b)
	if err != nil {
		return err
	}
	if c.newPassword != nil {
		h, err := a.hasher.Hash(*c.newPassword)
		if err != nil {
			return err
		}
		c.upd.PasswordHash = &h
	}
	r.fields = append(r.fields, zap.Strings("changed", c.changed))
	if c.removesAdmin {
		a.adminMu.Lock()
		defer a.adminMu.Unlock()
		if err := a.checkNotLastAdmin(r, u.Username); err != nil {
			return err
		}
	}
	nu, err := a.st.UpdateUser(r.c, u.Username, c.upd)
	if errors.Is(err, store.ErrNotFound) {
		return errUserNotFound
	}
	if err != nil {
		return err
	}
	if err := a.applyLimits(r, store.ScopeUser, nu.Username, &b.SetLimits); err != nil {
		return err
	}
	return respond(r, fasthttp.StatusOK, a.userWithLimits(r, nu))
}

// checkNotLastAdmin refuses to remove username, an enabled global admin,
// when no other enabled global admin exists. Hold adminMu.
func (a *api) checkNotLastAdmin(r *request, username string) error {
	list, err := a.st.ListUsers(r.c, store.AdminAccount)
	if err != nil {
		return err
	}
	for i := range list {
		u := &list[i]
		if u.Username != username && u.Type == store.TypeAdmin && u.State == store.StateEnabled {
			return nil
		}
	}
	return errorf(fasthttp.StatusConflict, "last_admin",
		"this is the last enabled global admin: create or enable another global admin first")
}

func (a *api) deleteUser(r *request) error {
	r.target = "user:" + r.p.Get("account") + "/" + r.p.Get("username")
	u, err := a.pathUser(r)
	if err != nil {
		return err
	}
	if err := checkTouch(r.user, u); err != nil {
		return err
	}
	if u.Type == store.TypeAdmin && u.State == store.StateEnabled {
		a.adminMu.Lock()
		defer a.adminMu.Unlock()
		if err := a.checkNotLastAdmin(r, u.Username); err != nil {
			return err
		}
	}
	if err := a.st.DeleteUser(r.c, u.Username); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errUserNotFound
		}
		return err
	}
	r.events = append(r.events, lifecycleEvent{authz.OpDelete, authz.KindPrincipal, u.Username})
	a.dropLimits(r, store.ScopeUser, u.Username)
	return noContent(r)
}
