package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

// CreateAccount creates an account (ErrConflict if the name exists or is
// being deleted).
func (s *Store) CreateAccount(ctx context.Context, a *store.Account) error {
	if err := store.ValidateAccount(a, s.now()); err != nil {
		return err
	}
	if err := checkTime("created_at", a.CreatedAt); err != nil {
		return err
	}
	ok, err := scriptCreateAccount.Run(ctx, s.c, []string{s.acctKey(a.Name), s.kAccts},
		a.Name, string(a.State), encTime(a.CreatedAt)).Int()
	if err != nil {
		return s.wrap("create account", err)
	}
	if ok == 0 {
		return fmt.Errorf("redisstore: account %q exists: %w", a.Name, store.ErrConflict)
	}
	return nil
}

// GetAccount reads an account.
func (s *Store) GetAccount(ctx context.Context, name string) (*store.Account, error) {
	vals, err := s.c.HMGet(ctx, s.acctKey(name), "s", "c", "x").Result()
	if err != nil {
		return nil, s.wrap("get account", err)
	}
	a, ok := decAccount(name, vals)
	if !ok {
		return nil, errAccountNotFound(name)
	}
	return a, nil
}

func errAccountNotFound(name string) error {
	return fmt.Errorf("redisstore: account %q: %w", name, store.ErrNotFound)
}

// decAccount decodes HMGET s c x; accounts being deleted do not exist.
func decAccount(name string, vals []any) (*store.Account, bool) {
	if len(vals) != 3 || vals[0] == nil || vals[2] != nil {
		return nil, false
	}
	return &store.Account{Name: name, State: store.State(str(vals[0])), CreatedAt: decTime(str(vals[1]))}, true
}

// ListAccounts lists the accounts ordered by name (one round trip for the
// names, one pipelined round trip for the records).
func (s *Store) ListAccounts(ctx context.Context) ([]store.Account, error) {
	names, err := s.accountNames(ctx)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return []store.Account{}, nil
	}
	cmds := make([]*redis.SliceCmd, len(names))
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range names {
			cmds[i] = p.HMGet(ctx, s.acctKey(n), "s", "c", "x")
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap("list accounts", err)
	}
	out := make([]store.Account, 0, len(names))
	for i, n := range names {
		if a, ok := decAccount(n, cmds[i].Val()); ok {
			out = append(out, *a)
		}
	}
	return out, nil
}

// accountNames lists every account name (including ones being deleted), in
// byte order.
func (s *Store) accountNames(ctx context.Context) ([]string, error) {
	names, err := s.c.ZRange(ctx, s.kAccts, 0, -1).Result()
	if err != nil {
		return nil, s.wrap("list accounts", err)
	}
	return names, nil
}

// SetAccountState enables or disables an account and publishes an
// invalidation for it.
func (s *Store) SetAccountState(ctx context.Context, name string, st store.State) (*store.Account, error) {
	if err := store.ValidateState(st); err != nil {
		return nil, err
	}
	created, err := scriptSetAccountState.Run(ctx, s.c, []string{s.acctKey(name)}, string(st)).Text()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return nil, errAccountNotFound(name)
		}
		return nil, s.wrap("set account state", err)
	}
	s.publish(ctx, store.Invalidation{Account: name})
	return &store.Account{Name: name, State: st, CreatedAt: decTime(created)}, nil
}

// DeleteAccount deletes the account, its users and their keys: it marks the
// account deleting (it reads as gone and no user may join it), deletes each
// user's records, then removes the account and its index entries. If it
// fails midway, calling it again finishes the job. It publishes an
// invalidation for the account and for each user.
func (s *Store) DeleteAccount(ctx context.Context, name string) error {
	res, err := scriptDeleteAccountBegin.Run(ctx, s.c, []string{s.acctKey(name), s.membersKey(name)}).StringSlice()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return errAccountNotFound(name)
		}
		return s.wrap("delete account", err)
	}
	// From here on the account reads as gone: tell caches now.
	s.publish(ctx, store.Invalidation{Account: name})
	args := make([]any, 0, 1+len(res))
	args = append(args, name)
	var invs []store.Invalidation
	defer func() { s.publish(ctx, invs...) }()
	for i := 0; i+1 < len(res); i += 2 {
		username, tag := res[i], res[i+1]
		args = append(args, username, tag)
		if !validTag(tag) {
			continue
		}
		_, ids, err := s.deleteUserData(ctx, tag)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		invs = append(invs, store.Invalidation{Username: username})
		// The user's and its keys' rate-limit assignments go with them (a
		// rerun after a failure here no longer knows the key ids: their
		// assignments then stay, unused, as for a crash in DeleteUser).
		if err := s.dropKeyLimits(ctx, username, ids...); err != nil {
			return err
		}
	}
	credInvs, err := s.deleteAccountUpstream(ctx, name)
	if err != nil {
		return err
	}
	invs = append(invs, credInvs...)
	err = scriptDeleteAccountEnd.Run(ctx, s.c,
		[]string{s.acctKey(name), s.membersKey(name), s.kAccts, s.kUnames, s.upstreamKey(name)}, args...).Err()
	if err != nil {
		return s.wrap("delete account", err)
	}
	return s.wrap("delete account", s.c.HDel(ctx, s.limitsKey(), limitsField(store.ScopeAccount, name)).Err())
}
