package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// Rate-limit assignments, quota counters and shared GCRA buckets
// (store.LimitStore, store.RateLeaser). Keys:
//
//	{lim}            hash: scope ":" id → JSON of store.Limits
//	{q:COUNTER}      string: quota usage, expiring after its period
//	{rl:BUCKET}      string: the bucket's GCRA theoretical arrival time (µs)
//
// Each script touches one key, so each is atomic on a cluster too. The GCRA
// scripts read the clock of Redis (TIME), the one clock every instance
// shares.

func (s *Store) limitsKey() string                      { return s.prefix + "{lim}" }
func (s *Store) quotaKey(c string) string               { return s.prefix + "{q:" + c + "}" }
func (s *Store) rateKey(b string) string                { return s.prefix + "{rl:" + b + "}" }
func limitsField(sc store.LimitScope, id string) string { return string(sc) + ":" + id }

// SetLimits implements store.LimitStore.
func (s *Store) SetLimits(ctx context.Context, l *store.Limits) error {
	if err := l.Validate(); err != nil {
		return err
	}
	var err error
	if l.Empty() {
		err = s.c.HDel(ctx, s.limitsKey(), limitsField(l.Scope, l.ID)).Err()
	} else {
		v, merr := json.Marshal(l)
		if merr != nil {
			return fmt.Errorf("redisstore: set limits: %w", merr)
		}
		err = s.c.HSet(ctx, s.limitsKey(), limitsField(l.Scope, l.ID), v).Err()
	}
	if err != nil {
		return s.wrap("set limits", err)
	}
	switch l.Scope {
	case store.ScopeKey:
		s.publish(ctx, store.Invalidation{KeyID: l.ID})
	case store.ScopeUser:
		s.publish(ctx, store.Invalidation{Username: l.ID})
	default:
		s.publish(ctx, store.Invalidation{Account: l.ID})
	}
	return nil
}

// dropKeyLimits deletes the assignments of the keys ids and, when username
// is not empty, of the user: a purged key's or a deleted user's limits go with
// it ({lim} is in a slot of its own, so this is a second command after the
// deletion; a failure leaves an assignment naming nothing, which is harmless
// and removed by the next purge or a later SetLimits).
func (s *Store) dropKeyLimits(ctx context.Context, username string, ids ...string) error {
	fields := make([]string, 0, len(ids)+1)
	for _, id := range ids {
		fields = append(fields, limitsField(store.ScopeKey, id))
	}
	if username != "" {
		fields = append(fields, limitsField(store.ScopeUser, username))
	}
	if len(fields) == 0 {
		return nil
	}
	return s.wrap("drop limits", s.c.HDel(ctx, s.limitsKey(), fields...).Err())
}

