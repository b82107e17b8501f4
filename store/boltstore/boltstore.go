// Package boltstore is keygate's embedded store: one bbolt file, for a
// gateway that runs on one machine (DESIGN.md §2). It implements store.Store
// and passes the store/storetest conformance suite.
//
// Layout (bucket: key → value):
//
//	accounts:      name → account record
//	users:         username → user record (with the password hash)
//	account_users: account 0x00 username → empty
//	keys:          id → key record (with the secret's hash)
//	user_keys:     username 0x00 id → empty
//	key_names:     username 0x00 name → id of the active key with that name
//
// Names never contain 0x00 (store.Validate* forbid control characters), so the
// composite keys are unambiguous and sort by their first part, then their
// second. Every multi-record write happens in one transaction; bbolt runs one
// writer at a time, which makes the uniqueness checks atomic.
//
// Invalidations are delivered in-process only, to every Watch of this Store.
package boltstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/keygate/keygate/store"
)

// Options configure a Store. The zero value is usable.
type Options struct {
	// Now is the clock (default time.Now). Tests inject a controllable one.
	Now func() time.Time
	// Timeout bounds the wait for the file lock when another process (or
	// another Store in this one) holds the file open (default 1s).
	Timeout time.Duration
}

// IDLen is the length of the key ids this store assigns.
const IDLen = 20

// watchBuffer is the number of invalidations queued per watcher before it is
// sent a Flush instead.
const watchBuffer = 256

var (
	bAccounts     = []byte("accounts")
	bUsers        = []byte("users")
	bAccountUsers = []byte("account_users")
	bKeys         = []byte("keys")
	bUserKeys     = []byte("user_keys")
	bKeyNames     = []byte("key_names")
	allBuckets    = [][]byte{bAccounts, bUsers, bAccountUsers, bKeys, bUserKeys, bKeyNames}
)

// Store is a store.Store on a bbolt file. It is safe for concurrent use.
type Store struct {
	db     *bolt.DB
	now    func() time.Time
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	watchers map[*watcher]struct{}

	// Readiness (ready.go): the outcome of the last write, and the
	// rate-limited write probe.
	path      string
	lastWrite atomic.Pointer[writeOutcome]
	probeMu   sync.Mutex
	probe     probeResult
}

// Open opens (creating if needed, with mode 0600) the bbolt file at path. If
// another Store holds the file, Open fails after opts.Timeout.
func Open(path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("boltstore: empty path: %w", store.ErrInvalid)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("boltstore: create directory for %s: %w", path, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("boltstore: open %s: the file is locked by another process or store (waited %v): %w",
				path, opts.Timeout, store.ErrUnavailable)
		}
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	// A file created by another tool may be more open than it should be.
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("boltstore: chmod %s: %w", path, err)
		}
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return sweepQuotas(tx, now())
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltstore: initialise %s: %w", path, err)
	}
	return &Store{db: db, now: opts.Now, closed: make(chan struct{}), watchers: make(map[*watcher]struct{}), path: path}, nil
}

// Close closes the file and ends every Watch. Closing twice is fine.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		err = s.db.Close()
	})
	return err
}

// Ping reports whether the file is open.
func (s *Store) Ping(ctx context.Context) error {
	return s.view(ctx, "ping", func(*bolt.Tx) error { return nil })
}

// pair is the composite index key a 0x00 b.
func pair(a, b string) []byte {
	k := make([]byte, 0, len(a)+1+len(b))
	k = append(k, a...)
	k = append(k, 0)
	return append(k, b...)
}

// prefix is a 0x00, the start of every composite key under a.
func prefix(a string) []byte { return pair(a, "") }

// ---- transactions ----

func (s *Store) wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return fmt.Errorf("boltstore: %s: database closed: %w", op, store.ErrUnavailable)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict),
		errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrUnavailable):
		return err
	default:
		// I/O errors and corrupt records: the store cannot serve this
		// request (503), which is not the caller's fault.
		return fmt.Errorf("boltstore: %s: %w: %w", op, store.ErrUnavailable, err)
	}
}

