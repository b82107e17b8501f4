package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
)

// auRedisAdmin is a plain client of the test's Redis (default user).
func auRedisAdmin(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func auRedisDo(t *testing.T, c *redis.Client, args ...any) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	v, err := c.Do(ctx, args...).Result()
	if err != nil {
		t.Fatalf("redis %v: %v", args, err)
	}
	return v
}

// auSubscribed reports whether a client of Redis user is subscribed to a
// channel (CLIENT LIST TYPE pubsub, sub>0).
func auSubscribed(t *testing.T, c *redis.Client, user string) bool {
	t.Helper()
	list, _ := auRedisDo(t, c, "CLIENT", "LIST", "TYPE", "pubsub").(string)
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " user="+user+" ") && !strings.Contains(line, " sub=0 ") {
			return true
		}
	}
	return false
}

func auWaitSubscribed(t *testing.T, c *redis.Client, user string, want bool, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for auSubscribed(t, c, user) != want {
		if time.Now().After(deadline) {
			t.Fatalf("user %s subscribed=%v after %v, want %v", user, !want, d, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAuthLostInvalidation (SECURITY.md "lost invalidation"): gateway B's
// view of pub/sub is cut; a key revoked meanwhile must still die on B
// within cache.ttl (2s here).
//
// Two cuts:
//   - "client kill": CLIENT KILL TYPE pubsub right before the revoke. B's
//     client reconnects at once and, having lost its subscription, flushes
//     its cache (DESIGN.md §8), so B refuses long before cache.ttl.
//   - "subscription refused": B logs in to Redis as its own ACL user; the
//     test removes that user's channel permission (ACL SETUSER resetchannels)
//     and kills its pub/sub connection, so B cannot subscribe again while
//     its data connections keep working. The revoke's invalidation never
//     reaches B: only cache.ttl can end the stale entry.
func TestAuthLostInvalidation(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	r := testredis.Start(t)
	admin := auRedisAdmin(t, r.Addr())
	auRedisDo(t, admin, "ACL", "SETUSER", "gwb", "on", ">gwb-e2e-password", "~*", "&*", "+@all")
	up := startEchoProc(t)
	extra := auNoLimits + "cache:\n  ttl: 2s\n  negative_ttl: 1s\n"
	b := auRedisGateway(t, r.Addr(), up, extra, nil,
		"KEYGATE_STORE_REDIS_USERNAME=gwb", "KEYGATE_STORE_REDIS_PASSWORD=gwb-e2e-password")
	s := auRedisStore(t, r.Addr())
	s.account("acme")
	s.user("alice", "acme", "", "ops")
	cb := newAuClient(5 * time.Second)
	defer cb.close()
	url := b.url("/x")
	auWaitSubscribed(t, admin, "gwb", true, 5*time.Second)

	t.Run("client kill", func(t *testing.T) {
		id, v := s.key("alice", "killed")
		auWarm(t, cb, b, url, "Bearer "+v)
		auRedisDo(t, admin, "CLIENT", "KILL", "TYPE", "pubsub")
		began := time.Now()
		s.revoke(id)
		d, ok := cb.until(url, "Bearer "+v, 401, 2*ttl)
		if !ok || d > ttl {
			t.Fatalf("B refused the key revoked across a killed subscription after %v (ok=%v), want ≤ cache.ttl %v", d, ok, ttl)
		}
		t.Logf("client kill: B refused %s after the revoke returned (%s after the kill)", auFmt(d), auFmt(time.Since(began)))
		auWaitSubscribed(t, admin, "gwb", true, 5*time.Second)
	})

	t.Run("subscription refused", func(t *testing.T) {
		id, v := s.key("alice", "lost")
		warmed := time.Now() // the entry was set after this: fresh until at most warmed+ttl
		auWarm(t, cb, b, url, "Bearer "+v)
		auRedisDo(t, admin, "ACL", "SETUSER", "gwb", "resetchannels")
		auRedisDo(t, admin, "CLIENT", "KILL", "USER", "gwb", "TYPE", "pubsub")
		auWaitSubscribed(t, admin, "gwb", false, 2*time.Second)
		s.revoke(id)
		revoked := time.Now()
		// Poll B until it refuses; count how long it still served the key.
		served := 0
		var st int
		for {
			st = cb.status(url, "Bearer "+v)
			if st != 200 || time.Since(warmed) > ttl+3*time.Second {
				break
			}
			served++
			time.Sleep(2 * time.Millisecond)
		}
		refusedAfterWarm := time.Since(warmed)
		if st != 401 {
			t.Fatalf("B answered %d %v after warming, want 401", st, refusedAfterWarm)
		}
		// Bound: cache.ttl from when the entry was cached, plus slack for
		// the loaded test machine.
		if refusedAfterWarm > ttl+time.Second {
			t.Errorf("stale entry lived %v after it was cached, cache.ttl is %v", refusedAfterWarm, ttl)
		}
		// (Not asserted here: that B subscribes again once its permission
		// is back: today redisstore.Watch never retries a SUBSCRIBE that Redis
		// refused, so it stays unsubscribed — reported as a bug.)
		t.Logf("subscription refused: B served the revoked key %d times for %s after the revoke (invalidation lost as intended: %v); refused %s after it was cached (cache.ttl %v)",
			served, auFmt(time.Since(revoked)), served > 0, auFmt(refusedAfterWarm), ttl)

	})
}

// TestAuthNegativeCache (SECURITY.md "negative cache"): a credential found
// invalid works once it becomes valid, within cache.negative_ttl; a store
// timeout is never cached as invalid.
func TestAuthNegativeCache(t *testing.T) {
	t.Parallel()
	const negTTL = 1 * time.Second
	r := testredis.Start(t)
	up := startEchoProc(t)
	g := auRedisGateway(t, r.Addr(), up, auNoLimits+"cache:\n  negative_ttl: 1s\n", nil)
	s := auRedisStore(t, r.Addr())
	s.account("acme")
	c := newAuClient(5 * time.Second)
	defer c.close()
	url := g.url("/x")

	t.Run("probe then create", func(t *testing.T) {
		h := auBasic("newbie", auPassword)
		c.want(t, "probe of an unknown user", url, h, 401)
		c.want(t, "probe again (negative entry)", url, h, 401)
		s.user("newbie", "acme", "")
		created := time.Now()
		first := c.status(url, h)
		d, ok := c.until(url, h, 200, negTTL+3*time.Second)
		if !ok || d > negTTL+500*time.Millisecond {
			t.Fatalf("the new user was accepted %v after being created (ok=%v), cache.negative_ttl is %v", d, ok, negTTL)
		}
		t.Logf("probe then create: first request after the create → %d; accepted %s after the create (negative_ttl %v)",
			first, auFmt(time.Since(created)), negTTL)
	})

	t.Run("store timeout is not cached as invalid", func(t *testing.T) {
		s.user("kim", "acme", "")
		_, v := s.key("kim", "k")
		h := "Bearer " + v
		r.Pause()
		resp := c.get(t, url, h)
		r.Resume()
		if resp.status != 503 || resp.header.Get("Retry-After") == "" {
			t.Fatalf("uncached key with Redis paused: %d Retry-After=%q, want 503 with Retry-After", resp.status, resp.header.Get("Retry-After"))
		}
		if d, ok := c.until(url, h, 200, 3*time.Second); !ok || d > negTTL {
			t.Errorf("after Redis resumed the key was accepted only after %v (ok=%v)", d, ok)
		}
	})
}
