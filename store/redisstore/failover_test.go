package redisstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
)

// TestClusterFailoverReload (issue 13 item 1): a master of a 3+3 cluster
// is killed (SIGKILL); once Redis has promoted its replica
// (cluster_state:ok on every live node, the slot on a new master), reads
// and writes on its slots work again
// within 2 s. Before, dial errors never reloaded the slot map and only
// go-redis' periodic reload (60 s) recovered. While the slots have no
// reachable master, Ready reports cluster_slots failed, and calls fail with
// ErrUnavailable, never ErrNotFound.
func TestClusterFailoverReload(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster failover in -short mode")
	}
	c := testredis.StartClusterOpts(t, testredis.ClusterOptions{Masters: 3, Replicas: 1, NodeTimeout: 2 * time.Second})
	s := newTestStore(t, c.Addrs(), nil, time.Second)
	ctx := context.Background()
	f := seed(t, s)
	cc := s.cluster
	if cc == nil {
		t.Fatal("not a cluster client")
	}
	slot := int(redisSlot(t, cc, s.userKey(f.key.ID[:tagLen])))
	victim := c.MasterOf(slot)
	if victim == nil {
		t.Fatalf("no master for slot %d", slot)
	}
	// The replica must have the fixture before its master dies.
	vc := redis.NewClient(&redis.Options{Addr: victim.Addr()})
	if n, err := vc.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 on the victim = %d, %v", n, err)
	}
	_ = vc.Close()
	for _, ch := range s.Ready(ctx) {
		if ch.Err != nil {
			t.Fatalf("before the kill: %s: %v", ch.Name, ch.Err)
		}
	}

	victim.Stop()
	killed := time.Now()
	sawNotReady := false
	var okAt, readAt, writeAt time.Time
	for i := 0; readAt.IsZero() || writeAt.IsZero(); i++ {
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("not recovered 30s after the kill (cluster healthy: %v, read ok: %v, write ok: %v)",
				!okAt.IsZero(), !readAt.IsZero(), !writeAt.IsZero())
		}
		if okAt.IsZero() {
			// Healthy again: every live node says cluster_state:ok and
			// a live node other than the victim serves the slot.
			if ok, _ := c.StateOK(); ok {
				if m := c.MasterOf(slot); m != nil && m != victim {
					okAt = time.Now()
				}
			}
			if okAt.IsZero() && !sawNotReady {
				for _, ch := range s.Ready(ctx) {
					if ch.Name == "cluster_slots" && ch.Err != nil {
						sawNotReady = true
					}
				}
			}
		}
		if readAt.IsZero() {
			_, _, err := s.LookupAPIKey(ctx, f.key.ID)
			switch {
			case err == nil:
				readAt = time.Now()
			case errors.Is(err, store.ErrNotFound) || !errors.Is(err, store.ErrUnavailable):
				t.Fatalf("LookupAPIKey during failover: %v", err)
			}
		}
		if writeAt.IsZero() {
			err := s.CreateAPIKey(ctx, &store.APIKey{Username: "alice", Name: fmt.Sprintf("w%d", i), Hash: []byte("h")})
			switch {
			case err == nil:
				writeAt = time.Now()
			case !errors.Is(err, store.ErrUnavailable):
				t.Fatalf("CreateAPIKey during failover: %v", err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if okAt.IsZero() {
		okAt = time.Now() // served before every node said ok: recovery ≤ 0
	}
	t.Logf("cluster_state:ok %v after the kill; read +%v, write +%v after that",
		okAt.Sub(killed).Round(time.Millisecond), readAt.Sub(okAt).Round(time.Millisecond), writeAt.Sub(okAt).Round(time.Millisecond))
	for what, at := range map[string]time.Time{"read": readAt, "write": writeAt} {
		if d := at.Sub(okAt); d > 2*time.Second {
			t.Errorf("%s recovered %v after cluster_state:ok, want ≤ 2s", what, d)
		}
	}
	if !sawNotReady {
		t.Error("Ready never reported cluster_slots failed while the slots had no reachable master")
	}
	// Ready reads the client's view of the cluster, which the client
	// reloads on its own after the failover: it must be all ok within the
	// same 2 s bound as reads and writes.
	var failed []store.Check
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		failed = failed[:0]
		for _, ch := range s.Ready(ctx) {
			if ch.Err != nil {
				failed = append(failed, ch)
			}
		}
		if len(failed) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, ch := range failed {
		t.Errorf("2s after the failover: %s: %v", ch.Name, ch.Err)
	}
}

// TestClusterReadyDeadMaster (issue 13 item 9): on a cluster without
// replicas, a dead master leaves its slots uncovered: Ready reports
// store_read and cluster_slots failed (it was all ok before).
func TestClusterReadyDeadMaster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster in -short mode")
	}
	c := testredis.StartCluster(t, 3)
	s := newTestStore(t, c.Addrs(), nil, 500*time.Millisecond)
	ctx := context.Background()
	names := func(checks []store.Check) (all, failed []string) {
		for _, ch := range checks {
			all = append(all, ch.Name)
			if ch.Err != nil {
				failed = append(failed, ch.Name)
			}
		}
		return all, failed
	}
	all, failed := names(s.Ready(ctx))
	if fmt.Sprint(all) != "[store_read cluster_slots store_write]" || len(failed) != 0 {
		t.Fatalf("healthy cluster: checks %v, failed %v", all, failed)
	}
	// Kill a master that does not hold the directory slot (the write
	// probe's), so the write probe still works.
	dir := int(redisSlot(t, s.cluster, s.kReady))
	var victim *testredis.Server
	for _, srv := range c.Servers {
		if srv != c.MasterOf(dir) {
			victim = srv
			break
		}
	}
	victim.Stop()
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, failed = names(s.Ready(cctx))
	if fmt.Sprint(failed) != "[store_read cluster_slots]" {
		t.Errorf("dead master: failed checks %v, want [store_read cluster_slots]", failed)
	}
}