func (s *Store) view(ctx context.Context, op string, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("boltstore: %s: %w", op, err)
	}
	return s.wrap(op, s.db.View(fn))
}

// update runs fn in a write transaction. The context is checked again once
// the write lock is held, so a caller that gave up waiting changes nothing.
func (s *Store) update(ctx context.Context, op string, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("boltstore: %s: %w", op, err)
	}
	err := s.wrap(op, s.db.Update(func(tx *bolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("boltstore: %s: %w", op, err)
		}
		return fn(tx)
	}))
	s.recordWrite(err)
	return err
}

func getAccount(tx *bolt.Tx, name string) (*store.Account, error) {
	v := tx.Bucket(bAccounts).Get([]byte(name))
	if v == nil {
		return nil, fmt.Errorf("account %q: %w", name, store.ErrNotFound)
	}
	return decodeAccount(v)
}

func getUser(tx *bolt.Tx, username string) (*store.User, error) {
	v := tx.Bucket(bUsers).Get([]byte(username))
	if v == nil {
		return nil, fmt.Errorf("user %q: %w", username, store.ErrNotFound)
	}
	return decodeUser(v)
}

func getKey(tx *bolt.Tx, id string) (*store.APIKey, error) {
	if !store.IsBase62ID(id) {
		return nil, fmt.Errorf("api key: malformed id: %w", store.ErrNotFound)
	}
	v := tx.Bucket(bKeys).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("api key %s: %w", id, store.ErrNotFound)
	}
	return decodeKey(v)
}

// ---- accounts ----

// CreateAccount implements store.Store.
func (s *Store) CreateAccount(ctx context.Context, a *store.Account) error {
	if err := store.ValidateAccount(a, s.now()); err != nil {
		return err
	}
	return s.update(ctx, "create account", func(tx *bolt.Tx) error {
		b := tx.Bucket(bAccounts)
		if b.Get([]byte(a.Name)) != nil {
			return fmt.Errorf("account %q exists: %w", a.Name, store.ErrConflict)
		}
		return b.Put([]byte(a.Name), encodeAccount(a))
	})
}

// GetAccount implements store.Store.
func (s *Store) GetAccount(ctx context.Context, name string) (*store.Account, error) {
	var a *store.Account
	err := s.view(ctx, "get account", func(tx *bolt.Tx) (err error) {
		a, err = getAccount(tx, name)
		return err
	})
	return a, err
}

