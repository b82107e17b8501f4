package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
)

// TestStoreDriverCapabilities (issue 20 item 7): with either store driver,
// serve wires every capability of store.Driver instead of leaving one out
// when a type assertion fails: the password grant issues a refresh token and
// the refresh grant rotates it (refresh tokens), and /readyz runs the
// store's own checks (store_read and store_write, not a bare ping).
func TestStoreDriverCapabilities(t *testing.T) {
	t.Parallel()
	echoAddr := startEchoProc(t)
	routes := "  - name: api\n    path_prefix: /\n    upstreams: [\"http://" + echoAddr + "\"]\n    auth: required\n"
	tests := []struct {
		name  string
		store func(t *testing.T) string
	}{
		{"bolt", func(*testing.T) string { return "" }},
		{"redis", func(t *testing.T) string { return auRedisYAML(testredis.Start(t).Addr()) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := startGateway(t, serveOpts{routes: routes, store: tc.store(t)})
			grant := func(form url.Values) (int, map[string]any) {
				t.Helper()
				code, _, body := tokenGrant(t, g, form)
				return code, body
			}
			code, body := grant(url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {"correct-horse-battery-staple"}})
			refresh, _ := body["refresh_token"].(string)
			if code != 200 || refresh == "" {
				t.Fatalf("password grant: %d %v; want 200 with a refresh_token", code, body)
			}
			if code, body = grant(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}); code != 200 || body["refresh_token"] == nil {
				t.Errorf("refresh grant: %d %v; want 200 with a new refresh_token", code, body)
			}
			code, ready := getAdmin(t, g, "/readyz")
			if code != 200 || !strings.Contains(ready, `"store_read":"ok"`) || !strings.Contains(ready, `"store_write":"ok"`) {
				t.Errorf("/readyz: %d %s; want 200 with store_read and store_write", code, ready)
			}
		})
	}
}

// TestStoreOpenFailureExits: a store that cannot be opened (the bolt path
// is a directory; the file is held by another running gateway) is one clear
// line and exit 1. Before, openStore returned a nil *boltstore.Store inside
// a non-nil store.Store and the clean-up's Close on it panicked (exit 2, a
// stack trace).
func TestStoreOpenFailureExits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	held := filepath.Join(dir, "held.db")
	startProc(t, []string{"KEYGATE_STORE_BOLT_PATH=" + held, "KEYGATE_LISTEN=127.0.0.1:0", "KEYGATE_ADMIN_LISTEN=" + freeAddr(t)},
		"serve", "--demo")
	isDir := filepath.Join(dir, "isdir.db")
	if err := os.Mkdir(isDir, 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"path is a directory", isDir, "is a directory"},
		{"file held by another gateway", held, "locked by another process"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.path == held {
				waitFile(t, held)
			}
			code, _, stderr := run(t, []string{"KEYGATE_STORE_BOLT_PATH=" + tc.path, "KEYGATE_LISTEN=127.0.0.1:0",
				"KEYGATE_ADMIN_LISTEN=" + freeAddr(t)}, "serve", "--demo")
			if code != 1 || !strings.Contains(stderr, "keygate: cannot open the bolt store:") || !strings.Contains(stderr, tc.want) ||
				strings.Contains(stderr, "panic") {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and one line naming %q, no panic", code, stderr, tc.want)
			}
		})
	}
}

// waitFile waits until path exists (a gateway opened its store).
func waitFile(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
	t.Fatalf("%s was not created", path)
}

// tokenGrant posts form to g's token endpoint and returns the status, the
// headers and the JSON body.
func tokenGrant(t *testing.T, g *gateway, form url.Values) (int, http.Header, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(g.url("/oauth/token"), form)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("token response is not JSON: %v", err)
	}
	return resp.StatusCode, resp.Header, body
}
