package admin

import (
	"errors"
	"slices"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/store"
)

// Who may change what: the decisions of the write handlers as pure
// functions of the caller's current record (privileges come from it, not
// from the cached identity), the target and the request body. The handlers
// do the I/O around them (the store, hashing, the external authorizer);
// decide_test.go tables the decisions.

// holds reports whether caller holds role (global admins hold every role
// for granting purposes).
func holds(caller *store.User, role string) bool {
	return caller.Type == store.TypeAdmin || slices.Contains(caller.Roles, role)
}

// checkGrant refuses roles caller does not hold; what starts the message
// ("cannot grant", "cannot create a key with", …).
func checkGrant(caller *store.User, roles []string, what string) error {
	for _, role := range roles {
		if !holds(caller, role) {
			return errorf(fasthttp.StatusForbidden, "forbidden",
				"%s role %q, which you do not hold: you may only grant roles you hold", what, role)
		}
	}
	return nil
}

// checkTouch refuses changes to a global admin (or their keys) by anyone
// but a global admin: an account admin of account "admin" must not take
// it over.
func checkTouch(caller, u *store.User) error {
	if u.Type == store.TypeAdmin && caller.Type != store.TypeAdmin {
		return errorf(fasthttp.StatusForbidden, "forbidden", "only a global admin may change a global admin or their keys")
	}
	return nil
}

// searchScope applies caller's scope to an account filter of a key search
// or bulk revocation: a global admin sees everything; an account admin only
// their account (another account answers 404, as if it did not exist);
// others are refused.
func searchScope(caller *store.User, account string) (string, error) {
	switch caller.Type {
	case store.TypeAdmin:
		return account, nil
	case store.TypeAccountAdmin:
		if account != "" && account != caller.Account {
			return "", errAccountNotFound
		}
		return caller.Account, nil
	default:
		return "", errorf(fasthttp.StatusForbidden, "forbidden",
			"only a global admin or an account admin may search keys; use /v1/user/api-keys for your own")
	}
}

// userChange is a PATCH of user u, decided.
type userChange struct {
	// upd is the store update, less PasswordHash (the handler hashes
	// newPassword, after every check has passed).
	upd         store.UserUpdate
	newPassword *string
	// changed names the fields changed, for the audit log.
	changed []string
	// removesAdmin: u is an enabled global admin and stops being one
	// (disabled or demoted), so the last-admin check applies.
	removesAdmin bool
}

// decideUserUpdate decides whether caller may apply b to u (checkTouch
// has passed) and what it changes. The checks run in the order the API
// has always answered them: nothing to change, type, roles, state,
// password, the admin type's account.
func decideUserUpdate(caller, u *store.User, b *adminapi.UpdateUser) (userChange, error) {
	var c userChange
	if b.Roles == nil && b.State == nil && b.Type == nil && b.Password == nil {
		return c, errorf(fasthttp.StatusUnprocessableEntity, "invalid", `nothing to change: send one or more of "roles", "state", "type", "password"`)
	}
	self := u.Username == caller.Username
	global := caller.Type == store.TypeAdmin
	if b.Type != nil {
		if err := store.ValidateUserType(*b.Type); err != nil {
			return c, err
		}
		if *b.Type != u.Type {
			switch {
			case *b.Type == store.TypeService || u.Type == store.TypeService:
				return c, errorf(fasthttp.StatusUnprocessableEntity, "invalid", "a service account stays one, and no other user becomes one: create a service account instead")
			case *b.Type == store.TypeAdmin && !global:
				return c, errorf(fasthttp.StatusForbidden, "forbidden", "only a global admin may make a global admin")
			case self && !global:
				return c, errorf(fasthttp.StatusForbidden, "forbidden", "you cannot change your own type")
			}
		}
		c.upd.Type = b.Type
		c.changed = append(c.changed, "type")
	}
	if b.Roles != nil {
		if err := store.ValidateRoles(*b.Roles); err != nil {
			return c, err
		}
		// Only the roles added need holding: keeping or removing a role
		// the caller lacks is not a grant.
		var added []string
		for _, role := range *b.Roles {
			if !slices.Contains(u.Roles, role) {
				added = append(added, role)
			}
		}
		if err := checkGrant(caller, added, "cannot grant"); err != nil {
			return c, err
		}
		roles := append([]string{}, (*b.Roles)...)
		c.upd.Roles = &roles
		c.changed = append(c.changed, "roles")
	}
	if b.State != nil {
		if err := store.ValidateState(*b.State); err != nil {
			return c, err
		}
		c.upd.State = b.State
		c.changed = append(c.changed, "state")
	}
	if b.Password != nil {
		if u.Type == store.TypeService {
			return c, errorf(fasthttp.StatusUnprocessableEntity, "invalid", "a service account has no password")
		}
		if self {
			return c, errorf(fasthttp.StatusForbidden, "forbidden", "use PUT /v1/user/password to change your own password (it needs the current one)")
		}
		// Setting someone's password lets the caller act as them: only
		// with roles the caller holds.
		if err := checkGrant(caller, u.Roles, "cannot set the password of a user with"); err != nil {
			return c, err
		}
		if err := password.CheckPolicy(*b.Password, u.Username); err != nil {
			return c, errorf(fasthttp.StatusUnprocessableEntity, "weak_password", "%s", err.Error())
		}
		c.newPassword = b.Password
		c.changed = append(c.changed, "password")
	}
	// The type of admin is allowed only in the admin account: the store
	// checks it, but say so before hashing.
	if c.upd.Type != nil && *c.upd.Type == store.TypeAdmin && u.Account != store.AdminAccount {
		return c, errorf(fasthttp.StatusUnprocessableEntity, "invalid", "user type %q is allowed only in account %q", store.TypeAdmin, store.AdminAccount)
	}
	c.removesAdmin = u.Type == store.TypeAdmin && u.State == store.StateEnabled &&
		(c.upd.State != nil && *c.upd.State != store.StateEnabled || c.upd.Type != nil && *c.upd.Type != store.TypeAdmin)
	return c, nil
}

