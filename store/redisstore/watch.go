package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/keygate/keygate/store"
)

// # Invalidations: pub/sub plus a durable, bounded log
//
// Every invalidation is appended to the stream <prefix>invlog (XADD with
// MAXLEN ~ InvalidationLogLen) and published on <prefix>invalidate with its
// stream entry id as "pos", both in one script: atomically, in the same
// order, so the channel and the log agree. An instance's Watch applies the
// messages as they come and remembers the position of the last one.
//
// Pub/sub loses what is published while a subscriber is disconnected. When
// Watch's subscription comes back after a loss, before anything else it
// replays the log from its last position (XRANGE, in pages), delivering each
// missed invalidation, then delivers Invalidation{Revalidate: true}: caches
// keep their entries but revalidate them (package cache), and serve them
// while the store is not ready yet, within store.outage_grace. So a key
// revoked on another instance while this one was cut off is dead before any
// entry is marked, and never comes back (DESIGN.md §8).
//
// The replay is valid only if the log still holds the entry at the last
// position: then nothing after it can have been trimmed or lost. When it
// does not (more than about InvalidationLogLen invalidations happened in the
// meantime, or Redis lost the log: a restart without persistence, a failover
// to a replica that lagged), or when Watch has no position yet (its first
// subscription failed), Watch delivers Invalidation{Flush: true} instead,
// as before the log existed. While the replay fails because Redis is not
// ready (connection refused, LOADING, timeouts) nothing is marked: entries
// stay under the outage policy, and the replay is retried with backoff;
// a replay Redis refuses for good (an ACL without the stream) flushes.
//
// Messages without a position (published by an older keygate during a
// rolling upgrade) are applied and do not move the position.

// InvalidationLogLen is about how many invalidations the log retains (XADD
// MAXLEN ~): a subscription may be down for that many invalidations and
// still be caught up by a replay instead of a flush. An entry is under 200
// bytes, so the log stays under about 2 MB of Redis memory.
const InvalidationLogLen = 10000

// replayPage is how many log entries one XRANGE of a replay reads.
const replayPage = 512

// KEYS: log. ARGV: channel, maxlen, then one JSON invalidation each. Appends
// each to the log and publishes it with its position ("pos").
var scriptPublish = redis.NewScript(`
for i = 3, #ARGV do
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[i])
  local m = cjson.decode(ARGV[i])
  m['pos'] = id
  redis.call('PUBLISH', ARGV[1], cjson.encode(m))
end
return #ARGV - 2
`)

// KEYS: log. ARGV: maxlen. Returns the id of the log's last entry; an empty
// or missing log first gets a start marker (field "s"), so that a position
// always names a real entry whose presence proves nothing was lost after it.
var scriptLogTail = redis.NewScript(`
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then return last[1][1] end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 's', '1')
`)

