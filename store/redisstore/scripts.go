package redisstore

import "github.com/redis/go-redis/v9"

// Lua scripts. Each one touches keys of a single hash tag: the directory
// ({a}) or one user ({tag}); so each is atomic on a cluster too. Scripts run
// with EVALSHA (EVAL on NOSCRIPT). Times are decimal Unix nanoseconds compared
// as strings by numLess, since Lua numbers are doubles (2^53 < 10^18).

// luaLess compares two decimal integers (optional leading '-') exactly.
const luaLess = `
local function numLess(a, b)
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then return na end
  if a == b then return false end
  local lt
  if #a ~= #b then lt = #a < #b else lt = a < b end
  if na then return not lt end
  return lt
end
`

// Directory scripts (slot {a}).

// KEYS: acct, accts. ARGV: name, state, created. Returns 1, or 0 if taken.
var scriptCreateAccount = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 's', ARGV[2], 'c', ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
`)

// KEYS: acct. ARGV: state. Returns created, or nil if missing or deleting.
var scriptSetAccountState = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 's', 'c', 'x')
if not f[1] or f[3] then return false end
redis.call('HSET', KEYS[1], 's', ARGV[1])
return f[2]
`)

// KEYS: acct, members. Marks the account deleting (readers see it gone, no
// user may join) and returns {username, tag, ...}, or nil if it is missing.
// Deleting an account already marked deleting resumes the deletion.
var scriptDeleteAccountBegin = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'x', '1')
return redis.call('HGETALL', KEYS[2])
`)

// KEYS: acct, members, accts, un, upstream credentials. ARGV: name, then
// username, tag pairs. Removes the account, its upstream credentials and the
// index entries that still name those tags.
var scriptDeleteAccountEnd = redis.NewScript(`
for i = 2, #ARGV, 2 do
  if redis.call('HGET', KEYS[4], ARGV[i]) == ARGV[i+1] then
    redis.call('HDEL', KEYS[4], ARGV[i])
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[5])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
`)

// KEYS: acct, members, un. ARGV: username, tag. Indexes a user whose hash is
// already written. Returns "OK", "NOACCT" (missing or deleting), or {oldtag}
// when the username is taken.
var scriptIndexUser = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 's', 'x')
if not f[1] or f[2] then return 'NOACCT' end
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old then return {old} end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 'OK'
`)

// KEYS: un, then optionally members. ARGV: username, tag. Removes the index
// entries that still name tag.
var scriptUnindexUser = redis.NewScript(`
for i = 1, #KEYS do
  if redis.call('HGET', KEYS[i], ARGV[1]) == ARGV[2] then
    redis.call('HDEL', KEYS[i], ARGV[1])
  end
end
return 1
`)

// User-slot scripts ({tag}).

// KEYS: key or user hash. ARGV: field, value pairs. Creates the hash only if
// the key is new: 1, else 0.
var scriptHSetNew = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
`)

// KEYS: user. ARGV: expected generation, expected password hash (a missing
// field counts as ""), then field, value pairs. Writes only if both still
// hold, which makes UpdateUser a compare-and-set on the record it read: on
// Generation (every change but a rehash bumps it) and on the password hash
// (a rehash changes only that). Returns 1 on success, 0 if either moved on,
// -1 if the user is gone.
var scriptUpdateUser = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'g', 'p')
if not f[1] then return -1 end
if f[1] ~= ARGV[1] or (f[2] or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
return 1
`)

// KEYS: user, keyset, keynames. ARGV: the key prefix P{tag}. Deletes the user
// and every key; returns {account, {id suffixes}} or nil if the user is
// missing.
var scriptDeleteUser = redis.NewScript(`
local a = redis.call('HGET', KEYS[1], 'a')
if not a then return false end
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
for _, id in ipairs(ids) do
  redis.call('DEL', ARGV[1] .. id)
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return {a, ids}
`)

