package boltstore

import (
	"context"

	bolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

// Publish delivers inv to the watchers as a write would, without the write.
func (s *Store) Publish(inv store.Invalidation) { s.publish(inv) }

// PutLegacyUser stores u (and its account, when missing) the way a release
// older than canonical names could have, without today's name rules: for
// tests of names stored before those rules.
func (s *Store) PutLegacyUser(u *store.User) error {
	return s.update(context.Background(), "put legacy user", func(tx *bolt.Tx) error {
		if tx.Bucket(bAccounts).Get([]byte(u.Account)) == nil {
			a := &store.Account{Name: u.Account, State: store.StateEnabled, CreatedAt: u.CreatedAt}
			if err := tx.Bucket(bAccounts).Put([]byte(a.Name), encodeAccount(a)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bUsers).Put([]byte(u.Username), encodeUser(u)); err != nil {
			return err
		}
		return tx.Bucket(bAccountUsers).Put(pair(u.Account, u.Username), nil)
	})
}

// EndedSessionRecords counts the records of ended sessions.
func (s *Store) EndedSessionRecords() int { return s.records(bEndedSessions) }

// QuotaRecords counts the stored quota counters, expired or not.
func (s *Store) QuotaRecords() int { return s.records(bQuotas) }

// records counts the records of bucket b (0 when it does not exist).
func (s *Store) records(b []byte) (n int) {
	_ = s.view(context.Background(), "count records", func(tx *bolt.Tx) error {
		if bk := tx.Bucket(b); bk != nil {
			n = bk.Stats().KeyN
		}
		return nil
	})
	return n
}
