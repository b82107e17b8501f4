package storetest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// SessionsFactory returns a fresh store with the clock now that records
// ended sessions.
type SessionsFactory func(t *testing.T, now func() time.Time) store.EndedSessions

// RunSessions runs the store.EndedSessions conformance tests: a store that
// records ended web UI sessions calls it from its tests.
func RunSessions(t *testing.T, newStore SessionsFactory) {
	t.Helper()
	t.Run("EndAndExpire", func(t *testing.T) {
		t.Parallel()
		clock := NewClock(time.Now().UTC().Truncate(time.Second))
		s := newStore(t, clock.Now)
		ctx := context.Background()
		ended := func(id string) bool {
			t.Helper()
			ok, err := s.SessionEnded(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		if ended("s1") {
			t.Fatal("an unknown session is ended")
		}
		if err := s.EndSession(ctx, "s1", clock.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if !ended("s1") || ended("s2") {
			t.Fatal("EndSession did not end s1 only")
		}
		// Again, with an earlier end: not shortened.
		if err := s.EndSession(ctx, "s1", clock.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		clock.Advance(30 * time.Minute)
		if !ended("s1") {
			t.Fatal("a second EndSession shortened the record")
		}
		clock.Advance(31 * time.Minute)
		if ended("s1") {
			t.Fatal("the record outlived its end")
		}
		// An end in the past records nothing to refuse.
		if err := s.EndSession(ctx, "s3", clock.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		if ended("s3") {
			t.Fatal("a session ended in the past is refused")
		}
	})
	t.Run("Validation", func(t *testing.T) {
		t.Parallel()
		clock := NewClock(time.Now().UTC().Truncate(time.Second))
		s := newStore(t, clock.Now)
		ctx := context.Background()
		for _, id := range []string{"", "a b", "a:b", "{x}", strings.Repeat("a", 65), "é"} {
			if err := s.EndSession(ctx, id, clock.Now().Add(time.Hour)); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("EndSession(%q) = %v, want ErrInvalid", id, err)
			}
			if ok, err := s.SessionEnded(ctx, id); ok || err != nil {
				t.Errorf("SessionEnded(%q) = %v, %v", id, ok, err)
			}
		}
		if err := s.EndSession(ctx, "ok", time.Time{}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("EndSession without an end = %v, want ErrInvalid", err)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		clock := NewClock(time.Now().UTC().Truncate(time.Second))
		s := newStore(t, clock.Now)
		ctx := context.Background()
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				if err := s.EndSession(ctx, "c"+strings.Repeat("x", i), clock.Now().Add(time.Hour)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		for i := range 8 {
			if ok, err := s.SessionEnded(ctx, "c"+strings.Repeat("x", i)); !ok || err != nil {
				t.Errorf("session %d: %v %v", i, ok, err)
			}
		}
	})
}
