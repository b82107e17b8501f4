package admin

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/store"
)

// API is the admin API with its operations callable in process, for the
// web UI (admin/ui): each method runs the very handler of the JSON route
// it names — the same rules (decide.go), the same error codes, the same
// external-authorizer question, lifecycle notifications and audit line —
// with the body given as a Go value instead of JSON. The UI holds no rule
// of its own.
type API struct {
	a     *api
	ops   map[string]apiRoute // "METHOD pattern" → route
	pprof bool
}

// Caller is who performs an in-process operation: an authenticated
// identity and the user's current store record (privileges come from the
// record, as for every API request). Via names the front end for the
// audit line (e.g. "ui").
type Caller struct {
	Identity *authn.Identity
	User     *store.User
	IP       netip.Addr
	Via      string
}

// Now is the API's clock (for callers that show times relative to it).
func (x *API) Now() time.Time { return x.a.now() }

// MaxLifetime is api_keys.max_lifetime (0: unlimited).
func (x *API) MaxLifetime() time.Duration { return x.a.maxLifetime }

// call runs the route method+pattern for caller with params p (in pattern
// order), body in (a pointer to the handler's body type, or nil) and
// query q, and returns the handler's answer.
func (x *API) call(c context.Context, caller Caller, method, pattern string, p Params, in any, q *fasthttp.Args) (any, *httpx.Error) {
	rt, ok := x.ops[method+" "+pattern]
	if !ok {
		panic("admin: no operation " + method + " " + pattern)
	}
	if caller.Identity == nil || caller.User == nil {
		return nil, errorf(fasthttp.StatusUnauthorized, "unauthorized", "authentication required")
	}
	c, cancel := context.WithTimeout(c, APITimeout)
	defer cancel()
	r := &request{c: c, p: p, now: x.a.now().UTC(), ip: caller.IP, id: caller.Identity, user: caller.User,
		path: opPath(pattern, p), in: in, query: q}
	if caller.Via != "" {
		r.fields = append(r.fields, zap.String("via", caller.Via))
	}
	if err := x.a.serve(r, rt.acc, rt.action, rt.h); err != nil {
		return nil, x.a.errorOf(r, err)
	}
	return r.out, nil
}

// opPath is pattern with its parameters filled in, escaped as the router's
// canonical path (so the external authorizer is asked about the same
// target as for the JSON request).
func opPath(pattern string, p Params) string {
	for _, kv := range p {
		pattern = strings.Replace(pattern, "{"+kv.Name+"}", url.PathEscape(kv.Value), 1)
	}
	return pattern
}

// result converts an operation's answer to T.
func result[T any](out any, e *httpx.Error) (T, *httpx.Error) {
	var zero T
	if e != nil {
		return zero, e
	}
	v, ok := out.(T)
	if !ok {
		return zero, errorf(fasthttp.StatusInternalServerError, "internal", "internal error: %s", fmt.Sprintf("answer %T", out))
	}
	return v, nil
}

// KeyQuery is a key listing's filter (the query of the JSON listing).
type KeyQuery struct {
	Name, Status, Cursor string
	Limit                int
	// Account and Username: the search (SearchKeys) only.
	Account, Username string
}

func (q KeyQuery) args() *fasthttp.Args {
	var a fasthttp.Args
	for _, kv := range [...][2]string{{"account", q.Account}, {"username", q.Username}, {"name", q.Name}, {"status", q.Status}, {"cursor", q.Cursor}} {
		if kv[1] != "" {
			a.Add(kv[0], kv[1])
		}
	}
	if q.Limit > 0 {
		a.Add("limit", strconv.Itoa(q.Limit))
	}
	return &a
}

const (
	get, post, put, patch, del = fasthttp.MethodGet, fasthttp.MethodPost, fasthttp.MethodPut, fasthttp.MethodPatch, fasthttp.MethodDelete
)

