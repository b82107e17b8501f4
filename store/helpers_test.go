package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
	"github.com/keygate/keygate/store/storetest"
)

// newBolt returns a real, empty embedded store on a test clock.
func newBolt(t testing.TB) (*boltstore.Store, *storetest.Clock) {
	t.Helper()
	clock := storetest.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "kg.db"), boltstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, clock
}

// flaky wraps a real store and fails TouchAPIKeys and PurgeAPIKeys while
// failing is set, recording each TouchAPIKeys batch.
type flaky struct {
	store.Store
	mu      sync.Mutex
	failing bool
	batches []map[string]time.Time
}

var errDown = errors.New("store down")

func (f *flaky) setFailing(v bool) {
	f.mu.Lock()
	f.failing = v
	f.mu.Unlock()
}

// TryLease always grants the lease, as the bolt store underneath does.
func (f *flaky) TryLease(context.Context, string, string, time.Duration) (bool, error) {
	return true, nil
}

func (f *flaky) TouchAPIKeys(ctx context.Context, used map[string]time.Time) error {
	f.mu.Lock()
	cp := make(map[string]time.Time, len(used))
	for k, v := range used {
		cp[k] = v
	}
	f.batches = append(f.batches, cp)
	failing := f.failing
	f.mu.Unlock()
	if failing {
		return errDown
	}
	return f.Store.TouchAPIKeys(ctx, used)
}

func (f *flaky) PurgeAPIKeys(ctx context.Context, before time.Time) (int, error) {
	f.mu.Lock()
	failing := f.failing
	f.mu.Unlock()
	if failing {
		return 0, errDown
	}
	return f.Store.PurgeAPIKeys(ctx, before)
}

func (f *flaky) calls() []map[string]time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]time.Time(nil), f.batches...)
}

// seed creates account acme, user alice and n keys; it returns their ids.
func seed(t testing.TB, s store.Store, n int) []string {
	t.Helper()
	ctx := context.Background()
	if err := s.CreateAccount(ctx, &store.Account{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, &store.User{Username: "alice", Account: "acme"}); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		k := &store.APIKey{Username: "alice", Name: "key" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Hash: []byte("h")}
		if err := s.CreateAPIKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		ids[i] = k.ID
	}
	return ids
}
