package authn

import (
	"sync/atomic"
	"testing"
	"time"
)

// The derived wall time tracks time.Now.
func TestMonoWallTracksWallClock(t *testing.T) {
	c := newMonoWall(time.Now, time.Millisecond)
	for range 1000 {
		before := time.Now().UnixNano()
		got := c.wallAt(c.mono())
		after := time.Now().UnixNano()
		// The derivation runs behind by the gap between two clock reads.
		if got < before-int64(50*time.Microsecond) || got > after {
			t.Fatalf("wallAt = %d, want within [%d, %d]", got, before, after)
		}
	}
	if got := processClock.wallAt(processClock.mono()); abs(got-time.Now().UnixNano()) > int64(10*time.Millisecond) {
		t.Fatalf("processClock is %v off", time.Duration(got-time.Now().UnixNano()))
	}
}

// A step of the wall clock reaches wallAt after one resync period, and not
// before: between resyncs only the monotonic clock is read.
func TestMonoWallFollowsStep(t *testing.T) {
	var step atomic.Int64
	wall := func() time.Time { return time.Now().Add(time.Duration(step.Load())) }
	const resync = 20 * time.Millisecond
	c := newMonoWall(wall, resync)
	m0 := c.mono()
	w0 := c.wallAt(m0)
	step.Store(int64(time.Hour))
	if got := c.wallAt(m0 + 1); got != w0+1 {
		t.Fatalf("wallAt read the wall clock before the resync period: %d, want %d", got, w0+1)
	}
	time.Sleep(resync + time.Millisecond)
	now := time.Now().Add(time.Hour).UnixNano()
	if got := c.wallAt(c.mono()); abs(got-now) > int64(5*time.Millisecond) {
		t.Fatalf("after a 1h step and a resync period: %v off", time.Duration(got-now))
	}
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
