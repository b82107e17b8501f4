package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// maxCASRetries bounds optimistic retries of UpdateUser and tag collisions.
const maxCASRetries = 16

func errUserNotFound(username string) error {
	return fmt.Errorf("redisstore: user %q: %w", username, store.ErrNotFound)
}

// CreateUser creates a user in an existing account. Order (see the package
// doc): write the user hash under a fresh random tag, then index it in the
// directory atomically with the account and username checks; on any refusal
// the unreachable hash is deleted again.
func (s *Store) CreateUser(ctx context.Context, u *store.User) error {
	if err := store.ValidateNewUser(u, s.now()); err != nil {
		return err
	}
	if err := checkTime("created_at", u.CreatedAt); err != nil {
		return err
	}
	fields := userHashArgs(u)
	var tag string
	for attempt := 0; ; attempt++ {
		if attempt == maxCASRetries {
			return fmt.Errorf("redisstore: create user %q: no free tag: %w", u.Username, store.ErrUnavailable)
		}
		tag = randomBase62(tagLen)
		ok, err := scriptHSetNew.Run(ctx, s.c, []string{s.userKey(tag)}, fields...).Int()
		if err != nil {
			return s.wrap("create user", err)
		}
		if ok == 1 {
			break
		}
	}
	err := s.indexUser(ctx, u, tag)
	if err != nil {
		// Best effort with a fresh deadline: the hash is unreachable anyway.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		defer cancel()
		if derr := s.c.Del(cctx, s.userKey(tag)).Err(); derr != nil {
			s.log.Warn("redisstore: could not remove an unindexed user record")
		}
	}
	return err
}

// indexUser runs scriptIndexUser, repairing once a username index entry left
// dangling by an interrupted DeleteUser.
func (s *Store) indexUser(ctx context.Context, u *store.User, tag string) error {
	keys := []string{s.acctKey(u.Account), s.membersKey(u.Account), s.kUnames}
	for attempt := 0; attempt < 2; attempt++ {
		res, err := scriptIndexUser.Run(ctx, s.c, keys, u.Username, tag).Result()
		if err != nil {
			return s.wrap("create user", err)
		}
		switch v := res.(type) {
		case string:
			if v == "OK" {
				return nil
			}
			return errAccountNotFound(u.Account)
		case []any:
			old := ""
			if len(v) == 1 {
				old = str(v[0])
			}
			if validTag(old) {
				n, err := s.c.Exists(ctx, s.userKey(old)).Result()
				if err != nil {
					return s.wrap("create user", err)
				}
				if n == 1 {
					break // really taken
				}
				// Dangling entry: remove it if it still names old, retry.
				if err := scriptUnindexUser.Run(ctx, s.c, []string{s.kUnames}, u.Username, old).Err(); err != nil {
					return s.wrap("create user", err)
				}
				continue
			}
		}
		return fmt.Errorf("redisstore: user %q exists: %w", u.Username, store.ErrConflict)
	}
	return fmt.Errorf("redisstore: user %q exists: %w", u.Username, store.ErrConflict)
}

// userHashArgs are the HSET field, value pairs of a whole user record.
func userHashArgs(u *store.User) []any {
	a := []any{
		"n", u.Username,
		"a", u.Account,
		"t", string(u.Type),
		"s", string(u.State),
		"g", strconv.FormatUint(u.Generation, 10),
		"c", encTime(u.CreatedAt),
		"m", encTime(u.UpdatedAt),
	}
	if len(u.Roles) > 0 {
		a = append(a, "r", encRoles(u.Roles))
	}
	if u.PasswordHash != "" {
		a = append(a, "p", u.PasswordHash)
	}
	return a
}

// decUser decodes the userFields values; ok is false when the record is
// missing.
func decUser(v []field) (*store.User, bool) {
	if len(v) != len(userFields) || !v[0].ok {
		return nil, false
	}
	g, _ := strconv.ParseUint(v[6].v, 10, 64)
	return &store.User{
		Username:     v[0].v,
		Account:      v[1].v,
		Type:         store.UserType(v[2].v),
		Roles:        decRoles(v[3].v),
		State:        store.State(v[4].v),
		PasswordHash: v[5].v,
		Generation:   g,
		CreatedAt:    decTime(v[7].v),
		UpdatedAt:    decTime(v[8].v),
	}, true
}

// userTag finds a user's tag in the directory.
func (s *Store) userTag(ctx context.Context, username string) (string, error) {
	tag, err := s.c.HGet(ctx, s.kUnames, username).Result()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return "", errUserNotFound(username)
		}
		return "", s.wrap("get user", err)
	}
	if !validTag(tag) {
		return "", errUserNotFound(username)
	}
	return tag, nil
}

// readUser reads the user hash under tag.
func (s *Store) readUser(ctx context.Context, username, tag string) (*store.User, error) {
	vals, err := s.c.HMGet(ctx, s.userKey(tag), userFields...).Result()
	if err != nil {
		return nil, s.wrap("get user", err)
	}
	u, ok := decUser(fieldsOf(vals, make([]field, 0, len(userFields))))
	if !ok || u.Username != username {
		return nil, errUserNotFound(username)
	}
	return u, nil
}

// GetUser reads a user: the directory, then the user hash.
func (s *Store) GetUser(ctx context.Context, username string) (*store.User, error) {
	// Two round trips, one timeout (a password login's store time).
	ctx, cancel := s.bound(ctx)
	defer cancel()
	tag, err := s.userTag(ctx, username)
	if err != nil {
		return nil, err
	}
	return s.readUser(ctx, username, tag)
}

