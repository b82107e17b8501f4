package boltstore_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

func TestEndedSessionsConformance(t *testing.T) {
	storetest.RunSessions(t, func(t *testing.T, now func() time.Time) store.EndedSessions {
		return open(t, filepath.Join(t.TempDir(), "kg.db"), now)
	})
}

// TestEndedSessionsSwept: a logout drops the records whose end has passed,
// so the bucket holds at most the sessions of one absolute lifetime; a
// restart keeps the live ones.
func TestEndedSessionsSwept(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kg.db")
	clock := storetest.NewClock(time.Now().UTC().Truncate(time.Second))
	s := open(t, path, clock.Now)
	for _, id := range []string{"a", "b", "c"} {
		if err := s.EndSession(ctx, id, clock.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(2 * time.Minute)
	if err := s.EndSession(ctx, "d", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := s.EndedSessionRecords(); n != 1 {
		t.Fatalf("%d records after the sweep, want 1", n)
	}
	_ = s.Close()
	s = open(t, path, clock.Now)
	if ok, err := s.SessionEnded(ctx, "d"); !ok || err != nil {
		t.Fatalf("after a restart: %v %v", ok, err)
	}
}
