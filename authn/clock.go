package authn

import (
	"sync/atomic"
	"time"
)

// monoWall is the Chain's clock: one monotonic clock read per request gives
// both the start of the request (for keygate_auth_duration_seconds) and the
// wall time the cache checks expiry against.
//
// time.Now reads two clocks (wall and monotonic); on a VM with kvm-clock
// each read is a ~25–30 ns vDSO call, and the two reads of the old hit path
// (time.Now, then time.Since) were the largest single cost of a cache hit.
// monoWall reads only the monotonic clock and adds the offset between the
// wall and the monotonic clock, taken from a real time.Now at most every
// resync (1 ms in production) by the request that notices it is due. Both
// clocks run at the same (NTP-disciplined) rate, so between resyncs the wall
// time is exact to the nanosecond; a step of the system clock (settimeofday,
// an NTP step, a resume from suspend) reaches expiry checks within one resync
// period. No goroutine and no ticker: an idle process does no work.
//
// ChainConfig.Now, when set, replaces the wall time (tests drive expiry with
// a fake clock); durations are always measured on the monotonic clock.
type monoWall struct {
	epoch  time.Time        // monotonic origin
	wall   func() time.Time // the wall clock (time.Now; tests fake it)
	resync int64            // ns of monotonic time between offset refreshes

	offset atomic.Int64 // wall unix ns minus mono ns, as of synced
	synced atomic.Int64 // mono ns of the last refresh
}

func newMonoWall(wall func() time.Time, resync time.Duration) *monoWall {
	c := &monoWall{epoch: time.Now(), wall: wall, resync: int64(resync)}
	c.sync(c.mono())
	return c
}

// processClock is shared by every Chain of the process that has no
// ChainConfig.Now.
var processClock = newMonoWall(time.Now, time.Millisecond)

// mono returns the monotonic nanoseconds since c.epoch (one clock read).
func (c *monoWall) mono() int64 { return int64(time.Since(c.epoch)) }

// wallAt returns the wall time, in unix nanoseconds, at the monotonic
// instant mono (a recent c.mono()).
func (c *monoWall) wallAt(mono int64) int64 {
	if mono-c.synced.Load() >= c.resync {
		c.sync(mono)
	}
	return c.offset.Load() + mono
}

// sync refreshes the offset. Concurrent refreshes are harmless: each stores
// an offset that was correct when it was read.
func (c *monoWall) sync(mono int64) {
	t := c.wall()
	// Read after the wall clock: the derived time runs behind by the gap
	// between the two reads (tens of nanoseconds).
	m := max(c.mono(), mono)
	c.offset.Store(t.UnixNano() - m)
	c.synced.Store(m)
}
