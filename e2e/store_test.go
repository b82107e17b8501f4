package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
)

// getAdmin returns status and body of GET on the admin listener.
func getAdmin(t *testing.T, g *gateway, path string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + g.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRedisReadiness runs the gateway on a private Redis: ready while Redis
// answers, 503 without leaking anything while it is down, ready again after.
func TestRedisReadiness(t *testing.T) {
	t.Parallel()
	const redisPassword = "e2e-redis-Pa55word" //nolint:gosec // test data, not a real credential
	r := testredis.Start(t, "--requirepass", redisPassword)
	up := startUpstream(t, 0)
	g := startGateway(t, serveOpts{
		routes: echoRoute("api", "/", up.addr),
		store:  fmt.Sprintf("  driver: redis\n  redis:\n    addrs: [%q]\n    timeout: 300ms", r.Addr()),
		env:    []string{"KEYGATE_STORE_REDIS_PASSWORD=" + redisPassword},
	})
	if code, body := getAdmin(t, g, "/readyz"); code != 200 || body != `{"status":"ready","store":"ok","checks":{"startup":"ok","store_read":"ok","store_write":"ok"}}` {
		t.Fatalf("readyz: %d %s", code, body)
	}
	if !strings.Contains(g.stderr.String(), `"store":"redis"`) {
		t.Errorf("start line does not name the redis store:\n%s", g.stderr.String())
	}

	r.Pause() // connections stay open, nothing answers
	began := time.Now()
	code, body := getAdmin(t, g, "/readyz")
	if code != 503 || body != `{"status":"unavailable","store":"unavailable","failed":["store_read","store_write"],"checks":{"startup":"ok","store_read":"failed","store_write":"failed"}}` {
		t.Errorf("readyz with Redis paused: %d %s", code, body)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("readyz took %v with Redis paused", took)
	}
	// Liveness does not depend on the store.
	if code, _ := getAdmin(t, g, "/healthz"); code != 200 {
		t.Errorf("healthz with Redis paused: %d", code)
	}
	r.Resume()

	ok := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code, _ := getAdmin(t, g, "/readyz"); code == 200 {
			ok = true
			break
		}
	}
	if !ok {
		t.Error("not ready again after Redis came back")
	}
	if strings.Contains(g.stderr.String(), redisPassword) {
		t.Error("the Redis password appears in keygate's output")
	}
}

// TestStoreUnreachableAtStart: a clear error, exit 1, no secret in the output.
func TestStoreUnreachableAtStart(t *testing.T) {
	t.Parallel()
	const redisPassword = "never-show-this-secret"
	dead := freeAddr(t)
	env := []string{
		"KEYGATE_LISTEN=" + freeAddr(t), "KEYGATE_ADMIN_LISTEN=" + freeAddr(t),
		"KEYGATE_STORE_DRIVER=redis",
		"KEYGATE_STORE_REDIS_ADDRS=" + dead,
		"KEYGATE_STORE_REDIS_PASSWORD=" + redisPassword,
		"KEYGATE_STORE_REDIS_TIMEOUT=300ms",
		"KEYGATE_STORE_STARTUP_TIMEOUT=0s", // no retry (TestStoreStartupRetry covers it)
		"KEYGATE_ADMIN_PASSWORD=admin-password-not-shown",
		"KEYGATE_STORE_BOLT_PATH=" + filepath.Join(t.TempDir(), "unused.db"),
	}
	code, stdout, stderr := run(t, env, "serve", "--demo")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(stderr, "store") {
		t.Errorf("stderr does not name the store:\n%s", stderr)
	}
	for _, secret := range []string{redisPassword, "admin-password-not-shown"} {
		if strings.Contains(stderr+stdout, secret) {
			t.Errorf("output contains a secret:\n%s", stderr)
		}
	}
}