// ListUsers lists an account's users ordered by username (ErrNotFound if the
// account does not exist).
func (s *Store) ListUsers(ctx context.Context, account string) ([]store.User, error) {
	if _, err := s.GetAccount(ctx, account); err != nil {
		return nil, err
	}
	members, err := s.c.HGetAll(ctx, s.membersKey(account)).Result()
	if err != nil {
		return nil, s.wrap("list users", err)
	}
	names := make([]string, 0, len(members))
	for n := range members {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]store.User, 0, len(names))
	if len(names) == 0 {
		return out, nil
	}
	cmds := make([]*redis.SliceCmd, len(names))
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range names {
			cmds[i] = p.HMGet(ctx, s.userKey(members[n]), userFields...)
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap("list users", err)
	}
	for i, n := range names {
		if u, ok := decUser(fieldsOf(cmds[i].Val(), make([]field, 0, len(userFields)))); ok && u.Username == n && u.Account == account {
			out = append(out, *u)
		}
	}
	return out, nil
}

// UpdateUser applies upd with optimistic concurrency: read, apply with
// store.ApplyUserUpdate (which checks upd.IfPasswordHash against the record
// read), write only if Generation and the password hash are unchanged since
// the read (one Lua script on the user's slot), else retry. So the
// compare-and-set of IfPasswordHash is atomic with the write, and a rehash,
// which leaves Generation alone, is neither lost to nor overwrites a
// concurrent update. A change publishes an invalidation for the user; a
// rehash writes only the hash and publishes nothing.
func (s *Store) UpdateUser(ctx context.Context, username string, upd store.UserUpdate) (*store.User, error) {
	if err := store.ValidateUserUpdate(upd); err != nil {
		return nil, err
	}
	tag, err := s.userTag(ctx, username)
	if err != nil {
		return nil, err
	}
	for attempt := 0; attempt < maxCASRetries; attempt++ {
		u, err := s.readUser(ctx, username, tag)
		if err != nil {
			return nil, err
		}
		prevGen, prevHash := u.Generation, u.PasswordHash
		changed, err := store.ApplyUserUpdate(u, upd, s.now())
		if err != nil {
			return nil, err
		}
		if !changed {
			return u, nil
		}
		args := []any{strconv.FormatUint(prevGen, 10), prevHash}
		if upd.Rehash {
			args = append(args, "p", u.PasswordHash)
		} else {
			if err := checkTime("updated_at", u.UpdatedAt); err != nil {
				return nil, err
			}
			args = append(args, "t", string(u.Type), "s", string(u.State), "r", encRoles(u.Roles), "p", u.PasswordHash,
				"g", strconv.FormatUint(u.Generation, 10), "m", encTime(u.UpdatedAt))
		}
		res, err := scriptUpdateUser.Run(ctx, s.c, []string{s.userKey(tag)}, args...).Int()
		if err != nil {
			return nil, s.wrap("update user", err)
		}
		switch res {
		case 1:
			if !upd.Rehash {
				s.publish(ctx, store.Invalidation{Username: username})
			}
			return u, nil
		case -1:
			return nil, errUserNotFound(username)
		}
	}
	return nil, fmt.Errorf("redisstore: update user %q: too much contention: %w", username, store.ErrUnavailable)
}

// DeleteUser deletes the user's records and keys, then the directory entries
// (so nothing dangling stays reachable), and publishes invalidations for the
// user and each of their keys.
func (s *Store) DeleteUser(ctx context.Context, username string) error {
	tag, err := s.userTag(ctx, username)
	if err != nil {
		return err
	}
	account, ids, err := s.deleteUserData(ctx, tag)
	missing := errors.Is(err, store.ErrNotFound)
	if err != nil && !missing {
		return err
	}
	keys := []string{s.kUnames}
	if !missing {
		keys = append(keys, s.membersKey(account))
	}
	if err := scriptUnindexUser.Run(ctx, s.c, keys, username, tag).Err(); err != nil {
		return s.wrap("delete user", err)
	}
	if missing {
		return errUserNotFound(username)
	}
	invs := make([]store.Invalidation, 0, 1+len(ids))
	invs = append(invs, store.Invalidation{Username: username})
	for _, id := range ids {
		invs = append(invs, store.Invalidation{KeyID: id, Username: username})
	}
	s.publish(ctx, invs...)
	return s.dropKeyLimits(ctx, username, ids...)
}

// deleteUserData deletes the user hash under tag and all their keys. It
// returns the user's account and key ids, or ErrNotFound.
func (s *Store) deleteUserData(ctx context.Context, tag string) (string, []string, error) {
	res, err := scriptDeleteUser.Run(ctx, s.c,
		[]string{s.userKey(tag), s.keySetKey(tag), s.keyNamesKey(tag)}, s.userKey(tag)).Slice()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return "", nil, fmt.Errorf("redisstore: user record: %w", store.ErrNotFound)
		}
		return "", nil, s.wrap("delete user", err)
	}
	if len(res) != 2 {
		return "", nil, fmt.Errorf("redisstore: delete user: unexpected reply: %w", store.ErrUnavailable)
	}
	var ids []string
	if l, ok := res[1].([]any); ok {
		for _, v := range l {
			ids = append(ids, tag+str(v))
		}
	}
	return str(res[0]), ids, nil
}
