// Package redisstore is keygate's shared store on Redis (go-redis v9
// UniversalClient): one node, Sentinel (MasterName set) or Cluster (several
// addresses). Every instance of keygate pointing at the same Redis shares
// accounts, users and API keys, and hears every other instance's
// invalidations on the channel <prefix>invalidate, each also appended to the
// bounded stream <prefix>invlog so that a subscription that was down can
// catch up (watch.go).
//
// # Layout
//
// Every key starts with the configured prefix P (default "kg:"). Two kinds of
// hash tag place records on cluster slots:
//
//   - {a}: the directory, one slot: P{a}acct:<name> (hash: s state, c created,
//     x deleting), P{a}accts (zset of account names), P{a}m:<account> (hash
//     username → user tag), P{a}un (hash username → user tag).
//   - {<tag>}: one user and everything they own. Each user gets a random,
//     immutable 8-character base62 tag at CreateUser. P{tag} is the user
//     hash; P{tag}<12 base62> a key hash; P{tag}s the zset (score 0, lex
//     order) of the user's key id suffixes (the 12 characters after the tag);
//     P{tag}n the hash key name → "<id suffix>:<expires>" of the user's live
//     keys (revoked keys leave it; expired ones are overwritten or purged).
//
// A key id is <tag><12 random base62>, so the key's slot and its owner's
// record follow from the id alone: GetAPIKey and LookupAPIKey are one Lua
// script on one slot, one round trip. A password login reads P{a}un then the
// user hash (two round trips).
//
// # Atomicity
//
// Every script touches keys of one hash tag only, so it is atomic on a
// cluster too. Operations that span the directory and a user slot are
// ordered so a crash between the steps leaves nothing reachable that should
// not be: CreateUser writes the user hash under a fresh tag (unreachable)
// before indexing it in the directory; DeleteUser deletes the user's records
// before removing the index entries (a dangling index entry reads as not
// found, and CreateUser repairs it); DeleteAccount first marks the account
// deleting (it vanishes for readers and no user can join it), then deletes
// every user, then the account.
//
// The directory lives on one slot so that CreateUser can check the account,
// claim the username and join the account in one atomic script; it holds
// small records only (accounts, and one hash field per user), so on a
// cluster one node carries it while API keys, the bulk, spread by user tag.
//
// Records are compact hashes with one-letter fields; times are Unix
// nanoseconds (compared exactly as decimal strings inside scripts); a key's
// salted hash is stored as raw bytes. A stored key costs about 250 bytes of
// Redis memory (MEMORY USAGE, indexes included) while its owner has at most
// 128 keys, about 385 bytes beyond that (the key set and name index leave
// Redis' compact listpack encoding).
//
// # Costs
//
// GetAPIKey, LookupAPIKey, RevokeAPIKey: one round trip. TouchAPIKeys: one
// pipelined round trip per node. ListAPIKeys with a username reads that
// user's key set in id order, page by page; with only an account, or no
// filter, it walks the account's (every account's) users in tag order, which
// is id order; it never uses SCAN or KEYS. PurgeAPIKeys walks every user's
// key set. DeleteUser deletes a user's keys in one script, so a user with a
// very large number of keys blocks Redis for the time that takes.
//
// cfg.Timeout bounds each Redis round trip (dial, read, write, pool wait)
// as a whole, pipelines included (boundHook), and GetUser's two round trips
// together; a caller's earlier ctx deadline wins. Commands are not retried
// on a single node or Sentinel: an unreachable Redis turns into
// ErrUnavailable at once. On a Cluster, an error that may come from a stale
// slot map (a dead master, CLUSTERDOWN, TRYAGAIN, MOVED) reloads the map at
// once and retries the command once when it cannot have run
// (clusterReloader): after a failover, service resumes as soon as Redis
// has promoted a replica, not at the next periodic reload.
package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
)

// Defaults.
const (
	DefaultKeyPrefix = "kg:"
	DefaultTimeout   = 3 * time.Second
)

// Sizes of the generated identifiers.
const (
	tagLen    = 8
	keySufLen = 12
	keyIDLen  = tagLen + keySufLen
)

// Options are the store's non-config dependencies.
type Options struct {
	// Now is the clock (default time.Now). Expiry, CreatedAt defaults and
	// name uniqueness among non-expired keys use it.
	Now func() time.Time
	// Logger receives operational messages (default: no-op). It never
	// receives a secret, a hash or a password.
	Logger *zap.Logger
}

// Store is the Redis store. It is safe for concurrent use.
type Store struct {
	c      redis.UniversalClient
	prefix string
	now    func() time.Time
	log    *zap.Logger
	// timeout bounds one command; Watch uses it for its health-check PING.
	timeout time.Duration

	// Precomputed key names of the directory.
	kAccts, kUnames, kAcctPfx, kMembersPfx, kChannel, kInvLog string
	// kReady is the key of the readiness write probe (directory slot).
	kReady string

	// cluster is set on a Cluster; reloader reloads its slot map.
	cluster  *redis.ClusterClient
	reloader *clusterReloader

	// lookups combines concurrent API key lookups into pipelines.
	lookups lookupCombiner
}

