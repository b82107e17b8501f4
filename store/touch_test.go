package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/keygate/keygate/store"
)

func TestTouchBatcherFlush(t *testing.T) {
	s, clock := newBolt(t)
	ctx := context.Background()
	f := &flaky{Store: s}
	ids := seed(t, s, 3)
	b := store.NewTouchBatcher(f, time.Minute, nil)
	t0 := clock.Now()

	if err := b.Flush(ctx); err != nil || len(f.calls()) != 0 {
		t.Fatalf("empty Flush = %v, %d calls; want no store call", err, len(f.calls()))
	}
	// Many touches of two keys: one batch, the newest time per key.
	for i := range 100 {
		b.Touch(ids[0], t0.Add(time.Duration(i)*time.Second))
		b.Touch(ids[1], t0.Add(time.Duration(100-i)*time.Second))
	}
	if n := b.Pending(); n != 2 {
		t.Errorf("Pending = %d, want 2", n)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	calls := f.calls()
	if len(calls) != 1 || len(calls[0]) != 2 {
		t.Fatalf("store calls = %v, want one batch of 2", calls)
	}
	want := map[string]time.Time{ids[0]: t0.Add(99 * time.Second), ids[1]: t0.Add(100 * time.Second)}
	for id, at := range want {
		if !calls[0][id].Equal(at) {
			t.Errorf("batched %s = %v, want %v", id, calls[0][id], at)
		}
		k, err := s.GetAPIKey(ctx, id)
		if err != nil || !k.LastUsedAt.Equal(at) {
			t.Errorf("stored LastUsedAt of %s = %v, %v; want %v", id, k.LastUsedAt, err, at)
		}
	}
	if b.Pending() != 0 {
		t.Errorf("Pending after flush = %d", b.Pending())
	}
}

func TestTouchBatcherFailedFlushKeepsEntries(t *testing.T) {
	s, clock := newBolt(t)
	ctx := context.Background()
	f := &flaky{Store: s, failing: true}
	ids := seed(t, s, 3)
	b := store.NewTouchBatcher(f, time.Minute, nil)
	t0 := clock.Now()
	b.Touch(ids[0], t0.Add(time.Second))
	b.Touch(ids[1], t0.Add(5*time.Second))
	if err := b.Flush(ctx); !errors.Is(err, errDown) {
		t.Fatalf("Flush = %v, want the store's error", err)
	}
	// Newer and older touches arrive while the store is down.
	b.Touch(ids[0], t0.Add(3*time.Second))
	b.Touch(ids[1], t0.Add(2*time.Second))
	b.Touch(ids[2], t0.Add(4*time.Second))
	if n := b.Pending(); n != 3 {
		t.Errorf("Pending after failed flush = %d, want 3", n)
	}
	f.setFailing(false)
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{ids[0]: t0.Add(3 * time.Second), ids[1]: t0.Add(5 * time.Second), ids[2]: t0.Add(4 * time.Second)}
	for id, at := range want {
		k, err := s.GetAPIKey(ctx, id)
		if err != nil || !k.LastUsedAt.Equal(at) {
			t.Errorf("LastUsedAt of %s = %v, %v; want %v", id, k.LastUsedAt, err, at)
		}
	}
}

// TestTouchBatcherCopiesID: the id may alias a request buffer that is
// reused after Touch returns.
func TestTouchBatcherCopiesID(t *testing.T) {
	s, clock := newBolt(t)
	f := &flaky{Store: s}
	ids := seed(t, s, 1)
	b := store.NewTouchBatcher(f, time.Minute, nil)
	buf := []byte(ids[0])
	alias := unsafe.String(&buf[0], len(buf)) //nolint:gosec // audited: the test checks a zero-copy view
	b.Touch(alias, clock.Now())
	b.Touch(alias, clock.Now().Add(time.Second)) // the seen-id path must not keep the alias either
	for i := range buf {
		buf[i] = 'X'
	}
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := f.calls()
	if len(calls) != 1 {
		t.Fatalf("calls = %v", calls)
	}
	if _, ok := calls[0][ids[0]]; !ok || len(calls[0]) != 1 {
		t.Errorf("batch = %v, want only %s", calls[0], ids[0])
	}
}

func TestTouchBatcherRun(t *testing.T) {
	s, clock := newBolt(t)
	f := &flaky{Store: s}
	ids := seed(t, s, 2)
	b := store.NewTouchBatcher(f, 10*time.Millisecond, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()

	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				b.Touch(ids[(g+i)%2], clock.Now().Add(time.Duration(i)*time.Millisecond))
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(2 * time.Second)
	for b.Pending() != 0 || len(f.calls()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not flush")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A touch right before shutdown is flushed on exit.
	last := clock.Now().Add(time.Hour)
	b.Touch(ids[0], last)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return")
	}
	k, err := s.GetAPIKey(context.Background(), ids[0])
	if err != nil || !k.LastUsedAt.Equal(last) {
		t.Errorf("LastUsedAt after shutdown flush = %v, %v; want %v", k.LastUsedAt, err, last)
	}
	for _, c := range f.calls() {
		if len(c) > 2 {
			t.Errorf("a batch of %d entries for 2 keys", len(c))
		}
	}
}

func BenchmarkTouch(b *testing.B) {
	s, clock := newBolt(b)
	tb := store.NewTouchBatcher(s, time.Minute, nil)
	id := "0123456789ABCDEFGHIJ"
	at := clock.Now()
	tb.Touch(id, at)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		tb.Touch(id, at)
	}
}

func BenchmarkTouchParallel(b *testing.B) {
	s, clock := newBolt(b)
	tb := store.NewTouchBatcher(s, time.Minute, nil)
	ids := []string{"0123456789ABCDEFGHIJ", "1123456789ABCDEFGHIJ", "2123456789ABCDEFGHIJ", "3123456789ABCDEFGHIJ"}
	at := clock.Now()
	for _, id := range ids {
		tb.Touch(id, at)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tb.Touch(ids[i&3], at)
			i++
		}
	})
}
