package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// newKeyFields are the field, value pairs of a new key's hash (absent
// when empty).
func newKeyFields(k *store.APIKey) []any {
	fields := []any{"n", k.Name, "h", k.Hash, "c", encTime(k.CreatedAt)}
	if k.Description != "" {
		fields = append(fields, "d", k.Description)
	}
	if len(k.Roles) > 0 {
		fields = append(fields, "r", encRoles(k.Roles))
	}
	if !k.ExpiresAt.IsZero() {
		fields = append(fields, "e", encTime(k.ExpiresAt))
	}
	if len(k.Metadata) > 0 {
		fields = append(fields, "m", string(k.Metadata))
	}
	if len(k.AllowedCIDRs) > 0 {
		fields = append(fields, "w", strings.Join(k.AllowedCIDRs, ","))
	}
	return fields
}

// readKeyVersion reads a key, its owner's name and account, and the key's
// version (the "v" field, "" before the first update).
func (s *Store) readKeyVersion(ctx context.Context, op, id string) (*store.APIKey, string, error) {
	var buf [len(keyFieldsArr) + 2]field
	f, err := s.fetch(ctx, op, scriptGetKey, id, buf[:0])
	if err != nil {
		return nil, "", err
	}
	k, _, ok := decKeyOwner(id, f)
	if !ok {
		return nil, "", errKeyNotFound(id)
	}
	return k, f[len(keyFields)-1].v, nil
}

// UpdateAPIKey implements store.Store: read the key, store.ApplyKeyUpdate,
// and write with a script that applies only if the key's version is still
// the one read (retried when it moved on).
func (s *Store) UpdateAPIKey(ctx context.Context, id string, upd store.KeyUpdate) (*store.APIKey, error) {
	if err := store.ValidateKeyUpdate(&upd); err != nil {
		return nil, err
	}
	if upd.ExpiresAt != nil {
		if err := checkTime("expires_at", *upd.ExpiresAt); err != nil {
			return nil, err
		}
	}
	for attempt := 0; attempt < maxCASRetries; attempt++ {
		k, ver, err := s.readKeyVersion(ctx, "update api key", id)
		if err != nil {
			return nil, err
		}
		changed, err := store.ApplyKeyUpdate(k, upd, s.now())
		if err != nil {
			return nil, err
		}
		if !changed {
			return k, nil
		}
		args := []any{ver, id[tagLen:], id[tagLen:] + ":" + encTime(k.ExpiresAt),
			"d", k.Description, "r", encRoles(k.Roles), "m", string(k.Metadata),
			"w", strings.Join(k.AllowedCIDRs, ","), "e", encTime(k.ExpiresAt)}
		res, err := scriptUpdateKey.Run(ctx, s.c, []string{s.apiKeyKey(id), s.keyNamesKey(id[:tagLen])}, args...).Int()
		if err != nil {
			return nil, s.wrap("update api key", err)
		}
		switch res {
		case 1:
			s.publish(ctx, store.Invalidation{KeyID: id, Username: k.Username})
			return k, nil
		case -1:
			return nil, errKeyNotFound(id)
		}
		// 0: changed meanwhile (or revoked: the next read says so).
	}
	return nil, fmt.Errorf("redisstore: update api key %q: too much contention: %w", id, store.ErrConflict)
}

// RotateAPIKey implements store.Store: read the old key, derive the new one
// (store.NewRotatedKey), and write both with one script on the owner's slot
// that applies only if the old key is at the version read, not revoked and
// not rotated: of concurrent rotations exactly one passes.
func (s *Store) RotateAPIKey(ctx context.Context, id string, r store.KeyRotation) (*store.APIKey, *store.APIKey, error) {
	for attempt := 0; attempt < maxCASRetries; attempt++ {
		old, ver, err := s.readKeyVersion(ctx, "rotate api key", id)
		if err != nil {
			return nil, nil, err
		}
		now := s.now()
		nk, oldExp, err := store.NewRotatedKey(old, r, now)
		if err != nil {
			return nil, nil, err
		}
		if err := checkTime("expires_at", oldExp); err != nil {
			return nil, nil, err
		}
		tag := id[:tagLen]
		suf := randomBase62(keySufLen)
		nk.ID = tag + suf
		fields := newKeyFields(nk)
		args := append([]any{ver, encTime(oldExp), nk.ID, suf, nk.Name, suf + ":" + encTime(nk.ExpiresAt)}, fields...)
		res, err := scriptRotateKey.Run(ctx, s.c,
			[]string{s.apiKeyKey(id), s.apiKeyKey(nk.ID), s.keySetKey(tag), s.keyNamesKey(tag)}, args...).Int()
		if err != nil {
			if errors.Is(err, redis.Nil) {
				return nil, nil, errKeyNotFound(id)
			}
			return nil, nil, s.wrap("rotate api key", err)
		}
		switch res {
		case 1:
			old.ExpiresAt, old.RotatedTo = oldExp, nk.ID
			s.publish(ctx, store.Invalidation{KeyID: id, Username: old.Username})
			return nk, old, nil
		case -1:
			return nil, nil, errKeyNotFound(id)
		}
		// 0: the old key moved on (the next read tells whether it was
		// rotated or revoked meanwhile); 2: id collision. Try again.
	}
	return nil, nil, fmt.Errorf("redisstore: rotate api key %q: too much contention: %w", id, store.ErrConflict)
}
