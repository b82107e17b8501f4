package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/store"
)

// clock is a controllable clock for Config.Now.
type clock struct{ ns atomic.Int64 }

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func newClock() *clock {
	c := &clock{}
	c.ns.Store(t0.UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

const (
	testTTL   = time.Minute
	testNeg   = 5 * time.Second
	testGrace = 5 * time.Minute
)

// newTestCache builds a cache with the test defaults for the zero fields.
func newTestCache(tb testing.TB, cfg Config) *Cache {
	tb.Helper()
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 1000
	}
	if cfg.TTL == 0 {
		cfg.TTL = testTTL
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = testNeg
	}
	if cfg.NegativeTTL < 0 { // -1: disabled
		cfg.NegativeTTL = 0
	}
	if cfg.OutageGrace == 0 {
		cfg.OutageGrace = testGrace
	}
	c, err := New(cfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// ident is a password identity: it depends on its user and account only.
func ident(user, account string) *authn.Identity {
	return &authn.Identity{Username: user, Account: account, UserType: "user",
		Roles: []string{"r"}, RolesHeader: "r", Method: authn.MethodBasic, Generation: 1}
}

// identKey is the identity of API key keyID of user: it also depends on the
// key.
func identKey(user, account, keyID string) *authn.Identity {
	id := ident(user, account)
	id.Method, id.KeyID = authn.MethodAPIKey, keyID
	return id
}

func identExp(user, account string, exp time.Time) *authn.Identity {
	id := ident(user, account)
	id.ExpiresAt = exp
	return id
}

var errBadSecret = errors.New("invalid credentials")

// env is one scenario's cache and clock, with helpers that do what a caller
// does: Begin, look up, Set, Wait.
type env struct {
	t   *testing.T
	c   *Cache
	clk *clock
}

func (e *env) key(cred string) authn.CacheKey {
	user, secret, _ := strings.Cut(cred, ":")
	return e.c.KeyOf(authn.CacheKindBasic, []byte(user), []byte(secret))
}

func (e *env) setPos(cred string, id *authn.Identity) authn.CacheKey {
	k := e.key(cred)
	e.c.SetPositive(k, id, e.c.Begin())
	e.c.Wait()
	return k
}

func (e *env) setNeg(cred string, reason error) authn.CacheKey {
	k := e.key(cred)
	e.c.SetNegative(k, reason, e.c.Begin())
	e.c.Wait()
	return k
}

func (e *env) get(k authn.CacheKey) (*authn.Identity, authn.CacheStatus, error) {
	return e.c.Get(k, e.clk.Now())
}

func TestGet(t *testing.T) {
	alice := ident("alice", "acme")
	aliceK1, aliceK2 := identKey("alice", "acme", "k1"), identKey("alice", "acme", "k2")
	cases := []struct {
		name string
		cfg  Config
		// run prepares the cache and returns the key to look up; Get is
		// called at the clock's time after run.
		run        func(e *env) authn.CacheKey
		want       authn.CacheStatus
		wantUser   string
		wantReason error
	}{
		{
			name: "unknown credential misses",
			run:  func(e *env) authn.CacheKey { return e.key("alice:pw") },
			want: authn.CacheMiss,
		},
		{
			name:     "positive hit",
			run:      func(e *env) authn.CacheKey { return e.setPos("alice:pw", alice) },
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name:       "negative hit returns the reason",
			run:        func(e *env) authn.CacheKey { return e.setNeg("alice:bad", errBadSecret) },
			want:       authn.CacheNegative,
			wantReason: errBadSecret,
		},
		{
			name: "negative entry dies after negative_ttl",
			run: func(e *env) authn.CacheKey {
				k := e.setNeg("alice:bad", errBadSecret)
				e.clk.Advance(testNeg)
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "negative entry just before negative_ttl",
			run: func(e *env) authn.CacheKey {
				k := e.setNeg("alice:bad", errBadSecret)
				e.clk.Advance(testNeg - time.Nanosecond)
				return k
			},
			want:       authn.CacheNegative,
			wantReason: errBadSecret,
		},
		{
			name: "negative caching disabled",
			cfg:  Config{NegativeTTL: -1},
			run:  func(e *env) authn.CacheKey { return e.setNeg("alice:bad", errBadSecret) },
			want: authn.CacheMiss,
		},
		{
			name: "store unavailable is never cached as invalid",
			run: func(e *env) authn.CacheKey {
				return e.setNeg("alice:pw", fmt.Errorf("lookup: %w", store.ErrUnavailable))
			},
			want: authn.CacheMiss,
		},
		{
			name: "store timeout is never cached as invalid",
			run: func(e *env) authn.CacheKey {
				return e.setNeg("alice:pw", fmt.Errorf("lookup: %w", context.DeadlineExceeded))
			},
			want: authn.CacheMiss,
		},
		{
			name: "store unavailable leaves the positive entry serving",
			run: func(e *env) authn.CacheKey {
				e.setPos("alice:pw", alice)
				return e.setNeg("alice:pw", store.ErrUnavailable)
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "any invalidation kills negative entries (new password works at once)",
			run: func(e *env) authn.CacheKey {
				k := e.setNeg("alice:newpw", errBadSecret)
				e.c.Invalidate(store.Invalidation{Username: "alice"})
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "unrelated invalidation kills negative entries too",
			run: func(e *env) authn.CacheKey {
				k := e.setNeg("alice:bad", errBadSecret)
				e.c.Invalidate(store.Invalidation{Username: "bob"})
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "fresh until just before ttl (in its last tenth: due for refresh)",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.clk.Advance(testTTL - time.Nanosecond)
				return k
			},
			want:     authn.CacheRefresh,
			wantUser: "alice",
		},
		{
			name: "plain hit before the last tenth of the ttl",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.clk.Advance(testTTL - testTTL/10 - time.Nanosecond)
				return k
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "refresh is returned to one caller per entry",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.clk.Advance(testTTL - testTTL/10)
				if _, st, _ := e.get(k); st != authn.CacheRefresh {
					e.t.Fatalf("first get in the refresh window: %v, want refresh", st)
				}
				return k
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "a refreshed entry starts a new ttl",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.clk.Advance(testTTL - testTTL/20)
				if _, st, _ := e.get(k); st != authn.CacheRefresh {
					e.t.Fatalf("first get in the refresh window: %v, want refresh", st)
				}
				e.setPos("alice:pw", alice) // what the chain's background refresh does
				e.clk.Advance(testTTL / 2)  // past the first entry's ttl
				return k
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "no refresh when the credential expires before the ttl",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", identExp("alice", "acme", e.clk.Now().Add(testTTL/2)))
				e.clk.Advance(testTTL/2 - time.Nanosecond)
				return k
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "stale at ttl",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.clk.Advance(testTTL)
				return k
			},
			want:     authn.CacheStale,
			wantUser: "alice",
		},
		{
			name: "stale until just before ttl + outage grace",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.clk.Advance(testTTL + testGrace - time.Nanosecond)
				return k
			},
			want:     authn.CacheStale,
			wantUser: "alice",
		},
		{
			name: "miss after outage grace",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.clk.Advance(testTTL + testGrace)
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "credential expiry while cached stops at once",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", identExp("alice", "acme", t0.Add(10*time.Second)))
				e.clk.Advance(10 * time.Second)
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "credential valid just before its expiry",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", identExp("alice", "acme", t0.Add(10*time.Second)))
				e.clk.Advance(10*time.Second - time.Nanosecond)
				return k
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "expired credential is never served stale",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", identExp("alice", "acme", t0.Add(2*testTTL)))
				e.c.MarkStale()
				e.clk.Advance(2 * testTTL)
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "credential already expired is not cached",
			run: func(e *env) authn.CacheKey {
				return e.setPos("alice:pw", identExp("alice", "acme", t0))
			},
			want: authn.CacheMiss,
		},
		{
			name: "invalidation by user",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.c.Invalidate(store.Invalidation{Username: "alice"})
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "invalidation of another user leaves the entry",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.setPos("bob:pw", ident("bob", "acme"))
				e.c.Invalidate(store.Invalidation{Username: "bob"})
				e.c.Invalidate(store.Invalidation{Username: "carol"}) // no counter
				e.c.Invalidate(store.Invalidation{Account: "other"})
				return k
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "invalidation by account",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.c.Invalidate(store.Invalidation{Account: "acme"})
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "invalidation by flush",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.c.Invalidate(store.Invalidation{Flush: true})
				return k
			},
			want: authn.CacheMiss,
		},
		// Per credential (DESIGN.md §13): an invalidation naming a key
		// kills that key's entry only; one naming its user or account
		// kills it too.
		{
			name: "key invalidation kills that key's entry",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:k1", aliceK1)
				e.c.Invalidate(store.Invalidation{Username: "alice", KeyID: "k1"})
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "key invalidation leaves the owner's password",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.setPos("alice:k1", aliceK1)
				e.c.Invalidate(store.Invalidation{Username: "alice", KeyID: "k1"})
				return k
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "key invalidation leaves the owner's other key",
			run: func(e *env) authn.CacheKey {
				e.setPos("alice:k1", aliceK1)
				k := e.setPos("alice:k2", aliceK2)
				e.c.Invalidate(store.Invalidation{Username: "alice", KeyID: "k1"})
				return k
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "key id alone kills that key's entry only",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.c.Invalidate(store.Invalidation{KeyID: "k1"})
				return k
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "key invalidation leaves the owner's tokens (user level)",
			run: func(e *env) authn.CacheKey {
				tok := ident("alice", "acme")
				tok.Method = authn.MethodBearer
				k := e.setPos("alice:jwt", tok)
				e.c.Invalidate(store.Invalidation{Username: "alice", KeyID: "k1"})
				return k
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "user invalidation kills the user's tokens",
			run: func(e *env) authn.CacheKey {
				tok := ident("alice", "acme")
				tok.Method = authn.MethodBearer
				k := e.setPos("alice:jwt", tok)
				e.c.Invalidate(store.Invalidation{Username: "alice"})
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "user invalidation kills the user's keys",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:k1", aliceK1)
				e.c.Invalidate(store.Invalidation{Username: "alice"})
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "account invalidation kills the account's keys",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:k1", aliceK1)
				e.c.Invalidate(store.Invalidation{Account: "acme"})
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "key invalidation during the lookup: dead on arrival",
			run: func(e *env) authn.CacheKey {
				k := e.key("alice:k1")
				s := e.c.Begin()
				e.c.Invalidate(store.Invalidation{Username: "alice", KeyID: "k1"})
				e.c.SetPositive(k, aliceK1, s)
				e.c.Wait()
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "key invalidation during another key's lookup leaves it",
			run: func(e *env) authn.CacheKey {
				e.setPos("alice:k2", aliceK2) // its counter exists
				k := e.key("alice:k2")
				s := e.c.Begin()
				e.c.Invalidate(store.Invalidation{Username: "alice", KeyID: "k1"})
				e.c.SetPositive(k, aliceK2, s)
				e.c.Wait()
				return k
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "revalidate: a fresh entry is refreshed in the background, drops nothing",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:k1", aliceK1)
				e.c.Invalidate(store.Invalidation{Revalidate: true})
				return k
			},
			want:     authn.CacheRefresh,
			wantUser: "alice",
		},
		{
			name: "revalidate: one caller refreshes, the others hit",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:k1", aliceK1)
				e.c.Invalidate(store.Invalidation{Revalidate: true})
				if _, st, _ := e.get(k); st != authn.CacheRefresh {
					e.t.Fatalf("first Get after Revalidate: %v, want refresh", st)
				}
				return k
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "revalidate: the refreshed entry is fresh",
			run: func(e *env) authn.CacheKey {
				e.setPos("alice:k1", aliceK1)
				e.c.Invalidate(store.Invalidation{Revalidate: true})
				k := e.setPos("alice:k1", aliceK1) // the refresh's result
				return k
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "revalidate: past cache.ttl the entry is stale (revalidated first)",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:k1", aliceK1)
				e.c.Invalidate(store.Invalidation{Revalidate: true})
				e.clk.Advance(testTTL)
				return k
			},
			want:     authn.CacheStale,
			wantUser: "alice",
		},
		{
			name: "revalidate kills negative entries",
			run: func(e *env) authn.CacheKey {
				k := e.setNeg("alice:bad", errBadSecret)
				e.c.Invalidate(store.Invalidation{Revalidate: true})
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "empty invalidation is treated as a flush",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.c.Invalidate(store.Invalidation{})
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "invalidation before the lookup began does not hurt",
			run: func(e *env) authn.CacheKey {
				e.setPos("alice:old", alice)
				e.c.Invalidate(store.Invalidation{Username: "alice"})
				return e.setPos("alice:pw", alice)
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "invalidation during lookup (user with a counter)",
			run: func(e *env) authn.CacheKey {
				e.setPos("alice:other", alice) // alice has a counter
				k := e.key("alice:pw")
				s := e.c.Begin()
				e.c.Invalidate(store.Invalidation{Username: "alice"}) // lands during the lookup
				e.c.SetPositive(k, alice, s)
				e.c.Wait()
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "invalidation during lookup (first entry of the user)",
			run: func(e *env) authn.CacheKey {
				k := e.key("alice:pw")
				s := e.c.Begin()
				e.c.Invalidate(store.Invalidation{Username: "alice"}) // no counter yet
				e.c.SetPositive(k, alice, s)
				e.c.Wait()
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "account invalidation during lookup",
			run: func(e *env) authn.CacheKey {
				e.setPos("bob:pw", ident("bob", "acme")) // acme has a counter
				k := e.key("alice:pw")
				s := e.c.Begin()
				e.c.Invalidate(store.Invalidation{Account: "acme"})
				e.c.SetPositive(k, alice, s)
				e.c.Wait()
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "flush during lookup",
			run: func(e *env) authn.CacheKey {
				k := e.key("alice:pw")
				s := e.c.Begin()
				e.c.Invalidate(store.Invalidation{Flush: true})
				e.c.SetPositive(k, alice, s)
				e.c.Wait()
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "invalidation during a negative lookup",
			run: func(e *env) authn.CacheKey {
				k := e.key("alice:newpw")
				s := e.c.Begin()
				e.c.Invalidate(store.Invalidation{Username: "alice"}) // password changed
				e.c.SetNegative(k, errBadSecret, s)
				e.c.Wait()
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "unrelated invalidation during lookup keeps existing counters precise",
			run: func(e *env) authn.CacheKey {
				e.setPos("alice:other", alice)
				k := e.key("alice:pw")
				s := e.c.Begin()
				e.c.Invalidate(store.Invalidation{Username: "bob"})
				e.c.SetPositive(k, alice, s)
				e.c.Wait()
				return k
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "refresh after invalidation hits again",
			run: func(e *env) authn.CacheKey {
				e.setPos("alice:pw", alice)
				e.c.Invalidate(store.Invalidation{Username: "alice"})
				return e.setPos("alice:pw", ident("alice", "acme"))
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "mark stale: revalidate before serving fresh",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.c.MarkStale()
				return k
			},
			want:     authn.CacheStale,
			wantUser: "alice",
		},
		{
			name: "mark stale then refresh hits",
			run: func(e *env) authn.CacheKey {
				e.setPos("alice:pw", alice)
				e.c.MarkStale()
				return e.setPos("alice:pw", alice)
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "mark stale kills negative entries",
			run: func(e *env) authn.CacheKey {
				k := e.setNeg("alice:bad", errBadSecret)
				e.c.MarkStale()
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "invalidated entry is not served stale",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.c.Invalidate(store.Invalidation{Username: "alice"})
				e.clk.Advance(testTTL)
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "negative result replaces the positive entry",
			run: func(e *env) authn.CacheKey {
				e.setPos("alice:pw", alice)
				return e.setNeg("alice:pw", errBadSecret)
			},
			want:       authn.CacheNegative,
			wantReason: errBadSecret,
		},
		{
			name: "negative result removes the positive entry when negative caching is off",
			cfg:  Config{NegativeTTL: -1},
			run: func(e *env) authn.CacheKey {
				e.setPos("alice:pw", alice)
				e.c.MarkStale() // would be served during an outage
				return e.setNeg("alice:pw", errBadSecret)
			},
			want: authn.CacheMiss,
		},
		{
			name: "an older lookup does not replace a newer entry",
			run: func(e *env) authn.CacheKey {
				k := e.key("alice:pw")
				old := e.c.Begin()
				e.c.Invalidate(store.Invalidation{Username: "bob"})
				e.setPos("alice:pw", alice)           // newer lookup
				e.c.SetNegative(k, errBadSecret, old) // older lookup finishes last
				e.c.Wait()
				return k
			},
			want:     authn.CacheHit,
			wantUser: "alice",
		},
		{
			name: "clear",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.c.Clear()
				return k
			},
			want: authn.CacheMiss,
		},
		{
			name: "closed cache misses",
			run: func(e *env) authn.CacheKey {
				k := e.setPos("alice:pw", alice)
				e.c.Close()
				return k
			},
			want: authn.CacheMiss,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			cfg := tc.cfg
			cfg.Now = clk.Now
			e := &env{t: t, c: newTestCache(t, cfg), clk: clk}
			k := tc.run(e)
			id, st, reason := e.get(k)
			if st != tc.want {
				t.Fatalf("status %v, want %v", st, tc.want)
			}
			user := ""
			if id != nil {
				user = id.Username
			}
			if user != tc.wantUser {
				t.Fatalf("identity %q, want %q", user, tc.wantUser)
			}
			if !errors.Is(reason, tc.wantReason) {
				t.Fatalf("reason %v, want %v", reason, tc.wantReason)
			}
		})
	}
}

// A wrong secret for a cached id neither succeeds nor evicts the good entry,
// and neither does a forged key that shares the good key's Hi.
func TestWrongCredentialDoesNotEvict(t *testing.T) {
	clk := newClock()
	c := newTestCache(t, Config{Now: clk.Now})
	e := &env{t: t, c: c, clk: clk}
	good := e.setPos("alice:pw", ident("alice", "acme"))

	cases := []struct {
		name string
		k    authn.CacheKey
		set  func(k authn.CacheKey)
	}{
		{"wrong secret, positive set", e.key("alice:wrong"), func(k authn.CacheKey) { c.SetPositive(k, ident("mallory", "evil"), c.Begin()) }},
		{"wrong secret, negative set", e.key("alice:wrong"), func(k authn.CacheKey) { c.SetNegative(k, errBadSecret, c.Begin()) }},
		{"same Hi other Lo, positive set", authn.CacheKey{Hi: good.Hi, Lo: good.Lo ^ 1}, func(k authn.CacheKey) { c.SetPositive(k, ident("mallory", "evil"), c.Begin()) }},
		{"same Hi other Lo, negative set", authn.CacheKey{Hi: good.Hi, Lo: good.Lo ^ 1}, func(k authn.CacheKey) { c.SetNegative(k, errBadSecret, c.Begin()) }},
		{"same Hi other Lo, delete", authn.CacheKey{Hi: good.Hi, Lo: good.Lo ^ 1}, func(k authn.CacheKey) { c.Delete(k) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.k.Hi == good.Hi && tc.k.Lo != good.Lo {
				if _, st, _ := e.get(tc.k); st != authn.CacheMiss {
					t.Fatalf("forged key: %v before set", st)
				}
			}
			tc.set(tc.k)
			c.Wait()
			if tc.k.Hi == good.Hi {
				if _, st, _ := e.get(tc.k); st != authn.CacheMiss {
					t.Fatalf("forged key: %v after set", st)
				}
			}
			id, st, _ := e.get(good)
			if st != authn.CacheHit || id.Username != "alice" {
				t.Fatalf("good entry: %v %+v", st, id)
			}
		})
	}
}

// Bounded memory under a flood of random credentials: entries stay within
// MaxEntries; invalid credentials create no counters; valid ones are bounded
// by the counter table limit.
func TestBoundedMemory(t *testing.T) {
	const maxEntries = 10_000
	flood := 200_000
	if raceEnabled {
		flood = 50_000
	}
	cases := []struct {
		name     string
		positive bool
	}{
		{"negative flood", false},
		{"positive flood, distinct users", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			c := newTestCache(t, Config{MaxEntries: maxEntries, Now: clk.Now})
			var buf [8]byte
			for i := range flood {
				buf = [8]byte{byte(i), byte(i >> 8), byte(i >> 16), byte(i >> 24)}
				k := c.KeyOf(authn.CacheKindAPIKey, buf[:], []byte("secret"))
				if tc.positive {
					u := fmt.Sprintf("u%d", i)
					c.SetPositive(k, ident(u, "acct"+u), c.Begin())
				} else {
					c.SetNegative(k, errBadSecret, c.Begin())
				}
				if i%1000 == 0 {
					c.Wait() // let the admission policy keep up, as in steady state
				}
			}
			c.Wait()
			if n := c.Len(); n > maxEntries || n <= 0 {
				t.Fatalf("Len %d, bound %d", n, maxEntries)
			}
			stored := 0
			c.rc.IterValues(func(*entry) bool { stored++; return false })
			if stored > maxEntries {
				t.Fatalf("%d entries stored, bound %d", stored, maxEntries)
			}
			users, accounts := c.Counters()
			limit := c.users.max
			if !tc.positive && (users != 0 || accounts != 0) {
				t.Fatalf("negative entries created counters: %d %d", users, accounts)
			}
			if users > limit || accounts > limit {
				t.Fatalf("counters %d %d, bound %d", users, accounts, limit)
			}
			t.Logf("Len %d, stored %d, counters %d/%d (bound %d)", c.Len(), stored, users, accounts, limit)
		})
	}
}

// The counter table's overflow reset flushes: an entry whose counter was
// dropped can no longer be reached by an invalidation of its name, so it
// must die.
func TestCounterOverflowFlushes(t *testing.T) {
	clk := newClock()
	c := newTestCache(t, Config{MaxEntries: 10, Now: clk.Now})
	e := &env{t: t, c: c, clk: clk}
	k := e.setPos("alice:pw", ident("alice", "acme"))
	for i := range c.users.max {
		c.SetPositive(e.key(fmt.Sprintf("u%d:pw", i)), ident(fmt.Sprintf("u%d", i), "acme"), c.Begin())
	}
	c.Wait()
	if users, _ := c.Counters(); users > c.users.max {
		t.Fatalf("%d user counters, bound %d", users, c.users.max)
	}
	if _, st, _ := e.get(k); st != authn.CacheMiss {
		t.Fatalf("entry whose counter was dropped: %v, want miss", st)
	}
	// After the reset the cache works as before.
	k = e.setPos("alice:pw", ident("alice", "acme"))
	if _, st, _ := e.get(k); st != authn.CacheHit {
		t.Fatalf("after reset: %v", st)
	}
	c.Invalidate(store.Invalidation{Username: "alice"})
	if _, st, _ := e.get(k); st != authn.CacheMiss {
		t.Fatalf("invalidation after reset: %v", st)
	}
}

// Key counters are made by API key entries only, swept like the others,
// and dropped by Clear.
func TestKeyCounters(t *testing.T) {
	clk := newClock()
	c := newTestCache(t, Config{Now: clk.Now})
	e := &env{t: t, c: c, clk: clk}
	e.setPos("alice:pw", ident("alice", "acme"))
	if n := c.KeyCounters(); n != 0 {
		t.Fatalf("password entry made %d key counters", n)
	}
	e.setPos("alice:k1", identKey("alice", "acme", "k1"))
	e.setPos("alice:k2", identKey("alice", "acme", "k2"))
	if n := c.KeyCounters(); n != 2 {
		t.Fatalf("%d key counters, want 2", n)
	}
	clk.Advance(c.sweepAfter() + time.Nanosecond)
	if dropped := c.sweep(clk.Now()); dropped != 4 { // alice, acme, k1, k2
		t.Fatalf("swept %d counters, want 4", dropped)
	}
	if n := c.KeyCounters(); n != 0 {
		t.Fatalf("%d key counters after the sweep", n)
	}
	// A key swept and cached again still hears its invalidations.
	k := e.setPos("alice:k1", identKey("alice", "acme", "k1"))
	c.Invalidate(store.Invalidation{KeyID: "k1", Username: "alice"})
	if _, st, _ := e.get(k); st != authn.CacheMiss {
		t.Fatalf("invalidation of a re-cached key: %v", st)
	}
	e.setPos("alice:k2", identKey("alice", "acme", "k2"))
	c.Clear()
	if n := c.KeyCounters(); n != 0 {
		t.Fatalf("%d key counters after Clear", n)
	}
}

// The sweeper drops counters no entry can use any more, and an invalidation
// for a swept name still reaches entries made later.
func TestSweep(t *testing.T) {
	clk := newClock()
	c := newTestCache(t, Config{Now: clk.Now})
	e := &env{t: t, c: c, clk: clk}
	e.setPos("old:pw", ident("old", "oldacct"))
	clk.Advance(c.sweepAfter() / 2)
	recent := e.setPos("new:pw", ident("new", "acme"))

	steps := []struct {
		name          string
		advance       time.Duration
		wantDropped   int
		wantU, wantAc int64
	}{
		{"nothing old enough", 0, 0, 2, 2},
		{"old user and account go", c.sweepAfter()/2 + time.Nanosecond, 2, 1, 1},
		{"recent ones go later", c.sweepAfter() / 2, 2, 0, 0},
	}
	for _, s := range steps {
		clk.Advance(s.advance)
		if got := c.sweep(clk.Now()); got != s.wantDropped {
			t.Fatalf("%s: dropped %d, want %d", s.name, got, s.wantDropped)
		}
		if u, a := c.Counters(); u != s.wantU || a != s.wantAc {
			t.Fatalf("%s: counters %d/%d, want %d/%d", s.name, u, a, s.wantU, s.wantAc)
		}
	}
	if _, st, _ := e.get(recent); st != authn.CacheMiss {
		t.Fatalf("entry older than its counter's retention: %v", st)
	}
	// A new entry for a swept user gets a new counter that invalidations reach.
	k := e.setPos("new:pw", ident("new", "acme"))
	if _, st, _ := e.get(k); st != authn.CacheHit {
		t.Fatalf("after sweep: %v", st)
	}
	c.Invalidate(store.Invalidation{Username: "new"})
	if _, st, _ := e.get(k); st != authn.CacheMiss {
		t.Fatalf("invalidation after sweep: %v", st)
	}
}

// Concurrent lookups, sets and invalidations (run with -race). Property:
// once Invalidate(alice) has returned, no alice entry whose lookup began
// before it is a Hit.
func TestConcurrentInvalidation(t *testing.T) {
	c := newTestCache(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var violations atomic.Int64
	keys := make([]authn.CacheKey, 16)
	for i := range keys {
		keys[i] = c.KeyOf(authn.CacheKindBasic, []byte("alice"), fmt.Appendf(nil, "pw%d", i))
	}
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				k := keys[(i+w)%len(keys)]
				if id, st, _ := c.Get(k, time.Now()); st == authn.CacheHit {
					_ = id.Username
				}
				s := c.Begin()
				c.SetPositive(k, ident("alice", "acme"), s)
				if i%7 == 0 {
					c.SetNegative(keys[(i+3)%len(keys)], errBadSecret, s)
				}
			}
		})
	}
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			switch i % 3 {
			case 0:
				c.Invalidate(store.Invalidation{Username: "alice"})
			case 1:
				c.Invalidate(store.Invalidation{Account: "acme"})
			default:
				c.MarkStale()
			}
			inv := c.Begin()
			// Every alice entry was made before inv or is being made by a
			// lookup that began before it: none may hit unless its seq ≥
			// the last user/account invalidation.
			// (MarkStale makes them Stale: not a Hit either.)
			for _, k := range keys {
				before, _ := c.rc.Get(k.Hi)
				_, st, _ := c.Get(k, time.Now())
				after, _ := c.rc.Get(k.Hi)
				if st == authn.CacheHit && before != nil && before == after && before.seq < inv {
					violations.Add(1)
				}
			}
			time.Sleep(50 * time.Microsecond)
		}
	})
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	if v := violations.Load(); v != 0 {
		t.Fatalf("%d hits of entries older than an invalidation", v)
	}
	c.Invalidate(store.Invalidation{Username: "alice"})
	for _, k := range keys {
		if _, st, _ := c.Get(k, time.Now()); st == authn.CacheHit {
			t.Fatal("hit after the final invalidation")
		}
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	clk := newClock()
	c, err := New(Config{MaxEntries: 100, TTL: testTTL, NegativeTTL: testNeg, OutageGrace: testGrace, Now: clk.Now}, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e := &env{t: t, c: c, clk: clk}
	k := e.setPos("alice:pw", ident("alice", "acme"))
	n := e.setNeg("bob:bad", errBadSecret)
	_, _, _ = e.get(k)                 // hit
	_, _, _ = e.get(n)                 // negative: hit
	_, _, _ = e.get(e.key("carol:pw")) // miss
	clk.Advance(testTTL)               //
	_, _, _ = e.get(k)                 // stale: miss
	c.Invalidate(store.Invalidation{Username: "alice"})
	c.Invalidate(store.Invalidation{Flush: true})

	want := `
# HELP keygate_cache_entries Entries in the credential cache (positive and negative).
# TYPE keygate_cache_entries gauge
keygate_cache_entries 2
# HELP keygate_cache_hits_total Credential cache lookups answered from the cache (positive or negative).
# TYPE keygate_cache_hits_total counter
keygate_cache_hits_total 2
# HELP keygate_cache_misses_total Credential cache lookups that needed the store (miss or stale).
# TYPE keygate_cache_misses_total counter
keygate_cache_misses_total 2
# HELP keygate_invalidations_total Cache invalidations applied (from the store's pub/sub or local writes).
# TYPE keygate_invalidations_total counter
keygate_invalidations_total 2
`
	if got := exposition(t, reg); got != strings.TrimLeft(want, "\n") {
		t.Fatalf("exposition:\n%s\nwant:\n%s", got, want)
	}
	// A second cache on the same registry is refused, not a panic.
	if _, err := New(Config{MaxEntries: 1, TTL: time.Second}, reg); err == nil {
		t.Fatal("duplicate registration accepted")
	}
}

func TestNewValidates(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"zero max entries", Config{TTL: time.Second}},
		{"negative max entries", Config{MaxEntries: -1, TTL: time.Second}},
		{"zero ttl", Config{MaxEntries: 1}},
		{"negative negative_ttl", Config{MaxEntries: 1, TTL: time.Second, NegativeTTL: -1}},
		{"negative outage grace", Config{MaxEntries: 1, TTL: time.Second, OutageGrace: -1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := New(tc.cfg, nil); err == nil {
				c.Close()
				t.Fatal("accepted")
			}
		})
	}
}
