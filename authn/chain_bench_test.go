package authn_test

import (
	"context"
	"errors"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/authn/keyauth"
	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/store"
)

type form struct{ name, h string }

func hitForms(e *env) []form {
	k := keyForms(e.key.ID, e.value)
	return []form{
		{"basic", basic("alice", testPassword)},
		{"apikey", k["apikey"]},
		{"basic_api_key", k["basic_api_key"]},
		{"bearer_kg", k["bearer_kg"]},
		// A key with a 3-prefix allow-list (holding ip1) and metadata.
		{"apikey_cidrs_meta", e.cidrKeyHeader("cidr", "10.0.0.0/8", "2001:db8::/32", "192.0.2.0/24")},
	}
}

// BenchmarkChainHit: the hot path (parse, MAC, cache hit, metrics).
func BenchmarkChainHit(b *testing.B) {
	e := newEnv(b, envOptions{perIP: 30, perUser: 10})
	ctx := context.Background()
	for _, f := range hitForms(e) {
		b.Run(f.name, func(b *testing.B) {
			h := []byte(f.h)
			e.ok(f.h)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.chain.Authenticate(ctx, h, ip1); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkChainHitSerial: the same, one goroutine.
func BenchmarkChainHitSerial(b *testing.B) {
	e := newEnv(b, envOptions{perIP: 30, perUser: 10})
	ctx := context.Background()
	for _, f := range hitForms(e) {
		b.Run(f.name, func(b *testing.B) {
			h := []byte(f.h)
			e.ok(f.h)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.chain.Authenticate(ctx, h, ip1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// missChain is a chain over e's store without a cache: every call is a
// miss. h hashes for its password authenticator (e's passwords were hashed
// with testParams: with another h only failures are meaningful).
func missChain(b *testing.B, e *env, h *password.Hasher) *authn.Chain {
	c, err := authn.NewChain(authn.ChainConfig{Authenticators: map[authn.CredKind]authn.Authenticator{
		authn.KindAPIKey: keyauth.NewAuthenticator(e.st, keyauth.AuthOptions{Accounts: e.states}),
		authn.KindBasic:  password.NewAuthenticator(e.st, h, password.AuthOptions{Accounts: e.states}),
	}})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkChainMiss: an API key miss (one store round trip, SHA-256,
// account state from memory) against bbolt and against a real Redis.
func BenchmarkChainMiss(b *testing.B) {
	for _, backend := range []string{"bolt", "redis"} {
		b.Run(backend, func(b *testing.B) {
			clk := newClock()
			var raw store.Store
			if backend == "bolt" {
				raw = newBoltStore(b, clk)
			} else {
				_, raw = newRedisStore(b, clk)
			}
			e := newEnvOn(b, clk, raw, envOptions{})
			c := missChain(b, e, hasherOnce())
			h := []byte("Bearer " + e.value)
			ctx := context.Background()
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				if _, err := c.Authenticate(ctx, h, ip1); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "us-cpu/op")
		})
	}
}

// BenchmarkChainNegativeHit: a repeated wrong credential answered from the
// negative cache.
func BenchmarkChainNegativeHit(b *testing.B) {
	e := newEnv(b, envOptions{})
	s, _ := apikey.NewSecret()
	for _, f := range []form{{"basic", basic("alice", "wrong")}, {"bearer_kg", "Bearer " + apikey.Format(e.key.ID, s)}} {
		b.Run(f.name, func(b *testing.B) {
			h := []byte(f.h)
			_, _ = e.auth(f.h)
			e.cache.Wait()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.chain.Authenticate(ctx, h, ip1); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}

// BenchmarkChainUnknownVsWrong: timing parity through the whole miss path
// (bbolt, production argon2id parameters, no cache). Each iteration runs the
// unknown and the wrong credential alternately and times them apart, so
// machine load and GC drift hit both alike; unknown-ns/op must match
// wrong-ns/op within noise (ratio ≈ 1).
func BenchmarkChainUnknownVsWrong(b *testing.B) {
	e := newEnv(b, envOptions{})
	h := password.New(password.DefaultParams, 1)
	phc, err := h.Hash(testPassword)
	must(b, err)
	_, err = e.raw.UpdateUser(context.Background(), "alice", store.UserUpdate{PasswordHash: &phc})
	must(b, err)
	c := missChain(b, e, h)
	s, _ := apikey.NewSecret()
	ctx := context.Background()
	for _, pair := range []struct{ name, unknown, wrong string }{
		{"password", basic("mallory", "not the password"), basic("alice", "not the password")},
		{"api_key", "Bearer " + apikey.Format("AAAAAAAAAAAAAAAAAAAA", s), "Bearer " + apikey.Format(e.key.ID, s)},
	} {
		b.Run(pair.name, func(b *testing.B) {
			hu, hw := []byte(pair.unknown), []byte(pair.wrong)
			run := func(h []byte) time.Duration {
				t0 := time.Now()
				if _, err := c.Authenticate(ctx, h, ip1); !errors.Is(err, authn.ErrInvalidCredentials) {
					b.Fatal(err)
				}
				return time.Since(t0)
			}
			run(hu) // warm-up
			run(hw)
			var du, dw time.Duration
			i := 0
			for b.Loop() {
				if i%2 == 0 {
					du += run(hu)
					dw += run(hw)
				} else {
					dw += run(hw)
					du += run(hu)
				}
				i++
			}
			b.ReportMetric(float64(du.Nanoseconds())/float64(i), "unknown-ns/op")
			b.ReportMetric(float64(dw.Nanoseconds())/float64(i), "wrong-ns/op")
			b.ReportMetric(float64(du)/float64(dw), "unknown/wrong")
		})
	}
}

// BenchmarkChainMissLatency reports the distribution of an API-key cache
// miss against a real Redis on loopback (each op a full miss: store round
// trip, SHA-256, account state from memory): p50 and p99 in µs, next to a
// bare Redis PING on the same server in the same run. A hit costs well
// under a microsecond, so the miss latency is the added latency.
func BenchmarkChainMissLatency(b *testing.B) {
	clk := newClock()
	srv, raw := newRedisStore(b, clk)
	e := newEnvOn(b, clk, raw, envOptions{})
	c := missChain(b, e, hasherOnce())
	h := []byte("Bearer " + e.value)
	ctx := context.Background()
	ping := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	b.Cleanup(func() { _ = ping.Close() })
	report := func(b *testing.B, d []time.Duration) {
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), "p99-µs")
	}
	b.Run("miss", func(b *testing.B) {
		var d []time.Duration
		for b.Loop() {
			t0 := time.Now()
			if _, err := c.Authenticate(ctx, h, ip1); err != nil {
				b.Fatal(err)
			}
			d = append(d, time.Since(t0))
		}
		report(b, d)
	})
	b.Run("redis_ping", func(b *testing.B) {
		var d []time.Duration
		for b.Loop() {
			t0 := time.Now()
			if err := ping.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			d = append(d, time.Since(t0))
		}
		report(b, d)
	})
}

// processCPU is this process' user+system CPU time (all goroutines): a miss
// runs on a goroutine of its own, so ns/op alone hides where it goes.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
