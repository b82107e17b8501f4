// Package failurelimit counts authentication failures per key (a client IP, a
// username) over a sliding one-minute window, so that brute force gets 429
// with Retry-After (DESIGN.md §9 auth.failures, SECURITY.md "brute force").
//
// Attempts are counted when they start: Reserve spends one unit of a key's
// budget atomically with the check that it has one, so N concurrent guesses
// can never start more than the limit (a check followed later by a Fail
// would let every guess in flight pass the check first). An attempt that
// turns out not to be a guess (the credential verified, or nothing could
// be checked) gives its unit back with Release; a failed guess keeps it.
// Allow (a check alone) and Fail (a unit spent after the fact) remain for
// callers that record something other than an attempt.
//
// The window is the sliding-window
// counter approximation (the current minute's count plus the previous
// minute's, weighted by how much of it still overlaps the last 60 s), which
// has no burst at window boundaries and needs two counters per key.
//
// Memory is bounded: keys live in sharded maps of at most maxKeys entries in
// all. When a shard is full, expired keys are swept out first; if none are,
// the sampled key with the fewest failures is evicted. A flood of
// distinct keys therefore costs at most maxKeys entries; it can make the
// limiter forget a key with few failures early, never remember more.
package failurelimit

import (
	"hash/maphash"
	"sync"
	"time"
)

// Window is the length of the sliding window.
const Window = time.Minute

const (
	shardCount = 32
	// evictSample is how many entries are looked at to choose an eviction.
	evictSample = 8
)

// Limiter counts failures per key. The zero value and a nil *Limiter allow
// everything. It is safe for concurrent use.
type Limiter struct {
	limit   uint32 // failures allowed per Window; 0: disabled
	perSh   int    // entries per shard
	now     func() time.Time
	seed    maphash.Seed
	shards  [shardCount]shard
	enabled bool
}

type shard struct {
	mu sync.Mutex
	m  map[string]*entry
	// lastSweep is when expired entries were last swept (unix ns).
	lastSweep int64
	_         [24]byte // keep neighbouring mutexes off one cache line
}

// entry is one key's window. start is the beginning of the current window
// (unix ns); cur counts its failures, prev those of the window before.
type entry struct {
	start     int64
	cur, prev uint32
	last      int64 // last failure (unix ns): eviction order
}

// New returns a limiter allowing perMinute failures per key per sliding
// minute and remembering at most maxKeys keys (values below 1: 10000). now is
// the clock (nil: time.Now). perMinute ≤ 0 returns a limiter that allows
// everything and remembers nothing.
func New(perMinute, maxKeys int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	l := &Limiter{now: now, seed: maphash.MakeSeed()}
	if perMinute <= 0 {
		return l
	}
	if maxKeys < 1 {
		maxKeys = 10000
	}
	l.enabled = true
	l.limit = uint32(min(perMinute, 1<<30))
	l.perSh = max(1, (maxKeys+shardCount-1)/shardCount)
	for i := range l.shards {
		l.shards[i].m = make(map[string]*entry)
	}
	return l
}

// Enabled reports whether l counts anything.
func (l *Limiter) Enabled() bool { return l != nil && l.enabled }

// Limit is the number of failures allowed per Window (0: disabled).
func (l *Limiter) Limit() int {
	if !l.Enabled() {
		return 0
	}
	return int(l.limit)
}

func (l *Limiter) shard(key []byte) *shard {
	return &l.shards[maphash.Bytes(l.seed, key)%shardCount]
}

// Allow reports whether key may try again: whether its failures in the last
// Window are below the limit. When it may not, retryAfter is how long until
// it may (at least one second). Allow does not record anything, does not
// retain key, and does not allocate.
func (l *Limiter) Allow(key []byte) (ok bool, retryAfter time.Duration) {
	if !l.Enabled() {
		return true, 0
	}
	sh := l.shard(key)
	sh.mu.Lock()
	e := sh.m[string(key)]
	if e == nil {
		sh.mu.Unlock()
		return true, 0
	}
	now := l.now().UnixNano()
	e.rotate(now)
	ok, retryAfter = e.check(now, l.limit)
	sh.mu.Unlock()
	return ok, retryAfter
}

// Fail records one failure for key. key is copied when first seen; Fail on a
// known key does not allocate.
func (l *Limiter) Fail(key []byte) {
	if !l.Enabled() {
		return
	}
	now := l.now().UnixNano()
	sh := l.shard(key)
	sh.mu.Lock()
	e := sh.entry(key, now, l.perSh)
	e.rotate(now)
	e.spend(now)
	sh.mu.Unlock()
}

// Reserve starts an attempt for key: if key is under its limit it spends
// one unit of the budget at once (under the same lock as the check) and
// returns ok with the reservation's stamp, to be given to Release if the
// attempt turns out not to be a failure. Over the limit it spends nothing
// and returns retryAfter (at least one second). With the limiter disabled
// it returns ok and a stamp Release ignores. key is copied when first seen;
// Reserve on a known key does not allocate.
func (l *Limiter) Reserve(key []byte) (stamp int64, ok bool, retryAfter time.Duration) {
	if !l.Enabled() {
		return 0, true, 0
	}
	now := l.now().UnixNano()
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[string(key)]
	if e != nil {
		e.rotate(now)
		if ok, retryAfter = e.check(now, l.limit); !ok {
			return 0, false, retryAfter
		}
	} else {
		e = sh.entry(key, now, l.perSh)
	}
	e.spend(now)
	return now, true, 0
}

