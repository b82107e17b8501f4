package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

// Refresh tokens (store.RefreshStore). Buckets, created on first write:
//
//	refresh_tokens:        id → token record
//	refresh_families:      family → family record (username, revoked, latest expiry)
//	refresh_family_tokens: family 0x00 id → empty
//	refresh_user_families: username 0x00 family → empty
//
// A revoked family keeps its record (a tombstone refusing successors) until
// its latest token would have expired; PurgeRefreshTokens deletes expired
// tokens and families. Every operation is one transaction.
var (
	bRefreshTokens       = []byte("refresh_tokens")
	bRefreshFamilies     = []byte("refresh_families")
	bRefreshFamilyTokens = []byte("refresh_family_tokens")
	bRefreshUserFamilies = []byte("refresh_user_families")
)

type refreshFamily struct {
	username  string
	revoked   bool
	expiresAt time.Time
}

func encodeRefresh(t *store.RefreshToken) []byte {
	e := enc{b: make([]byte, 0, 128)}
	e.b = append(e.b, codecV1)
	e.str(t.Family)
	e.str(t.Username)
	e.b = binary.AppendUvarint(e.b, t.Generation)
	e.time(t.UserCreatedAt)
	e.time(t.IssuedAt)
	e.time(t.ExpiresAt)
	e.time(t.UsedAt)
	return e.b
}

func decodeRefresh(id string, v []byte) (*store.RefreshToken, error) {
	d := newDec(v, "refresh token")
	t := &store.RefreshToken{ID: id}
	t.Family = d.str()
	t.Username = d.str()
	t.Generation = d.uvarint()
	t.UserCreatedAt = d.time()
	t.IssuedAt = d.time()
	t.ExpiresAt = d.time()
	t.UsedAt = d.time()
	if err := d.done(); err != nil {
		return nil, err
	}
	return t, nil
}

