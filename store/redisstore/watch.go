package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/keygate/keygate/store"
)

// publish sends invalidations on <prefix>invalidate, several in one
// pipeline. The write they follow has succeeded, so a failure is logged, not
// returned: caches then drop the entries at cache.ttl. It uses a fresh
// deadline so a cancelled caller does not skip the invalidation of a write
// that happened.
func (s *Store) publish(ctx context.Context, invs ...store.Invalidation) {
	if len(invs) == 0 {
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	_, err := s.c.Pipelined(pctx, func(p redis.Pipeliner) error {
		for _, inv := range invs {
			msg, err := json.Marshal(inv)
			if err != nil {
				return err
			}
			p.Publish(pctx, s.kChannel, msg)
		}
		return nil
	})
	if err != nil {
		s.log.Warn("redisstore: invalidations not published",
			zap.String("account", invs[0].Account), zap.String("username", invs[0].Username),
			zap.String("key_id", invs[0].KeyID), zap.Int("count", len(invs)), zap.Error(err))
	}
}

// healthInterval is how long Watch waits for a message before it PINGs the
// subscription connection to find out whether it is still alive.
const healthInterval = time.Second

// Watch subscribes to <prefix>invalidate and calls fn for every invalidation
// until ctx ends (it then returns ctx.Err()). Messages published while the
// subscription is down are lost, so after every re-established subscription
// Watch delivers Invalidation{Flush: true}:
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
// A subscription that could not be made at first and is made later also
// delivers a Flush. Malformed messages are logged and skipped.
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
	subscribed := false // a confirmation has been received
	lost := false       // the subscription failed since the last confirmation
	lastSeen := time.Now()
	pinged := false
	backoff := 50 * time.Millisecond
	for {
		msg, err := ps.ReceiveTimeout(ctx, healthInterval)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			var nerr interface{ Timeout() bool }
			if errors.As(err, &nerr) && nerr.Timeout() {
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
				s.log.Info("redisstore: invalidation subscription re-established")
				fn(store.Invalidation{Flush: true})
			}
			subscribed, lost = true, false
		case *redis.Message:
			var inv store.Invalidation
			if err := json.Unmarshal([]byte(m.Payload), &inv); err != nil {
				s.log.Warn("redisstore: malformed invalidation skipped")
				continue
			}
			fn(inv)
		}
	}
}