// Release gives back the unit a Reserve of key spent at stamp: the attempt
// was not a failure. The unit comes off the window it was counted in (the
// current or the previous one); a reservation older than that has already
// left the window and a key forgotten since (evicted, Reset) has nothing to
// give back, so Release then does nothing. A stamp of 0 is ignored.
func (l *Limiter) Release(key []byte, stamp int64) {
	if !l.Enabled() || stamp == 0 {
		return
	}
	now := l.now().UnixNano()
	sh := l.shard(key)
	sh.mu.Lock()
	if e := sh.m[string(key)]; e != nil {
		e.rotate(now)
		switch {
		case stamp >= e.start:
			if e.cur > 0 {
				e.cur--
			}
		case stamp >= e.start-int64(Window):
			if e.prev > 0 {
				e.prev--
			}
		}
	}
	sh.mu.Unlock()
}

// entry returns key's entry, creating it (and making room) if needed. The
// shard's mutex is held.
func (sh *shard) entry(key []byte, now int64, perSh int) *entry {
	e := sh.m[string(key)]
	if e == nil {
		if len(sh.m) >= perSh {
			sh.makeRoom(now, perSh)
		}
		e = &entry{start: now}
		sh.m[string(key)] = e
	}
	return e
}

// spend counts one unit in the current window (e rotated to now).
func (e *entry) spend(now int64) {
	if e.cur < 1<<31 {
		e.cur++
	}
	e.last = now
}

// Len returns the number of keys remembered.
func (l *Limiter) Len() int {
	if !l.Enabled() {
		return 0
	}
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// Reset forgets key (for example after an administrator unlocks a user).
func (l *Limiter) Reset(key []byte) {
	if !l.Enabled() {
		return
	}
	sh := l.shard(key)
	sh.mu.Lock()
	delete(sh.m, string(key))
	sh.mu.Unlock()
}

// rotate moves e's window forward to contain now.
func (e *entry) rotate(now int64) {
	w := int64(Window)
	d := now - e.start
	switch {
	case d < 0:
		// Clock went backwards: keep the counts, re-anchor.
		e.start = now
	case d < w:
	case d < 2*w:
		e.prev, e.cur = e.cur, 0
		e.start += w
	default:
		e.prev, e.cur = 0, 0
		e.start += d / w * w
	}
}

// estimate is the sliding count at now (e rotated to now), scaled by Window
// to stay in integers: prev·(w − elapsed) + cur·w.
func (e *entry) estimate(now int64) float64 {
	w := float64(Window)
	el := float64(now - e.start)
	return float64(e.prev)*(w-el)/w + float64(e.cur)
}

// check says whether e is under limit at now and, if not, how long until it
// will be.
func (e *entry) check(now int64, limit uint32) (bool, time.Duration) {
	if e.estimate(now) < float64(limit) {
		return true, 0
	}
	w := float64(Window)
	var at float64 // unix ns at which the estimate drops below limit
	if e.cur >= limit {
		// Wait for the next window, where cur becomes prev and must have
		// decayed: cur·(w − t)/w < limit ⇔ t > w·(1 − limit/cur).
		at = float64(e.start) + w + w*(1-float64(limit)/float64(e.cur))
	} else {
		// prev·(w − t)/w + cur < limit ⇔ t > w·(1 − (limit − cur)/prev).
		at = float64(e.start) + w*(1-float64(limit-e.cur)/float64(e.prev))
	}
	// The estimate is below the limit strictly after at; round up to a whole
	// second (Retry-After is in seconds, and retrying early would be refused
	// again).
	d := time.Duration(at-float64(now)) + 1
	d = (d + time.Second - 1).Truncate(time.Second)
	return false, max(d, time.Second)
}

// makeRoom frees at least one slot in a full shard (mutex held): it sweeps
// keys with nothing left in their window (at most once per second), then, if
// the shard is still full, evicts the sampled key with the fewest failures
// (the least recently failed among equals) of a few sampled keys (map
// iteration order is random): a flood of one-failure keys evicts its own
// kind, not a key that keeps failing.
func (sh *shard) makeRoom(now int64, perSh int) {
	if now-sh.lastSweep >= int64(time.Second) {
		sh.lastSweep = now
		for k, e := range sh.m {
			if now-e.last >= 2*int64(Window) {
				delete(sh.m, k)
			}
		}
		if len(sh.m) < perSh {
			return
		}
	}
	var victim string
	var vCount uint32
	var vLast int64
	n := 0
	for k, e := range sh.m {
		c := e.cur + e.prev
		if n == 0 || c < vCount || c == vCount && e.last < vLast {
			victim, vCount, vLast = k, c, e.last
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(sh.m, victim)
}
