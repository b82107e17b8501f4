package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// Upstream credentials (store.UpstreamCredentials): one hash per account,
//
//	P{a}uc:<account>   name → JSON record (the secret only as upstreamcred's
//	                   ciphertext)
//
// The hash is on the directory slot {a}, next to the account record, so a
// create checks the account (present, not being deleted) and writes in one
// script: a credential created during DeleteAccount cannot outlive it.
// Updates are a compare-and-set on the whole stored value. DeleteAccount
// marks the account deleting (no create succeeds from then on) and deletes
// the hash after the account's users, in one script that returns the names.

func (s *Store) upstreamKey(account string) string { return s.prefix + "{a}uc:" + account }

// scriptCreateUpstream writes a new credential if its account exists and is
// not being deleted. KEYS: acct, uc hash. ARGV: name, value. Returns 1,
// 0 (the name exists) or -1 (no such account).
var scriptCreateUpstream = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 's', 'x')
if not f[1] or f[2] then return -1 end
return redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
`)

// scriptDropUpstream deletes a credential hash and returns the names it
// held. KEYS: uc hash.
var scriptDropUpstream = redis.NewScript(`
local names = redis.call('HKEYS', KEYS[1])
redis.call('DEL', KEYS[1])
return names
`)

func encUpstream(c *store.UpstreamCredential) (string, error) {
	b, err := store.EncodeUpstreamCredential(c)
	return string(b), err
}

func decUpstream(account, name, v string) (*store.UpstreamCredential, error) {
	return store.DecodeUpstreamCredential(account, name, []byte(v))
}

// scriptUpstreamCAS replaces a hash field if it still holds the expected
// value. KEYS: hash. ARGV: field, expected, new. Returns 1, 0 (changed
// meanwhile) or -1 (gone).
var scriptUpstreamCAS = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return -1 end
if v ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`)

// CreateUpstreamCredential implements store.UpstreamCredentials.
func (s *Store) CreateUpstreamCredential(ctx context.Context, c *store.UpstreamCredential) error {
	n := c.Clone()
	if err := store.ValidateUpstreamCredential(n, s.now(), true); err != nil {
		return err
	}
	v, err := encUpstream(n)
	if err != nil {
		return err
	}
	res, err := scriptCreateUpstream.Run(ctx, s.c, []string{s.acctKey(n.Account), s.upstreamKey(n.Account)}, n.Name, v).Int()
	if err != nil {
		return s.wrap("create upstream credential", err)
	}
	if res < 0 {
		return errAccountNotFound(n.Account)
	}
	if res == 0 {
		return fmt.Errorf("redisstore: upstream credential %q exists in account %q: %w", n.Name, n.Account, store.ErrConflict)
	}
	c.Version, c.CreatedAt, c.UpdatedAt = n.Version, n.CreatedAt, n.UpdatedAt
	s.publish(ctx, store.UpstreamCredentialInvalidation(n.Account, n.Name))
	return nil
}

// GetUpstreamCredential implements store.UpstreamCredentials.
func (s *Store) GetUpstreamCredential(ctx context.Context, account, name string) (*store.UpstreamCredential, error) {
	v, err := s.c.HGet(ctx, s.upstreamKey(account), name).Result()
	if errors.Is(err, redis.Nil) {
		return nil, store.ErrUpstreamNotFound(account, name)
	}
	if err != nil {
		return nil, s.wrap("get upstream credential", err)
	}
	return decUpstream(account, name, v)
}

// ListUpstreamCredentials implements store.UpstreamCredentials.
func (s *Store) ListUpstreamCredentials(ctx context.Context, account string) ([]store.UpstreamCredential, error) {
	m, err := s.c.HGetAll(ctx, s.upstreamKey(account)).Result()
	if err != nil {
		return nil, s.wrap("list upstream credentials", err)
	}
	out := make([]store.UpstreamCredential, 0, len(m))
	for name, v := range m {
		c, err := decUpstream(account, name, v)
		if err != nil {
			return nil, err
		}
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b store.UpstreamCredential) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, nil
}

// UpdateUpstreamCredential implements store.UpstreamCredentials.
func (s *Store) UpdateUpstreamCredential(ctx context.Context, c *store.UpstreamCredential) error {
	n := c.Clone()
	if err := store.ValidateUpstreamCredential(n, s.now(), false); err != nil {
		return err
	}
	key := s.upstreamKey(n.Account)
	oldV, err := s.c.HGet(ctx, key, n.Name).Result()
	if errors.Is(err, redis.Nil) {
		return store.ErrUpstreamNotFound(n.Account, n.Name)
	}
	if err != nil {
		return s.wrap("update upstream credential", err)
	}
	old, err := decUpstream(n.Account, n.Name, oldV)
	if err != nil {
		return err
	}
	if err := store.ApplyUpstreamUpdate(old, n, s.now()); err != nil {
		return err
	}
	v, err := encUpstream(n)
	if err != nil {
		return err
	}
	res, err := scriptUpstreamCAS.Run(ctx, s.c, []string{key}, n.Name, oldV, v).Int()
	if err != nil {
		return s.wrap("update upstream credential", err)
	}
	switch res {
	case -1:
		return store.ErrUpstreamNotFound(n.Account, n.Name)
	case 0:
		return fmt.Errorf("redisstore: upstream credential %q in account %q changed meanwhile: %w", n.Name, n.Account, store.ErrConflict)
	}
	c.Version, c.CreatedAt, c.UpdatedAt = n.Version, n.CreatedAt, n.UpdatedAt
	s.publish(ctx, store.UpstreamCredentialInvalidation(n.Account, n.Name))
	return nil
}

// DeleteUpstreamCredential implements store.UpstreamCredentials.
func (s *Store) DeleteUpstreamCredential(ctx context.Context, account, name string) error {
	n, err := s.c.HDel(ctx, s.upstreamKey(account), name).Result()
	if err != nil {
		return s.wrap("delete upstream credential", err)
	}
	if n == 0 {
		return store.ErrUpstreamNotFound(account, name)
	}
	s.publish(ctx, store.UpstreamCredentialInvalidation(account, name))
	return nil
}

// deleteAccountUpstream deletes an account's credentials (DeleteAccount)
// and returns their invalidations.
func (s *Store) deleteAccountUpstream(ctx context.Context, account string) ([]store.Invalidation, error) {
	names, err := scriptDropUpstream.Run(ctx, s.c, []string{s.upstreamKey(account)}).StringSlice()
	if err != nil {
		return nil, s.wrap("delete account", err)
	}
	invs := make([]store.Invalidation, 0, len(names))
	for _, n := range names {
		invs = append(invs, store.UpstreamCredentialInvalidation(account, n))
	}
	return invs, nil
}

var _ store.UpstreamCredentials = (*Store)(nil)
