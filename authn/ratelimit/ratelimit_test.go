package ratelimit

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestLimitPerKey(t *testing.T) {
	clk := newClock()
	l := New(3, 100, clk.Now)
	a, b := []byte("10.0.0.1"), []byte("10.0.0.2")
	for i := range 3 {
		if ok, _ := l.Allow(a); !ok {
			t.Fatalf("refused after %d failures", i)
		}
		l.Fail(a)
	}
	ok, ra := l.Allow(a)
	if ok || ra < time.Second || ra > Window+time.Second {
		t.Fatalf("after 3 failures: ok=%v retryAfter=%v", ok, ra)
	}
	if ra%time.Second != 0 {
		t.Fatalf("retryAfter %v not whole seconds", ra)
	}
	if ok, _ := l.Allow(b); !ok {
		t.Fatal("another key limited")
	}
	// Retry-After is honest: just before it, still refused; at it, allowed.
	clk.Advance(ra - time.Second)
	if ok, _ := l.Allow(a); ok {
		t.Fatalf("allowed %v before Retry-After", time.Second)
	}
	clk.Advance(time.Second)
	if ok, _ := l.Allow(a); !ok {
		t.Fatal("still refused at Retry-After")
	}
	clk.Advance(2 * Window)
	for range 3 {
		if ok, _ := l.Allow(a); !ok {
			t.Fatal("refused after the window")
		}
		l.Fail(a)
	}
}

// The sliding window has no burst at a window boundary: failures late in
// one minute still count early in the next.
func TestSlidingWindow(t *testing.T) {
	clk := newClock()
	l := New(10, 100, clk.Now)
	k := []byte("u")
	l.Fail(k) // anchors the window
	clk.Advance(50 * time.Second)
	for range 9 {
		l.Fail(k)
	}
	if ok, _ := l.Allow(k); ok {
		t.Fatal("10 failures within a minute allowed")
	}
	clk.Advance(15 * time.Second) // 5 s into the next window
	// A fixed window would allow 10 more here; the sliding estimate
	// (10·55/60 + new) allows one.
	allowed := 0
	for ; allowed < 10; allowed++ {
		if ok, _ := l.Allow(k); !ok {
			break
		}
		l.Fail(k)
	}
	if allowed > 1 {
		t.Fatalf("boundary burst: %d more failures allowed", allowed)
	}
	clk.Advance(60 * time.Second) // prev window is the empty one now
	if ok, _ := l.Allow(k); !ok {
		t.Fatal("refused after a quiet minute")
	}
}

func TestRetryAfterCases(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fails   int
		advance time.Duration
	}{{"all in current window", 5, 0}, {"prev window decaying", 5, 70 * time.Second}, {"many fails", 50, 10 * time.Second}} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			l := New(5, 100, clk.Now)
			k := []byte(tc.name)
			for range tc.fails {
				l.Fail(k)
			}
			clk.Advance(tc.advance)
			ok, ra := l.Allow(k)
			if ok {
				return
			}
			clk.Advance(ra)
			if ok, _ := l.Allow(k); !ok {
				t.Fatalf("still refused after Retry-After %v", ra)
			}
		})
	}
}

func TestDisabled(t *testing.T) {
	for _, l := range []*Limiter{New(0, 10, nil), New(-1, 10, nil), nil, {}} {
		for range 100 {
			l.Fail([]byte("k"))
		}
		if ok, ra := l.Allow([]byte("k")); !ok || ra != 0 || l.Len() != 0 || l.Enabled() || l.Limit() != 0 {
			t.Fatalf("disabled limiter limited: %v %v", ok, ra)
		}
		l.Reset([]byte("k"))
	}
}

func TestReset(t *testing.T) {
	l := New(1, 10, nil)
	l.Fail([]byte("k"))
	if ok, _ := l.Allow([]byte("k")); ok {
		t.Fatal("not limited")
	}
	l.Reset([]byte("k"))
	if ok, _ := l.Allow([]byte("k")); !ok || l.Len() != 0 {
		t.Fatal("reset did not forget")
	}
}

// A flood of distinct keys never holds more than maxKeys entries, and a key
// that keeps failing survives the flood.
func TestBoundedMemory(t *testing.T) {
	clk := newClock()
	const maxKeys = 320
	l := New(5, maxKeys, clk.Now)
	hot := []byte("attacker")
	for i := range 100000 {
		if i%100 == 0 {
			l.Fail(hot)
			clk.Advance(time.Millisecond)
		}
		l.Fail(fmt.Appendf(nil, "k%d", i))
		if i%997 == 0 && l.Len() > maxKeys {
			t.Fatalf("%d keys held, max %d", l.Len(), maxKeys)
		}
	}
	if n := l.Len(); n > maxKeys {
		t.Fatalf("%d keys held, max %d", n, maxKeys)
	}
	if ok, _ := l.Allow(hot); ok {
		t.Fatal("the hot key was evicted by the flood")
	}
	// Expired keys make room before live ones are evicted.
	clk.Advance(3 * Window)
	l.Fail([]byte("fresh"))
	if ok, _ := l.Allow([]byte("fresh")); !ok {
		t.Fatal("fresh key limited")
	}
}

func TestConcurrent(t *testing.T) {
	l := New(1000, 1000, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			k := []byte{byte(g)}
			for range 1000 {
				l.Allow(k)
				l.Fail(k)
			}
		})
	}
	wg.Wait()
	for g := range 8 {
		if ok, _ := l.Allow([]byte{byte(g)}); ok {
			t.Fatalf("key %d: 1000 failures allowed", g)
		}
	}
}

func BenchmarkAllowKnown(b *testing.B) {
	l := New(30, 10000, nil)
	k := []byte("192.0.2.10")
	l.Fail(k)
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(k)
	}
}

func BenchmarkAllowUnknown(b *testing.B) {
	l := New(30, 10000, nil)
	k := []byte("192.0.2.10")
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(k)
	}
}

func BenchmarkFailKnown(b *testing.B) {
	l := New(30, 10000, nil)
	k := []byte("192.0.2.10")
	b.ReportAllocs()
	for b.Loop() {
		l.Fail(k)
	}
}

func BenchmarkFailFlood(b *testing.B) {
	l := New(30, 10000, nil)
	keys := make([][]byte, 1<<16)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "k%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Fail(keys[i&(len(keys)-1)])
		i++
	}
}
