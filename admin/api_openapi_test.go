package admin

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/configs"
)

// The OpenAPI document and the router agree: every registered route is
// documented and every documented operation is registered. Operations that
// exist only under a config key (x-keygate-enabled-by: the pprof endpoints,
// admin.pprof) are compared both ways too: registered with the key on, and
// absent with it off, so neither side can drift.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q, want 3.x", doc.OpenAPI)
	}
	documented := map[string]bool{}
	enabledBy := map[string]string{}
	actions := map[string]string{}
	opIDs := map[string]string{}
	for p, ops := range doc.Paths {
		for m, raw := range ops {
			if m == "parameters" || m == "summary" || m == "description" {
				continue
			}
			key := strings.ToUpper(m) + " " + p
			documented[key] = true
			var op struct {
				Action      string `json:"x-keygate-action"`
				OperationID string `json:"operationId"`
				EnabledBy   string `json:"x-keygate-enabled-by"`
			}
			_ = json.Unmarshal(raw, &op)
			actions[key] = op.Action
			if op.EnabledBy != "" {
				enabledBy[key] = op.EnabledBy
			}
			if op.OperationID == "" {
				t.Errorf("%s has no operationId", key)
			} else if prev, dup := opIDs[op.OperationID]; dup {
				t.Errorf("operationId %q of %s is also %s's", op.OperationID, key, prev)
			}
			opIDs[op.OperationID] = key
		}
	}

	// The whole admin listener: admin.New's routes plus the API's, with
	// every optional endpoint on.
	s, err := New(ConfigOf(testConfig()), Options{Gatherer: prometheus.NewRegistry(), Store: openBolt(t)})
	mustOK(t, err)
	deps := APIDeps{Store: openBolt(t), Auth: anonymousOnly{}, Hasher: apiTestHasher, APIKeys: configs.APIKeys{}, Pprof: true}
	mustOK(t, RegisterAPI(s, deps))
	registered := map[string]bool{}
	for _, rt := range s.router.routes {
		p := "/" + strings.Join(rt.segs, "/")
		registered[rt.method+" "+p] = true
	}
	// And through a recorder, as a wiring that is not a *Router would.
	rec := &routeRecorder{r: &Router{}}
	mustOK(t, RegisterAPI(rec, deps))
	for _, r := range rec.routes {
		if !registered[r] {
			t.Errorf("recorded route %s missing from the server", r)
		}
	}
	if !slices.Contains(rec.routes, "GET /openapi.json") {
		t.Error("GET /openapi.json not registered")
	}
	// With admin.pprof off, exactly the operations it enables are missing.
	deps.Pprof = false
	off := &routeRecorder{r: &Router{}}
	mustOK(t, RegisterAPI(off, deps))
	for _, r := range off.routes {
		if by := enabledBy[r]; by != "" {
			t.Errorf("%s is registered with %s off", r, by)
		}
	}
	for r, by := range enabledBy {
		if by != "admin.pprof" {
			t.Errorf("%s: x-keygate-enabled-by %q, want admin.pprof (the only optional endpoints)", r, by)
		}
		if slices.Contains(off.routes, r) || !slices.Contains(rec.routes, r) {
			t.Errorf("%s should be registered exactly when %s is on", r, by)
		}
	}
	if len(off.routes)+len(enabledBy) != len(rec.routes) {
		t.Errorf("%d routes with admin.pprof off + %d it enables != %d with it on", len(off.routes), len(enabledBy), len(rec.routes))
	}

	for r := range registered {
		if !documented[r] {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for d := range documented {
		if !registered[d] {
			t.Errorf("openapi.json documents %s, which is not registered", d)
		}
	}
	// The audited writes carry their action names.
	writes := map[string]string{
		"PUT /v1/user/password":                                        ActionChangePassword,
		"POST /v1/user/api-keys":                                       ActionCreateAPIKey,
		"DELETE /v1/user/api-keys/{id}":                                ActionRevokeAPIKey,
		"POST /v1/accounts":                                            ActionCreateAccount,
		"PATCH /v1/accounts/{account}":                                 ActionUpdateAccount,
		"DELETE /v1/accounts/{account}":                                ActionDeleteAccount,
		"POST /v1/accounts/{account}/users":                            ActionCreateUser,
		"PATCH /v1/accounts/{account}/users/{username}":                ActionUpdateUser,
		"DELETE /v1/accounts/{account}/users/{username}":               ActionDeleteUser,
		"POST /v1/accounts/{account}/users/{username}/api-keys":        ActionCreateAPIKey,
		"DELETE /v1/accounts/{account}/users/{username}/api-keys/{id}": ActionRevokeAPIKey,
		"DELETE /v1/api-keys":                                          ActionBulkRevokeAPIKeys,
		// issue 18
		"PATCH /v1/user/api-keys/{id}":                                      ActionUpdateAPIKey,
		"POST /v1/user/api-keys/{id}/rotate":                                ActionRotateAPIKey,
		"PATCH /v1/accounts/{account}/users/{username}/api-keys/{id}":       ActionUpdateAPIKey,
		"POST /v1/accounts/{account}/users/{username}/api-keys/{id}/rotate": ActionRotateAPIKey,
		"POST /v1/accounts/{account}/upstream-credentials":                  ActionCreateUpstreamCredential,
		"PATCH /v1/accounts/{account}/upstream-credentials/{name}":          ActionUpdateUpstreamCredential,
		"DELETE /v1/accounts/{account}/upstream-credentials/{name}":         ActionDeleteUpstreamCredential,
	}
	for r, want := range writes {
		if actions[r] != want {
			t.Errorf("%s: x-keygate-action %q, want %q", r, actions[r], want)
		}
	}
	for r, a := range actions {
		if a != "" && writes[r] == "" {
			t.Errorf("%s: unexpected x-keygate-action %q", r, a)
		}
	}
}

// anonymousOnly authenticates nobody.
type anonymousOnly struct{}

func (anonymousOnly) Authenticate(context.Context, []byte, netip.Addr) (*authn.Identity, error) {
	return nil, authn.ErrNoCredentials
}