func encodeFamily(f *refreshFamily) []byte {
	e := enc{b: make([]byte, 0, 48)}
	e.b = append(e.b, codecV1)
	e.str(f.username)
	if f.revoked {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
	e.time(f.expiresAt)
	return e.b
}

func decodeFamily(v []byte) (*refreshFamily, error) {
	d := newDec(v, "refresh family")
	f := &refreshFamily{}
	f.username = d.str()
	switch d.uvarint() {
	case 0:
	case 1:
		f.revoked = true
	default:
		d.fail()
	}
	f.expiresAt = d.time()
	if err := d.done(); err != nil {
		return nil, err
	}
	return f, nil
}

// refreshBuckets creates the refresh buckets if needed (write transactions).
func refreshBuckets(tx *bolt.Tx) error {
	for _, b := range [][]byte{bRefreshTokens, bRefreshFamilies, bRefreshFamilyTokens, bRefreshUserFamilies} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

func getFamily(tx *bolt.Tx, family string) (*refreshFamily, error) {
	v := tx.Bucket(bRefreshFamilies).Get([]byte(family))
	if v == nil {
		return nil, nil
	}
	return decodeFamily(v)
}

// CreateRefreshToken implements store.RefreshStore. It also drops the
// family's expired tokens.
func (s *Store) CreateRefreshToken(ctx context.Context, t *store.RefreshToken) error {
	if err := store.ValidateRefreshToken(t); err != nil {
		return err
	}
	now := s.now()
	return s.update(ctx, "create refresh token", func(tx *bolt.Tx) error {
		if err := refreshBuckets(tx); err != nil {
			return err
		}
		toks := tx.Bucket(bRefreshTokens)
		if toks.Get([]byte(t.ID)) != nil {
			return fmt.Errorf("refresh token exists: %w", store.ErrConflict)
		}
		f, err := getFamily(tx, t.Family)
		if err != nil {
			return err
		}
		switch {
		case f == nil:
			f = &refreshFamily{username: t.Username}
		case f.revoked:
			return fmt.Errorf("refresh token family revoked: %w", store.ErrConflict)
		case f.username != t.Username:
			return fmt.Errorf("refresh token family belongs to another user: %w", store.ErrConflict)
		}
		if err := sweepFamily(tx, t.Family, now); err != nil {
			return err
		}
		if t.ExpiresAt.After(f.expiresAt) {
			f.expiresAt = t.ExpiresAt
		}
		rec := *t
		rec.UsedAt = time.Time{}
		if err := toks.Put([]byte(t.ID), encodeRefresh(&rec)); err != nil {
			return err
		}
		if err := tx.Bucket(bRefreshFamilyTokens).Put(pair(t.Family, t.ID), nil); err != nil {
			return err
		}
		if err := tx.Bucket(bRefreshUserFamilies).Put(pair(t.Username, t.Family), nil); err != nil {
			return err
		}
		return tx.Bucket(bRefreshFamilies).Put([]byte(t.Family), encodeFamily(f))
	})
}

// sweepFamily deletes the family's tokens that expired at or before now.
func sweepFamily(tx *bolt.Tx, family string, now time.Time) error {
	toks, idx := tx.Bucket(bRefreshTokens), tx.Bucket(bRefreshFamilyTokens)
	p := prefix(family)
	var doomed [][]byte
	c := idx.Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		v := toks.Get(k[len(p):])
		if v == nil {
			doomed = append(doomed, bytes.Clone(k))
			continue
		}
		t, err := decodeRefresh(string(k[len(p):]), v)
		if err != nil {
			return err
		}
		if !now.Before(t.ExpiresAt) {
			doomed = append(doomed, bytes.Clone(k))
		}
	}
	for _, k := range doomed {
		if err := toks.Delete(k[len(p):]); err != nil {
			return err
		}
		if err := idx.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

var errRefreshNotFound = fmt.Errorf("refresh token: %w", store.ErrNotFound)

// UseRefreshToken implements store.RefreshStore.
func (s *Store) UseRefreshToken(ctx context.Context, family, id string, at time.Time) (*store.RefreshToken, error) {
	if !store.ValidRefreshID(id) || !store.ValidRefreshFamily(family) {
		return nil, errRefreshNotFound
	}
	var t *store.RefreshToken
	var reused bool
	err := s.update(ctx, "use refresh token", func(tx *bolt.Tx) error {
		b := tx.Bucket(bRefreshTokens)
		if b == nil {
			return errRefreshNotFound
		}
		v := b.Get([]byte(id))
		if v == nil {
			return errRefreshNotFound
		}
		var err error
		if t, err = decodeRefresh(id, v); err != nil {
			return err
		}
		if t.Family != family {
			return errRefreshNotFound
		}
		f, err := getFamily(tx, family)
		if err != nil {
			return err
		}
		if f == nil || f.revoked || !at.Before(t.ExpiresAt) {
			return errRefreshNotFound
		}
		if !t.UsedAt.IsZero() {
			reused = true
			return revokeFamilyTx(tx, family)
		}
		t.UsedAt = at
		return b.Put([]byte(id), encodeRefresh(t))
	})
	if err != nil {
		return nil, err
	}
	if reused {
		return nil, fmt.Errorf("refresh token already used: family revoked: %w", store.ErrConflict)
	}
	return t, nil
}

// revokeFamilyTx deletes a family's tokens and marks it revoked.
func revokeFamilyTx(tx *bolt.Tx, family string) error {
	f, err := getFamily(tx, family)
	if err != nil || f == nil {
		return err
	}
	toks, idx := tx.Bucket(bRefreshTokens), tx.Bucket(bRefreshFamilyTokens)
	p := prefix(family)
	var doomed [][]byte
	c := idx.Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		doomed = append(doomed, bytes.Clone(k))
	}
	for _, k := range doomed {
		if err := toks.Delete(k[len(p):]); err != nil {
			return err
		}
		if err := idx.Delete(k); err != nil {
			return err
		}
	}
	f.revoked = true
	return tx.Bucket(bRefreshFamilies).Put([]byte(family), encodeFamily(f))
}

// RevokeRefreshFamily implements store.RefreshStore.
func (s *Store) RevokeRefreshFamily(ctx context.Context, family string) error {
	if !store.ValidRefreshFamily(family) {
		return nil
	}
	return s.update(ctx, "revoke refresh family", func(tx *bolt.Tx) error {
		if err := refreshBuckets(tx); err != nil {
			return err
		}
		return revokeFamilyTx(tx, family)
	})
}

// RevokeUserRefreshTokens implements store.RefreshStore.
func (s *Store) RevokeUserRefreshTokens(ctx context.Context, username string) error {
	return s.update(ctx, "revoke user refresh tokens", func(tx *bolt.Tx) error {
		if err := refreshBuckets(tx); err != nil {
			return err
		}
		p := prefix(username)
		var fams []string
		c := tx.Bucket(bRefreshUserFamilies).Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			fams = append(fams, string(k[len(p):]))
		}
		for _, f := range fams {
			if err := revokeFamilyTx(tx, f); err != nil {
				return err
			}
		}
		return nil
	})
}

// PurgeRefreshTokens deletes refresh tokens that expired at or before
// `before`, and families (revoked or not) whose every token has, with their
// index entries. It returns how many tokens went. Redis needs no such call
// (its records expire by themselves); run it periodically with the bolt
// store, e.g. with the API key purge.
func (s *Store) PurgeRefreshTokens(ctx context.Context, before time.Time) (int, error) {
	n := 0
	err := s.update(ctx, "purge refresh tokens", func(tx *bolt.Tx) error {
		n = 0
		if err := refreshBuckets(tx); err != nil {
			return err
		}
		var doomed []*store.RefreshToken
		err := tx.Bucket(bRefreshTokens).ForEach(func(k, v []byte) error {
			t, err := decodeRefresh(string(k), v)
			if err != nil {
				return err
			}
			if !before.Before(t.ExpiresAt) {
				doomed = append(doomed, t)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, t := range doomed {
			if err := tx.Bucket(bRefreshTokens).Delete([]byte(t.ID)); err != nil {
				return err
			}
			if err := tx.Bucket(bRefreshFamilyTokens).Delete(pair(t.Family, t.ID)); err != nil {
				return err
			}
		}
		n = len(doomed)
		type famRef struct{ name, user string }
		var fams []famRef
		err = tx.Bucket(bRefreshFamilies).ForEach(func(k, v []byte) error {
			f, err := decodeFamily(v)
			if err != nil {
				return err
			}
			if !before.Before(f.expiresAt) {
				fams = append(fams, famRef{string(k), f.username})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, f := range fams {
			if err := revokeFamilyTx(tx, f.name); err != nil {
				return err
			}
			if err := tx.Bucket(bRefreshFamilies).Delete([]byte(f.name)); err != nil {
				return err
			}
			if err := tx.Bucket(bRefreshUserFamilies).Delete(pair(f.user, f.name)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

var (
	_ store.RefreshStore  = (*Store)(nil)
	_ store.RefreshPurger = (*Store)(nil)
)
