package authz

import (
	"encoding/json"
	"errors"

	"github.com/keygate/keygate/internal/httpx"
)

// Paths of the plugin interface (configs/authz-plugin.openapi.yaml), relative
// to the path of authorization.external.endpoint.
const (
	PathAuthorize  = "/v1/authorize"
	PathPrincipals = "/v1/principals"
	PathDomains    = "/v1/domains"
)

// MaxPluginBody bounds the plugin's answers; a longer answer is a denial.
const MaxPluginBody = 64 << 10

// Principal is who asks, as sent to the plugin.
type Principal struct {
	// Name is the username.
	Name string `json:"name"`
	// Type is the user type: admin, account_admin or user.
	Type string `json:"type"`
}

// AuthorizeRequest is the body of POST /v1/authorize.
type AuthorizeRequest struct {
	Principal Principal `json:"principal"`
	Domain    string    `json:"domain"`
	Actions   []Action  `json:"actions"`
}

// AuthorizeResponse is the plugin's answer: the requested tuples it allows
// and those it denies. keygate allows a request only when every tuple it
// sent is in Allowed and none is in Denied.
type AuthorizeResponse struct {
	Allowed []Action `json:"allowed"`
	Denied  []Action `json:"denied"`
}

// appendAuthorizeBody appends the JSON of POST /v1/authorize for the actions
// of req selected by sel (nil: all).
func appendAuthorizeBody(dst []byte, req *Request, sel func(i int) bool) []byte {
	dst = append(dst, `{"principal":{"name":`...)
	dst = httpx.AppendJSONString(dst, req.Identity.Username)
	dst = append(dst, `,"type":`...)
	dst = httpx.AppendJSONString(dst, req.Identity.UserType)
	dst = append(dst, `},"domain":`...)
	dst = httpx.AppendJSONString(dst, req.Domain)
	dst = append(dst, `,"actions":[`...)
	first := true
	for i := range req.Actions {
		if sel != nil && !sel(i) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendActionJSON(dst, &req.Actions[i])
	}
	return append(dst, "]}"...)
}

func appendActionJSON(dst []byte, a *Action) []byte {
	dst = append(dst, `{"action":`...)
	dst = httpx.AppendJSONString(dst, a.Action)
	dst = append(dst, `,"target":`...)
	dst = httpx.AppendJSONString(dst, a.Target)
	return append(dst, '}')
}

// Why a plugin answer was rejected (log field "kind").
var (
	errMalformed  = errors.New("malformed answer")
	errIncomplete = errors.New("incomplete answer")
	errUnexpected = errors.New("answer names a tuple that was not asked")
)

// judge decides the tuples of req selected by sel from a plugin answer. It
// returns, for each selected tuple, whether it is allowed (in Allowed and not
// in Denied); err is non-nil when the answer cannot be trusted: it is not a
// JSON object of the expected shape, a tuple is missing from both lists, or a
// list names a tuple that was not asked. A tuple in both lists is denied.
// verdict is written for selected indexes only (len(verdict) == len(Actions)).
func judge(body []byte, req *Request, sel func(i int) bool, verdict []bool) error {
	var resp AuthorizeResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return errMalformed
	}
	asked := func(a *Action) bool {
		for i := range req.Actions {
			if (sel == nil || sel(i)) && req.Actions[i] == *a {
				return true
			}
		}
		return false
	}
	for i := range resp.Allowed {
		if !asked(&resp.Allowed[i]) {
			return errUnexpected
		}
	}
	for i := range resp.Denied {
		if !asked(&resp.Denied[i]) {
			return errUnexpected
		}
	}
	for i := range req.Actions {
		if sel != nil && !sel(i) {
			continue
		}
		a := req.Actions[i]
		allowed, denied := contains(resp.Allowed, a), contains(resp.Denied, a)
		if !allowed && !denied {
			return errIncomplete
		}
		verdict[i] = allowed && !denied //nolint:gosec // verdict has len(req.Actions) entries (the caller sizes it)
	}
	return nil
}

func contains(list []Action, a Action) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}
