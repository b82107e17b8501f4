//go:build chaos

package e2e

// Redis failover scenarios of issue 13 item 1, against the built binary and
// real redis-server processes (make chaos). Each measures, from the moment
// Redis reports itself healthy again, how long keygate takes to answer 200
// for an API key it never cached (its owner on the failed master) and to
// accept an admin write there.

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store/redisstore"
)

// TestChaosClusterFailover: 3 masters + 3 replicas, cluster-node-timeout
// 3 s (closer to production than the 2 s of TestClusterFailover), kill -9
// of the master that holds a user's slot. Target: service back within 2 s
// of Redis being healthy again (issue: 37.7 s before the fix).
func TestChaosClusterFailover(t *testing.T) {
	f := rrClusterFailover(t, 3*time.Second)
	chaosFigure(t, "cluster_failover",
		"redis_ok_after_kill", f.okAfterKill,
		"uncached_key_200_after_ok", f.read,
		"admin_write_after_ok", f.write,
		"readyz_200_after_ok", f.ready,
		"statuses", f.statuses)
}

// TestChaosSentinelFailover: master + replica + Sentinel (down after 1 s),
// kill -9 of the master. Measured from the moment Sentinel names the
// replica master (switch-master); go-redis follows switch-master itself.
// The bound is 1.5 s, not 0.1 s: after pool_size failed dials go-redis'
// pool stops dialing and probes once a second until a dial succeeds, so
// the first connection to the new master waits up to 1 s (measured 0.57–
// 0.95 s with and without this package's changes).
func TestChaosSentinelFailover(t *testing.T) {
	master := testredis.Start(t, "--repl-diskless-sync-delay", "0")
	replica := testredis.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port()))
	sentinel := testredis.StartSentinel(t, "kgmaster", master.Addr())
	up := startEchoProc(t)
	g := startGateway(t, serveOpts{routes: auOpsRoutes(up),
		store: rrRedisYAML([]string{sentinel.Addr()}, "1s") + "\n    master_name: kgmaster"})
	st, err := redisstore.New(configs.Redis{Addrs: []string{sentinel.Addr()}, MasterName: "kgmaster", KeyPrefix: "kg:",
		Timeout: configs.Duration(2 * time.Second)}, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := auStore{t: t, st: st}
	s.account("acme")
	s.user("alice", "acme", "")
	_, warmV := s.key("alice", "warm")
	_, coldV := s.key("alice", "cold")
	ctx := context.Background()
	mc := redis.NewClient(&redis.Options{Addr: master.Addr()})
	if n, err := mc.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v", n, err)
	}
	mc.Close()
	cl := newAuClient(5 * time.Second)
	defer cl.close()
	cl.want(t, "warm key", g.url("/x"), "Bearer "+warmV, 200)
	cl.want(t, "warm admin", g.url("/x"), auBasic("admin", rrAdminPW), 200)

	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr()})
	defer sc.Close()
	master.Stop()
	killed := time.Now()
	okAt, readAt, writeAt, statuses := rrRecovery(t, g, coldV, "acme", "alice", 60*time.Second, func() time.Time {
		addr, err := sc.GetMasterAddrByName(ctx, "kgmaster").Result()
		if err == nil && len(addr) == 2 && addr[1] == strconv.Itoa(replica.Port()) {
			return time.Now()
		}
		return time.Time{}
	})
	chaosFigure(t, "sentinel_failover",
		"switch_master_after_kill", okAt.Sub(killed).Round(time.Millisecond),
		"uncached_key_200_after_switch", readAt.Sub(okAt).Round(time.Millisecond),
		"admin_write_after_switch", writeAt.Sub(okAt).Round(time.Millisecond),
		"statuses", statuses)
	for what, at := range map[string]time.Time{"uncached key": readAt, "admin write": writeAt} {
		if at.Sub(okAt) > 1500*time.Millisecond {
			t.Errorf("%s back %v after switch-master, want ≤ 1.5s", what, at.Sub(okAt))
		}
	}
}
