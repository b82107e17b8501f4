package admin

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/store"
)

// POST /v1/verify (DESIGN.md §11): a service that checks credentials itself
// hands keygate an Authorization header value and gets a verdict. The
// caller needs a role in forward_auth.verify_roles or to be a global admin;
// an API key may call it (its effective roles count). The credential being
// checked goes through the same chain as a proxied request: cache, failure
// limits (per user, and per client_ip when given, else per caller address),
// one audit line per failure.

type verifyRequest struct {
	Authorization string `json:"authorization"`
	// ClientIP is the address the checked credential came from, counted by
	// the per-IP failure limit (default: the caller's address).
	ClientIP string `json:"client_ip,omitempty"`
}

type verifyIdentity struct {
	Username string   `json:"username"`
	Account  string   `json:"account"`
	Roles    []string `json:"roles"`
	Method   string   `json:"method"`
	KeyID    string   `json:"key_id,omitempty"`
	KeyName  string   `json:"key_name,omitempty"`
}

type verifyResponse struct {
	Valid    bool            `json:"valid"`
	Identity *verifyIdentity `json:"identity,omitempty"`
	// Code says why a credential is not valid: unauthorized (none given),
	// invalid_credentials, forbidden (disabled), rate_limited.
	Code string `json:"code,omitempty"`
	// RetryAfter (seconds) comes with rate_limited.
	RetryAfter int `json:"retry_after,omitempty"`
}

var (
	errVerifyRole = errorf(fasthttp.StatusForbidden, "forbidden",
		"POST /v1/verify needs a role listed in forward_auth.verify_roles (or a global admin)")
	errVerifyUnavailable = errorf(fasthttp.StatusServiceUnavailable, "unavailable",
		"the identity store is unavailable; retry later")
)

// mayVerify: a global admin, or a caller whose effective roles (for an API
// key: the key's roles ∩ its owner's) that its owner still holds include
// one of verify_roles.
func (a *api) mayVerify(r *request) bool {
	if r.isGlobalAdmin() {
		return true
	}
	for _, role := range r.id.Roles {
		if slices.Contains(a.verifyRoles, role) && slices.Contains(r.user.Roles, role) {
			return true
		}
	}
	return false
}

func (a *api) verify(r *request) error {
	if !a.mayVerify(r) {
		return errVerifyRole
	}
	var b verifyRequest
	if err := decode(r, &b); err != nil {
		return err
	}
	if len(b.Authorization) > 8<<10 || strings.ContainsAny(b.Authorization, "\r\n\x00") {
		return errorf(fasthttp.StatusBadRequest, "bad_request", "authorization must be one header value (at most 8 KiB, no line breaks)")
	}
	ip := r.ip
	if b.ClientIP != "" {
		a, err := netip.ParseAddr(b.ClientIP)
		if err != nil {
			return errorf(fasthttp.StatusBadRequest, "bad_request", "client_ip is not an IP address")
		}
		ip = a.Unmap()
	}
	id, err := a.auth.Authenticate(r.c, []byte(b.Authorization), ip)
	if err == nil && id == nil {
		err = authn.ErrNoCredentials
	}
	if err == nil {
		// The same rule as every admin request: the record decides.
		u, gerr := a.st.GetUser(r.c, id.Username)
		switch {
		case errors.Is(gerr, store.ErrNotFound):
			err = authn.ErrInvalidCredentials
		case gerr != nil:
			return errVerifyUnavailable
		case u.State != store.StateEnabled || u.Account != id.Account:
			err = authn.ErrDisabled
		}
	}
	if err != nil {
		status, code, _ := authn.Status(err)
		switch status {
		case fasthttp.StatusServiceUnavailable, fasthttp.StatusInternalServerError:
			r.ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
			return errVerifyUnavailable
		}
		out := verifyResponse{Code: code}
		if status == fasthttp.StatusTooManyRequests {
			out.RetryAfter = max(1, int(authn.RetryAfter(err).Seconds()))
			r.ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(out.RetryAfter))
		}
		writeJSON(r.ctx, fasthttp.StatusOK, out)
		return nil
	}
	vi := &verifyIdentity{Username: id.Username, Account: id.Account, Roles: id.Roles, Method: id.Method.String()}
	if vi.Roles == nil {
		vi.Roles = []string{}
	}
	if id.Method == authn.MethodAPIKey {
		vi.KeyID, vi.KeyName = id.KeyID, id.KeyName
	}
	writeJSON(r.ctx, fasthttp.StatusOK, verifyResponse{Valid: true, Identity: vi})
	return nil
}
