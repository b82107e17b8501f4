package testredis

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t, "--appendonly", "yes", "--appendfsync", "always")
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond})
	defer func() { _ = c.Close() }()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if v, _ := c.ConfigGet(ctx, "appendonly").Result(); v["appendonly"] != "yes" {
		t.Fatalf("extra args not applied: appendonly=%q", v["appendonly"])
	}
	if v, _ := c.ConfigGet(ctx, "save").Result(); v["save"] != "" {
		t.Fatalf("save = %q, want empty", v["save"])
	}
	s.Pause()
	pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if err := c.Ping(pctx).Err(); err == nil {
		t.Fatal("PING answered while paused")
	}
	cancel()
	s.Resume()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
	s.Stop()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered after Stop")
	}
	s.Stop() // idempotent
	s.Restart()
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("after restart GET = %q, %v; want v (AOF)", got, err)
	}
}

func TestTwoServersDiffer(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("same address %s", a.Addr())
	}
	if strings.HasSuffix(a.Addr(), ":6379") || strings.HasSuffix(b.Addr(), ":6379") {
		t.Fatal("used the shared port 6379")
	}
}

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster start in -short mode")
	}
	c := StartCluster(t, 3)
	if len(c.Addrs()) != 3 {
		t.Fatalf("Addrs = %v", c.Addrs())
	}
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer func() { _ = cl.Close() }()
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		if err := cl.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	nodes := map[string]bool{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		slot, err := cl.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		nodes[slotOwner(t, cl, int(slot))] = true
	}
	if len(nodes) < 2 {
		t.Fatalf("keys all on one node: %v", nodes)
	}
}

func slotOwner(t *testing.T, cl *redis.ClusterClient, slot int) string {
	t.Helper()
	shards, err := cl.ClusterShards(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shards {
		for _, r := range s.Slots {
			if int64(slot) >= r.Start && int64(slot) <= r.End {
				return s.Nodes[0].Endpoint + ":" + fmt.Sprint(s.Nodes[0].Port)
			}
		}
	}
	t.Fatalf("slot %d unowned", slot)
	return ""
}
