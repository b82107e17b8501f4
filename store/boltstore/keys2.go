package boltstore

import (
	"context"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

// UpdateAPIKey implements store.Store: read, store.ApplyKeyUpdate and write
// in one transaction.
func (s *Store) UpdateAPIKey(ctx context.Context, id string, upd store.KeyUpdate) (*store.APIKey, error) {
	if err := store.ValidateKeyUpdate(&upd); err != nil {
		return nil, err
	}
	now := s.now()
	var k *store.APIKey
	var changed bool
	err := s.update(ctx, "update api key", func(tx *bolt.Tx) (err error) {
		if k, err = getKey(tx, id); err != nil {
			return err
		}
		if changed, err = store.ApplyKeyUpdate(k, upd, now); err != nil || !changed {
			return err
		}
		return tx.Bucket(bKeys).Put([]byte(id), encodeKey(k))
	})
	if err != nil {
		return nil, err
	}
	if changed {
		s.publish(store.Invalidation{Username: k.Username, KeyID: k.ID})
	}
	return k, nil
}

// RotateAPIKey implements store.Store: the old key's checks, its new expiry
// and rotated_to, the new key and the name index move in one transaction,
// so of two concurrent rotations the second sees the first's rotated_to.
func (s *Store) RotateAPIKey(ctx context.Context, id string, r store.KeyRotation) (*store.APIKey, *store.APIKey, error) {
	now := s.now()
	var old, nk *store.APIKey
	err := s.update(ctx, "rotate api key", func(tx *bolt.Tx) (err error) {
		if old, err = getKey(tx, id); err != nil {
			return err
		}
		var oldExp time.Time
		if nk, oldExp, err = store.NewRotatedKey(old, r, now); err != nil {
			return err
		}
		keys := tx.Bucket(bKeys)
		for {
			if nk.ID, err = NewID(); err != nil {
				return err
			}
			if keys.Get([]byte(nk.ID)) == nil {
				break
			}
		}
		old.ExpiresAt, old.RotatedTo = oldExp, nk.ID
		if err := keys.Put([]byte(old.ID), encodeKey(old)); err != nil {
			return err
		}
		if err := keys.Put([]byte(nk.ID), encodeKey(nk)); err != nil {
			return err
		}
		if err := tx.Bucket(bUserKeys).Put(pair(nk.Username, nk.ID), nil); err != nil {
			return err
		}
		return tx.Bucket(bKeyNames).Put(pair(nk.Username, nk.Name), []byte(nk.ID))
	})
	if err != nil {
		return nil, nil, err
	}
	s.publish(store.Invalidation{Username: old.Username, KeyID: old.ID})
	return nk, old, nil
}
