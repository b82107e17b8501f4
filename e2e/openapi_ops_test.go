package e2e

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
)

// TestAdminOperationalAnswersDocumented (issue 12 item 11): what the binary
// answers on /metrics (restricted by admin.metrics_roles), /healthz and a
// trailing-slash admin path is what its own /openapi.json declares: 401 and
// 403 on /metrics, 404 JSON for a trailing slash (never 400 malformed).
func TestAdminOperationalAnswersDocumented(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, 0)
	g := startGateway(t, serveOpts{routes: echoRoute("api", "/", up.addr),
		env: []string{"KEYGATE_ADMIN_METRICS_ROLES=ops", "KEYGATE_ADMIN_PPROF=true"}})
	a := newAdmClient(t, g)
	admSkipUnlessAPI(t, a)
	root := admBasic("admin", admBootstrapPassword)

	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(a.want(200, "GET", "/openapi.json", "", nil), &doc); err != nil {
		t.Fatal(err)
	}
	declared := func(path string, status int) bool {
		var op struct {
			Responses map[string]json.RawMessage `json:"responses"`
		}
		_ = json.Unmarshal(doc.Paths[path]["get"], &op)
		_, ok := op.Responses[strconv.Itoa(status)]
		return ok
	}

	a.want(201, "POST", "/v1/accounts", root, map[string]any{"name": "acme"})
	a.want(201, "POST", "/v1/accounts/acme/users", root, map[string]any{"username": "carol", "password": "Carol-Pa55word-long"})
	carol := admBasic("carol", "Carol-Pa55word-long")
	for _, tc := range []struct {
		name, path, auth string
		want             int
	}{
		{"metrics anonymous", "/metrics", "", 401},
		{"metrics without the role", "/metrics", carol, 403},
		{"metrics as global admin", "/metrics", root, 200},
		{"healthz", "/healthz", "", 200},
		{"pprof index anonymous", "/debug/pprof", "", 401},
		{"pprof index as global admin", "/debug/pprof", root, 200},
	} {
		status, _, body := a.do("GET", tc.path, tc.auth, nil)
		if status != tc.want {
			t.Errorf("%s: %d, want %d: %.200s", tc.name, status, tc.want, body)
		}
		if !declared(tc.path, status) {
			t.Errorf("%s: GET %s answered %d, which openapi.json does not declare", tc.name, tc.path, status)
		}
	}

	// A trailing slash names no endpoint: 404 JSON, for any method.
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/accounts/"}, {"POST", "/v1/accounts/"}, {"GET", "/v1/accounts/acme/"},
		{"GET", "/v1/user/"}, {"GET", "/debug/pprof/"}, {"GET", "/metrics/"},
	} {
		status, h, body := a.do(tc.method, tc.path, root, map[string]any{})
		if status != http.StatusNotFound || errorCode(body) != "not_found" || h.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %s %s, want 404 not_found JSON", tc.method, tc.path, status, h.Get("Content-Type"), body)
		}
	}
}
