package redisstore

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// lookupCombiner runs LookupAPIKey's reads, combining concurrent calls into
// one round trip.
//
// One lookup is MULTI, HMGET key, HMGET owner, EXEC: a consistent snapshot
// of both records, as a script would give, at less than half a script's
// cost inside Redis (BenchmarkLookupAPIKeyContended: a Lua script that
// packed the same fields cost redis-server ~42 us of CPU per lookup on the
// 2-core bench machine, the transaction ~18 us).
//
// An API key cache miss costs one round trip. Under load most of that cost
// is not Redis' work but the system calls and wake-ups on both sides of the
// socket: a write, a read and a scheduler round trip per call in keygate,
// the same in redis-server. Calls that arrive while others are in flight are
// combined into one pipeline (one MULTI/EXEC per batch on one Redis; go-redis
// splits it per slot on a Cluster, where a user's records share a slot), so
// those costs are shared between them.
//
// At most maxInFlight round trips are on the wire at once (default 2). A call that finds
// a free slot runs at once, alone: an idle or lightly loaded gateway pays
// nothing for combining (no hand-off, no extra goroutine). A call that finds
// every slot taken joins the pending batch; when a round trip completes, its
// runner takes whatever is pending as the next batch, on a new goroutine so
// the caller it ran for returns without waiting.
//
// Every call keeps its own context: a caller whose context ends stops
// waiting and returns its context's error; the batch it was in still runs
// (bounded by the store's command timeout) and its result is dropped.
type lookupCombiner struct {
	s           *Store
	maxInFlight int
	maxBatch    int // 1: never combine

	mu       sync.Mutex
	inFlight int
	pending  []*lookupCall
}

// Combining defaults. Two round trips in flight: with 8 concurrent callers
// (a gateway's misses under load) 2 cost 68 us of CPU per lookup (keygate
// and redis-server) against 74 for 4, at 18k against 19k lookups/s; with 32
// callers 33 against 41 us (BenchmarkLookupAPIKeyContended's method, one
// run). Batches over 128 calls would only add latency to their first caller.
const (
	defaultLookupInFlight = 2
	defaultLookupBatch    = 128
)

// lookupFields is one lookup's reply: the key's fields, then its owner's.
type lookupFields [len(keyFieldsArr) + len(userFieldsArr)]field

type lookupCall struct {
	keys   [2]string // the key's record, its owner's record
	fields lookupFields
	err    error
	done   chan struct{} // closed when fields/err are set
}

var lookupCallPool = sync.Pool{New: func() any { return new(lookupCall) }}

// do reads the records named by keys into dst.
func (c *lookupCombiner) do(ctx context.Context, keys [2]string, dst *lookupFields) error {
	c.mu.Lock()
	if c.inFlight < c.maxInFlight || c.maxBatch <= 1 {
		c.inFlight++
		c.mu.Unlock()
		call := lookupCall{keys: keys}
		one := [1]*lookupCall{&call}
		c.exec(ctx, one[:])
		c.next()
		*dst = call.fields
		return call.err
	}
	call := lookupCallPool.Get().(*lookupCall)
	call.keys, call.err = keys, nil
	call.done = make(chan struct{})
	c.pending = append(c.pending, call)
	c.mu.Unlock()

	select {
	case <-call.done:
		*dst = call.fields
		err := call.err
		*call = lookupCall{}
		lookupCallPool.Put(call)
		return err
	case <-ctx.Done():
		// The batch still writes to call: it is not returned to the pool.
		return ctx.Err()
	}
}

// next releases a slot or, when calls are pending, keeps it to run them.
func (c *lookupCombiner) next() {
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.inFlight--
		c.mu.Unlock()
		return
	}
	n := min(len(c.pending), c.maxBatch)
	batch := make([]*lookupCall, n)
	copy(batch, c.pending)
	rest := copy(c.pending, c.pending[n:])
	clear(c.pending[rest:])
	c.pending = c.pending[:rest]
	c.mu.Unlock()
	go c.run(batch)
}

// run executes a batch of pending calls, wakes their callers and goes on
// with whatever became pending meanwhile.
func (c *lookupCombiner) run(batch []*lookupCall) {
	ctx, cancel := context.WithTimeout(context.Background(), c.s.timeout)
	c.exec(ctx, batch)
	cancel()
	for _, call := range batch {
		close(call.done)
	}
	c.next()
}

// exec reads every call's two records in one MULTI/EXEC round trip and
// sets each call's fields or error.
func (c *lookupCombiner) exec(ctx context.Context, calls []*lookupCall) {
	p := c.s.c.TxPipeline()
	var small [2]*redis.SliceCmd
	cmds := small[:0]
	if len(calls) > 1 {
		cmds = make([]*redis.SliceCmd, 0, 2*len(calls))
	}
	for _, call := range calls {
		cmds = append(cmds, hmget(ctx, p, hmgetKeyArgs, call.keys[0]), hmget(ctx, p, hmgetUserArgs, call.keys[1]))
	}
	_, _ = p.Exec(ctx) // every command carries its own error
	for i, call := range calls {
		kc, uc := cmds[2*i], cmds[2*i+1]
		if err := kc.Err(); err != nil {
			call.err = err
			continue
		}
		if err := uc.Err(); err != nil {
			call.err = err
			continue
		}
		f := fieldsOf(kc.Val(), call.fields[:0])
		fieldsOf(uc.Val(), f)
	}
}

// hmgetKeyArgs and hmgetUserArgs are the HMGET commands of a lookup with the
// key name left blank: Pipeliner.HMGet boxes every field name into an
// interface on every call (17 allocations per lookup), these are boxed once.
var hmgetKeyArgs, hmgetUserArgs = hmgetArgs(keyFields), hmgetArgs(userFields)

func hmgetArgs(fields []string) []any {
	args := []any{"hmget", ""}
	for _, f := range fields {
		args = append(args, f)
	}
	return args
}

// hmget queues HMGET key <fields of tmpl> on p.
func hmget(ctx context.Context, p redis.Pipeliner, tmpl []any, key string) *redis.SliceCmd {
	args := make([]any, len(tmpl))
	copy(args, tmpl)
	args[1] = key
	cmd := redis.NewSliceCmd(ctx, args...)
	_ = p.Process(ctx, cmd)
	return cmd
}
