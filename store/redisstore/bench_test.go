package redisstore

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
)

// benchHashLen is the size of an authn/apikey salted hash (16 salt + 32).
const benchHashLen = 48

// loadUsers creates one account and n users, returning their tags.
func loadUsers(tb testing.TB, s *Store, n int) []string {
	tb.Helper()
	ctx := context.Background()
	if err := s.CreateAccount(ctx, &store.Account{Name: "bench"}); err != nil {
		tb.Fatal(err)
	}
	tags := make([]string, n)
	for i := range n {
		u := &store.User{Username: fmt.Sprintf("user%06d", i), Account: "bench", Roles: []string{"read", "write"}, //nolint:gosec // test data, not a real credential
			PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"}
		if err := s.CreateUser(ctx, u); err != nil {
			tb.Fatal(err)
		}
		tag, err := s.userTag(ctx, u.Username)
		if err != nil {
			tb.Fatal(err)
		}
		tags[i] = tag
	}
	return tags
}

// loadKeys stores perUser realistic keys for each tag with pipelined
// EVALSHA of the same script CreateAPIKey runs (batches of 1000), and
// returns the ids.
func loadKeys(tb testing.TB, s *Store, tags []string, perUser int) []string {
	tb.Helper()
	ctx := context.Background()
	if err := scriptCreateKey.Load(ctx, s.c).Err(); err != nil {
		tb.Fatal(err)
	}
	now := encTime(time.Now())
	created := encTime(time.Now().Truncate(time.Second))
	expires := encTime(time.Now().Add(365 * 24 * time.Hour).Truncate(time.Second))
	ids := make([]string, 0, len(tags)*perUser)
	const batch = 1000
	p := s.c.Pipeline()
	var cmds []*redis.Cmd
	flush := func() {
		if _, err := p.Exec(ctx); err != nil {
			tb.Fatalf("pipeline: %v", err)
		}
		for _, c := range cmds {
			if code, _ := c.Val().([]any); len(code) == 0 || code[0] != int64(3) {
				tb.Fatalf("create key: %v %v", c.Val(), c.Err())
			}
		}
		cmds = cmds[:0]
	}
	hash := make([]byte, benchHashLen)
	for _, tag := range tags {
		for j := range perUser {
			suf := randomBase62(keySufLen)
			id := tag + suf
			_, _ = crand.Read(hash)
			name := fmt.Sprintf("key-%04d", j)
			cmds = append(cmds, scriptCreateKey.EvalSha(ctx, p,
				[]string{s.userKey(tag), s.apiKeyKey(id), s.keySetKey(tag), s.keyNamesKey(tag)},
				name, now, suf, suf+":"+expires,
				"n", name, "h", string(hash), "c", created, "r", "read", "e", expires))
			ids = append(ids, id)
			if len(cmds) == batch {
				flush()
			}
		}
	}
	if len(cmds) > 0 {
		flush()
	}
	return ids
}

// usedMemory is INFO memory's used_memory.
func usedMemory(tb testing.TB, c redis.UniversalClient) int64 {
	tb.Helper()
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	tb.Fatal("no used_memory in INFO")
	return 0
}

// memoryUsage sums MEMORY USAGE (SAMPLES 0: exact) over keys.
func memoryUsage(tb testing.TB, c redis.UniversalClient, keys []string) int64 {
	tb.Helper()
	ctx := context.Background()
	var total int64
	for i := 0; i < len(keys); i += 1000 {
		p := c.Pipeline()
		var cmds []*redis.IntCmd
		for _, k := range keys[i:min(i+1000, len(keys))] {
			cmds = append(cmds, p.MemoryUsage(ctx, k, 0))
		}
		if _, err := p.Exec(ctx); err != nil {
			tb.Fatal(err)
		}
		for _, c := range cmds {
			total += c.Val()
		}
	}
	return total
}

// perKeyBytes measures the memory one stored key costs: MEMORY USAGE of the
// key hashes plus the owners' key sets and name indexes (the per-key growth
// of the indexes), divided by the number of keys; and the used_memory growth
// per key (which includes the keyspace dictionary).
func perKeyBytes(tb testing.TB, s *Store, users, perUser int) (usage, used float64) {
	tb.Helper()
	tags := loadUsers(tb, s, users)
	before := usedMemory(tb, s.c)
	ids := loadKeys(tb, s, tags, perUser)
	after := usedMemory(tb, s.c)
	var keys []string
	for _, id := range ids {
		keys = append(keys, s.apiKeyKey(id))
	}
	for _, tag := range tags {
		keys = append(keys, s.keySetKey(tag), s.keyNamesKey(tag))
	}
	n := float64(len(ids))
	return float64(memoryUsage(tb, s.c, keys)) / n, float64(after-before) / n
}

// TestMemoryPerKey reports and bounds the Redis memory of a stored key
// (target: under 400 bytes by MEMORY USAGE, indexes included).
func TestMemoryPerKey(t *testing.T) {
	srv := testredis.Start(t)
	for _, tc := range []struct{ users, perUser int }{{10, 100}, {1, 1000}} {
		s := newTestStore(t, []string{srv.Addr()}, nil, 0)
		usage, used := perKeyBytes(t, s, tc.users, tc.perUser)
		t.Logf("%d users x %d keys: %.0f bytes/key by MEMORY USAGE (key hash + key set + name index), %.0f bytes/key by used_memory growth",
			tc.users, tc.perUser, usage, used)
		if usage >= 400 {
			t.Errorf("%d users x %d keys: %.0f bytes per key, want < 400", tc.users, tc.perUser, usage)
		}
	}
}

// benchStore is a private Redis with 10 users x 100 keys.
func benchStore(b *testing.B) (*Store, []string) {
	b.Helper()
	srv := testredis.Start(b)
	s := newTestStore(b, []string{srv.Addr()}, nil, 0)
	ids := loadKeys(b, s, loadUsers(b, s, 10), 100)
	return s, ids
}

func BenchmarkGetAPIKey(b *testing.B) {
	s, ids := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := s.GetAPIKey(ctx, ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookupAPIKey(b *testing.B) {
	s, ids := benchStore(b)
	benchLookup(b, s, ids)
}

func benchLookup(b *testing.B, s *Store, ids []string) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, _, err := s.LookupAPIKey(ctx, ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookupAPIKeyParallel(b *testing.B) {
	s, ids := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	lookupRandomly(ctx, b, s, ids)
}

// lookupRandomly looks up random keys of ids from b's parallel goroutines.
func lookupRandomly(ctx context.Context, b *testing.B, s *Store, ids []string) {
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 0)) //nolint:gosec // test data, not a secret
		for pb.Next() {
			if _, _, err := s.LookupAPIKey(ctx, ids[r.IntN(len(ids))]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestLoad1M loads 1,000,000 keys (10,000 users x 100) with pipelined
// writes and measures the fetch at that size against ~1,000 keys. It runs
// only with KEYGATE_BENCH_1M=1 (it needs about 1 GB of memory and a minute).
func TestLoad1M(t *testing.T) {
	if os.Getenv("KEYGATE_BENCH_1M") != "1" {
		t.Skip("set KEYGATE_BENCH_1M=1 to load 1,000,000 keys")
	}
	srv := testredis.Start(t)
	small := newTestStore(t, []string{srv.Addr()}, nil, 0)
	smallIDs := loadKeys(t, small, loadUsers(t, small, 10), 100)
	lookup := func(s *Store, ids []string) testing.BenchmarkResult {
		return testing.Benchmark(func(b *testing.B) {
			ctx := context.Background()
			r := rand.New(rand.NewPCG(1, 2)) //nolint:gosec // test data, not a secret
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.LookupAPIKey(ctx, ids[r.IntN(len(ids))]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	at1k := lookup(small, smallIDs)

	big := newTestStore(t, []string{srv.Addr()}, nil, 0)
	start := time.Now()
	tags := loadUsers(t, big, 10000)
	usersDur := time.Since(start)
	before := usedMemory(t, big.c)
	start = time.Now()
	ids := loadKeys(t, big, tags, 100)
	loadDur := time.Since(start)
	perKey := float64(usedMemory(t, big.c)-before) / float64(len(ids))
	// MEMORY USAGE on a sample of 100 users' keys and indexes.
	var keys []string
	sampleKeys := 0
	for _, tag := range tags[:100] {
		keys = append(keys, big.keySetKey(tag), big.keyNamesKey(tag))
	}
	for _, id := range ids {
		if _, ok := slicesIndex(tags[:100], id[:tagLen]); ok {
			keys = append(keys, big.apiKeyKey(id))
			sampleKeys++
		}
	}
	usage := float64(memoryUsage(t, big.c, keys)) / float64(sampleKeys)
	at1M := lookup(big, ids)
	at1kAfter := lookup(small, smallIDs)
	t.Logf("users: 10,000 created in %v", usersDur.Round(time.Millisecond))
	t.Logf("load: %d keys in %v (%.0f keys/s)", len(ids), loadDur.Round(time.Millisecond), float64(len(ids))/loadDur.Seconds())
	t.Logf("memory: %.0f bytes/key by used_memory growth, %.0f bytes/key by MEMORY USAGE (sample of %d keys)", perKey, usage, sampleKeys)
	t.Logf("LookupAPIKey at 1M keys: %s %s", at1M, at1M.MemString())
	t.Logf("LookupAPIKey at 1k keys: %s %s (before the 1M load), %s (with 1M stored)", at1k, at1k.MemString(), at1kAfter)
}

func slicesIndex(s []string, v string) (int, bool) {
	for i, x := range s {
		if x == v {
			return i, true
		}
	}
	return -1, false
}

// BenchmarkRoundTrip sets LookupAPIKey beside a bare PING on the same
// server and client, in one run: the ratio shows a key+owner fetch costs one
// round trip (plus decoding), not several.
func BenchmarkRoundTrip(b *testing.B) {
	s, ids := benchStore(b)
	ctx := context.Background()
	b.Run("ping", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := s.c.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lookup", func(b *testing.B) { benchLookup(b, s, ids) })
}

// BenchmarkLookupAPIKeyContended is the API key cache miss under gateway
// load: 32 concurrent callers (wrk's connection count in bench/) on random
// keys, with concurrent lookups combined into pipelines (combined) and
// without (direct). Besides ns/op it reports the CPU both processes spend
// per lookup (us-cpu/op: keygate's side from getrusage, redis-server's from
// /proc), the figure combining exists to lower on a 2-core machine.
func BenchmarkLookupAPIKeyContended(b *testing.B) {
	srv := testredis.Start(b)
	s := newTestStore(b, []string{srv.Addr()}, nil, 0)
	ids := loadKeys(b, s, loadUsers(b, s, 10), 100)
	for _, mode := range []struct {
		name  string
		batch int
	}{{"direct", 1}, {"combined", defaultLookupBatch}} {
		b.Run(mode.name, func(b *testing.B) {
			s.lookups.maxBatch = mode.batch
			defer func() { s.lookups.maxBatch = defaultLookupBatch }()
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
			self0, redis0 := selfCPU(), procCPU(b, srv.PID())
			b.ResetTimer()
			lookupRandomly(ctx, b, s, ids)
			b.StopTimer()
			self, rd := selfCPU()-self0, procCPU(b, srv.PID())-redis0
			b.ReportMetric(float64((self+rd).Microseconds())/float64(b.N), "us-cpu/op")
			b.ReportMetric(float64(rd.Microseconds())/float64(b.N), "us-redis-cpu/op")
		})
	}
}

// selfCPU is this process' user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is a process' user+system CPU time from /proc/PID/stat.
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatalf("redis-server CPU: %v", err)
	}
	// Fields after the parenthesised command: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// BenchmarkTouchAPIKeys flushes last-used times of 10,000 keys of 100 users
// (what one TouchBatcher flush sends when many distinct keys are in use):
// one script call per user (batched, as TouchAPIKeys does) against one
// call per key (how it was done before). us-redis-cpu/key is redis-server's
// CPU per key touched.
func BenchmarkTouchAPIKeys(b *testing.B) {
	srv := testredis.Start(b)
	s := newTestStore(b, []string{srv.Addr()}, nil, 0)
	ids := loadKeys(b, s, loadUsers(b, s, 100), 100)
	ctx := context.Background()
	for _, mode := range []string{"per-user", "per-key"} {
		b.Run(mode, func(b *testing.B) {
			redis0 := procCPU(b, srv.PID())
			at := time.Now()
			for b.Loop() {
				at = at.Add(time.Second)
				used := make(map[string]time.Time, len(ids))
				for _, id := range ids {
					used[id] = at
				}
				if mode == "per-user" {
					if err := s.TouchAPIKeys(ctx, used); err != nil {
						b.Fatal(err)
					}
					continue
				}
				_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
					for id, t := range used {
						scriptTouchKeys.EvalSha(ctx, p, []string{s.apiKeyKey(id)}, encTime(t))
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			rd := procCPU(b, srv.PID()) - redis0
			b.ReportMetric(float64(rd.Microseconds())/float64(b.N*len(ids)), "us-redis-cpu/key")
		})
	}
}
