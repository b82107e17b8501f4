package redisstore

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

func TestOutboxConformance(t *testing.T) {
	srv := testredis.Start(t)
	storetest.RunOutbox(t, func(t *testing.T, now func() time.Time) store.Driver {
		return newTestStore(t, []string{srv.Addr()}, now, 0)
	})
}

func TestOutboxConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster in -short mode")
	}
	c := testredis.StartCluster(t, 3)
	storetest.RunOutbox(t, func(t *testing.T, now func() time.Time) store.Driver {
		return newTestStore(t, c.Addrs(), now, 0)
	})
}

// TestOutboxSurvivesRestart: with appendonly and appendfsync always, an
// acknowledged enqueue, reschedule and ack survive a crash (SIGKILL) of
// Redis, and the ID sequence goes on.
func TestOutboxSurvivesRestart(t *testing.T) {
	srv := testredis.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	ctx := context.Background()
	cfg := configs.Redis{Addrs: []string{srv.Addr()}, KeyPrefix: uniquePrefix()}
	s, err := New(cfg, Options{})
	mustNil(t, err)
	var added []store.OutboxEntry
	for _, n := range []string{"a", "b", "c"} {
		e := store.OutboxEntry{Op: "create", Kind: "principal", Name: n}
		mustNil(t, s.EnqueueOutbox(ctx, &e))
		added = append(added, e)
	}
	nb := time.Unix(1_800_000_000, 5).UTC()
	mustNil(t, s.RescheduleOutbox(ctx, added[1].ID, 3, nb))
	mustNil(t, s.AckOutbox(ctx, added[0].ID))
	mustNil(t, s.Close())

	srv.Restart()
	s, err = New(cfg, Options{})
	mustNil(t, err)
	t.Cleanup(func() { _ = s.Close() })
	got, err := s.NextOutbox(ctx, store.OutboxClaim{Limit: 10})
	mustNil(t, err)
	if len(got) != 2 || got[0].ID != added[1].ID || got[0].Attempts != 3 || !got[0].NotBefore.Equal(nb) ||
		got[1].Name != "c" || !got[1].CreatedAt.Equal(added[2].CreatedAt) {
		t.Fatalf("after restart: %+v", got)
	}
	e := store.OutboxEntry{Op: "delete", Kind: "domain", Name: "d"}
	mustNil(t, s.EnqueueOutbox(ctx, &e))
	if e.ID <= added[2].ID {
		t.Fatalf("ID %q after restart, not after %q", e.ID, added[2].ID)
	}
	got, err = s.NextOutbox(ctx, store.OutboxClaim{Limit: 10})
	mustNil(t, err)
	var names []string
	for _, x := range got {
		names = append(names, x.Name)
	}
	if !slices.Equal(names, []string{"b", "c", "d"}) {
		t.Fatalf("order after restart: %q", names)
	}
}
