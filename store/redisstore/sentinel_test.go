package redisstore

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
)

// TestSentinelFailover runs the store through Sentinel (MasterName set):
// it works, the master dies, Sentinel promotes the replica, and the store
// carries on with the replicated data. Calls during the failover fail with
// ErrUnavailable, never ErrNotFound.
func TestSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("sentinel failover in -short mode")
	}
	// No diskless-sync delay (5 s by default): the replica syncs at once.
	master := testredis.Start(t, "--repl-diskless-sync-delay", "0")
	replica := testredis.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port()))
	sentinel := testredis.StartSentinel(t, "kgmaster", master.Addr())

	s, err := New(configs.Redis{Addrs: []string{sentinel.Addr()}, MasterName: "kgmaster",
		KeyPrefix: uniquePrefix(), Timeout: configs.Duration(500 * time.Millisecond)}, Options{})
	mustNil(t, err)
	defer func() { _ = s.Close() }()
	if _, ok := s.c.(*redis.Client); !ok {
		t.Fatalf("MasterName gave a %T, want a failover *redis.Client", s.c)
	}
	ctx := context.Background()
	f := seed(t, s)
	// Wait until the replica has the writes.
	mc := redis.NewClient(&redis.Options{Addr: master.Addr()})
	defer func() { _ = mc.Close() }()
	for i := 0; ; i++ {
		n, err := mc.Wait(ctx, 1, time.Second).Result()
		if err == nil && n == 1 {
			break
		}
		if i == 20 {
			t.Fatalf("WAIT for the replica = %d, %v", n, err)
		}
	}

	master.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, err := s.LookupAPIKey(ctx, f.key.ID)
		if err == nil {
			// Reads work; writes need the promotion done.
			err = s.CreateAccount(ctx, &store.Account{Name: "after-failover"})
			if err == nil {
				break
			}
		}
		if errors.Is(err, store.ErrNotFound) {
			t.Fatalf("during failover: %v (ErrNotFound)", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failover within 30s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	k, u, err := s.LookupAPIKey(ctx, f.key.ID)
	if err != nil || u.Username != "alice" || string(k.Hash) != "hash" {
		t.Fatalf("after failover LookupAPIKey = %+v, %+v, %v", k, u, err)
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr()})
	defer func() { _ = sc.Close() }()
	addr, err := sc.GetMasterAddrByName(ctx, "kgmaster").Result()
	mustNil(t, err)
	if addr[1] != strconv.Itoa(replica.Port()) {
		t.Errorf("sentinel master = %v, want the replica's port %d", addr, replica.Port())
	}
}