func accountParams(account string) Params { return Params{{"account", account}} }

func userParams(account, username string) Params {
	return Params{{"account", account}, {"username", username}}
}

// Self is GET /v1/user.
func (x *API) Self(c context.Context, caller Caller) (adminapi.Self, *httpx.Error) {
	return result[adminapi.Self](x.call(c, caller, get, "/v1/user", nil, nil, nil))
}

// ChangePassword is PUT /v1/user/password.
func (x *API) ChangePassword(c context.Context, caller Caller, b adminapi.ChangePassword) *httpx.Error {
	_, e := x.call(c, caller, put, "/v1/user/password", nil, &b, nil)
	return e
}

// ListOwnKeys is GET /v1/user/api-keys.
func (x *API) ListOwnKeys(c context.Context, caller Caller, q KeyQuery) (adminapi.KeyPage, *httpx.Error) {
	return result[adminapi.KeyPage](x.call(c, caller, get, "/v1/user/api-keys", nil, nil, q.args()))
}

// CreateOwnKey is POST /v1/user/api-keys.
func (x *API) CreateOwnKey(c context.Context, caller Caller, b adminapi.CreateKey) (adminapi.CreatedKey, *httpx.Error) {
	return result[adminapi.CreatedKey](x.call(c, caller, post, "/v1/user/api-keys", nil, &b, nil))
}

// GetOwnKey is GET /v1/user/api-keys/{id}.
func (x *API) GetOwnKey(c context.Context, caller Caller, id string) (adminapi.Key, *httpx.Error) {
	return result[adminapi.Key](x.call(c, caller, get, "/v1/user/api-keys/{id}", Params{{"id", id}}, nil, nil))
}

// RevokeOwnKey is DELETE /v1/user/api-keys/{id}.
func (x *API) RevokeOwnKey(c context.Context, caller Caller, id string) (adminapi.Key, *httpx.Error) {
	return result[adminapi.Key](x.call(c, caller, del, "/v1/user/api-keys/{id}", Params{{"id", id}}, nil, nil))
}

// ListAccounts is GET /v1/accounts.
func (x *API) ListAccounts(c context.Context, caller Caller) (adminapi.Accounts, *httpx.Error) {
	return result[adminapi.Accounts](x.call(c, caller, get, "/v1/accounts", nil, nil, nil))
}

// CreateAccount is POST /v1/accounts.
func (x *API) CreateAccount(c context.Context, caller Caller, b adminapi.CreateAccount) (*store.Account, *httpx.Error) {
	return result[*store.Account](x.call(c, caller, post, "/v1/accounts", nil, &b, nil))
}

// GetAccount is GET /v1/accounts/{account}.
func (x *API) GetAccount(c context.Context, caller Caller, account string) (adminapi.Account, *httpx.Error) {
	return result[adminapi.Account](x.call(c, caller, get, "/v1/accounts/{account}", accountParams(account), nil, nil))
}

// UpdateAccount is PATCH /v1/accounts/{account}.
func (x *API) UpdateAccount(c context.Context, caller Caller, account string, b adminapi.UpdateAccount) (adminapi.Account, *httpx.Error) {
	return result[adminapi.Account](x.call(c, caller, patch, "/v1/accounts/{account}", accountParams(account), &b, nil))
}

// ListUsers is GET /v1/accounts/{account}/users.
func (x *API) ListUsers(c context.Context, caller Caller, account string) (adminapi.Users, *httpx.Error) {
	return result[adminapi.Users](x.call(c, caller, get, "/v1/accounts/{account}/users", accountParams(account), nil, nil))
}

// CreateUser is POST /v1/accounts/{account}/users.
func (x *API) CreateUser(c context.Context, caller Caller, account string, b adminapi.CreateUser) (adminapi.User, *httpx.Error) {
	return result[adminapi.User](x.call(c, caller, post, "/v1/accounts/{account}/users", accountParams(account), &b, nil))
}

