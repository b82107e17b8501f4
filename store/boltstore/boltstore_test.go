package boltstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
	"github.com/keygate/keygate/store/storetest"
)

func open(t testing.TB, path string, now func() time.Time) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, boltstore.Options{Now: now})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Driver {
		return open(t, filepath.Join(t.TempDir(), "kg.db"), now)
	})
}

func TestRestartKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "kg.db") // the directory is created
	clock := storetest.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	ctx := context.Background()
	s, err := boltstore.Open(path, boltstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccount(ctx, &store.Account{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, &store.User{Username: "alice", Account: "acme", Roles: []string{"r"}, PasswordHash: "$argon2id$x"}); err != nil { //nolint:gosec // test data, not a real credential
		t.Fatal(err)
	}
	k := &store.APIKey{Username: "alice", Name: "ci", Hash: []byte{1, 2, 3}, ExpiresAt: clock.Now().Add(time.Hour)}
	if err := s.CreateAPIKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	revoked := &store.APIKey{Username: "alice", Name: "old", Hash: []byte{4}}
	if err := s.CreateAPIKey(ctx, revoked); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RevokeAPIKey(ctx, revoked.ID, clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchAPIKeys(ctx, map[string]time.Time{k.ID: clock.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}

	s2 := open(t, path, clock.Now)
	gk, gu, err := s2.LookupAPIKey(ctx, k.ID)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if gu.Username != "alice" || gu.PasswordHash != "$argon2id$x" || gu.Generation != 1 || len(gu.Roles) != 1 {
		t.Errorf("user after restart = %+v", gu)
	}
	if gk.Name != "ci" || string(gk.Hash) != "\x01\x02\x03" || gk.Account != "acme" ||
		!gk.ExpiresAt.Equal(clock.Now().Add(time.Hour)) || !gk.LastUsedAt.Equal(clock.Now().Add(time.Minute)) {
		t.Errorf("key after restart = %+v", gk)
	}
	if r, err := s2.GetAPIKey(ctx, revoked.ID); err != nil || !r.RevokedAt.Equal(clock.Now()) {
		t.Errorf("revoked key after restart = %+v, %v", r, err)
	}
	// The name index survived: the active name is still taken.
	err = s2.CreateAPIKey(ctx, &store.APIKey{Username: "alice", Name: "ci", Hash: []byte{9}})
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate name after restart: %v", err)
	}
	if list, err := s2.ListUsers(ctx, "acme"); err != nil || len(list) != 1 {
		t.Errorf("ListUsers after restart = %v, %v", list, err)
	}
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kg.db")
	open(t, path, nil)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode = %v, want 0600", perm)
	}
}

func TestFileModeTightened(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kg.db")
	s := open(t, path, nil)
	_ = s.Close()
	if err := os.Chmod(path, 0o644); err != nil { //nolint:gosec // a test file in a temporary directory
		t.Fatal(err)
	}
	open(t, path, nil)
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode after reopen = %v, want 0600", fi.Mode().Perm())
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kg.db")
	open(t, path, nil)
	start := time.Now()
	s, err := boltstore.Open(path, boltstore.Options{Timeout: 100 * time.Millisecond})
	if err == nil {
		_ = s.Close()
		t.Fatal("second Open of a held file succeeded")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("second Open took %v", took)
	}
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "locked") {
		t.Errorf("err = %v, want a clear 'locked' error wrapping ErrUnavailable", err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := boltstore.Open("", boltstore.Options{}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Open(\"\") = %v", err)
	}
	// A file that is not a bolt database.
	path := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("junk"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := boltstore.Open(path, boltstore.Options{}); err == nil {
		_ = s.Close()
		t.Error("Open of a junk file succeeded")
	}
	// A directory where the file should be.
	if s, err := boltstore.Open(t.TempDir(), boltstore.Options{}); err == nil {
		_ = s.Close()
		t.Error("Open of a directory succeeded")
	}
}

func TestClosed(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "kg.db"), nil)
	ctx := context.Background()
	if err := s.CreateAccount(ctx, &store.Account{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	watchDone := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		watchDone <- s.Watch(ctx, func(store.Invalidation) {})
	}()
	<-started
	time.Sleep(10 * time.Millisecond)
	_ = s.Close()
	select {
	case err := <-watchDone:
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("Watch after Close = %v, want ErrUnavailable", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Watch did not end when the store closed")
	}
	checks := map[string]error{
		"Ping":         s.Ping(ctx),
		"CreateAcount": s.CreateAccount(ctx, &store.Account{Name: "x"}),
		"Watch":        s.Watch(ctx, func(store.Invalidation) {}),
	}
	_, checks["GetAccount"] = s.GetAccount(ctx, "acme")
	_, _, checks["LookupAPIKey"] = s.LookupAPIKey(ctx, "abc")
	for op, err := range checks {
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s on a closed store = %v, want ErrUnavailable (never ErrNotFound)", op, err)
		}
	}
}

// TestWatchOverflowFlushes: a watcher that falls behind gets a Flush instead
// of silently losing invalidations, and writers never block on it.
func TestWatchOverflowFlushes(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "kg.db"), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.CreateAccount(ctx, &store.Account{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	got := make(chan store.Invalidation, 10000)
	var stalled atomic.Bool
	go func() {
		_ = s.Watch(ctx, func(inv store.Invalidation) {
			if stalled.CompareAndSwap(false, true) {
				<-release // stall on the first invalidation
			}
			got <- inv
		})
	}()
	// Wait until the watcher is registered and stalled.
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := s.SetAccountState(ctx, "acme", store.StateDisabled); err != nil {
			t.Fatal(err)
		}
		if stalled.Load() || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	for range 1000 { // more than the buffer
		s.Publish(store.Invalidation{Account: "acme"})
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("writers slowed down by a stalled watcher: %v", took)
	}
	close(release)
	timeout := time.After(3 * time.Second)
	for {
		select {
		case inv := <-got:
			if inv.Flush {
				return
			}
		case <-timeout:
			t.Fatal("no Flush after the watcher overflowed")
		}
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id, err := boltstore.NewID()
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != boltstore.IDLen || !store.IsBase62ID(id) || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}

func BenchmarkLookupAPIKey(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "kg.db"), nil)
	ctx := context.Background()
	if err := s.CreateAccount(ctx, &store.Account{Name: "acme"}); err != nil {
		b.Fatal(err)
	}
	if err := s.CreateUser(ctx, &store.User{Username: "alice", Account: "acme", Roles: []string{"read", "write"}, //nolint:gosec // test data, not a real credential
		PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"}); err != nil {
		b.Fatal(err)
	}
	var ids []string
	for i := range 1000 {
		k := &store.APIKey{Username: "alice", Name: "k" + strconv.Itoa(i), Roles: []string{"read"}, Hash: bytes.Repeat([]byte{7}, 48)}
		if err := s.CreateAPIKey(ctx, k); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, k.ID)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, _, err := s.LookupAPIKey(ctx, ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTryLease: one process owns the file, so the purge lease is granted to
// every owner that asks; a non-positive ttl is refused like Redis's.
func TestTryLease(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "kg.db"), time.Now)
	ctx := context.Background()
	for _, owner := range []string{"A", "B", "A"} {
		if got, err := s.TryLease(ctx, store.PurgeLease, owner, time.Minute); err != nil || !got {
			t.Errorf("TryLease(%s) = %v, %v; want true", owner, got, err)
		}
	}
	if _, err := s.TryLease(ctx, store.PurgeLease, "A", 0); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("TryLease with ttl 0 = %v, want ErrInvalid", err)
	}
}
