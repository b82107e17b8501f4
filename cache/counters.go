package cache

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// counter is the invalidation counter of one username or one account: the
// sequence number of the last invalidation that named it. Positive entries
// hold pointers to their user's and account's counters, so a hit reads it
// with one atomic load and no map lookup.
type counter struct {
	last atomic.Uint64
	// used is the time (unix ns, cfg.Now) of the last positive Set that took
	// a reference to this counter. Guarded by the shard mutex.
	used int64
}

const counterShards = 64

// counterTable maps names to counters. It is touched on positive Set, on
// Invalidate and by the sweeper, never on a hit. Its size is bounded by max:
// see Cache.counterFor.
type counterTable struct {
	seed   maphash.Seed
	shards [counterShards]counterShard
	n      atomic.Int64
	max    int64
}

type counterShard struct {
	mu sync.Mutex
	m  map[string]*counter
	_  [40]byte // keep neighbouring shard mutexes off one cache line
}

func newCounterTable(max int64) *counterTable {
	t := &counterTable{seed: maphash.MakeSeed(), max: max}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*counter)
	}
	return t
}

func (t *counterTable) shard(name string) *counterShard {
	return &t.shards[maphash.String(t.seed, name)%counterShards]
}

// len returns the number of counters held.
func (t *counterTable) len() int64 { return t.n.Load() }

// bump records invalidation n on name's counter, if there is one. When there
// is none, no entry can refer to name: a counter created later starts at the
// current sequence, which is at least n (see counterFor).
func (t *counterTable) bump(name string, n uint64) {
	sh := t.shard(name)
	sh.mu.Lock()
	if ctr := sh.m[name]; ctr != nil {
		storeMax(&ctr.last, n)
	}
	sh.mu.Unlock()
}

// sweep drops counters not referenced by a Set since before (unix ns) and
// returns how many went.
func (t *counterTable) sweep(before int64) int {
	dropped := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for name, ctr := range sh.m {
			if ctr.used < before {
				delete(sh.m, name)
				dropped++
			}
		}
		sh.mu.Unlock()
	}
	t.n.Add(int64(-dropped))
	return dropped
}

// lockAll and unlockAll take every shard, in index order.
func (t *counterTable) lockAll() {
	for i := range t.shards {
		t.shards[i].mu.Lock()
	}
}

func (t *counterTable) unlockAll() {
	for i := range t.shards {
		t.shards[i].mu.Unlock()
	}
}

// clearLocked empties the table; every shard must be locked.
func (t *counterTable) clearLocked() {
	for i := range t.shards {
		clear(t.shards[i].m)
	}
	t.n.Store(0)
}

// storeMax raises a to v unless it is already at least v. Invalidations may
// finish out of order; a counter never moves backwards.
func storeMax(a *atomic.Uint64, v uint64) {
	for {
		cur := a.Load()
		if cur >= v || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// stripedCounter is a monotonic counter spread over cache lines, so that
// Gets of different credentials on different cores do not contend on one
// line. Callers pick the stripe from the credential's key (one credential's
// Gets already share ristretto's shard lock, so nothing is lost). It is
// exposed through a prometheus CounterFunc.
type stripedCounter struct {
	cells [16]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

func (s *stripedCounter) inc(h uint64) { s.cells[h%16].n.Add(1) }

func (s *stripedCounter) value() float64 {
	var n uint64
	for i := range s.cells {
		n += s.cells[i].n.Load()
	}
	return float64(n)
}