// GetLimits implements store.LimitStore.
func (s *Store) GetLimits(ctx context.Context, scope store.LimitScope, id string) (*store.Limits, error) {
	out := &store.Limits{Scope: scope, ID: id}
	v, err := s.c.HGet(ctx, s.limitsKey(), limitsField(scope, id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return out, nil
	}
	if err != nil {
		return nil, s.wrap("get limits", err)
	}
	if err := json.Unmarshal(v, out); err != nil {
		return nil, fmt.Errorf("redisstore: limits record: %w: %w", store.ErrUnavailable, err)
	}
	return out, nil
}

// ListLimits implements store.LimitStore.
func (s *Store) ListLimits(ctx context.Context) ([]store.Limits, error) {
	m, err := s.c.HGetAll(ctx, s.limitsKey()).Result()
	if err != nil {
		return nil, s.wrap("list limits", err)
	}
	out := make([]store.Limits, 0, len(m))
	for _, v := range m {
		var l store.Limits
		if err := json.Unmarshal([]byte(v), &l); err != nil {
			return nil, fmt.Errorf("redisstore: limits record: %w: %w", store.ErrUnavailable, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// KEYS: counter. ARGV: n, limit, expiry (Unix s). Returns {granted, used}.
var scriptLeaseQuota = redis.NewScript(`
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local g = math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - used)
if g <= 0 then return {0, used} end
used = redis.call('INCRBY', KEYS[1], g)
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return {g, used}
`)

// KEYS: counter. ARGV: n. Decrements, never below 0, only if it exists.
var scriptReturnQuota = redis.NewScript(`
local used = tonumber(redis.call('GET', KEYS[1]) or '-1')
if used < 0 then return 0 end
local n = math.min(tonumber(ARGV[1]), used)
redis.call('DECRBY', KEYS[1], n)
return n
`)

// LeaseQuota implements store.LimitStore.
func (s *Store) LeaseQuota(ctx context.Context, counter string, n, limit int64, expires time.Time) (granted, used int64, err error) {
	r, err := scriptLeaseQuota.Run(ctx, s.c, []string{s.quotaKey(counter)}, n, limit, expires.Unix()).Int64Slice()
	if err != nil {
		return 0, 0, s.wrap("lease quota", err)
	}
	if len(r) != 2 {
		return 0, 0, fmt.Errorf("redisstore: lease quota: bad reply: %w", store.ErrUnavailable)
	}
	return r[0], r[1], nil
}

// ReturnQuota implements store.LimitStore.
func (s *Store) ReturnQuota(ctx context.Context, counter string, n int64) error {
	if n <= 0 {
		return nil
	}
	return s.wrap("return quota", scriptReturnQuota.Run(ctx, s.c, []string{s.quotaKey(counter)}, n).Err())
}

// QuotaUsed implements store.LimitStore.
func (s *Store) QuotaUsed(ctx context.Context, counter string) (int64, error) {
	v, err := s.c.Get(ctx, s.quotaKey(counter)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, s.wrap("quota used", err)
	}
	return v, nil
}

// GCRA with a quantity (the generic cell rate algorithm; see package
// ratelimit): the key holds the theoretical arrival time (TAT, µs). A unit
// is admitted when TAT+interval-now ≤ burst·interval; n units advance TAT by
// n·interval. Returning units moves TAT back.
//
// KEYS: bucket. ARGV: interval (µs), burst, n. Returns {granted,
// retry_after_µs, remaining}.
var scriptLeaseRate = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local iv, burst, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local avail = math.floor((now + burst * iv - tat) / iv)
if avail < 1 then
  return {0, tat + iv - burst * iv - now, 0}
end
local g = math.min(n, avail)
tat = tat + g * iv
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return {g, 0, avail - g}
`)

// KEYS: bucket. ARGV: interval (µs), n.
var scriptReturnRate = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
tat = tat - tonumber(ARGV[1]) * tonumber(ARGV[2])
if tat <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return 1
`)

// LeaseRate implements store.RateLeaser.
func (s *Store) LeaseRate(ctx context.Context, bucket string, interval time.Duration, burst, n int64) (int64, int64, time.Duration, error) {
	iv := max(interval.Microseconds(), 1)
	r, err := scriptLeaseRate.Run(ctx, s.c, []string{s.rateKey(bucket)}, iv, burst, n).Int64Slice()
	if err != nil {
		return 0, 0, 0, s.wrap("lease rate", err)
	}
	if len(r) != 3 {
		return 0, 0, 0, fmt.Errorf("redisstore: lease rate: bad reply: %w", store.ErrUnavailable)
	}
	return r[0], r[2], time.Duration(r[1]) * time.Microsecond, nil
}

// ReturnRate implements store.RateLeaser.
func (s *Store) ReturnRate(ctx context.Context, bucket string, interval time.Duration, n int64) error {
	if n <= 0 {
		return nil
	}
	iv := max(interval.Microseconds(), 1)
	return s.wrap("return rate", scriptReturnRate.Run(ctx, s.c, []string{s.rateKey(bucket)}, iv, strconv.FormatInt(n, 10)).Err())
}

var (
	_ store.LimitStore = (*Store)(nil)
	_ store.RateLeaser = (*Store)(nil)
)