// New connects to Redis as cfg says. It does not touch the network: Ping
// reports reachability. A prefix with '{' or '}' is refused: it would change
// the hash tags that keep each user's records on one cluster slot.
func New(cfg configs.Redis, opts Options) (*Store, error) {
	if len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("redisstore: no addresses: %w", store.ErrInvalid)
	}
	for i, a := range cfg.Addrs {
		if strings.TrimSpace(a) == "" {
			return nil, fmt.Errorf("redisstore: address %d is empty: %w", i, store.ErrInvalid)
		}
	}
	prefix := cfg.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("redisstore: key_prefix may not contain '{' or '}': %w", store.ErrInvalid)
	}
	if cfg.DB < 0 {
		return nil, fmt.Errorf("redisstore: negative db: %w", store.ErrInvalid)
	}
	if cfg.DB != 0 && len(cfg.Addrs) > 1 && cfg.MasterName == "" {
		return nil, fmt.Errorf("redisstore: db must be 0 on a Redis Cluster: %w", store.ErrInvalid)
	}
	if cfg.PoolSize < 0 {
		return nil, fmt.Errorf("redisstore: negative pool_size: %w", store.ErrInvalid)
	}
	timeout := cfg.Timeout.D()
	if timeout < 0 {
		return nil, fmt.Errorf("redisstore: negative timeout: %w", store.ErrInvalid)
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	loggerOnce.Do(func() { redis.SetLogger(redisLogger{opts.Logger}) })
	c := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:                 cfg.Addrs,
		MasterName:            cfg.MasterName,
		Username:              cfg.Username,
		Password:              cfg.Password,
		DB:                    cfg.DB,
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		PoolSize:              cfg.PoolSize,
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
		// Fail fast: no command retries (-1), two dial attempts. A gateway
		// answers 503 at once rather than queueing behind a dead Redis.
		MaxRetries:         -1,
		DialerRetries:      2,
		DialerRetryTimeout: 50 * time.Millisecond,
		// Cluster: follow one MOVED or ASK, or retry a failed node once
		// (go-redis' default is 3, with growing backoff: a command for a
		// dead master's slot took 150-380 ms to fail). clusterReloader
		// adds one retry on a reloaded slot map.
		MaxRedirects: 1,
	})
	s := &Store{
		c:           c,
		prefix:      prefix,
		now:         opts.Now,
		log:         opts.Logger,
		timeout:     timeout,
		kAccts:      prefix + "{a}accts",
		kUnames:     prefix + "{a}un",
		kAcctPfx:    prefix + "{a}acct:",
		kMembersPfx: prefix + "{a}m:",
		kChannel:    prefix + "invalidate",
		kInvLog:     prefix + "invlog",
		kReady:      prefix + "{a}ready",
	}
	// The bound is outermost: the cluster retry shares its deadline.
	c.AddHook(boundHook{timeout})
	if cc, ok := c.(*redis.ClusterClient); ok {
		s.cluster = cc
		s.reloader = &clusterReloader{cc: cc, timeout: timeout, reloadEvery: clusterReloadEvery,
			onReload: func(err error) {
				if err != nil {
					opts.Logger.Warn("redisstore: cluster slot map reload failed", zap.Error(err))
					return
				}
				opts.Logger.Debug("redisstore: cluster slot map reloaded")
			}}
		cc.AddHook(s.reloader)
	}
	s.lookups = lookupCombiner{s: s, maxInFlight: defaultLookupInFlight, maxBatch: defaultLookupBatch}
	return s, nil
}

// Ping checks Redis answers PING (on a cluster: every master).
func (s *Store) Ping(ctx context.Context) error {
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.Ping(ctx).Err()
		})
		return s.wrap("ping", err)
	}
	return s.wrap("ping", s.c.Ping(ctx).Err())
}

// Close closes the client's connections.
func (s *Store) Close() error { return s.c.Close() }

// TryLease implements store.Leaser with SET NX PX on the directory's slot.
func (s *Store) TryLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, fmt.Errorf("redisstore: lease %q: ttl must be positive: %w", name, store.ErrInvalid)
	}
	ok, err := s.c.SetNX(ctx, s.prefix+"{a}lease:"+name, owner, ttl).Result()
	if err != nil {
		return false, s.wrap("take lease", err)
	}
	return ok, nil
}

var _ store.Leaser = (*Store)(nil)

