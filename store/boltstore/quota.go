package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

// Rate-limit assignments and quota counters (store.LimitStore). Buckets,
// created on first write:
//
//	limits: scope 0x00 id → JSON of store.Limits
//	quotas: counter → uvarint used, varint expiry (Unix seconds)
//
// Rate limits themselves are in process for bolt (one instance): this store
// is no store.RateLeaser.
var (
	bLimits = []byte("limits")
	bQuotas = []byte("quotas")
)

func limitBuckets(tx *bolt.Tx) error {
	for _, b := range [][]byte{bLimits, bQuotas} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// SetLimits implements store.LimitStore.
func (s *Store) SetLimits(ctx context.Context, l *store.Limits) error {
	if err := l.Validate(); err != nil {
		return err
	}
	v, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("boltstore: set limits: %w", err)
	}
	err = s.update(ctx, "set limits", func(tx *bolt.Tx) error {
		if err := limitBuckets(tx); err != nil {
			return err
		}
		k := pair(string(l.Scope), l.ID)
		if l.Empty() {
			return tx.Bucket(bLimits).Delete(k)
		}
		return tx.Bucket(bLimits).Put(k, v)
	})
	if err != nil {
		return err
	}
	s.publish(limitsInvalidation(l))
	return nil
}

// limitsInvalidation names what l is assigned to.
func limitsInvalidation(l *store.Limits) store.Invalidation {
	switch l.Scope {
	case store.ScopeKey:
		return store.Invalidation{KeyID: l.ID}
	case store.ScopeUser:
		return store.Invalidation{Username: l.ID}
	default:
		return store.Invalidation{Account: l.ID}
	}
}

// GetLimits implements store.LimitStore.
func (s *Store) GetLimits(ctx context.Context, scope store.LimitScope, id string) (*store.Limits, error) {
	out := &store.Limits{Scope: scope, ID: id}
	err := s.view(ctx, "get limits", func(tx *bolt.Tx) error {
		b := tx.Bucket(bLimits)
		if b == nil {
			return nil
		}
		v := b.Get(pair(string(scope), id))
		if v == nil {
			return nil
		}
		return json.Unmarshal(v, out)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListLimits implements store.LimitStore.
func (s *Store) ListLimits(ctx context.Context) ([]store.Limits, error) {
	var out []store.Limits
	err := s.view(ctx, "list limits", func(tx *bolt.Tx) error {
		b := tx.Bucket(bLimits)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var l store.Limits
			if err := json.Unmarshal(v, &l); err != nil {
				return fmt.Errorf("limits record: %w", errCorrupt)
			}
			out = append(out, l)
			return nil
		})
	})
	return out, err
}

// dropLimits deletes the assignment of (scope, id), if any: a purged key's
// or a deleted user's limits go with it.
func dropLimits(tx *bolt.Tx, scope store.LimitScope, id string) error {
	if b := tx.Bucket(bLimits); b != nil {
		return b.Delete(pair(string(scope), id))
	}
	return nil
}

// sweepQuotas deletes the quota counters that expired at or before now (past
// periods): they would otherwise stay in the file forever. It runs with each
// key purge (periodic, store.Remover) and at open.
func sweepQuotas(tx *bolt.Tx, now time.Time) error {
	b := tx.Bucket(bQuotas)
	if b == nil {
		return nil
	}
	var doomed [][]byte
	err := b.ForEach(func(k, v []byte) error {
		if _, expires := decodeQuota(v, now); !now.Before(expires) {
			doomed = append(doomed, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range doomed {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func encodeQuota(used int64, expires time.Time) []byte {
	b := binary.AppendUvarint(nil, uint64(max(used, 0))) //nolint:gosec // not negative
	return binary.AppendVarint(b, expires.Unix())
}

// decodeQuota returns the usage in v, 0 when it expired before now.
func decodeQuota(v []byte, now time.Time) (used int64, expires time.Time) {
	u, n := binary.Uvarint(v)
	if n <= 0 || u > math.MaxInt64 {
		return 0, time.Time{}
	}
	e, m := binary.Varint(v[n:])
	if m <= 0 {
		return 0, time.Time{}
	}
	expires = time.Unix(e, 0)
	if !now.Before(expires) {
		return 0, expires
	}
	return int64(u), expires //nolint:gosec // written from a non-negative int64
}

func (s *Store) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// LeaseQuota implements store.LimitStore.
func (s *Store) LeaseQuota(ctx context.Context, counter string, n, limit int64, expires time.Time) (granted, used int64, err error) {
	err = s.update(ctx, "lease quota", func(tx *bolt.Tx) error {
		if err := limitBuckets(tx); err != nil {
			return err
		}
		b := tx.Bucket(bQuotas)
		used, _ = decodeQuota(b.Get([]byte(counter)), s.clock())
		granted = max(min(n, limit-used), 0)
		used += granted
		if granted == 0 {
			return nil
		}
		return b.Put([]byte(counter), encodeQuota(used, expires))
	})
	if err != nil {
		return 0, 0, err
	}
	return granted, used, nil
}

// ReturnQuota implements store.LimitStore.
func (s *Store) ReturnQuota(ctx context.Context, counter string, n int64) error {
	if n <= 0 {
		return nil
	}
	return s.update(ctx, "return quota", func(tx *bolt.Tx) error {
		if err := limitBuckets(tx); err != nil {
			return err
		}
		b := tx.Bucket(bQuotas)
		v := b.Get([]byte(counter))
		if v == nil {
			return nil
		}
		used, expires := decodeQuota(v, s.clock())
		return b.Put([]byte(counter), encodeQuota(max(used-n, 0), expires))
	})
}

// QuotaUsed implements store.LimitStore.
func (s *Store) QuotaUsed(ctx context.Context, counter string) (int64, error) {
	var used int64
	err := s.view(ctx, "quota used", func(tx *bolt.Tx) error {
		if b := tx.Bucket(bQuotas); b != nil {
			used, _ = decodeQuota(b.Get([]byte(counter)), s.clock())
		}
		return nil
	})
	return used, err
}

var _ store.LimitStore = (*Store)(nil)
