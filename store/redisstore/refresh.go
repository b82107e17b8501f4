package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// Refresh tokens (store.RefreshStore).
//
// Every record of a family F shares the hash tag {rf:F}, so each operation
// on a family is one script on one slot (atomic on a cluster too); the
// family id is carried in the token value, so the slot follows from it:
//
//	P{rf:F}t:<id>  hash: u username, g generation, c user created, i issued,
//	               e expires, x used (times: Unix ns); PEXPIREAT its expiry
//	P{rf:F}f       hash: u username, e latest expiry (ns), m the same in ms,
//	               r "1" once revoked (a tombstone refusing successors);
//	               PEXPIREAT the family's latest expiry
//	P{rf:F}m       set of the family's token ids; same expiry
//	P{rfu:<user>}  zset family → latest expiry (ms): the user's families,
//	               for RevokeUserRefreshTokens; expires with the latest
//
// Redis drops expired records by itself: no purge is needed.

// refreshLess is luaLess under another name (this file's scripts do not
// depend on the other files' helpers).
const refreshLess = `
local function numLess(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
`

// luaRevokeFamily deletes the tokens of the family (KEYS[2] hash, KEYS[3]
// member set; token keys are ARGV[tokPfx] .. id) and marks it revoked.
const luaRevokeFamily = `
local function revoke(tokPfx)
  if redis.call('EXISTS', KEYS[2]) == 0 then return end
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    redis.call('DEL', tokPfx .. id)
  end
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[2], 'r', '1')
end
`

// KEYS: token, family, members. ARGV: id, username, generation, user
// created, issued, expires (ns), expires (ms), token key prefix. Returns
// "OK", "REVOKED", "OWNER" (family of another user) or "EXISTS".
var scriptCreateRefresh = redis.NewScript(refreshLess + `
local f = redis.call('HMGET', KEYS[2], 'u', 'r', 'e', 'm')
if f[2] then return 'REVOKED' end
if f[1] and f[1] ~= ARGV[2] then return 'OWNER' end
if redis.call('EXISTS', KEYS[1]) == 1 then return 'EXISTS' end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if redis.call('EXISTS', ARGV[8] .. id) == 0 then redis.call('SREM', KEYS[3], id) end
end
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'g', ARGV[3], 'c', ARGV[4], 'i', ARGV[5], 'e', ARGV[6])
redis.call('PEXPIREAT', KEYS[1], ARGV[7])
redis.call('SADD', KEYS[3], ARGV[1])
local ms = f[4]
if not f[3] or numLess(f[3], ARGV[6]) then
  redis.call('HSET', KEYS[2], 'u', ARGV[2], 'e', ARGV[6], 'm', ARGV[7])
  ms = ARGV[7]
end
redis.call('PEXPIREAT', KEYS[2], ms)
redis.call('PEXPIREAT', KEYS[3], ms)
return 'OK'
`)

// KEYS: token, family, members. ARGV: at (ns), token key prefix. Returns
// {username, generation, user created, issued, expires}, "REUSED" (the
// family is now revoked) or nil (missing, expired or revoked).
var scriptUseRefresh = redis.NewScript(refreshLess + luaRevokeFamily + `
local t = redis.call('HMGET', KEYS[1], 'u', 'g', 'c', 'i', 'e', 'x')
if not t[1] then return false end
if redis.call('HGET', KEYS[2], 'r') then return false end
if not numLess(ARGV[1], t[5]) then return false end
if t[6] then
  revoke(ARGV[2])
  return 'REUSED'
end
redis.call('HSET', KEYS[1], 'x', ARGV[1])
return {t[1], t[2], t[3], t[4], t[5]}
`)

// KEYS: (unused), family, members. ARGV: token key prefix.
var scriptRevokeRefreshFamily = redis.NewScript(luaRevokeFamily + `
revoke(ARGV[1])
return 1
`)

// KEYS: user index. ARGV: family, expires (ms), now (ms).
var scriptIndexRefreshFamily = redis.NewScript(`
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur or tonumber(cur) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2]) end
return 1
`)

func (s *Store) refreshFamilyPrefix(family string) string { return s.prefix + "{rf:" + family + "}" }

// refreshKeys returns the token, family and member-set keys, and the token
// key prefix.
func (s *Store) refreshKeys(family, id string) (keys []string, tokPfx string) {
	p := s.refreshFamilyPrefix(family)
	return []string{p + "t:" + id, p + "f", p + "m"}, p + "t:"
}

func (s *Store) refreshUserKey(username string) string { return s.prefix + "{rfu:" + username + "}" }

// unixMsCeil is t in Unix milliseconds, rounded up (PEXPIREAT never drops a
// record before it expires).
func unixMsCeil(t time.Time) string {
	ns := t.UnixNano()
	ms := ns / 1e6
	if ns%1e6 > 0 {
		ms++
	}
	return strconv.FormatInt(ms, 10)
}

var errRefreshNotFound = fmt.Errorf("redisstore: refresh token: %w", store.ErrNotFound)

