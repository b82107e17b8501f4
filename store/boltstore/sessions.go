package boltstore

import (
	"context"
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

// Ended web UI sessions (store.EndedSessions): bucket ended_sessions, id →
// the record's end (Unix ns, 8 bytes big-endian). EndSession sweeps the
// expired records in the same transaction (logouts are rare and records
// live at most a session's absolute lifetime, so the bucket stays small).

var bEndedSessions = []byte("ended_sessions")

// EndSession implements store.EndedSessions.
func (s *Store) EndSession(ctx context.Context, id string, until time.Time) error {
	if err := store.ValidateEndSession(id, until); err != nil {
		return err
	}
	now := s.now().UnixNano()
	return s.update(ctx, "end session", func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bEndedSessions)
		if err != nil {
			return err
		}
		var expired [][]byte
		if err := b.ForEach(func(k, v []byte) error {
			if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) <= now { //nolint:gosec // a time we wrote
				expired = append(expired, k)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range expired {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		v := binary.BigEndian.AppendUint64(nil, uint64(until.UnixNano())) //nolint:gosec // a time after 1970
		if old := b.Get([]byte(id)); len(old) == 8 && binary.BigEndian.Uint64(old) > binary.BigEndian.Uint64(v) {
			return nil // never shortened
		}
		return b.Put([]byte(id), v)
	})
}

// SessionEnded implements store.EndedSessions.
func (s *Store) SessionEnded(ctx context.Context, id string) (bool, error) {
	if !store.ValidSessionID(id) {
		return false, nil
	}
	var ended bool
	err := s.view(ctx, "session ended", func(tx *bolt.Tx) error {
		b := tx.Bucket(bEndedSessions)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(id))
		ended = len(v) == 8 && int64(binary.BigEndian.Uint64(v)) > s.now().UnixNano() //nolint:gosec // a time we wrote
		return nil
	})
	return ended, err
}