// loggerOnce routes go-redis' own log lines (a process-wide setting) to the
// first store's logger, at debug level: its connection errors surface to
// callers as ErrUnavailable anyway, and its raw lines would break JSON logs.
var loggerOnce sync.Once

type redisLogger struct{ l *zap.Logger }

func (r redisLogger) Printf(_ context.Context, format string, v ...any) {
	if ce := r.l.Check(zap.DebugLevel, "go-redis"); ce != nil {
		ce.Write(zap.String("message", fmt.Sprintf(format, v...)))
	}
}

// Key names.

func (s *Store) acctKey(name string) string    { return s.kAcctPfx + name }
func (s *Store) membersKey(name string) string { return s.kMembersPfx + name }
func (s *Store) userKey(tag string) string     { return s.prefix + "{" + tag + "}" }
func (s *Store) keySetKey(tag string) string   { return s.prefix + "{" + tag + "}s" }
func (s *Store) keyNamesKey(tag string) string { return s.prefix + "{" + tag + "}n" }

// apiKeyKey is the record of key id (which must satisfy validKeyID).
func (s *Store) apiKeyKey(id string) string {
	return s.prefix + "{" + id[:tagLen] + "}" + id[tagLen:]
}

// validKeyID reports whether id has the shape of an id this store assigns.
func validKeyID(id string) bool { return len(id) == keyIDLen && store.IsBase62ID(id) }

// validTag reports whether tag has the shape of a user tag.
func validTag(tag string) bool { return len(tag) == tagLen && store.IsBase62ID(tag) }

// Errors.

// wrap maps a go-redis error. redis.Nil becomes ErrNotFound; every other
// failure (network, timeout, pool timeout, LOADING, CLUSTERDOWN, MASTERDOWN,
// a cancelled ctx...) wraps ErrUnavailable, never ErrNotFound. go-redis
// errors carry no command arguments, so no secret reaches the message.
func (s *Store) wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redis.Nil):
		return fmt.Errorf("redisstore: %s: %w", op, store.ErrNotFound)
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict),
		errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrUnavailable):
		return err
	}
	return fmt.Errorf("redisstore: %s: %w: %w", op, store.ErrUnavailable, err)
}

// Encoding.

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomBase62 returns n uniformly random base62 characters.
func randomBase62(n int) string {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		_, _ = rand.Read(buf[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
		for _, b := range buf {
			if b < 248 { // 248 = 4*62: no modulo bias
				out = append(out, base62[b%62])
				if len(out) == n {
					break
				}
			}
		}
	}
	return string(out)
}

// minNano and maxNano bound the times that fit in int64 Unix nanoseconds.
var (
	minTime = time.Unix(0, -1<<63+1)
	maxTime = time.Unix(0, 1<<63-1)
)

// encTime encodes t as decimal Unix nanoseconds; the zero time is "".
func encTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixNano(), 10)
}

// checkTime rejects times that cannot be stored as Unix nanoseconds.
func checkTime(what string, t time.Time) error {
	if t.IsZero() || (!t.Before(minTime) && !t.After(maxTime)) {
		return nil
	}
	return fmt.Errorf("redisstore: %s out of range (years 1678-2262): %w", what, store.ErrInvalid)
}

// decTime decodes encTime's output; anything unreadable is the zero time.
func decTime(v string) time.Time {
	if v == "" {
		return time.Time{}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Roles are tokens of [A-Za-z0-9_.:-] (store.ValidRole), so a comma joins
// them unambiguously.
func encRoles(r []string) string { return strings.Join(r, ",") }

func decRoles(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// field is one hash field read back; ok is false when Redis had none.
type field struct {
	v  string
	ok bool
}

// fieldsOf converts an HMGET reply.
func fieldsOf(vals []any, dst []field) []field {
	for _, v := range vals {
		s, ok := v.(string)
		dst = append(dst, field{s, ok})
	}
	return dst
}

var errPacked = fmt.Errorf("redisstore: malformed script reply: %w", store.ErrUnavailable)

// parsePacked decodes the one-string reply of the fetch scripts (luaPack):
// per field "~" (absent) or "<decimal length>:<bytes>". It appends to dst;
// the values alias s.
func parsePacked(s string, dst []field) ([]field, error) {
	for len(s) > 0 {
		if s[0] == '~' {
			dst = append(dst, field{})
			s = s[1:]
			continue
		}
		i := strings.IndexByte(s, ':')
		if i <= 0 || i > 10 {
			return nil, errPacked
		}
		n, err := strconv.Atoi(s[:i])
		if err != nil || n < 0 || n > len(s)-i-1 {
			return nil, errPacked
		}
		dst = append(dst, field{s[i+1 : i+1+n], true})
		s = s[i+1+n:]
	}
	return dst, nil
}

// Interface guard.
var (
	_ store.Store  = (*Store)(nil)
	_ store.Driver = (*Store)(nil)
)
