package authn

import (
	"sync"
	"time"
)

// flightGroup runs one miss per credential at a time for all the callers
// presenting it (what golang.org/x/sync/singleflight's DoChan did here), on
// goroutines that are kept for the next miss.
//
// DoChan starts a new goroutine per miss. A miss goes deep (authenticator,
// store client, its connection pool and hooks), so every new goroutine grew
// its stack several times on the way: stack copies were ~10% of the CPU of
// an API key miss against Redis (BenchmarkChainMiss profile). A goroutine
// that has served a miss already has the stack for the next; one that finds
// nothing to do for flightIdle exits.
type flightGroup struct {
	mu      sync.Mutex
	flights map[CacheKey]*flight
	work    chan func() // unbuffered: a send succeeds only if a worker waits
}

// flight is one miss in progress; done is closed once id and err are set.
type flight struct {
	done chan struct{}
	id   *Identity
	err  error
}

// flightIdle is how long a goroutine that ran a miss waits for another.
const flightIdle = 30 * time.Second

// join returns the flight for key and whether the caller leads it: a
// leader must call start (exactly once), the others only wait on done.
func (g *flightGroup) join(key CacheKey) (f *flight, leader bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.flights[key]; ok {
		return f, false
	}
	if g.flights == nil {
		g.flights = make(map[CacheKey]*flight)
		g.work = make(chan func())
	}
	f = &flight{done: make(chan struct{})}
	g.flights[key] = f
	return f, true
}

// start runs fn for the flight f (key's) on a pooled goroutine, not the
// caller's: a caller may stop waiting (its context ended) without
// abandoning the others.
func (g *flightGroup) start(key CacheKey, f *flight, fn func() (*Identity, error)) {
	run := func() {
		f.id, f.err = fn()
		g.mu.Lock()
		delete(g.flights, key)
		g.mu.Unlock()
		close(f.done)
	}
	// g.work is set once, by the first join, under g.mu; every start
	// follows its own join (which took g.mu after that), so it reads the
	// channel without locking again.
	select {
	case g.work <- run:
	default:
		go g.worker(g.work, run)
	}
}

// worker runs fn, then further work until it has been idle for flightIdle.
func (g *flightGroup) worker(work chan func(), fn func()) {
	fn()
	t := time.NewTimer(flightIdle)
	defer t.Stop()
	for {
		select {
		case fn = <-work:
			fn()
			t.Reset(flightIdle)
		case <-t.C:
			return
		}
	}
}