// GetUser is GET /v1/accounts/{account}/users/{username}.
func (x *API) GetUser(c context.Context, caller Caller, account, username string) (adminapi.User, *httpx.Error) {
	return result[adminapi.User](x.call(c, caller, get, "/v1/accounts/{account}/users/{username}", userParams(account, username), nil, nil))
}

// UpdateUser is PATCH /v1/accounts/{account}/users/{username}.
func (x *API) UpdateUser(c context.Context, caller Caller, account, username string, b adminapi.UpdateUser) (adminapi.User, *httpx.Error) {
	return result[adminapi.User](x.call(c, caller, patch, "/v1/accounts/{account}/users/{username}", userParams(account, username), &b, nil))
}

// ListUserKeys is GET …/users/{username}/api-keys.
func (x *API) ListUserKeys(c context.Context, caller Caller, account, username string, q KeyQuery) (adminapi.KeyPage, *httpx.Error) {
	return result[adminapi.KeyPage](x.call(c, caller, get, "/v1/accounts/{account}/users/{username}/api-keys",
		userParams(account, username), nil, q.args()))
}

// CreateUserKey is POST …/users/{username}/api-keys.
func (x *API) CreateUserKey(c context.Context, caller Caller, account, username string, b adminapi.CreateKey) (adminapi.CreatedKey, *httpx.Error) {
	return result[adminapi.CreatedKey](x.call(c, caller, post, "/v1/accounts/{account}/users/{username}/api-keys",
		userParams(account, username), &b, nil))
}

// GetUserKey is GET …/users/{username}/api-keys/{id}.
func (x *API) GetUserKey(c context.Context, caller Caller, account, username, id string) (adminapi.Key, *httpx.Error) {
	return result[adminapi.Key](x.call(c, caller, get, "/v1/accounts/{account}/users/{username}/api-keys/{id}",
		append(userParams(account, username), Param{"id", id}), nil, nil))
}

// RevokeUserKey is DELETE …/users/{username}/api-keys/{id}.
func (x *API) RevokeUserKey(c context.Context, caller Caller, account, username, id string) (adminapi.Key, *httpx.Error) {
	return result[adminapi.Key](x.call(c, caller, del, "/v1/accounts/{account}/users/{username}/api-keys/{id}",
		append(userParams(account, username), Param{"id", id}), nil, nil))
}

// SearchKeys is GET /v1/api-keys.
func (x *API) SearchKeys(c context.Context, caller Caller, q KeyQuery) (adminapi.KeyPage, *httpx.Error) {
	return result[adminapi.KeyPage](x.call(c, caller, get, "/v1/api-keys", nil, nil, q.args()))
}

// BulkRevoke is DELETE /v1/api-keys.
func (x *API) BulkRevoke(c context.Context, caller Caller, b adminapi.BulkRevoke) (adminapi.BulkResult, *httpx.Error) {
	return result[adminapi.BulkResult](x.call(c, caller, del, "/v1/api-keys", nil, &b, nil))
}

func keyParams(account, username, id string) Params {
	return append(userParams(account, username), Param{"id", id})
}

// UpdateOwnKey is PATCH /v1/user/api-keys/{id}.
func (x *API) UpdateOwnKey(c context.Context, caller Caller, id string, b adminapi.UpdateKey) (adminapi.Key, *httpx.Error) {
	return result[adminapi.Key](x.call(c, caller, patch, "/v1/user/api-keys/{id}", Params{{"id", id}}, &b, nil))
}

// RotateOwnKey is POST /v1/user/api-keys/{id}/rotate.
func (x *API) RotateOwnKey(c context.Context, caller Caller, id string, b adminapi.RotateKey) (adminapi.CreatedKey, *httpx.Error) {
	return result[adminapi.CreatedKey](x.call(c, caller, post, "/v1/user/api-keys/{id}/rotate", Params{{"id", id}}, &b, nil))
}

