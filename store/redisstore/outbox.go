package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// Lifecycle notification outbox (store.Outbox), shared by every instance.
//
// Every key carries the hash tag {ob}, so each script runs on one slot
// (atomic on a cluster too):
//
//	P{ob}seq  counter: the last sequence number given out
//	P{ob}q    zset id → sequence number: the pending entries in enqueue order
//	P{ob}e    hash id → JSON record {"o","k","n","a","b","c"} (op, kind,
//	          name, attempts, not-before and created as decimal Unix ns,
//	          "" for zero) plus, once claimed, "lo" (owner) and "lu" (claim
//	          end, Unix ns)
//
// An ID is store.OutboxID(sequence number). Enqueue, claim, ack and
// reschedule are one script each. Durability is Redis' own: with
// appendonly yes and appendfsync always an acknowledged enqueue survives a
// crash; with everysec, up to a second of writes may be lost.

// outboxLess compares two non-negative decimal integers exactly.
const outboxLess = `
local function numLess(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
`

// KEYS: seq, q, e. ARGV: record JSON. Returns the new id.
var scriptEnqueueOutbox = redis.NewScript(`
local seq = redis.call('INCR', KEYS[1])
local id = string.format('%020.0f', seq)
redis.call('HSET', KEYS[3], id, ARGV[1])
redis.call('ZADD', KEYS[2], seq, id)
return id
`)

// KEYS: q, e. ARGV: limit, now (ns), owner, claim end (ns; "" claims
// nothing). Walks the first limit entries in order, claims the deliverable
// ones (store.Outbox) and returns id, op, kind, name, attempts, not-before,
// created for each.
var scriptNextOutbox = redis.NewScript(outboxLess + `
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local now, owner, lease = ARGV[2], ARGV[3], ARGV[4]
local out, blocked = {}, {}
for _, id in ipairs(ids) do
  local v = redis.call('HGET', KEYS[2], id)
  if not v then
    redis.call('ZREM', KEYS[1], id)
  else
    local e = cjson.decode(v)
    local key = e.k .. '\0' .. e.n
    local nb = e.b
    if e.lo and e.lo ~= owner and numLess(now, e.lu) then
      if nb == '' or numLess(nb, e.lu) then nb = e.lu end
      blocked[key] = true
    elseif nb ~= '' and numLess(now, nb) then
      blocked[key] = true
    elseif not blocked[key] and lease ~= '' then
      e.lo, e.lu = owner, lease
      redis.call('HSET', KEYS[2], id, cjson.encode(e))
    end
    local n = #out
    out[n+1], out[n+2], out[n+3], out[n+4] = id, e.o, e.k, e.n
    out[n+5], out[n+6], out[n+7] = tostring(e.a), nb, e.c
  end
end
return out
`)

// KEYS: q, e. ARGV: ids. Removes them.
var scriptAckOutbox = redis.NewScript(`
redis.call('ZREM', KEYS[1], unpack(ARGV))
redis.call('HDEL', KEYS[2], unpack(ARGV))
return 1
`)

// KEYS: e. ARGV: id, attempts, not-before (ns or ""). Returns 1, or 0 when
// the id is unknown.
var scriptRescheduleOutbox = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local e = cjson.decode(v)
e.a, e.b = tonumber(ARGV[2]), ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(e))
return 1
`)

// outboxFields is the number of strings scriptNextOutbox returns per entry.
const outboxFields = 7

// ackChunk bounds the ids of one ack script (unpack's stack limit).
const ackChunk = 1000

func (s *Store) outboxKeys() (seq, q, e string) {
	p := s.prefix + "{ob}"
	return p + "seq", p + "q", p + "e"
}

// EnqueueOutbox implements store.Outbox: one script.
func (s *Store) EnqueueOutbox(ctx context.Context, e *store.OutboxEntry) error {
	if err := store.ValidateOutboxEntry(e); err != nil {
		return err
	}
	created := e.CreatedAt
	if created.IsZero() {
		created = s.now()
	}
	for _, c := range []struct {
		what string
		t    time.Time
	}{{"not_before", e.NotBefore}, {"created_at", created}} {
		if err := checkTime("outbox entry "+c.what, c.t); err != nil {
			return err
		}
	}
	rec, err := json.Marshal(map[string]any{"o": e.Op, "k": e.Kind, "n": e.Name, "a": e.Attempts,
		"b": encTime(e.NotBefore), "c": encTime(created)})
	if err != nil {
		return fmt.Errorf("redisstore: enqueue outbox: %w", err)
	}
	kSeq, kQ, kE := s.outboxKeys()
	id, err := scriptEnqueueOutbox.Run(ctx, s.c, []string{kSeq, kQ, kE}, rec).Text()
	if err != nil {
		return s.wrap("enqueue outbox", err)
	}
	e.ID, e.CreatedAt = id, created.UTC()
	return nil
}

// NextOutbox implements store.Outbox: one script, which walks at most
// c.Limit entries.
func (s *Store) NextOutbox(ctx context.Context, c store.OutboxClaim) ([]store.OutboxEntry, error) {
	if c.Limit <= 0 {
		return nil, nil
	}
	now := c.Now
	if now.IsZero() {
		now = s.now()
	}
	if err := checkTime("outbox claim time", now.Add(c.Lease)); err != nil {
		return nil, err
	}
	lease := ""
	if c.Owner != "" && c.Lease > 0 {
		lease = encTime(now.Add(c.Lease))
	}
	_, kQ, kE := s.outboxKeys()
	vals, err := scriptNextOutbox.Run(ctx, s.c, []string{kQ, kE},
		c.Limit, encTime(now), c.Owner, lease).StringSlice()
	if err != nil {
		return nil, s.wrap("next outbox", err)
	}
	if len(vals)%outboxFields != 0 {
		return nil, s.wrap("next outbox", errPacked)
	}
	out := make([]store.OutboxEntry, 0, len(vals)/outboxFields)
	for i := 0; i < len(vals); i += outboxFields {
		v := vals[i : i+outboxFields]
		attempts, err := strconv.Atoi(v[4])
		if err != nil {
			return nil, s.wrap("next outbox", errPacked)
		}
		out = append(out, store.OutboxEntry{ID: v[0], Op: v[1], Kind: v[2], Name: v[3],
			Attempts: attempts, NotBefore: decTime(v[5]), CreatedAt: decTime(v[6])})
	}
	return out, nil
}

// AckOutbox implements store.Outbox: one script per 1000 ids.
func (s *Store) AckOutbox(ctx context.Context, ids ...string) error {
	_, kQ, kE := s.outboxKeys()
	for len(ids) > 0 {
		n := min(len(ids), ackChunk)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		if err := scriptAckOutbox.Run(ctx, s.c, []string{kQ, kE}, args...).Err(); err != nil {
			return s.wrap("ack outbox", err)
		}
		ids = ids[n:]
	}
	return nil
}

// RescheduleOutbox implements store.Outbox: one script.
func (s *Store) RescheduleOutbox(ctx context.Context, id string, attempts int, notBefore time.Time) error {
	if err := checkTime("outbox not_before", notBefore); err != nil {
		return err
	}
	if attempts < 0 {
		return fmt.Errorf("redisstore: reschedule outbox: negative attempts: %w", store.ErrInvalid)
	}
	_, _, kE := s.outboxKeys()
	err := scriptRescheduleOutbox.Run(ctx, s.c, []string{kE}, id, attempts, encTime(notBefore)).Err()
	return s.wrap("reschedule outbox", err)
}

var _ store.Outbox = (*Store)(nil)