// CreateRefreshToken implements store.RefreshStore: the user index first
// (its own slot), then the token with its family (one script), so a
// concurrent RevokeUserRefreshTokens either sees the family or the token
// finds the family revoked.
func (s *Store) CreateRefreshToken(ctx context.Context, t *store.RefreshToken) error {
	if err := store.ValidateRefreshToken(t); err != nil {
		return err
	}
	for _, c := range []struct {
		what string
		t    time.Time
	}{{"issued_at", t.IssuedAt}, {"expires_at", t.ExpiresAt}, {"user created_at", t.UserCreatedAt}} {
		if err := checkTime("refresh token "+c.what, c.t); err != nil {
			return err
		}
	}
	expMs := unixMsCeil(t.ExpiresAt)
	nowMs := strconv.FormatInt(s.now().UnixMilli(), 10)
	if err := scriptIndexRefreshFamily.Run(ctx, s.c, []string{s.refreshUserKey(t.Username)},
		t.Family, expMs, nowMs).Err(); err != nil {
		return s.wrap("create refresh token", err)
	}
	keys, pfx := s.refreshKeys(t.Family, t.ID)
	res, err := scriptCreateRefresh.Run(ctx, s.c, keys,
		t.ID, t.Username, strconv.FormatUint(t.Generation, 10), encTime(t.UserCreatedAt),
		encTime(t.IssuedAt), encTime(t.ExpiresAt), expMs, pfx).Text()
	if err != nil {
		return s.wrap("create refresh token", err)
	}
	switch res {
	case "OK":
		return nil
	case "REVOKED":
		return fmt.Errorf("redisstore: refresh token family revoked: %w", store.ErrConflict)
	case "OWNER":
		return fmt.Errorf("redisstore: refresh token family belongs to another user: %w", store.ErrConflict)
	case "EXISTS":
		return fmt.Errorf("redisstore: refresh token exists: %w", store.ErrConflict)
	}
	return s.wrap("create refresh token", errPacked)
}

// UseRefreshToken implements store.RefreshStore: one script.
func (s *Store) UseRefreshToken(ctx context.Context, family, id string, at time.Time) (*store.RefreshToken, error) {
	if !store.ValidRefreshID(id) || !store.ValidRefreshFamily(family) {
		return nil, errRefreshNotFound
	}
	if err := checkTime("refresh token use time", at); err != nil || at.IsZero() {
		return nil, fmt.Errorf("redisstore: refresh token use time: %w", store.ErrInvalid)
	}
	keys, pfx := s.refreshKeys(family, id)
	v, err := scriptUseRefresh.Run(ctx, s.c, keys, encTime(at), pfx).Result()
	if errors.Is(err, redis.Nil) {
		return nil, errRefreshNotFound
	}
	if err != nil {
		return nil, s.wrap("use refresh token", err)
	}
	switch r := v.(type) {
	case string:
		if r == "REUSED" {
			return nil, fmt.Errorf("redisstore: refresh token already used: family revoked: %w", store.ErrConflict)
		}
	case []any:
		if len(r) == 5 {
			g, err := strconv.ParseUint(str(r[1]), 10, 64)
			if err != nil {
				break
			}
			return &store.RefreshToken{
				ID:            id,
				Family:        family,
				Username:      str(r[0]),
				Generation:    g,
				UserCreatedAt: decTime(str(r[2])),
				IssuedAt:      decTime(str(r[3])),
				ExpiresAt:     decTime(str(r[4])),
				UsedAt:        decTime(encTime(at)),
			}, nil
		}
	}
	return nil, s.wrap("use refresh token", errPacked)
}

// RevokeRefreshFamily implements store.RefreshStore: one script.
func (s *Store) RevokeRefreshFamily(ctx context.Context, family string) error {
	if !store.ValidRefreshFamily(family) {
		return nil
	}
	keys, pfx := s.refreshKeys(family, "")
	return s.wrap("revoke refresh family", scriptRevokeRefreshFamily.Run(ctx, s.c, keys, pfx).Err())
}

// RevokeUserRefreshTokens implements store.RefreshStore: one script per
// live family of the user (families are on their own slots).
func (s *Store) RevokeUserRefreshTokens(ctx context.Context, username string) error {
	nowMs := strconv.FormatInt(s.now().UnixMilli(), 10)
	fams, err := s.c.ZRangeByScore(ctx, s.refreshUserKey(username), &redis.ZRangeBy{Min: "(" + nowMs, Max: "+inf"}).Result()
	if err != nil {
		return s.wrap("revoke user refresh tokens", err)
	}
	for _, f := range fams {
		if err := s.RevokeRefreshFamily(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

// PurgeRefreshTokens implements store.RefreshPurger: Redis drops expired
// refresh token records itself (PEXPIREAT on each record, its family and
// the user's index), so there is nothing to purge.
func (s *Store) PurgeRefreshTokens(context.Context, time.Time) (int, error) { return 0, nil }

var (
	_ store.RefreshStore  = (*Store)(nil)
	_ store.RefreshPurger = (*Store)(nil)
)