// UpdateUserKey is PATCH …/users/{username}/api-keys/{id}.
func (x *API) UpdateUserKey(c context.Context, caller Caller, account, username, id string, b adminapi.UpdateKey) (adminapi.Key, *httpx.Error) {
	return result[adminapi.Key](x.call(c, caller, patch, "/v1/accounts/{account}/users/{username}/api-keys/{id}",
		keyParams(account, username, id), &b, nil))
}

// RotateUserKey is POST …/users/{username}/api-keys/{id}/rotate.
func (x *API) RotateUserKey(c context.Context, caller Caller, account, username, id string, b adminapi.RotateKey) (adminapi.CreatedKey, *httpx.Error) {
	return result[adminapi.CreatedKey](x.call(c, caller, post, "/v1/accounts/{account}/users/{username}/api-keys/{id}/rotate",
		keyParams(account, username, id), &b, nil))
}

// UpstreamCredentialsEnabled reports whether this gateway serves upstream
// credentials (a manager is configured).
func (x *API) UpstreamCredentialsEnabled() bool { return x.a.ucred != nil }

func validateArgs(validate bool) *fasthttp.Args {
	var a fasthttp.Args
	if !validate {
		a.Add("validate", "false")
	}
	return &a
}

func upstreamParams(account, name string) Params { return Params{{"account", account}, {"name", name}} }

// ListUpstreamCredentials is GET /v1/accounts/{account}/upstream-credentials.
func (x *API) ListUpstreamCredentials(c context.Context, caller Caller, account string) (adminapi.UpstreamCredentials, *httpx.Error) {
	return result[adminapi.UpstreamCredentials](x.call(c, caller, get, "/v1/accounts/{account}/upstream-credentials", accountParams(account), nil, nil))
}

// GetUpstreamCredential is GET …/upstream-credentials/{name}.
func (x *API) GetUpstreamCredential(c context.Context, caller Caller, account, name string) (adminapi.UpstreamCredential, *httpx.Error) {
	return result[adminapi.UpstreamCredential](x.call(c, caller, get, "/v1/accounts/{account}/upstream-credentials/{name}",
		upstreamParams(account, name), nil, nil))
}

// CreateUpstreamCredential is POST …/upstream-credentials (validate false:
// ?validate=false).
func (x *API) CreateUpstreamCredential(c context.Context, caller Caller, account string, b adminapi.CreateUpstreamCredential, validate bool) (adminapi.UpstreamCredential, *httpx.Error) {
	return result[adminapi.UpstreamCredential](x.call(c, caller, post, "/v1/accounts/{account}/upstream-credentials",
		accountParams(account), &b, validateArgs(validate)))
}

// UpdateUpstreamCredential is PATCH …/upstream-credentials/{name}.
func (x *API) UpdateUpstreamCredential(c context.Context, caller Caller, account, name string, b adminapi.UpdateUpstreamCredential, validate bool) (adminapi.UpstreamCredential, *httpx.Error) {
	return result[adminapi.UpstreamCredential](x.call(c, caller, patch, "/v1/accounts/{account}/upstream-credentials/{name}",
		upstreamParams(account, name), &b, validateArgs(validate)))
}

// DeleteUpstreamCredential is DELETE …/upstream-credentials/{name}.
func (x *API) DeleteUpstreamCredential(c context.Context, caller Caller, account, name string) *httpx.Error {
	_, e := x.call(c, caller, del, "/v1/accounts/{account}/upstream-credentials/{name}", upstreamParams(account, name), nil, nil)
	return e
}

// RateLimitPolicies are the names of rate_limits.policies (what a key, user
// or account may be assigned), in configuration order.
func (x *API) RateLimitPolicies() []string {
	out := make([]string, 0, len(x.a.policies.Policies))
	for _, p := range x.a.policies.Policies {
		out = append(out, p.Name)
	}
	return out
}