// bulkScope is what every key of a bulk revocation must match.
type bulkScope struct {
	account, username, name string
}

func (s bulkScope) match(k *store.APIKey) bool {
	return (s.account == "" || k.Account == s.account) &&
		(s.username == "" || k.Username == s.username) && (s.name == "" || k.Name == s.name)
}

// decideBulkScope checks a bulk revocation's body and scopes it to caller
// (searchScope: an account admin's bulk revocation stays in their account).
func decideBulkScope(caller *store.User, b *adminapi.BulkRevoke) (bulkScope, error) {
	if len(b.IDs) == 0 && b.Name == "" && b.Username == "" && b.Account == "" {
		return bulkScope{}, errorf(fasthttp.StatusUnprocessableEntity, "invalid", `say which keys to revoke: "ids", or one or more of "name", "username", "account"`)
	}
	if len(b.IDs) > MaxBulkIDs {
		return bulkScope{}, errorf(fasthttp.StatusUnprocessableEntity, "invalid", "at most %d ids per request", MaxBulkIDs)
	}
	account, err := searchScope(caller, b.Account)
	if err != nil {
		return bulkScope{}, err
	}
	return bulkScope{account: account, username: b.Username, name: b.Name}, nil
}

// Entries of a bulk revocation's errors.
func bulkNotFound(id string) adminapi.BulkError {
	return adminapi.BulkError{ID: id, Code: "not_found", Message: "api key not found"}
}

func bulkTooMany() adminapi.BulkError {
	return adminapi.BulkError{Code: "too_many",
		Message: "more keys matched than one request handles (" + strconv.Itoa(MaxBulkKeys) + "); repeat the request"}
}

// bulkOwnerDenied is the refusal of a key whose owner is ownerType to
// caller, or nil: the keys of a global admin are a global admin's to revoke.
func bulkOwnerDenied(caller *store.User, id string, ownerType store.UserType) *adminapi.BulkError {
	if caller.Type != store.TypeAdmin && ownerType == store.TypeAdmin {
		return &adminapi.BulkError{ID: id, Code: "forbidden", Message: "only a global admin may revoke a global admin's keys"}
	}
	return nil
}

// bulkExternalDenied maps the external authorizer's answer about one key
// (askExternal) to its error entry, or nil when allowed.
func bulkExternalDenied(id string, err error) *adminapi.BulkError {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errExternalUnavailable):
		return &adminapi.BulkError{ID: id, Code: "authorizer_unavailable", Message: "the authorization service is unavailable; retry"}
	default:
		return &adminapi.BulkError{ID: id, Code: "forbidden", Message: "the authorization service does not allow revoking this key"}
	}
}

// recordRevoke adds the outcome of revoking key id (store.RevokeAPIKey's
// already and err) to out. A store error stays in its entry, as a code:
// its text is not for the client.
func recordRevoke(out *adminapi.BulkResult, id string, already bool, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		out.Errors = append(out.Errors, bulkNotFound(id))
	case errors.Is(err, store.ErrUnavailable):
		out.Errors = append(out.Errors, adminapi.BulkError{ID: id, Code: "unavailable", Message: "the store is unavailable; retry"})
	case err != nil:
		out.Errors = append(out.Errors, adminapi.BulkError{ID: id, Code: "internal", Message: "internal error"})
	case already:
		out.PreviouslyInvalidated = append(out.PreviouslyInvalidated, id)
	default:
		out.Invalidated = append(out.Invalidated, id)
	}
}