// KEYS: user, key, keyset, keynames. ARGV: name, now, id suffix, index value
// ("<id suffix>:<expires>"), then the key's field, value pairs. Returns {0} owner
// missing, {1} name taken by a live key, {2} id collision, {3, account} done.
var scriptCreateKey = redis.NewScript(luaLess + `
local acct = redis.call('HGET', KEYS[1], 'a')
if not acct then return {0} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {2} end
local old = redis.call('HGET', KEYS[4], ARGV[1])
if old then
  local sep = string.find(old, ':', 1, true)
  local exp = string.sub(old, sep + 1)
  if exp == '' or numLess(ARGV[2], exp) then return {1} end
end
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
redis.call('ZADD', KEYS[3], 0, ARGV[3])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
return {3, acct}
`)

// keyFields are the key hash fields in the order the read scripts return
// them: name, description, roles, hash, created, expires, revoked, last used.
var keyFields = keyFieldsArr[:]

var keyFieldsArr = [...]string{"n", "d", "r", "h", "c", "e", "x", "l", "m", "w", "o", "v"}

// luaKeyFields is keyFieldsArr as Lua arguments (TestLuaKeyFields keeps them
// equal). m: metadata (compact JSON), w: allowed CIDRs (comma-joined), o:
// rotated to (id), v: the record's version, bumped by every update and
// rotation (the compare-and-set of UpdateAPIKey and RotateAPIKey).
const luaKeyFields = `'n', 'd', 'r', 'h', 'c', 'e', 'x', 'l', 'm', 'w', 'o', 'v'`

// userFields are the user hash fields in the order the read scripts return
// them: username, account, type, roles, state, password hash, generation,
// created, updated.
var userFields = userFieldsArr[:]

var userFieldsArr = [...]string{"n", "a", "t", "r", "s", "p", "g", "c", "m"}

// luaPack packs HMGET results into one string, so a fetch reply is one bulk
// string (cheap to read) instead of an array of ~20 (parsePacked decodes it):
// per field "~" when absent, else "<length>:<bytes>".
const luaPack = `
local function pack(out, vals)
  for _, v in ipairs(vals) do
    if v then out[#out + 1] = #v .. ':' .. v else out[#out + 1] = '~' end
  end
end
`

// KEYS: key, user. Returns packed keyfields + {username, account}, or nil.
var scriptGetKey = redis.NewScript(luaPack + `
local k = redis.call('HMGET', KEYS[1], ` + luaKeyFields + `)
if not k[1] then return false end
local out = {}
pack(out, k)
pack(out, redis.call('HMGET', KEYS[2], 'n', 'a'))
return table.concat(out)
`)

// KEYS: key, keynames, user. ARGV: revoked at, id suffix. Returns {already(0|1),
// keyfields, {username, account}} or nil if the key is missing.
//
// The name stays held while any key of that name is active: when the index
// names the revoked key, it passes to the predecessor (the 'p' chain the
// rotations wrote, keys of the same user and so of the same slot) that is
// still active (not revoked, expiry after ARGV[3], now) and expires last.
var scriptRevokeKey = redis.NewScript(luaLess + `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local already = 1
if not redis.call('HGET', KEYS[1], 'x') then
  already = 0
  redis.call('HSET', KEYS[1], 'x', ARGV[1])
  local n = redis.call('HGET', KEYS[1], 'n')
  local v = redis.call('HGET', KEYS[2], n)
  if v and string.sub(v, 1, #ARGV[2] + 1) == ARGV[2] .. ':' then
    local base = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[2])
    local best, bestExp = nil, nil
    local p = redis.call('HGET', KEYS[1], 'p')
    local hops = 0
    while p and hops < 64 do
      hops = hops + 1
      local f = redis.call('HMGET', base .. p, 'n', 'e', 'x', 'p')
      if not f[1] then break end
      local e = f[2] or ''
      if f[1] == n and not f[3] and (e == '' or numLess(ARGV[3], e)) then
        if best == nil or (bestExp ~= '' and (e == '' or numLess(bestExp, e))) then
          best, bestExp = p, e
        end
      end
      p = f[4]
    end
    if best then
      redis.call('HSET', KEYS[2], n, best .. ':' .. bestExp)
    else
      redis.call('HDEL', KEYS[2], n)
    end
  end
end
return {already, redis.call('HMGET', KEYS[1], ` + luaKeyFields + `),
  redis.call('HMGET', KEYS[3], 'n', 'a')}
`)