// ListAccounts implements store.Store: every account, ordered by name.
func (s *Store) ListAccounts(ctx context.Context) ([]store.Account, error) {
	list := []store.Account{}
	err := s.view(ctx, "list accounts", func(tx *bolt.Tx) error {
		return tx.Bucket(bAccounts).ForEach(func(_, v []byte) error {
			a, err := decodeAccount(v)
			if err != nil {
				return err
			}
			list = append(list, *a)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return list, nil
}

// SetAccountState implements store.Store.
func (s *Store) SetAccountState(ctx context.Context, name string, st store.State) (*store.Account, error) {
	if err := store.ValidateState(st); err != nil {
		return nil, err
	}
	var a *store.Account
	err := s.update(ctx, "set account state", func(tx *bolt.Tx) (err error) {
		if a, err = getAccount(tx, name); err != nil {
			return err
		}
		a.State = st
		return tx.Bucket(bAccounts).Put([]byte(name), encodeAccount(a))
	})
	if err != nil {
		return nil, err
	}
	s.publish(store.Invalidation{Account: name})
	return a, nil
}

// DeleteAccount implements store.Store: the account, its users and their
// keys go in one transaction.
func (s *Store) DeleteAccount(ctx context.Context, name string) error {
	var credInvs []store.Invalidation
	err := s.update(ctx, "delete account", func(tx *bolt.Tx) error {
		if _, err := getAccount(tx, name); err != nil {
			return err
		}
		var usernames []string
		p := prefix(name)
		c := tx.Bucket(bAccountUsers).Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			usernames = append(usernames, string(k[len(p):]))
		}
		for _, u := range usernames {
			if err := deleteUserTx(tx, name, u); err != nil {
				return err
			}
		}
		var err error
		if credInvs, err = deleteAccountUpstreamTx(tx, name); err != nil {
			return err
		}
		if err := dropLimits(tx, store.ScopeAccount, name); err != nil {
			return err
		}
		return tx.Bucket(bAccounts).Delete([]byte(name))
	})
	if err != nil {
		return err
	}
	s.publish(append(credInvs, store.Invalidation{Account: name})...)
	return nil
}

// ---- users ----

// CreateUser implements store.Store.
func (s *Store) CreateUser(ctx context.Context, u *store.User) error {
	if err := store.ValidateNewUser(u, s.now()); err != nil {
		return err
	}
	return s.update(ctx, "create user", func(tx *bolt.Tx) error {
		if _, err := getAccount(tx, u.Account); err != nil {
			return err
		}
		b := tx.Bucket(bUsers)
		if b.Get([]byte(u.Username)) != nil {
			return fmt.Errorf("user %q exists: %w", u.Username, store.ErrConflict)
		}
		if err := b.Put([]byte(u.Username), encodeUser(u)); err != nil {
			return err
		}
		return tx.Bucket(bAccountUsers).Put(pair(u.Account, u.Username), nil)
	})
}

// GetUser implements store.Store.
func (s *Store) GetUser(ctx context.Context, username string) (*store.User, error) {
	var u *store.User
	err := s.view(ctx, "get user", func(tx *bolt.Tx) (err error) {
		u, err = getUser(tx, username)
		return err
	})
	return u, err
}

// ListUsers implements store.Store.
func (s *Store) ListUsers(ctx context.Context, account string) ([]store.User, error) {
	list := []store.User{}
	err := s.view(ctx, "list users", func(tx *bolt.Tx) error {
		if _, err := getAccount(tx, account); err != nil {
			return err
		}
		p := prefix(account)
		c := tx.Bucket(bAccountUsers).Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			u, err := getUser(tx, string(k[len(p):]))
			if err != nil {
				return err
			}
			list = append(list, *u)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return list, nil
}

// UpdateUser implements store.Store. The record is read, compared with
// upd.IfPasswordHash and written in one write transaction, so the
// compare-and-set is atomic. A rehash publishes nothing.
func (s *Store) UpdateUser(ctx context.Context, username string, upd store.UserUpdate) (*store.User, error) {
	if err := store.ValidateUserUpdate(upd); err != nil {
		return nil, err
	}
	var u *store.User
	var changed bool
	err := s.update(ctx, "update user", func(tx *bolt.Tx) (err error) {
		if u, err = getUser(tx, username); err != nil {
			return err
		}
		if changed, err = store.ApplyUserUpdate(u, upd, s.now()); err != nil || !changed {
			return err
		}
		return tx.Bucket(bUsers).Put([]byte(username), encodeUser(u))
	})
	if err != nil {
		return nil, err
	}
	if changed && !upd.Rehash {
		s.publish(store.Invalidation{Username: username})
	}
	return u, nil
}

// DeleteUser implements store.Store.
func (s *Store) DeleteUser(ctx context.Context, username string) error {
	err := s.update(ctx, "delete user", func(tx *bolt.Tx) error {
		u, err := getUser(tx, username)
		if err != nil {
			return err
		}
		return deleteUserTx(tx, u.Account, username)
	})
	if err != nil {
		return err
	}
	s.publish(store.Invalidation{Username: username})
	return nil
}

// deleteUserTx removes a user, its index entries and all its keys.
func deleteUserTx(tx *bolt.Tx, account, username string) error {
	var ids [][]byte
	p := prefix(username)
	c := tx.Bucket(bUserKeys).Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		ids = append(ids, bytes.Clone(k))
	}
	keys, userKeys := tx.Bucket(bKeys), tx.Bucket(bUserKeys)
	for _, uk := range ids {
		if err := keys.Delete(uk[len(p):]); err != nil {
			return err
		}
		if err := userKeys.Delete(uk); err != nil {
			return err
		}
		if err := dropLimits(tx, store.ScopeKey, string(uk[len(p):])); err != nil {
			return err
		}
	}
	if err := dropLimits(tx, store.ScopeUser, username); err != nil {
		return err
	}
	var names [][]byte
	c = tx.Bucket(bKeyNames).Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		names = append(names, bytes.Clone(k))
	}
	for _, n := range names {
		if err := tx.Bucket(bKeyNames).Delete(n); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bAccountUsers).Delete(pair(account, username)); err != nil {
		return err
	}
	return tx.Bucket(bUsers).Delete([]byte(username))
}

// ---- API keys ----

// CreateAPIKey implements store.Store. The name is checked against the
// owner's active keys inside the write transaction, so two concurrent
// creates of one name cannot both succeed.
func (s *Store) CreateAPIKey(ctx context.Context, k *store.APIKey) error {
	now := s.now()
	if err := store.ValidateNewAPIKey(k, now); err != nil {
		return err
	}
	rec := *k
	rec.RevokedAt, rec.LastUsedAt = time.Time{}, time.Time{}
	err := s.update(ctx, "create api key", func(tx *bolt.Tx) error {
		owner, err := getUser(tx, k.Username)
		if err != nil {
			return err
		}
		rec.Account = owner.Account
		names, keys := tx.Bucket(bKeyNames), tx.Bucket(bKeys)
		nameKey := pair(k.Username, k.Name)
		if id := names.Get(nameKey); id != nil {
			if v := keys.Get(id); v != nil {
				old, err := decodeKey(v)
				if err != nil {
					return err
				}
				if old.Status(now) == store.KeyActive {
					return fmt.Errorf("user %q already has an active api key with this name: %w", k.Username, store.ErrConflict)
				}
			}
		}
		for {
			if rec.ID, err = NewID(); err != nil {
				return err
			}
			if keys.Get([]byte(rec.ID)) == nil {
				break
			}
		}
		if err := keys.Put([]byte(rec.ID), encodeKey(&rec)); err != nil {
			return err
		}
		if err := tx.Bucket(bUserKeys).Put(pair(k.Username, rec.ID), nil); err != nil {
			return err
		}
		return names.Put(nameKey, []byte(rec.ID))
	})
	if err != nil {
		return err
	}
	k.ID, k.Account, k.RevokedAt, k.LastUsedAt = rec.ID, rec.Account, time.Time{}, time.Time{}
	return nil
}

// GetAPIKey implements store.Store.
func (s *Store) GetAPIKey(ctx context.Context, id string) (*store.APIKey, error) {
	var k *store.APIKey
	err := s.view(ctx, "get api key", func(tx *bolt.Tx) (err error) {
		k, err = getKey(tx, id)
		return err
	})
	return k, err
}

// LookupAPIKey implements store.Store: key and owner in one read transaction.
func (s *Store) LookupAPIKey(ctx context.Context, id string) (*store.APIKey, *store.User, error) {
	var k *store.APIKey
	var u *store.User
	err := s.view(ctx, "lookup api key", func(tx *bolt.Tx) (err error) {
		if k, err = getKey(tx, id); err != nil {
			return err
		}
		if u, err = getUser(tx, k.Username); err != nil {
			return fmt.Errorf("owner of api key %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return k, u, nil
}

// ListAPIKeys implements store.Store. Pages are ordered by id; a filter on
// Username reads only that user's index.
func (s *Store) ListAPIKeys(ctx context.Context, f store.KeyFilter) (*store.KeyPage, error) {
	f, after, err := store.NormalizeKeyFilter(f)
	if err != nil {
		return nil, err
	}
	now := s.now()
	page := &store.KeyPage{Keys: []store.APIKey{}}
	err = s.view(ctx, "list api keys", func(tx *bolt.Tx) error {
		keys := tx.Bucket(bKeys)
		// add reports whether the page wants more.
		add := func(v []byte) (bool, error) {
			k, err := decodeKey(v)
			if err != nil {
				return false, err
			}
			if !store.MatchKey(k, f, now) {
				return true, nil
			}
			if len(page.Keys) == f.Limit {
				page.NextCursor = store.EncodeCursor(page.Keys[len(page.Keys)-1].ID)
				return false, nil
			}
			page.Keys = append(page.Keys, *k)
			return true, nil
		}
		if f.Username != "" {
			p := prefix(f.Username)
			c := tx.Bucket(bUserKeys).Cursor()
			k, _ := c.Seek(pair(f.Username, after))
			for ; k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
				if after != "" && string(k[len(p):]) <= after {
					continue
				}
				v := keys.Get(k[len(p):])
				if v == nil {
					continue
				}
				if more, err := add(v); err != nil || !more {
					return err
				}
			}
			return nil
		}
		c := keys.Cursor()
		k, v := c.Seek([]byte(after))
		for ; k != nil; k, v = c.Next() {
			if after != "" && string(k) <= after {
				continue
			}
			if more, err := add(v); err != nil || !more {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

// RevokeAPIKey implements store.Store. A zero at means now.
func (s *Store) RevokeAPIKey(ctx context.Context, id string, at time.Time) (*store.APIKey, bool, error) {
	if at.IsZero() {
		at = s.now()
	}
	var k *store.APIKey
	var already bool
	err := s.update(ctx, "revoke api key", func(tx *bolt.Tx) (err error) {
		if k, err = getKey(tx, id); err != nil {
			return err
		}
		if !k.RevokedAt.IsZero() {
			already = true
			return nil
		}
		k.RevokedAt = at
		if err := tx.Bucket(bKeys).Put([]byte(id), encodeKey(k)); err != nil {
			return err
		}
		return dropName(tx, k, s.now())
	})
	if err != nil {
		return nil, false, err
	}
	if !already {
		s.publish(store.Invalidation{Username: k.Username, KeyID: k.ID})
	}
	return k, already, nil
}

// dropName removes the name index entry if it points to k, which is no
// longer active. The name stays held while any key of that name is active
// (an old key of a rotation in its grace): the entry then points to the one
// of those that expires last.
func dropName(tx *bolt.Tx, k *store.APIKey, now time.Time) error {
	names := tx.Bucket(bKeyNames)
	nk := pair(k.Username, k.Name)
	if id := names.Get(nk); id == nil || string(id) != k.ID {
		return nil
	}
	var heir *store.APIKey
	p := prefix(k.Username)
	keys := tx.Bucket(bKeys)
	c := tx.Bucket(bUserKeys).Cursor()
	for uk, _ := c.Seek(p); uk != nil && bytes.HasPrefix(uk, p); uk, _ = c.Next() {
		id := uk[len(p):]
		if string(id) == k.ID {
			continue
		}
		v := keys.Get(id)
		if v == nil {
			continue
		}
		o, err := decodeKey(v)
		if err != nil {
			return err
		}
		if o.Name != k.Name || o.Status(now) != store.KeyActive {
			continue
		}
		if heir == nil || (!heir.ExpiresAt.IsZero() && (o.ExpiresAt.IsZero() || o.ExpiresAt.After(heir.ExpiresAt))) {
			heir = o
		}
	}
	if heir != nil {
		return names.Put(nk, []byte(heir.ID))
	}
	return names.Delete(nk)
}

// TouchAPIKeys implements store.Store.
func (s *Store) TouchAPIKeys(ctx context.Context, used map[string]time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("boltstore: touch api keys: %w", err)
	}
	if len(used) == 0 {
		return nil
	}
	return s.update(ctx, "touch api keys", func(tx *bolt.Tx) error {
		keys := tx.Bucket(bKeys)
		for id, at := range used {
			if !store.IsBase62ID(id) {
				continue
			}
			v := keys.Get([]byte(id))
			if v == nil {
				continue
			}
			k, err := decodeKey(v)
			if err != nil {
				return err
			}
			if !at.After(k.LastUsedAt) {
				continue
			}
			k.LastUsedAt = at
			if err := keys.Put([]byte(id), encodeKey(k)); err != nil {
				return err
			}
		}
		return nil
	})
}

// PurgeAPIKeys implements store.Store.
func (s *Store) PurgeAPIKeys(ctx context.Context, before time.Time) (int, error) {
	now := s.now()
	n := 0
	err := s.update(ctx, "purge api keys", func(tx *bolt.Tx) error {
		n = 0
		var doomed []*store.APIKey
		err := tx.Bucket(bKeys).ForEach(func(_, v []byte) error {
			k, err := decodeKey(v)
			if err != nil {
				return err
			}
			if store.PurgeEligible(k, before, now) {
				doomed = append(doomed, k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range doomed {
			if err := tx.Bucket(bKeys).Delete([]byte(k.ID)); err != nil {
				return err
			}
			if err := tx.Bucket(bUserKeys).Delete(pair(k.Username, k.ID)); err != nil {
				return err
			}
			if err := dropName(tx, k, now); err != nil {
				return err
			}
			if err := dropLimits(tx, store.ScopeKey, k.ID); err != nil {
				return err
			}
		}
		n = len(doomed)
		return sweepQuotas(tx, now)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// ---- ids ----

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewID returns IDLen base62 characters from crypto/rand (about 119 bits).
func NewID() (string, error) {
	var out [IDLen]byte
	var buf [2 * IDLen]byte
	n := 0
	for n < IDLen {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", fmt.Errorf("boltstore: random id: %w", err)
		}
		for _, b := range buf {
			// 248 = 4×62: rejecting bytes above keeps the digits uniform.
			if b < 248 && n < IDLen {
				out[n] = base62[b%62]
				n++
			}
		}
	}
	return string(out[:]), nil
}

// ---- watch ----

type watcher struct {
	ch       chan store.Invalidation
	kick     chan struct{}
	overflow atomic.Bool
}

// publish hands invs to every watcher without blocking: a watcher whose
// buffer is full is marked and gets a Flush instead.
func (s *Store) publish(invs ...store.Invalidation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		for _, inv := range invs {
			select {
			case w.ch <- inv:
			default:
				w.overflow.Store(true)
				select {
				case w.kick <- struct{}{}:
				default:
				}
			}
		}
	}
}

// Watch implements store.Store: it delivers this Store's invalidations to fn
// until ctx ends (then it returns nil) or the Store is closed (then an error
// wrapping store.ErrUnavailable). fn runs on Watch's goroutine; while it is
// slow, up to 256 invalidations queue, and past that the watcher is sent one
// Invalidation{Flush: true} instead of the ones it missed.
func (s *Store) Watch(ctx context.Context, fn func(store.Invalidation)) error {
	if ctx.Err() != nil {
		return nil
	}
	w := &watcher{ch: make(chan store.Invalidation, watchBuffer), kick: make(chan struct{}, 1)}
	s.mu.Lock()
	select {
	case <-s.closed:
		s.mu.Unlock()
		return fmt.Errorf("boltstore: watch: store closed: %w", store.ErrUnavailable)
	default:
	}
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.closed:
			return fmt.Errorf("boltstore: watch: store closed: %w", store.ErrUnavailable)
		case inv := <-w.ch:
			fn(inv)
		case <-w.kick:
		}
		if w.overflow.Swap(false) {
			fn(store.Invalidation{Flush: true})
		}
	}
}

// TryLease implements store.Leaser: one process holds the file (bbolt's
// lock), so no other instance shares this store and the lease is always
// granted.
func (s *Store) TryLease(_ context.Context, name, _ string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, fmt.Errorf("boltstore: lease %q: ttl must be positive: %w", name, store.ErrInvalid)
	}
	return true, nil
}

var (
	_ store.Store  = (*Store)(nil)
	_ store.Driver = (*Store)(nil)
)
