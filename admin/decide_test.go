package admin

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/store"
)

// Callers and targets of the decision tables.
var (
	dGlobal   = &store.User{Username: "root", Account: store.AdminAccount, Type: store.TypeAdmin, State: store.StateEnabled}
	dGlobal2  = &store.User{Username: "root2", Account: store.AdminAccount, Type: store.TypeAdmin, State: store.StateEnabled}
	dAAdmin   = &store.User{Username: "aadmin", Account: "acme", Type: store.TypeAccountAdmin, Roles: []string{"dev", "ops"}, State: store.StateEnabled}
	dAAdminNR = &store.User{Username: "aadmin2", Account: "acme", Type: store.TypeAccountAdmin, Roles: []string{"dev"}, State: store.StateEnabled}
	dUser     = &store.User{Username: "bob", Account: "acme", Type: store.TypeUser, Roles: []string{"dev", "ops"}, State: store.StateEnabled}
	dUserRare = &store.User{Username: "carol", Account: "acme", Type: store.TypeUser, Roles: []string{"secret"}, State: store.StateEnabled}
	dAcmeAdm  = &store.User{Username: "dave", Account: "acme", Type: store.TypeAccountAdmin, State: store.StateEnabled}
)

func ptr[T any](v T) *T { return &v }

// wantAPIError checks err is nil (status 0) or an *httpx.Error with status
// and code.
func wantAPIError(t *testing.T, err error, status int, code string) {
	t.Helper()
	if status == 0 {
		if err != nil {
			t.Fatalf("error %v, want none", err)
		}
		return
	}
	var ae *httpx.Error
	if !errors.As(err, &ae) {
		// The store's validation errors map to 422 invalid in writeErr.
		if status == 422 && code == "invalid" && errors.Is(err, store.ErrInvalid) {
			return
		}
		t.Fatalf("error %v (%T), want %d %s", err, err, status, code)
	}
	if ae.Status != status || ae.Code != code {
		t.Fatalf("error %d %s %q, want %d %s", ae.Status, ae.Code, ae.Message, status, code)
	}
}

func TestCheckGrantAndTouch(t *testing.T) {
	tests := []struct {
		caller *store.User
		roles  []string
		target *store.User
		grant  int // status, 0 = allowed
		touch  int
	}{
		{dGlobal, []string{"anything"}, dGlobal2, 0, 0},
		{dAAdmin, []string{"dev", "ops"}, dUser, 0, 0},
		{dAAdmin, []string{"dev", "secret"}, dUserRare, 403, 0},
		{dAAdmin, nil, dGlobal, 0, 403},
		{dUser, []string{"ops"}, dAAdmin, 0, 0},
		{dUser, []string{"admin"}, dGlobal, 403, 403},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			err := checkGrant(tt.caller, tt.roles, "cannot grant")
			wantAPIError(t, err, tt.grant, map[bool]string{true: "forbidden"}[tt.grant != 0])
			wantAPIError(t, checkTouch(tt.caller, tt.target), tt.touch, map[bool]string{true: "forbidden"}[tt.touch != 0])
		})
	}
}

