package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
)

// readyJSON is the body of GET /readyz.
type readyJSON struct {
	Status string            `json:"status"`
	Store  string            `json:"store"`
	Reason string            `json:"reason"`
	Failed []string          `json:"failed"`
	Checks map[string]string `json:"checks"`
}

func getReady(t *testing.T, g *gateway) (int, readyJSON) {
	t.Helper()
	code, body := getAdmin(t, g, "/readyz")
	var r readyJSON
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("readyz body %q: %v", body, err)
	}
	return code, r
}

// startupRoutes: / needs a credential, /open is open.
func startupRoutes(up string) string {
	return echoRoute("open", "/open", up) +
		"  - name: api\n    path_prefix: /\n    upstreams: [\"http://" + up + "\"]\n    auth: required\n"
}

// TestStoreStartupRetry (issue 13 item 10): keygate starts before Redis.
// While Redis is not there it serves what needs no store, answers 503 to
// what does, and /readyz says "starting"; Redis appears 2 s later and
// keygate is ready and serving without a restart. With Redis never there
// it exits 1 after store.startup_timeout with a clear message.
func TestStoreStartupRetry(t *testing.T) {
	t.Parallel()
	const adminPW = "correct-horse-battery-staple" // startGateway's
	const redisPW = "startup-redis-Pa55"           //nolint:gosec // test data, not a real credential
	up := startEchoProc(t)
	c := newAuClient(5 * time.Second)
	defer c.close()

	t.Run("redis 2s late", func(t *testing.T) {
		t.Parallel()
		r := testredis.Start(t, "--requirepass", redisPW)
		r.Stop() // its port is known; nothing listens there now
		began := time.Now()
		g := startGateway(t, serveOpts{
			routes: startupRoutes(up),
			store:  auRedisYAML(r.Addr(), "startup_timeout: 20s"),
			env:    []string{"KEYGATE_STORE_REDIS_PASSWORD=" + redisPW},
		})
		code, rj := getReady(t, g)
		if code != 503 || rj.Status != "starting" || rj.Checks["startup"] != "failed" || rj.Reason == "" {
			t.Errorf("readyz while Redis is absent: %d %+v", code, rj)
		}
		resp := c.get(t, g.url("/x"), auBasic("admin", adminPW))
		if resp.status != 503 || resp.header.Get("Retry-After") == "" || errorCode(resp.body) != "starting" {
			t.Errorf("credentialed request while starting: %d %v %s", resp.status, resp.header, resp.body)
		}
		if resp := c.get(t, g.url("/open/x"), ""); resp.status != 200 {
			t.Errorf("open route while starting: %d %s", resp.status, resp.body)
		}
		if resp := c.get(t, g.url("/x"), ""); resp.status != 401 {
			t.Errorf("no credential while starting: %d, want 401", resp.status)
		}
		ac := newAdmClient(t, g)
		if code, _, body := ac.once("GET", "/v1/accounts", admBasic("admin", adminPW), nil); code != 503 || errorCode(body) != "starting" {
			t.Errorf("admin API while starting: %d %s", code, body)
		}
		if code, _ := getAdmin(t, g, "/healthz"); code != 200 {
			t.Errorf("healthz while starting: %d", code)
		}

		time.Sleep(time.Until(began.Add(2 * time.Second)))
		r.Restart()
		redisUp := time.Now()
		for code, _ := getReady(t, g); code != 200; code, _ = getReady(t, g) {
			if time.Since(redisUp) > 10*time.Second {
				t.Fatalf("not ready 10s after Redis came up; stderr:\n%s", g.stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		took := time.Since(redisUp)
		t.Logf("ready %v after Redis came up (retry backoff capped at 1s)", took.Round(time.Millisecond))
		if took > 3*time.Second {
			t.Errorf("ready %v after Redis came up, want ≤ 3s", took)
		}
		c.want(t, "after start-up", g.url("/x"), auBasic("admin", adminPW), 200)
		if code, _, body := ac.once("GET", "/v1/accounts", admBasic("admin", adminPW), nil); code != 200 {
			t.Errorf("admin API after start-up: %d %s", code, body)
		}
		if g.exited() {
			t.Fatal("keygate exited")
		}
		if out := g.stderr.String(); strings.Contains(out, redisPW) || strings.Contains(out, adminPW) {
			t.Error("a password appears in keygate's output")
		}
	})

	t.Run("redis never", func(t *testing.T) {
		t.Parallel()
		const wait = 2 * time.Second
		dead := freeAddr(t)
		began := time.Now()
		g := startGateway(t, serveOpts{
			routes: startupRoutes(up),
			store:  auRedisYAML(dead, "startup_timeout: 2s"),
			env:    []string{"KEYGATE_STORE_REDIS_PASSWORD=" + redisPW},
		})
		if code, rj := getReady(t, g); code != 503 || rj.Status != "starting" {
			t.Errorf("readyz: %d %+v", code, rj)
		}
		code := g.wait(wait + 10*time.Second)
		took := time.Since(began)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		if took < wait || took > wait+3*time.Second {
			t.Errorf("exited after %v, want about store.startup_timeout (%v)", took, wait)
		}
		out := g.stderr.String()
		if !strings.Contains(out, "keygate: the redis store was not reachable within store.startup_timeout (2s") {
			t.Errorf("no clear message on stderr:\n%s", out)
		}
		if strings.Contains(out, redisPW) || strings.Contains(out, adminPW) {
			t.Error("a password appears in keygate's output")
		}
	})
}

// TestStoreStartupNoRetry: store.startup_timeout 0 keeps the old
// behaviour, an immediate exit 1.
func TestStoreStartupNoRetry(t *testing.T) {
	t.Parallel()
	dead := freeAddr(t)
	began := time.Now()
	code, _, stderr := run(t, []string{
		"KEYGATE_LISTEN=" + freeAddr(t), "KEYGATE_ADMIN_LISTEN=" + freeAddr(t),
		"KEYGATE_STORE_DRIVER=redis", "KEYGATE_STORE_REDIS_ADDRS=" + dead,
		"KEYGATE_STORE_REDIS_TIMEOUT=300ms", "KEYGATE_STORE_STARTUP_TIMEOUT=0s",
	}, "serve", "--demo")
	if code != 1 || !strings.Contains(stderr, "cannot initialise the store") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("took %v to give up with startup_timeout 0", took)
	}
}
