package failurelimit

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
			k := []byte{byte(g)} //nolint:gosec // bounded by the test's own values
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

// N concurrent attempts that reserve before their (slow) check never start
// more checks than the limit; the check-then-act pattern (Allow, work, Fail)
// that Reserve replaces lets every attempt in flight through. Each case
// counts the checks actually performed.
func TestReserveConcurrentGuesses(t *testing.T) {
	for _, tc := range []struct {
		name        string
		limit, n    int
		reserve     bool
		wantAtMost  int
		wantAtLeast int // the old pattern: proves the test can see the race
	}{
		{name: "per ip 30, reserve", limit: 30, n: 200, reserve: true, wantAtMost: 30},
		{name: "per user 10, reserve", limit: 10, n: 100, reserve: true, wantAtMost: 10},
		{name: "per user 10, check then act", limit: 10, n: 100, reserve: false, wantAtLeast: 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := New(tc.limit, 100, nil)
			k := []byte("203.0.113.7")
			var checks atomic.Int64
			start := make(chan struct{})
			inCheck := make(chan struct{})
			var wg sync.WaitGroup
			for range tc.n {
				wg.Go(func() {
					<-start
					if tc.reserve {
						if _, ok, _ := l.Reserve(k); !ok {
							return
						}
					} else if ok, _ := l.Allow(k); !ok {
						return
					}
					checks.Add(1)
					<-inCheck // the hash: every started check is in flight at once
					if !tc.reserve {
						l.Fail(k)
					}
				})
			}
			close(start)
			// Let every goroutine reach its check or its refusal.
			deadline := time.Now().Add(5 * time.Second)
			for prev := int64(-1); time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
				cur := checks.Load()
				if cur == prev && cur > 0 {
					break
				}
				prev = cur
			}
			close(inCheck)
			wg.Wait()
			got := int(checks.Load())
			if tc.wantAtMost > 0 && got > tc.wantAtMost {
				t.Fatalf("%d checks performed, limit %d", got, tc.wantAtMost)
			}
			if got < tc.wantAtLeast {
				t.Fatalf("%d checks performed; the check-then-act pattern was expected to exceed %d", got, tc.limit)
			}
			if tc.reserve {
				if _, ok, _ := l.Reserve(k); ok {
					t.Fatal("a reservation after the limit was granted")
				}
			}
		})
	}
}

// Release gives a unit back to the window it was counted in.
func TestReserveRelease(t *testing.T) {
	clk := newClock()
	l := New(3, 100, clk.Now)
	k := []byte("u")
	var stamps []int64
	for i := range 3 {
		s, ok, _ := l.Reserve(k)
		if !ok || s == 0 {
			t.Fatalf("reservation %d refused", i)
		}
		stamps = append(stamps, s)
	}
	if _, ok, ra := l.Reserve(k); ok || ra < time.Second {
		t.Fatalf("4th reservation: ok=%v retryAfter=%v", ok, ra)
	}
	// A success gives its unit back: one more attempt may start.
	l.Release(k, stamps[0])
	s, ok, _ := l.Reserve(k)
	if !ok {
		t.Fatal("released unit not available")
	}
	// Released in the next window: the unit comes off prev, whose weight
	// decays, so the estimate drops by that weight.
	clk.Advance(Window)
	before, _ := l.Allow(k)
	l.Release(k, s)
	l.Release(k, stamps[1])
	l.Release(k, stamps[2])
	if ok, _ := l.Allow(k); !ok || before {
		t.Fatalf("after releasing every unit: allowed=%v (before: %v)", ok, before)
	}
	for range 3 {
		if _, ok, _ := l.Reserve(k); !ok {
			t.Fatal("budget not restored")
		}
	}
	// A stamp older than both windows, a zero stamp, an unknown key and a
	// disabled limiter: nothing happens.
	clk.Advance(3 * Window)
	l.Release(k, stamps[0])
	l.Release(k, 0)
	l.Release([]byte("unknown"), stamps[0])
	var nl *Limiter
	if s, ok, ra := nl.Reserve(k); !ok || s != 0 || ra != 0 {
		t.Fatal("nil limiter refused")
	}
	nl.Release(k, 1)
}

// Counts never go below zero, whatever is released.
func TestReleaseNeverNegative(t *testing.T) {
	clk := newClock()
	l := New(2, 100, clk.Now)
	k := []byte("k")
	s, _, _ := l.Reserve(k)
	for range 5 {
		l.Release(k, s)
	}
	for i := range 2 {
		if _, ok, _ := l.Reserve(k); !ok {
			t.Fatalf("reservation %d refused", i)
		}
	}
	if _, ok, _ := l.Reserve(k); ok {
		t.Fatal("over-released key allowed a third reservation")
	}
}

func BenchmarkReserveRelease(b *testing.B) {
	l := New(30, 10000, nil)
	k := []byte("192.0.2.10")
	b.ReportAllocs()
	for b.Loop() {
		s, _, _ := l.Reserve(k)
		l.Release(k, s)
	}
}
