package redisstore

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// boundHook bounds every round trip (command or pipeline) by one store
// timeout: a caller's context with no deadline, or a later one, gets
// now+timeout. go-redis arms its read deadline per read, and a pipeline or
// MULTI/EXEC makes more than one (measured with go-redis v9.23 against a
// SIGSTOPped Redis: a pipeline gave up after 2×ReadTimeout, a single
// command after 1×); with the context's deadline it caps every read at the
// same instant. The cluster hook below runs inside this one, so a retry
// after a topology reload shares the same budget.
type boundHook struct{ timeout time.Duration }

func (h boundHook) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= h.timeout {
		return ctx, nil
	}
	return context.WithTimeout(ctx, h.timeout)
}

func (h boundHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h boundHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		ctx, cancel := h.bound(ctx)
		if cancel != nil {
			defer cancel()
		}
		return next(ctx, cmd)
	}
}

func (h boundHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		ctx, cancel := h.bound(ctx)
		if cancel != nil {
			defer cancel()
		}
		return next(ctx, cmds)
	}
}

// bound gives ctx a deadline of at most one store timeout, for operations
// of several round trips on the request path (GetUser): their total, not
// each round trip, stays within store.redis.timeout. cancel is never nil.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := boundHook{s.timeout}.bound(ctx)
	if cancel == nil {
		cancel = func() {}
	}
	return ctx, cancel
}

// clusterReloader reloads a Cluster client's slot map as soon as an error
// says it may be stale, and retries the failed call once on the reloaded
// map when the call surely did not run.
//
// go-redis reloads the map on MOVED, but a dead master gives dial errors,
// which only its periodic reload (every 60 s) would fix: after a failover,
// every command for the dead master's slots kept failing until then.
//
// Errors that reload: network errors (dial, reset, EOF, timeout),
// CLUSTERDOWN, TRYAGAIN, MOVED, ASK and MASTERDOWN. The reload is
// synchronous (ClusterClient.ForEachMaster reloads the state before it
// iterates) and shared: concurrent failures wait for one reload, and a
// reload is not repeated within reloadEvery (failures right after one
// reuse its map). A retry happens only after a reload that ran for this
// failure, and only when the command cannot have executed: a refused dial,
// CLUSTERDOWN, TRYAGAIN, MOVED, ASK, MASTERDOWN. A read that timed out or a
// connection reset mid-reply is never retried (a write may have been
// applied). The retry runs within the caller's deadline, which boundHook
// caps at one store timeout. A pipeline is retried whole, commands that
// succeeded on other nodes included: every pipeline of this package is
// idempotent (reads, last-used touches that never move a time backwards,
// invalidation publishes); a MULTI/EXEC runs on one slot, all or nothing.
type clusterReloader struct {
	cc          *redis.ClusterClient
	timeout     time.Duration
	reloadEvery time.Duration
	onReload    func(error) // tests and logging; may be nil

	sf      singleflight.Group
	mu      sync.Mutex
	lastOK  time.Time // when the last successful reload finished
	lastTry time.Time // when the last reload, successful or not, finished
}

// reloadEvery's default: at most one forced reload per this interval.
const clusterReloadEvery = 100 * time.Millisecond

func (r *clusterReloader) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *clusterReloader) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		if !r.recover(ctx, err, start) {
			return err
		}
		cmd.SetErr(nil)
		return next(ctx, cmd)
	}
}

func (r *clusterReloader) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		perr := next(ctx, cmds)
		err := perr
		if err == nil {
			// A pipeline may report failures per command only.
			for _, c := range cmds {
				if e := c.Err(); e != nil && !errors.Is(e, redis.Nil) {
					err = e
					break
				}
			}
		}
		if !r.recover(ctx, err, start) {
			return perr
		}
		for _, c := range cmds {
			c.SetErr(nil)
		}
		return next(ctx, cmds)
	}
}

// recover reloads the slot map when err (of a call begun at start) calls
// for it, and reports whether the call should be retried once.
func (r *clusterReloader) recover(ctx context.Context, err error, start time.Time) bool {
	if err == nil || !staleMapError(err) {
		return false
	}
	fresh := r.reload(ctx, start)
	return fresh && neverRan(err) && ctx.Err() == nil
}

// reload makes sure the map was loaded after start (when a call using the
// old map began) and reports whether it was. A reload that finished after
// start is reused; one that finished before start but within reloadEvery
// is not repeated (the map is that new and the call failed anyway).
func (r *clusterReloader) reload(ctx context.Context, start time.Time) bool {
	now := time.Now()
	r.mu.Lock()
	lastOK, lastTry := r.lastOK, r.lastTry
	r.mu.Unlock()
	switch {
	case lastOK.After(start):
		return true
	case !lastTry.IsZero() && now.Sub(lastTry) < r.reloadEvery:
		return false
	}
	ch := r.sf.DoChan("reload", func() (any, error) {
		rctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		defer cancel()
		// ForEachMaster reloads the state first (ReloadOrGet); the no-op
		// callback touches no node.
		err := r.cc.ForEachMaster(rctx, func(context.Context, *redis.Client) error { return nil })
		r.mu.Lock()
		r.lastTry = time.Now()
		if err == nil {
			r.lastOK = r.lastTry
		}
		r.mu.Unlock()
		if r.onReload != nil {
			r.onReload(err)
		}
		return nil, err
	})
	select {
	case res := <-ch:
		return res.Err == nil
	case <-ctx.Done():
		return false
	}
}

// redirectOrDown reports a MOVED or ASK redirection, or a node that says
// the cluster, the slot or its master is down: answers given instead of
// running the command, which also mean the slot map may be out of date.
func redirectOrDown(err error) bool {
	if _, ok := redis.IsMovedError(err); ok {
		return true
	}
	if _, ok := redis.IsAskError(err); ok {
		return true
	}
	return redis.IsClusterDownError(err) || redis.IsTryAgainError(err) || redis.IsMasterDownError(err)
}

// staleMapError reports whether err may mean the slot map is out of date.
func staleMapError(err error) bool {
	if errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return false
	}
	if redirectOrDown(err) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, context.DeadlineExceeded)
}

// neverRan reports whether err proves the command was not executed.
func neverRan(err error) bool {
	if redirectOrDown(err) {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
