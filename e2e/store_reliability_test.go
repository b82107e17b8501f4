package e2e

// Store reliability against the built binary (issue 13 items 6 and 9):
// a hung Redis costs one store timeout per request; /readyz fails when
// bbolt cannot write (a full filesystem) and when Cluster slots point at a
// dead master. Helpers start with "rr".

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store/redisstore"
)

// rrStore opens the store of the Redis (or Cluster) at addrs, as the
// gateways see it (prefix "kg:").
func rrStore(t testing.TB, addrs []string) auStore {
	t.Helper()
	st, err := redisstore.New(configs.Redis{Addrs: addrs, KeyPrefix: "kg:", Timeout: configs.Duration(2 * time.Second)},
		redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return auStore{t: t, st: st}
}

// rrRedisYAML is the store block of a gateway on the Redis or Cluster at
// addrs with the given timeout.
func rrRedisYAML(addrs []string, timeout string) string {
	q := make([]string, len(addrs))
	for i, a := range addrs {
		q[i] = fmt.Sprintf("%q", a)
	}
	return fmt.Sprintf("  driver: redis\n  redis:\n    addrs: [%s]\n    timeout: %s", strings.Join(q, ", "), timeout)
}

// TestStoreHungTimeBound (item 6): Redis frozen by SIGSTOP, store timeout
// 1s: an uncached API key and an uncached password each get 503 after one
// timeout (plus a small slack), not two. Before the fix: 1.95–1.98 s.
func TestStoreHungTimeBound(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	const slack = 350 * time.Millisecond // a loaded 2-core machine
	r := testredis.Start(t)
	up := startEchoProc(t)
	g := startGateway(t, serveOpts{routes: auOpsRoutes(up), store: rrRedisYAML([]string{r.Addr()}, "1s")})
	s := rrStore(t, []string{r.Addr()})
	s.account("acme")
	s.user("alice", "acme", "")
	s.user("bob", "acme", "")
	_, keyV := s.key("alice", "k1")
	_, key2V := s.key("bob", "k2")
	c := newAuClient(10 * time.Second)
	defer c.close()
	// Warm the gateway's connections (a request that needs the store).
	c.want(t, "warm", g.url("/x"), auBasic("alice", auPassword), 200)

	r.Pause()
	defer r.Resume()
	tests := []struct{ name, authz string }{
		{"uncached api key", "Bearer " + keyV},
		{"uncached api key, fresh connection", "Bearer " + key2V},
		{"uncached password", auBasic("bob", auPassword)},
	}
	for _, tc := range tests {
		began := time.Now()
		resp := c.get(t, g.url("/x"), tc.authz)
		took := time.Since(began)
		t.Logf("%s with Redis stopped: %d after %v (store timeout %v)", tc.name, resp.status, took.Round(time.Millisecond), timeout)
		if resp.status != 503 {
			t.Errorf("%s: status %d, want 503: %s", tc.name, resp.status, resp.body)
		}
		if took > timeout+slack {
			t.Errorf("%s: answered after %v, want ≤ %v + %v", tc.name, took, timeout, slack)
		}
	}
}

// TestReadyBoltFullDisk (item 9): the bolt file on a 4 MiB tmpfs that
// fills up. /readyz turns 503 with store_write failed (store_read still ok)
// and an admin write gets a JSON 503, never a 500; once space is freed,
// /readyz is 200 again.
//
// Mounting needs root (CAP_SYS_ADMIN): without it the test is skipped with
// a message; with CI=true it fails unless mounting was refused for lack of
// permission (EPERM/EACCES), the one case CI images are expected to have.
func TestReadyBoltFullDisk(t *testing.T) {
	t.Parallel()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=4m,mode=0700"); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			t.Skipf("cannot mount a tmpfs (%v): run as root to test a full filesystem", err)
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v", err)
		}
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	// Registered first, so it runs after the gateway is killed.
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	up := startEchoProc(t)
	g := startGateway(t, serveOpts{
		routes: auOpsRoutes(up),
		store:  fmt.Sprintf("  driver: bolt\n  bolt:\n    path: %q", filepath.Join(mnt, "keygate.db")),
	})
	if code, rj := getReady(t, g); code != 200 || rj.Checks["store_write"] != "ok" {
		t.Fatalf("readyz before: %d %+v", code, rj)
	}
	ac := newAdmClient(t, g)
	admin := admBasic("admin", "correct-horse-battery-staple")

	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the tmpfs: %v", err)
			}
			break
		}
	}
	f.Close()

	code, rj := getReady(t, g)
	if code != 503 || rj.Checks["store_write"] != "failed" || rj.Checks["store_read"] != "ok" ||
		!slices.Contains(rj.Failed, "store_write") || rj.Status != "unavailable" {
		t.Errorf("readyz on a full filesystem: %d %+v", code, rj)
	}
	// Writes that need new pages fail; none may be a 500.
	statuses := map[int]int{}
	for i := range 40 {
		code, _, body := ac.once("POST", "/v1/accounts", admin, map[string]any{"name": fmt.Sprintf("acct%02d", i)})
		statuses[code]++
		if code >= 500 && code != 503 {
			t.Fatalf("admin write on a full filesystem: %d %s", code, body)
		}
		if code == 503 && errorCode(body) == "" {
			t.Errorf("503 without a JSON error: %s", body)
		}
	}

	t.Logf("40 account creations on the full filesystem: statuses %v", statuses)
	if statuses[503] == 0 {
		t.Error("no write failed on the full filesystem: the test did not fill it")
	}
	if code, rj := getReady(t, g); code != 503 || rj.Checks["store_write"] != "failed" {
		t.Errorf("readyz after failed writes: %d %+v", code, rj)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for code, rj = getReady(t, g); code != 200; code, rj = getReady(t, g) {
		if time.Now().After(deadline) {
			t.Fatalf("readyz after freeing space: %d %+v", code, rj)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, _, body := ac.once("POST", "/v1/accounts", admin, map[string]any{"name": "after"}); code != 201 {
		t.Errorf("admin write after freeing space: %d %s", code, body)
	}
	if out := g.stderr.String(); strings.Contains(out, "correct-horse-battery-staple") {
		t.Error("the admin password appears in keygate's output")
	}
}

// TestReadyClusterDeadMaster (item 9): a 3-master Cluster without
// replicas loses a master: its slots point at a dead node, /readyz turns
// 503 with cluster_slots failed within its 1 s budget.
func TestReadyClusterDeadMaster(t *testing.T) {
	t.Parallel()
	c := testredis.StartCluster(t, 3)
	up := startEchoProc(t)
	g := startGateway(t, serveOpts{routes: auOpsRoutes(up), store: rrRedisYAML(c.Addrs(), "300ms")})
	code, rj := getReady(t, g)
	if code != 200 || rj.Checks["cluster_slots"] != "ok" || rj.Checks["store_write"] != "ok" {
		t.Fatalf("readyz on a healthy cluster: %d %+v", code, rj)
	}
	c.Servers[1].Stop()
	began := time.Now()
	code, rj = getReady(t, g)
	took := time.Since(began)
	if code != 503 || rj.Checks["cluster_slots"] != "failed" || !slices.Contains(rj.Failed, "cluster_slots") {
		t.Errorf("readyz with a dead master: %d %+v", code, rj)
	}
	if took > 2*time.Second {
		t.Errorf("readyz took %v", took)
	}
	if strings.Contains(fmt.Sprint(rj), c.Servers[1].Addr()) {
		t.Error("readyz names the dead node's address")
	}
}