func TestSearchScope(t *testing.T) {
	tests := []struct {
		caller  *store.User
		account string
		want    string
		status  int
		code    string
	}{
		{dGlobal, "", "", 0, ""},
		{dGlobal, "other", "other", 0, ""},
		{dAAdmin, "", "acme", 0, ""},
		{dAAdmin, "acme", "acme", 0, ""},
		{dAAdmin, "other", "", 404, "not_found"}, // as if it did not exist
		{dUser, "", "", 403, "forbidden"},
		{dUser, "acme", "", 403, "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.caller.Username+"/"+tt.account, func(t *testing.T) {
			got, err := searchScope(tt.caller, tt.account)
			wantAPIError(t, err, tt.status, tt.code)
			if got != tt.want {
				t.Errorf("scope %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDecideUserUpdate(t *testing.T) {
	const goodPW = "New-Pa55word-long-enough"
	disabled, enabled := store.StateDisabled, store.StateEnabled
	tests := []struct {
		name         string
		caller, u    *store.User
		b            adminapi.UpdateUser
		status       int
		code         string
		changed      []string
		removesAdmin bool
	}{
		{"nothing", dGlobal, dUser, adminapi.UpdateUser{}, 422, "invalid", nil, false},
		{"bad type", dGlobal, dUser, adminapi.UpdateUser{Type: ptr(store.UserType("root"))}, 422, "invalid", nil, false},
		{"account admin makes a global admin", dAAdmin, dUser, adminapi.UpdateUser{Type: ptr(store.TypeAdmin)}, 403, "forbidden", nil, false},
		{"account admin demotes themself", dAAdmin, dAAdmin, adminapi.UpdateUser{Type: ptr(store.TypeUser)}, 403, "forbidden", nil, false},
		{"same type is no change of type", dAAdmin, dAAdmin, adminapi.UpdateUser{Type: ptr(store.TypeAccountAdmin)}, 0, "", []string{"type"}, false},
		{"account admin promotes a user", dAAdmin, dUser, adminapi.UpdateUser{Type: ptr(store.TypeAccountAdmin)}, 0, "", []string{"type"}, false},
		{"global admin demotes themself", dGlobal, dGlobal, adminapi.UpdateUser{Type: ptr(store.TypeUser)}, 0, "", []string{"type"}, true},
		{"admin type outside the admin account", dGlobal, dUser, adminapi.UpdateUser{Type: ptr(store.TypeAdmin)}, 422, "invalid", nil, false},
		{"global admin made in the admin account", dGlobal, dGlobal2, adminapi.UpdateUser{Type: ptr(store.TypeAdmin)}, 0, "", []string{"type"}, false},
		{"grant a held role", dAAdmin, dUserRare, adminapi.UpdateUser{Roles: &[]string{"secret", "dev"}}, 0, "", []string{"roles"}, false},
		{"grant a role not held", dAAdminNR, dUser, adminapi.UpdateUser{Roles: &[]string{"dev", "ops", "secret"}}, 403, "forbidden", nil, false},
		{"keep or remove roles not held", dAAdminNR, dUser, adminapi.UpdateUser{Roles: &[]string{"ops"}}, 0, "", []string{"roles"}, false},
		{"clear roles", dAAdminNR, dUserRare, adminapi.UpdateUser{Roles: &[]string{}}, 0, "", []string{"roles"}, false},
		{"invalid role", dGlobal, dUser, adminapi.UpdateUser{Roles: &[]string{"bad role"}}, 422, "invalid", nil, false},
		{"disable a user", dAAdmin, dUser, adminapi.UpdateUser{State: &disabled}, 0, "", []string{"state"}, false},
		{"bad state", dAAdmin, dUser, adminapi.UpdateUser{State: ptr(store.State("gone"))}, 422, "invalid", nil, false},
		{"disable a global admin", dGlobal, dGlobal2, adminapi.UpdateUser{State: &disabled}, 0, "", []string{"state"}, true},
		{"enable a global admin", dGlobal, dGlobal2, adminapi.UpdateUser{State: &enabled}, 0, "", []string{"state"}, false},
		{"own password", dAAdmin, dAAdmin, adminapi.UpdateUser{Password: ptr(goodPW)}, 403, "forbidden", nil, false},
		{"password of a user with roles not held", dAAdminNR, dUser, adminapi.UpdateUser{Password: ptr(goodPW)}, 403, "forbidden", nil, false},
		{"password of a user with held roles", dAAdmin, dUser, adminapi.UpdateUser{Password: ptr(goodPW)}, 0, "", []string{"password"}, false},
		{"weak password", dAAdmin, dUser, adminapi.UpdateUser{Password: ptr("short")}, 422, "weak_password", nil, false},
		{"type checked before roles", dAAdmin, dUser, adminapi.UpdateUser{Type: ptr(store.TypeAdmin), Roles: &[]string{"secret"}}, 403, "forbidden", nil, false},
		{"everything at once", dGlobal, dUser, adminapi.UpdateUser{Type: ptr(store.TypeAccountAdmin), Roles: &[]string{"x"}, State: &disabled, Password: ptr(goodPW)},
			0, "", []string{"type", "roles", "state", "password"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := decideUserUpdate(tt.caller, tt.u, &tt.b)
			wantAPIError(t, err, tt.status, tt.code)
			if err != nil {
				return
			}
			if !slices.Equal(c.changed, tt.changed) {
				t.Errorf("changed %v, want %v", c.changed, tt.changed)
			}
			if c.removesAdmin != tt.removesAdmin {
				t.Errorf("removesAdmin %v, want %v", c.removesAdmin, tt.removesAdmin)
			}
			if (c.newPassword != nil) != (tt.b.Password != nil) || c.upd.PasswordHash != nil {
				t.Errorf("newPassword %v, hash %v: the password is for the handler to hash", c.newPassword != nil, c.upd.PasswordHash)
			}
			if tt.b.Roles != nil {
				if c.upd.Roles == nil || !slices.Equal(*c.upd.Roles, *tt.b.Roles) {
					t.Fatalf("roles %v, want %v", c.upd.Roles, *tt.b.Roles)
				}
				if len(*tt.b.Roles) > 0 && &(*c.upd.Roles)[0] == &(*tt.b.Roles)[0] {
					t.Error("the update shares the body's role slice")
				}
			}
			if (c.upd.State != nil) != (tt.b.State != nil) || (c.upd.Type != nil) != (tt.b.Type != nil) {
				t.Errorf("update %+v does not carry the body's state/type", c.upd)
			}
		})
	}
}

func TestDecideBulkScope(t *testing.T) {
	many := make([]string, MaxBulkIDs+1)
	for i := range many {
		many[i] = fmt.Sprint("id", i)
	}
	tests := []struct {
		name   string
		caller *store.User
		b      adminapi.BulkRevoke
		want   bulkScope
		status int
		code   string
	}{
		{"nothing selected", dGlobal, adminapi.BulkRevoke{}, bulkScope{}, 422, "invalid"},
		{"too many ids", dGlobal, adminapi.BulkRevoke{IDs: many}, bulkScope{}, 422, "invalid"},
		{"global admin by name", dGlobal, adminapi.BulkRevoke{Name: "ci"}, bulkScope{name: "ci"}, 0, ""},
		{"global admin in an account", dGlobal, adminapi.BulkRevoke{Account: "other", Username: "x"}, bulkScope{account: "other", username: "x"}, 0, ""},
		{"account admin kept to their account", dAAdmin, adminapi.BulkRevoke{IDs: []string{"a"}}, bulkScope{account: "acme"}, 0, ""},
		{"account admin, another account", dAAdmin, adminapi.BulkRevoke{Account: "other"}, bulkScope{}, 404, "not_found"},
		{"user", dUser, adminapi.BulkRevoke{Name: "ci"}, bulkScope{}, 403, "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decideBulkScope(tt.caller, &tt.b)
			wantAPIError(t, err, tt.status, tt.code)
			if got != tt.want {
				t.Errorf("scope %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestBulkScopeMatch(t *testing.T) {
	k := &store.APIKey{ID: "k1", Account: "acme", Username: "bob", Name: "ci"}
	tests := []struct {
		s    bulkScope
		want bool
	}{
		{bulkScope{}, true},
		{bulkScope{account: "acme"}, true},
		{bulkScope{account: "other"}, false},
		{bulkScope{account: "acme", username: "bob", name: "ci"}, true},
		{bulkScope{username: "carol"}, false},
		{bulkScope{name: "deploy"}, false},
	}
	for _, tt := range tests {
		if got := tt.s.match(k); got != tt.want {
			t.Errorf("%+v.match = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func TestBulkKeyDecisions(t *testing.T) {
	tests := []struct {
		name      string
		caller    *store.User
		ownerType store.UserType
		extErr    error
		wantCode  string // "" = revoked
	}{
		{"global admin, global admin's key", dGlobal, store.TypeAdmin, nil, ""},
		{"account admin, global admin's key", dAcmeAdm, store.TypeAdmin, nil, "forbidden"},
		{"account admin, user's key", dAcmeAdm, store.TypeUser, nil, ""},
		{"account admin, owner gone", dAcmeAdm, "", nil, ""},
		{"external denies", dGlobal, store.TypeUser, errExternalDenied, "forbidden"},
		{"external unavailable", dGlobal, store.TypeUser, errExternalUnavailable, "authorizer_unavailable"},
		{"owner checked before external", dAcmeAdm, store.TypeAdmin, errExternalUnavailable, "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := bulkOwnerDenied(tt.caller, "k1", tt.ownerType)
			if e == nil {
				e = bulkExternalDenied("k1", tt.extErr)
			}
			switch {
			case tt.wantCode == "" && e != nil:
				t.Fatalf("refused: %+v", *e)
			case tt.wantCode != "" && (e == nil || e.Code != tt.wantCode || e.ID != "k1" || e.Message == ""):
				t.Fatalf("entry %+v, want code %s for k1", e, tt.wantCode)
			}
		})
	}
}

func TestRecordRevoke(t *testing.T) {
	secret := errors.New("dial tcp 10.0.0.1:6379: password=hunter2")
	tests := []struct {
		already  bool
		err      error
		wantList string // invalidated, previously, error
		wantCode string
	}{
		{false, nil, "invalidated", ""},
		{true, nil, "previously", ""},
		{false, store.ErrNotFound, "error", "not_found"},
		{false, fmt.Errorf("redis: %w", store.ErrUnavailable), "error", "unavailable"},
		{false, secret, "error", "internal"},
	}
	for _, tt := range tests {
		t.Run(tt.wantList+tt.wantCode, func(t *testing.T) {
			var out adminapi.BulkResult
			recordRevoke(&out, "k1", tt.already, tt.err)
			got := map[string]int{"invalidated": len(out.Invalidated), "previously": len(out.PreviouslyInvalidated), "error": len(out.Errors)}
			for list, n := range got {
				if want := map[bool]int{true: 1}[list == tt.wantList]; n != want {
					t.Errorf("%s has %d entries, want %d", list, n, want)
				}
			}
			if tt.wantCode != "" {
				e := out.Errors[0]
				if e.ID != "k1" || e.Code != tt.wantCode || e.Message == "" {
					t.Errorf("entry %+v, want k1 %s", e, tt.wantCode)
				}
				if strings.Contains(e.Message, "hunter2") || strings.Contains(e.Message, "10.0.0.1") {
					t.Errorf("the store's error text reached the client: %+v", e)
				}
			}
		})
	}
}
