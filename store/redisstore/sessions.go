package redisstore

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// Ended web UI sessions (store.EndedSessions):
//
//	P{es:<id>}  the record's end (Unix ms); PEXPIREAT that time
//
// The value is compared with the store's clock as well, so a record is
// ended exactly until its end whatever the server's clock says.

func (s *Store) endedSessionKey(id string) string { return s.prefix + "{es:" + id + "}" }

// scriptEndSession sets KEYS[1] to ARGV[1] (ms) unless it holds a later
// end, with PEXPIREAT at its value.
var scriptEndSession = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local v = tonumber(ARGV[1])
if cur and cur >= v then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[1])
return 1
`)

// EndSession implements store.EndedSessions.
func (s *Store) EndSession(ctx context.Context, id string, until time.Time) error {
	if err := store.ValidateEndSession(id, until); err != nil {
		return err
	}
	if !until.After(s.now()) {
		return nil // over already: nothing to refuse
	}
	err := scriptEndSession.Run(ctx, s.c, []string{s.endedSessionKey(id)}, strconv.FormatInt(until.UnixMilli(), 10)).Err()
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	return s.wrap("end session", err)
}

// SessionEnded implements store.EndedSessions.
func (s *Store) SessionEnded(ctx context.Context, id string) (bool, error) {
	if !store.ValidSessionID(id) {
		return false, nil
	}
	v, err := s.c.Get(ctx, s.endedSessionKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, s.wrap("session ended", err)
	}
	ms, perr := strconv.ParseInt(v, 10, 64)
	if perr != nil {
		return true, nil //nolint:nilerr // a record not ours: taken as ended, to be safe
	}
	return ms > s.now().UnixMilli(), nil
}