// KEYS: key, keynames. ARGV: expected version ("" when none), id suffix,
// index value ("<id suffix>:<expires>"), then field, value pairs; an empty
// value deletes the field. Writes only if the key's version is still the
// expected one and it is not revoked, bumps the version, and moves the name
// index entry's expiry when it names this key. Returns 1 on success, 0 if the
// key moved on, -1 if it is gone.
var scriptUpdateKey = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'n', 'v', 'x')
if not f[1] then return -1 end
if (f[2] or '') ~= ARGV[1] or f[3] then return 0 end
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('HINCRBY', KEYS[1], 'v', 1)
local v = redis.call('HGET', KEYS[2], f[1])
if v and string.sub(v, 1, #ARGV[2] + 1) == ARGV[2] .. ':' then
  redis.call('HSET', KEYS[2], f[1], ARGV[3])
end
return 1
`)

// KEYS: old key, new key, keyset, keynames. ARGV: expected version of the
// old key, old key's new expiry ("" none), new id, new id suffix, name, the
// name index value of the new key, then the new key's field, value pairs.
// Writes only if the old key is at the expected version, not revoked and not
// rotated. The new key records its predecessor's id suffix (the last
// keySufLen = 12 characters of KEYS[1]) in 'p', which revocation follows to
// keep the name held (scriptRevokeKey). Returns 1 on success, 0 if the old
// key moved on, -1 if it is gone, 2 on a new id collision.
var scriptRotateKey = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'n', 'v', 'x', 'o')
if not f[1] then return -1 end
if (f[2] or '') ~= ARGV[1] or f[3] or f[4] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'e', ARGV[2]) end
redis.call('HSET', KEYS[1], 'o', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[2], unpack(ARGV, 7))
redis.call('HSET', KEYS[2], 'p', string.sub(KEYS[1], -12))
redis.call('ZADD', KEYS[3], 0, ARGV[4])
redis.call('HSET', KEYS[4], ARGV[5], ARGV[6])
return 1
`)

// KEYS: keys of one user (one slot). ARGV: their last-used times, in the
// same order. Moves each key's l forward only; ignores missing keys. One call
// per user instead of one per key: a Lua call's fixed cost dominates this
// script, and with a million distinct keys in use each flush touches most.
var scriptTouchKeys = redis.NewScript(luaLess + `
for i, k in ipairs(KEYS) do
  local l = redis.call('HGET', k, 'l')
  if l then
    if numLess(l, ARGV[i]) then redis.call('HSET', k, 'l', ARGV[i]) end
  elseif redis.call('EXISTS', k) == 1 then
    redis.call('HSET', k, 'l', ARGV[i])
  end
end
return 0
`)

// KEYS: keyset, keynames, then the key hashes. ARGV: the id suffixes, in
// KEYS order.
// Deletes those keys and their index entries; returns how many existed.
var scriptPurgeKeys = redis.NewScript(`
local n = 0
for i = 3, #KEYS do
  local id = ARGV[i - 2]
  local name = redis.call('HGET', KEYS[i], 'n')
  if name then
    n = n + 1
    local v = redis.call('HGET', KEYS[2], name)
    if v and string.sub(v, 1, #id + 1) == id .. ':' then
      redis.call('HDEL', KEYS[2], name)
    end
    redis.call('DEL', KEYS[i])
  end
  redis.call('ZREM', KEYS[1], id)
end
return n
`)