// publish appends invalidations to the log and publishes them on
// <prefix>invalidate, all in one script (one round trip). The write they
// follow has succeeded, so a failure is logged, not returned: caches then
// drop the entries at cache.ttl. It uses a fresh deadline so a cancelled
// caller does not skip the invalidation of a write that happened. If Redis
// refuses the script for good (an ACL without the log key), the
// invalidations are still published, without a log position.
func (s *Store) publish(ctx context.Context, invs ...store.Invalidation) {
	if len(invs) == 0 {
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	args := make([]any, 0, 2+len(invs))
	args = append(args, s.kChannel, InvalidationLogLen)
	for _, inv := range invs {
		inv.Pos, inv.Revalidate = "", false
		msg, err := json.Marshal(inv)
		if err != nil {
			s.log.Warn("redisstore: invalidation not encodable", zap.Error(err))
			return
		}
		args = append(args, msg)
	}
	err := scriptPublish.Run(pctx, s.c, []string{s.kInvLog}, args...).Err()
	if err != nil && permanent(err) {
		s.log.Warn("redisstore: invalidation log refused; publishing without it (a lost subscription then flushes caches)", zap.Error(err))
		_, err = s.c.Pipelined(pctx, func(p redis.Pipeliner) error {
			for _, msg := range args[2:] {
				p.Publish(pctx, s.kChannel, msg)
			}
			return nil
		})
	}
	if err != nil {
		s.log.Warn("redisstore: invalidations not published",
			zap.String("account", invs[0].Account), zap.String("username", invs[0].Username),
			zap.String("key_id", invs[0].KeyID), zap.Int("count", len(invs)), zap.Error(err))
	}
}

// permanent reports whether err is a refusal Redis will repeat (an ACL
// permission, a wrong type, an unknown command or script error), as opposed
// to Redis not being reachable or ready.
func permanent(err error) bool {
	return redis.IsPermissionError(err) || redis.HasErrorPrefix(err, "WRONGTYPE") ||
		redis.HasErrorPrefix(err, "ERR")
}

// logPos is a position in the invalidation log: a stream entry id
// <ms>-<seq>.
type logPos struct{ ms, seq uint64 }

// parseLogPos parses a stream entry id. ok is false for anything else
// (including the incomplete forms XRANGE accepts).
func parseLogPos(s string) (p logPos, ok bool) {
	i := strings.IndexByte(s, '-')
	if i <= 0 || i == len(s)-1 {
		return logPos{}, false
	}
	ms, err1 := strconv.ParseUint(s[:i], 10, 64)
	seq, err2 := strconv.ParseUint(s[i+1:], 10, 64)
	if err1 != nil || err2 != nil || s[0] == '+' || s[i+1] == '+' {
		return logPos{}, false
	}
	return logPos{ms, seq}, true
}

func (p logPos) String() string {
	return strconv.FormatUint(p.ms, 10) + "-" + strconv.FormatUint(p.seq, 10)
}

func (p logPos) less(q logPos) bool { return p.ms < q.ms || (p.ms == q.ms && p.seq < q.seq) }

// logTail returns the position of the log's last entry (see scriptLogTail).
func (s *Store) logTail(ctx context.Context) (logPos, error) {
	tctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	id, err := scriptLogTail.Run(tctx, s.c, []string{s.kInvLog}, InvalidationLogLen).Text()
	if err != nil {
		return logPos{}, err
	}
	p, ok := parseLogPos(id)
	if !ok {
		return logPos{}, errors.New("invalidation log: malformed entry id")
	}
	return p, nil
}

// errLogGap says the log no longer holds the entry a replay starts from.
var errLogGap = errors.New("invalidation log does not reach back to the last position seen")

// replay delivers the logged invalidations after from, oldest first, and
// returns the position of the last entry read. It fails with errLogGap when
// the entry at from is no longer in the log (trimmed, or the log was lost).
// An invalidation is delivered once it is read, so after an error other than
// errLogGap, everything up to the returned position has been delivered.
func (s *Store) replay(ctx context.Context, from logPos, fn func(store.Invalidation)) (logPos, int, error) {
	n := 0
	for {
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		msgs, err := s.c.XRangeN(rctx, s.kInvLog, from.String(), "+", replayPage).Result()
		cancel()
		if err != nil {
			return from, n, err
		}
		// The page starts at from itself (inclusive), which must still be
		// there: its presence proves nothing after it was trimmed or lost.
		if len(msgs) == 0 || msgs[0].ID != from.String() {
			return from, n, errLogGap
		}
		for _, m := range msgs[1:] {
			p, ok := parseLogPos(m.ID)
			if !ok {
				return from, n, errors.New("invalidation log: malformed entry id")
			}
			from = p
			raw, ok := m.Values["m"].(string)
			if !ok {
				continue // a start marker
			}
			var inv store.Invalidation
			if err := json.Unmarshal([]byte(raw), &inv); err != nil {
				s.log.Warn("redisstore: malformed logged invalidation skipped")
				continue
			}
			inv.Pos, inv.Revalidate = m.ID, false
			fn(inv)
			n++
		}
		if len(msgs) < replayPage {
			return from, n, nil
		}
	}
}

// healthInterval is how long Watch waits for a message before it PINGs the
// subscription connection to find out whether it is still alive.
const healthInterval = time.Second

// Replay retry backoff (Redis not ready yet after a restart).
const (
	replayBackoffMin = 50 * time.Millisecond
	replayBackoffMax = time.Second
)

// watchLog is one Watch's position in the invalidation log and whether a
// replay is owed (see the comment at the top of this file).
type watchLog struct {
	s       *Store
	fn      func(store.Invalidation)
	pos     logPos
	hasPos  bool
	pending bool // the subscription came back after a loss: replay owed
	next    time.Time
	backoff time.Duration
}

// baseline takes the log's tail as the position, after a subscription was
// confirmed: everything logged later is also published to it.
func (w *watchLog) baseline(ctx context.Context) {
	p, err := w.s.logTail(ctx)
	if err != nil {
		w.hasPos = false
		w.s.log.Warn("redisstore: invalidation log position unknown; the next lost subscription flushes caches", zap.Error(err))
		return
	}
	w.pos, w.hasPos = p, true
}

// seen records the position of a message delivered on the live
// subscription. Without a position yet (the tail could not be read), the
// first one is adopted: nothing before it matters (it follows the first
// confirmation or a flush, and the subscription has been up since), and
// everything after it arrives in log order.
func (w *watchLog) seen(pos string) {
	if w.pending {
		return // the replay owed starts from the old position
	}
	p, ok := parseLogPos(pos)
	if !ok {
		return
	}
	if !w.hasPos || w.pos.less(p) {
		w.pos, w.hasPos = p, true
	}
}

// lost records a re-established subscription: a replay is owed, now.
func (w *watchLog) lost() {
	w.pending, w.next, w.backoff = true, time.Time{}, replayBackoffMin
}

// catchUp makes the replay owed, if it is due: the missed invalidations then
// Revalidate, or a Flush when they cannot all be replayed.
func (w *watchLog) catchUp(ctx context.Context) {
	if !w.pending || time.Now().Before(w.next) {
		return
	}
	if !w.hasPos {
		w.flush(ctx, "no position in the invalidation log")
		return
	}
	pos, n, err := w.s.replay(ctx, w.pos, w.fn)
	w.pos = pos
	switch {
	case err == nil:
		w.pending = false
		w.s.log.Info("redisstore: invalidation subscription re-established; missed invalidations replayed, cached entries to be revalidated",
			zap.Int("replayed", n))
		w.fn(store.Invalidation{Revalidate: true})
	case errors.Is(err, errLogGap), permanent(err):
		w.flush(ctx, err.Error())
	case ctx.Err() != nil:
	default:
		// Redis is back for the subscription but not ready for reads yet:
		// entries stay under the outage policy; try again shortly.
		w.s.log.Debug("redisstore: invalidation replay failed; retrying", zap.Int("replayed", n), zap.Error(err))
		w.next = time.Now().Add(w.backoff)
		w.backoff = min(2*w.backoff, replayBackoffMax)
	}
}

// flush delivers a Flush and takes a new position (its tail before the
// Flush: whatever is logged later is published to the live subscription).
func (w *watchLog) flush(ctx context.Context, why string) {
	w.baseline(ctx)
	w.pending = false
	w.s.log.Info("redisstore: invalidation subscription re-established; caches flushed", zap.String("reason", why))
	w.fn(store.Invalidation{Flush: true})
}

// Watch subscribes to <prefix>invalidate and calls fn for every invalidation
// until ctx ends (it then returns ctx.Err()). Messages published while the
// subscription is down are lost from the channel, so after every
// re-established subscription Watch replays them from the invalidation log
// and delivers Invalidation{Revalidate: true}, or delivers
// Invalidation{Flush: true} when it cannot (see the comment at the top of
// this file). Subscriptions are re-established this way:
//
//   - go-redis reconnects a broken subscription connection by itself and
//     resubscribes; Watch sees the new subscription confirmation;
//
//   - a connection that stays open but silent (a hung server, a network
//     black hole) is caught by a health check: when idle for healthInterval
//     Watch PINGs, and when nothing (not even the PONG) arrives within the
//     store timeout after that, it drops the connection and subscribes anew.
//
//   - a SUBSCRIBE the server refused (an ACL without the channel, a server
//     still loading its data) leaves a live connection with no subscription:
//     while no confirmation has arrived since a failure, every idle
//     healthInterval Watch subscribes anew on a new connection.
//
// A subscription that could not be made at first and is made later delivers
// a Flush (there is no position to replay from). Malformed messages are
// logged and skipped.
func (s *Store) Watch(ctx context.Context, fn func(store.Invalidation)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	subscribe := func() *redis.PubSub {
		ps := s.c.Subscribe(ctx)
		// Subscribe registers the channel even when the connection cannot be
		// made yet; every reconnect resubscribes.
		_ = ps.Subscribe(ctx, s.kChannel)
		return ps
	}
	ps := subscribe()
	defer func() { _ = ps.Close() }()
	wl := &watchLog{s: s, fn: fn}
	subscribed := false // a confirmation has been received
	lost := false       // the subscription failed since the last confirmation
	lastSeen := time.Now()
	pinged := false
	backoff := 50 * time.Millisecond
	for {
		wl.catchUp(ctx)
		wait := healthInterval
		if wl.pending {
			wait = max(min(wait, time.Until(wl.next)), time.Millisecond)
		}
		msg, err := ps.ReceiveTimeout(ctx, wait)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			var nerr interface{ Timeout() bool }
			if errors.As(err, &nerr) && nerr.Timeout() {
				if wl.pending && !lost && time.Since(lastSeen) < healthInterval {
					continue // woke up to retry the replay, not idle
				}
				if lost || !subscribed {
					// Not (re)subscribed yet: the server may have refused
					// the SUBSCRIBE (NOPERM, LOADING) on a connection that
					// still answers PING, and go-redis does not try again
					// on a live connection. Start over on a new one.
					err = errors.New("not subscribed")
					_ = ps.Close()
					ps = subscribe()
					lastSeen, pinged = time.Now(), false
				} else if !pinged || time.Since(lastSeen) < healthInterval+s.timeout {
					// Idle: check the connection; its PONG counts as life.
					pctx, cancel := context.WithTimeout(ctx, s.timeout)
					perr := ps.Ping(pctx)
					cancel()
					pinged = true
					if perr == nil {
						continue
					}
					err = perr
				} else {
					// The PING went unanswered: the connection is dead
					// without knowing it. Start over on a new one.
					err = errors.New("health check: no answer")
					_ = ps.Close()
					ps = subscribe()
					lastSeen, pinged = time.Now(), false
				}
			}
			if !lost {
				s.log.Warn("redisstore: invalidation subscription lost", zap.Error(err))
			}
			lost = true
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		lastSeen, pinged = time.Now(), false
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			if subscribed || lost {
				// Replayed (or flushed) at the top of the loop, before
				// any message published on the new subscription is
				// applied.
				wl.lost()
			} else {
				wl.baseline(ctx)
			}
			subscribed, lost = true, false
		case *redis.Message:
			var inv store.Invalidation
			if err := json.Unmarshal([]byte(m.Payload), &inv); err != nil {
				s.log.Warn("redisstore: malformed invalidation skipped")
				continue
			}
			inv.Revalidate = false
			fn(inv)
			wl.seen(inv.Pos)
		}
	}
}
