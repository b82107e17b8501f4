package redisstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// readyProbeTTL is how long the readiness write probe's key lives.
const readyProbeTTL = 10 * time.Second

// Ready implements store.Readiness, in this order:
//
//   - store_read: PING answered (on a Cluster: by every master of the
//     client's slot map, reloaded first);
//   - cluster_slots (Cluster only): the slot map, read from a node, covers
//     all 16384 slots with masters that answered that PING. A dead master
//     whose replica is not promoted yet fails it;
//   - store_write: a write is accepted (SET of a short-lived key on the
//     directory's slot), which catches a read-only replica left as master,
//     OOM under maxmemory and MISCONF (failing RDB saves).
//
// Cost: two round trips on a single node or Sentinel; on a Cluster a slot
// map reload, one PING per master (in parallel), CLUSTER SLOTS and the SET.
// Everything is bounded by ctx.
func (s *Store) Ready(ctx context.Context) []store.Check {
	var checks []store.Check
	if s.cluster == nil {
		checks = append(checks, store.Check{Name: "store_read", Err: s.wrap("ping", s.c.Ping(ctx).Err())})
	} else {
		reachable, err := s.pingMasters(ctx)
		checks = append(checks, store.Check{Name: "store_read", Err: err})
		cerr := s.slotCoverage(ctx, reachable)
		if cerr != nil {
			s.cluster.ReloadState(ctx)
		}
		checks = append(checks, store.Check{Name: "cluster_slots", Err: cerr})
	}
	werr := s.c.Set(ctx, s.kReady, "1", readyProbeTTL).Err()
	return append(checks, store.Check{Name: "store_write", Err: s.wrap("write probe", werr)})
}

// pingMasters reloads the cluster's slot map (ForEachMaster does first),
// PINGs every master and returns the addresses that answered; err is the
// first failure.
func (s *Store) pingMasters(ctx context.Context) (map[string]bool, error) {
	var mu sync.Mutex
	ok := map[string]bool{}
	err := s.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		if err := c.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("master %s: %w", c.Options().Addr, err)
		}
		mu.Lock()
		ok[c.Options().Addr] = true
		mu.Unlock()
		return nil
	})
	return ok, s.wrap("ping", err)
}

// slotCoverage checks that CLUSTER SLOTS covers every slot with a master in
// reachable.
func (s *Store) slotCoverage(ctx context.Context, reachable map[string]bool) error {
	// CLUSTER SLOTS, as go-redis' own map reload: CLUSTER SHARDS needs
	// Redis 7.
	//lint:ignore SA1019 CLUSTER SLOTS also works on Redis 6
	slots, err := s.cluster.ClusterSlots(ctx).Result()
	if err != nil {
		return s.wrap("cluster slots", err)
	}
	covered := 0
	var bad []string
	for _, r := range slots {
		if len(r.Nodes) == 0 {
			continue
		}
		if addr := r.Nodes[0].Addr; !reachable[addr] {
			bad = append(bad, fmt.Sprintf("%d-%d on %s", r.Start, r.End, addr))
			continue
		}
		covered += r.End - r.Start + 1
	}
	if covered == clusterSlots {
		return nil
	}
	msg := fmt.Sprintf("redisstore: %d of %d slots served by a reachable master", covered, clusterSlots)
	if len(bad) > 0 {
		msg += fmt.Sprintf(" (unreachable: %v)", bad)
	}
	return fmt.Errorf("%s: %w", msg, store.ErrUnavailable)
}

var _ store.Readiness = (*Store)(nil)
