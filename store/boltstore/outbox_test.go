package boltstore_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

func TestOutboxConformance(t *testing.T) {
	storetest.RunOutbox(t, func(t *testing.T, now func() time.Time) store.Driver {
		return open(t, filepath.Join(t.TempDir(), "kg.db"), now)
	})
}

// TestOutboxSurvivesReopen: entries, their retry state and the ID sequence
// survive closing and reopening the file.
func TestOutboxSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kg.db")
	s := open(t, path, nil)
	var added []store.OutboxEntry
	for _, n := range []string{"a", "b", "c"} {
		e := store.OutboxEntry{Op: "create", Kind: "principal", Name: n}
		if err := s.EnqueueOutbox(ctx, &e); err != nil {
			t.Fatal(err)
		}
		added = append(added, e)
	}
	nb := time.Unix(1_800_000_000, 5).UTC()
	if err := s.RescheduleOutbox(ctx, added[1].ID, 3, nb); err != nil {
		t.Fatal(err)
	}
	if err := s.AckOutbox(ctx, added[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path, nil)
	got, err := s.NextOutbox(ctx, store.OutboxClaim{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != added[1].ID || got[0].Attempts != 3 || !got[0].NotBefore.Equal(nb) ||
		got[1].Name != "c" || !got[1].CreatedAt.Equal(added[2].CreatedAt) {
		t.Fatalf("after reopen: %+v", got)
	}
	e := store.OutboxEntry{Op: "delete", Kind: "domain", Name: "d"}
	if err := s.EnqueueOutbox(ctx, &e); err != nil {
		t.Fatal(err)
	}
	if e.ID <= added[2].ID {
		t.Fatalf("ID %q after reopen, not after %q", e.ID, added[2].ID)
	}
	got, _ = s.NextOutbox(ctx, store.OutboxClaim{Limit: 10})
	if names := []string{got[0].Name, got[1].Name, got[2].Name}; len(got) != 3 || !slices.Equal(names, []string{"b", "c", "d"}) {
		t.Fatalf("order after reopen: %+v", got)
	}
}
