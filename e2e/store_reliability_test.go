package e2e

// Store reliability against the built binary (issue 13 items 6 and 9):
// a hung Redis costs one store timeout per request; /readyz fails when
// bbolt cannot write (a full filesystem) and when Cluster slots point at a
// dead master. Helpers start with "rr".

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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
	t.Cleanup(func() { _ = st.Close() })
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
	f, err := os.Create(filler) //nolint:gosec // a file the test itself wrote
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
	_ = f.Close()

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

const rrAdminPW = "correct-horse-battery-staple" // startGateway's

// rrRecovery polls, every 25 ms after the fault, an uncached API key
// through the proxy and an admin write on the same user, until both
// succeed or d passes. healthyAt, called each round until it returns a
// non-zero time, says when Redis reported itself healthy. It returns the
// three times and the statuses seen.
func rrRecovery(t *testing.T, g *gateway, keyValue, account, user string, d time.Duration,
	healthyAt func() time.Time) (okAt, readAt, writeAt time.Time, statuses map[string]int) {
	t.Helper()
	c := newAuClient(5 * time.Second)
	defer c.close()
	ac := newAdmClient(t, g)
	statuses = map[string]int{}
	began := time.Now()
	for i := 0; readAt.IsZero() || writeAt.IsZero() || okAt.IsZero(); i++ {
		if time.Since(began) > d {
			t.Fatalf("not recovered %v after the fault: healthy %v, read %v, write %v; statuses %v",
				d, !okAt.IsZero(), !readAt.IsZero(), !writeAt.IsZero(), statuses)
		}
		if okAt.IsZero() {
			okAt = healthyAt()
		}
		if readAt.IsZero() {
			st := c.status(g.url("/x"), "Bearer "+keyValue)
			statuses[fmt.Sprintf("read_%d", st)]++
			switch st {
			case 200:
				readAt = time.Now()
			case 503:
			default:
				t.Fatalf("uncached key during failover: status %d", st)
			}
		}
		if writeAt.IsZero() {
			code, _, body := ac.once("POST", "/v1/accounts/"+account+"/users/"+user+"/api-keys",
				admBasic("admin", rrAdminPW), map[string]any{"name": "w" + strconv.Itoa(i)})
			statuses[fmt.Sprintf("write_%d", code)]++
			switch code {
			case 201:
				writeAt = time.Now()
			case 503:
			default:
				t.Fatalf("admin write during failover: %d %s", code, body)
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	return okAt, readAt, writeAt, statuses
}

// rrFailover are the figures of rrClusterFailover, measured from the moment
// Redis is healthy again (negative: keygate served before every node said
// so).
type rrFailover struct {
	okAfterKill, read, write, ready time.Duration
	statuses                        map[string]int
}

// rrClusterFailover runs the Cluster failover scenario of issue 13 item 1
// against the binary: 3 masters + 3 replicas with cluster-node-timeout
// nodeTimeout, a gateway on it, kill -9 of the master of a user's slot.
// "Healthy" is every live node reporting cluster_state:ok with the slot on
// the promoted replica. It fails the test unless an API key never used
// before the kill answers 200, an admin write on the user's slot succeeds
// and /readyz is 200, each within 2 s of that, and unless /readyz reported
// cluster_slots failed in between.
func rrClusterFailover(t *testing.T, nodeTimeout time.Duration) rrFailover {
	t.Helper()
	c := testredis.StartClusterOpts(t, testredis.ClusterOptions{Masters: 3, Replicas: 1, NodeTimeout: nodeTimeout})
	up := startEchoProc(t)
	g := startGateway(t, serveOpts{routes: auOpsRoutes(up), store: rrRedisYAML(c.Addrs(), "1s")})
	s := rrStore(t, c.Addrs())
	s.account("acme")
	s.user("alice", "acme", "")
	id0, warmV := s.key("alice", "warm")
	_, coldV := s.key("alice", "cold") // never used before the kill

	ctx := context.Background()
	any0 := redis.NewClient(&redis.Options{Addr: c.Addrs()[0]})
	defer func() { _ = any0.Close() }()
	slot, err := any0.ClusterKeySlot(ctx, "kg:{"+id0[:8]+"}").Result()
	if err != nil {
		t.Fatal(err)
	}
	victim := c.MasterOf(int(slot))
	vc := redis.NewClient(&redis.Options{Addr: victim.Addr()})
	if n, err := vc.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 on the victim = %d, %v", n, err)
	}
	_ = vc.Close()
	// The gateway holds connections to the victim and caches the admin.
	cl := newAuClient(5 * time.Second)
	defer cl.close()
	cl.want(t, "warm key", g.url("/x"), "Bearer "+warmV, 200)
	cl.want(t, "warm admin", g.url("/x"), auBasic("admin", rrAdminPW), 200)

	victim.Stop()
	killed := time.Now()
	sawNotReady := false
	okAt, readAt, writeAt, statuses := rrRecovery(t, g, coldV, "acme", "alice", 60*time.Second, func() time.Time {
		if ok, _ := c.StateOK(); ok {
			if m := c.MasterOf(int(slot)); m != nil && m != victim {
				return time.Now()
			}
		}
		if !sawNotReady {
			if code, rj := getReady(t, g); code == 503 && rj.Checks["cluster_slots"] == "failed" {
				sawNotReady = true
			}
		}
		return time.Time{}
	})
	readyAt := time.Time{}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		if code, _ := getReady(t, g); code == 200 {
			readyAt = time.Now()
			break
		}
	}
	f := rrFailover{okAfterKill: okAt.Sub(killed).Round(time.Millisecond), read: readAt.Sub(okAt).Round(time.Millisecond),
		write: writeAt.Sub(okAt).Round(time.Millisecond), ready: readyAt.Sub(okAt).Round(time.Millisecond), statuses: statuses}
	t.Logf("cluster failover (node timeout %v): healthy %v after the kill; uncached key %v, admin write %v, readyz %v after that; %v",
		nodeTimeout, f.okAfterKill, f.read, f.write, f.ready, statuses)
	for what, at := range map[string]time.Time{"uncached key": readAt, "admin write": writeAt, "readyz": readyAt} {
		if at.IsZero() || at.Sub(okAt) > 2*time.Second {
			t.Errorf("%s back %v after cluster_state:ok, want ≤ 2s", what, at.Sub(okAt))
		}
	}
	if !sawNotReady {
		t.Error("/readyz never reported cluster_slots failed during the failover")
	}
	return f
}

// TestClusterFailover (item 1): the failover scenario with a 2 s
// cluster-node-timeout, in the normal suite (make chaos runs it with 3 s).
// Not 1 s: on a loaded machine a node that misses pings for 1 s is failed
// over too.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	rrClusterFailover(t, 2*time.Second)
}
