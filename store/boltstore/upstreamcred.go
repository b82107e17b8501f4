package boltstore

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

// Upstream credentials (store.UpstreamCredentials).
//
//	upstream_creds: account 0x00 name → JSON record (the secret only as
//	                upstreamcred's ciphertext)
//
// DeleteAccount removes the account's credentials in its transaction.

var bUpstreamCreds = []byte("upstream_creds")

func upstreamBucket(tx *bolt.Tx) (*bolt.Bucket, error) {
	if tx.Writable() {
		return tx.CreateBucketIfNotExists(bUpstreamCreds)
	}
	return tx.Bucket(bUpstreamCreds), nil
}

// CreateUpstreamCredential implements store.UpstreamCredentials.
func (s *Store) CreateUpstreamCredential(ctx context.Context, c *store.UpstreamCredential) error {
	n := c.Clone()
	if err := store.ValidateUpstreamCredential(n, s.now(), true); err != nil {
		return err
	}
	v, err := store.EncodeUpstreamCredential(n)
	if err != nil {
		return err
	}
	err = s.update(ctx, "create upstream credential", func(tx *bolt.Tx) error {
		if _, err := getAccount(tx, n.Account); err != nil {
			return err
		}
		b, err := upstreamBucket(tx)
		if err != nil {
			return err
		}
		k := pair(n.Account, n.Name)
		if b.Get(k) != nil {
			return fmt.Errorf("upstream credential %q exists in account %q: %w", n.Name, n.Account, store.ErrConflict)
		}
		return b.Put(k, v)
	})
	if err != nil {
		return err
	}
	c.Version, c.CreatedAt, c.UpdatedAt = n.Version, n.CreatedAt, n.UpdatedAt
	s.publish(store.UpstreamCredentialInvalidation(n.Account, n.Name))
	return nil
}

// GetUpstreamCredential implements store.UpstreamCredentials.
func (s *Store) GetUpstreamCredential(ctx context.Context, account, name string) (*store.UpstreamCredential, error) {
	var c *store.UpstreamCredential
	err := s.view(ctx, "get upstream credential", func(tx *bolt.Tx) error {
		b, _ := upstreamBucket(tx)
		var v []byte
		if b != nil {
			v = b.Get(pair(account, name))
		}
		if v == nil {
			return store.ErrUpstreamNotFound(account, name)
		}
		var err error
		c, err = store.DecodeUpstreamCredential(account, name, v)
		return err
	})
	return c, err
}

// ListUpstreamCredentials implements store.UpstreamCredentials.
func (s *Store) ListUpstreamCredentials(ctx context.Context, account string) ([]store.UpstreamCredential, error) {
	out := []store.UpstreamCredential{}
	err := s.view(ctx, "list upstream credentials", func(tx *bolt.Tx) error {
		out = out[:0]
		b, _ := upstreamBucket(tx)
		if b == nil {
			return nil
		}
		p := prefix(account)
		cur := b.Cursor()
		for k, v := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = cur.Next() {
			c, err := store.DecodeUpstreamCredential(account, string(k[len(p):]), v)
			if err != nil {
				return err
			}
			out = append(out, *c)
		}
		return nil
	})
	return out, err
}

// UpdateUpstreamCredential implements store.UpstreamCredentials.
func (s *Store) UpdateUpstreamCredential(ctx context.Context, c *store.UpstreamCredential) error {
	n := c.Clone()
	if err := store.ValidateUpstreamCredential(n, s.now(), false); err != nil {
		return err
	}
	err := s.update(ctx, "update upstream credential", func(tx *bolt.Tx) error {
		b, err := upstreamBucket(tx)
		if err != nil {
			return err
		}
		k := pair(n.Account, n.Name)
		v := b.Get(k)
		if v == nil {
			return store.ErrUpstreamNotFound(n.Account, n.Name)
		}
		old, err := store.DecodeUpstreamCredential(n.Account, n.Name, v)
		if err != nil {
			return err
		}
		if err := store.ApplyUpstreamUpdate(old, n, s.now()); err != nil {
			return err
		}
		nv, err := store.EncodeUpstreamCredential(n)
		if err != nil {
			return err
		}
		return b.Put(k, nv)
	})
	if err != nil {
		return err
	}
	c.Version, c.CreatedAt, c.UpdatedAt = n.Version, n.CreatedAt, n.UpdatedAt
	s.publish(store.UpstreamCredentialInvalidation(n.Account, n.Name))
	return nil
}

// DeleteUpstreamCredential implements store.UpstreamCredentials.
func (s *Store) DeleteUpstreamCredential(ctx context.Context, account, name string) error {
	err := s.update(ctx, "delete upstream credential", func(tx *bolt.Tx) error {
		b, err := upstreamBucket(tx)
		if err != nil {
			return err
		}
		k := pair(account, name)
		if b.Get(k) == nil {
			return store.ErrUpstreamNotFound(account, name)
		}
		return b.Delete(k)
	})
	if err != nil {
		return err
	}
	s.publish(store.UpstreamCredentialInvalidation(account, name))
	return nil
}

// deleteAccountUpstreamTx deletes an account's credentials (in
// DeleteAccount's transaction) and returns their invalidations.
func deleteAccountUpstreamTx(tx *bolt.Tx, account string) ([]store.Invalidation, error) {
	b, err := upstreamBucket(tx)
	if err != nil {
		return nil, err
	}
	p := prefix(account)
	var keys [][]byte
	cur := b.Cursor()
	for k, _ := cur.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = cur.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	invs := make([]store.Invalidation, 0, len(keys))
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return nil, err
		}
		invs = append(invs, store.UpstreamCredentialInvalidation(account, string(k[len(p):])))
	}
	return invs, nil
}

var _ store.UpstreamCredentials = (*Store)(nil)
