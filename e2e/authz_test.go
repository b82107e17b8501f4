package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// External authorization through the built binary and the reference plugin
// run as `keygate authz-plugin-example`, with signed requests: the plugin's
// rules decide per path, and a plugin that goes away gives 503, never 200.
func TestExternalAuthorizationPlugin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte(`rules:
  - effect: allow
    actions: [GET]
    targets: ["api:/orders/**"]
  - effect: deny
    targets: ["api:/orders/internal/**"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	const secret = "e2e-plugin-signing-secret-0123456789abcdef" //nolint:gosec // test data, not a real credential
	pluginAddr := freeAddr(t)
	plugin := startProc(t, []string{"KEYGATE_AUTHORIZATION_EXTERNAL_SECRET=" + secret},
		"authz-plugin-example", "--listen", pluginAddr, "--rules", rules)
	waitHTTP(t, plugin, "http://"+pluginAddr+"/healthz", nil)

	echoAddr := startEchoProc(t)
	g := startGateway(t, serveOpts{
		routes: fmt.Sprintf("  - name: api\n    path_prefix: /\n    upstreams: [\"http://%s\"]\n    auth: required\n", echoAddr),
		extra:  fmt.Sprintf("authorization:\n  handler: external\n  external:\n    endpoint: \"http://%s\"\n    timeout: 300ms\n    cache_ttl: 1s\n", pluginAddr),
		env:    []string{"KEYGATE_AUTHORIZATION_EXTERNAL_SECRET=" + secret},
	})

	get := func(path string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", g.url(path), nil)
		req.SetBasicAuth("admin", "correct-horse-battery-staple")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/orders/42", 200},
		{"/orders/internal/x", 403}, // deny wins
		{"/invoices/1", 403},        // no allow rule
	} {
		if got := get(tc.path); got != tc.want {
			t.Errorf("GET %s = %d, want %d", tc.path, got, tc.want)
		}
	}

	// The plugin goes away: undecided requests fail closed with 503.
	plugin.sigterm()
	plugin.wait(10e9)
	if got := get("/orders/not-cached-yet"); got != 503 {
		t.Errorf("plugin down: GET = %d, want 503", got)
	}
}
