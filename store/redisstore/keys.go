package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/store"
)

func errKeyNotFound(id string) error {
	return fmt.Errorf("redisstore: api key %q: %w", id, store.ErrNotFound)
}

// CreateAPIKey assigns k.ID (<owner tag><12 random base62>) and stores the
// key. The owner check, the name-uniqueness check among the owner's live
// keys (at opts.Now) and the write are one script on the owner's slot.
func (s *Store) CreateAPIKey(ctx context.Context, k *store.APIKey) error {
	now := s.now()
	if err := store.ValidateNewAPIKey(k, now); err != nil {
		return err
	}
	for _, t := range []struct {
		what string
		t    time.Time
	}{{"created_at", k.CreatedAt}, {"expires_at", k.ExpiresAt}} {
		if err := checkTime(t.what, t.t); err != nil {
			return err
		}
	}
	tag, err := s.userTag(ctx, k.Username)
	if err != nil {
		return err
	}
	fields := newKeyFields(k)
	for attempt := 0; attempt < maxCASRetries; attempt++ {
		suf := randomBase62(keySufLen)
		id := tag + suf
		args := append([]any{k.Name, encTime(now), suf, suf + ":" + encTime(k.ExpiresAt)}, fields...)
		res, err := scriptCreateKey.Run(ctx, s.c,
			[]string{s.userKey(tag), s.apiKeyKey(id), s.keySetKey(tag), s.keyNamesKey(tag)}, args...).Slice()
		if err != nil {
			return s.wrap("create api key", err)
		}
		if len(res) == 0 {
			return fmt.Errorf("redisstore: create api key: unexpected reply: %w", store.ErrUnavailable)
		}
		code, _ := res[0].(int64)
		switch code {
		case 0:
			return errUserNotFound(k.Username)
		case 1:
			return fmt.Errorf("redisstore: user %q has a live api key named %q: %w", k.Username, k.Name, store.ErrConflict)
		case 3:
			k.ID = id
			if len(res) > 1 {
				k.Account = str(res[1])
			}
			k.RevokedAt, k.LastUsedAt = time.Time{}, time.Time{}
			return nil
		}
		// 2: id collision, draw again.
	}
	return fmt.Errorf("redisstore: create api key: no free id: %w", store.ErrUnavailable)
}

// decKey decodes the keyFields values of key id; ok is false when missing.
func decKey(id string, v []field) (*store.APIKey, bool) {
	if len(v) != len(keyFields) || !v[0].ok {
		return nil, false
	}
	k := &store.APIKey{
		ID:          id,
		Name:        v[0].v,
		Description: v[1].v,
		Roles:       decRoles(v[2].v),
		CreatedAt:   decTime(v[4].v),
		ExpiresAt:   decTime(v[5].v),
		RevokedAt:   decTime(v[6].v),
		LastUsedAt:  decTime(v[7].v),
		RotatedTo:   v[10].v,
	}
	if v[8].v != "" {
		k.Metadata = []byte(v[8].v)
	}
	if v[9].v != "" {
		k.AllowedCIDRs = decRoles(v[9].v) // comma-joined like roles
	}
	if v[3].v != "" {
		k.Hash = []byte(v[3].v)
	}
	return k, true
}

// decKeyOwner decodes key fields followed by owner fields (username and
// account first); owner is the owner's part. A key whose owner is gone (a
// deletion in progress) does not exist.
func decKeyOwner(id string, f []field) (k *store.APIKey, owner []field, ok bool) {
	if len(f) < len(keyFields)+2 {
		return nil, nil, false
	}
	k, ok = decKey(id, f[:len(keyFields)])
	owner = f[len(keyFields):]
	if !ok || !owner[0].ok {
		return nil, nil, false
	}
	k.Username, k.Account = owner[0].v, owner[1].v
	return k, owner, true
}

// fetch runs a fetch script for id and parses its packed reply into dst.
func (s *Store) fetch(ctx context.Context, op string, sc *redis.Script, id string, dst []field) ([]field, error) {
	if !validKeyID(id) {
		return nil, errKeyNotFound(id)
	}
	res, err := sc.Run(ctx, s.c, []string{s.apiKeyKey(id), s.userKey(id[:tagLen])}).Text()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return nil, errKeyNotFound(id)
		}
		return nil, s.wrap(op, err)
	}
	return parsePacked(res, dst)
}

// GetAPIKey reads a key and its owner's name and account: one script on one
// slot, one round trip. An id this store cannot have made is ErrNotFound.
func (s *Store) GetAPIKey(ctx context.Context, id string) (*store.APIKey, error) {
	var buf [len(keyFieldsArr) + 2]field
	f, err := s.fetch(ctx, "get api key", scriptGetKey, id, buf[:0])
	if err != nil {
		return nil, err
	}
	k, _, ok := decKeyOwner(id, f)
	if !ok {
		return nil, errKeyNotFound(id)
	}
	return k, nil
}

// LookupAPIKey reads a key and its owner in one round trip, combined with
// concurrent lookups (the hot path of an API key cache miss: see
// lookupCombiner).
func (s *Store) LookupAPIKey(ctx context.Context, id string) (*store.APIKey, *store.User, error) {
	if !validKeyID(id) {
		return nil, nil, errKeyNotFound(id)
	}
	var f lookupFields
	if err := s.lookups.do(ctx, [2]string{s.apiKeyKey(id), s.userKey(id[:tagLen])}, &f); err != nil {
		return nil, nil, s.wrap("lookup api key", err)
	}
	k, owner, ok := decKeyOwner(id, f[:])
	if !ok {
		return nil, nil, errKeyNotFound(id)
	}
	u, ok := decUser(owner)
	if !ok {
		return nil, nil, errKeyNotFound(id)
	}
	return k, u, nil
}

// RevokeAPIKey sets RevokedAt (at, or now when at is zero) unless the key is
// revoked already, frees its name, and publishes an invalidation.
func (s *Store) RevokeAPIKey(ctx context.Context, id string, at time.Time) (*store.APIKey, bool, error) {
	if !validKeyID(id) {
		return nil, false, errKeyNotFound(id)
	}
	if at.IsZero() {
		at = s.now()
	}
	if err := checkTime("revoked_at", at); err != nil {
		return nil, false, err
	}
	tag := id[:tagLen]
	res, err := scriptRevokeKey.Run(ctx, s.c,
		[]string{s.apiKeyKey(id), s.keyNamesKey(tag), s.userKey(tag)}, encTime(at), id[tagLen:], encTime(s.now())).Slice()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return nil, false, errKeyNotFound(id)
		}
		return nil, false, s.wrap("revoke api key", err)
	}
	if len(res) != 3 {
		return nil, false, fmt.Errorf("redisstore: revoke api key: unexpected reply: %w", store.ErrUnavailable)
	}
	already, _ := res[0].(int64)
	kf, _ := res[1].([]any)
	of, _ := res[2].([]any)
	k, _, ok := decKeyOwner(id, fieldsOf(of, fieldsOf(kf, make([]field, 0, len(keyFields)+2))))
	if !ok {
		return nil, false, errKeyNotFound(id)
	}
	if already == 0 {
		s.publish(ctx, store.Invalidation{KeyID: id, Username: k.Username})
	}
	return k, already == 1, nil
}

// TouchAPIKeys records last-used times in one pipelined batch; unknown ids
// are ignored and a time never moves backwards.
func (s *Store) TouchAPIKeys(ctx context.Context, used map[string]time.Time) error {
	// One script call per user (the user's keys share its slot), at most
	// touchBatch keys each, all pipelined.
	byTag := map[string][]string{}
	for id, t := range used {
		if validKeyID(id) && !t.IsZero() && checkTime("last_used_at", t) == nil {
			byTag[id[:tagLen]] = append(byTag[id[:tagLen]], id)
		}
	}
	if len(byTag) == 0 {
		return nil
	}
	run := func() error {
		_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, ids := range byTag {
				for len(ids) > 0 {
					n := min(len(ids), touchBatch)
					keys, args := make([]string, n), make([]any, n)
					for i, id := range ids[:n] {
						keys[i], args[i] = s.apiKeyKey(id), encTime(used[id])
					}
					scriptTouchKeys.EvalSha(ctx, p, keys, args...)
					ids = ids[n:]
				}
			}
			return nil
		})
		return err
	}
	err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err := scriptTouchKeys.Load(ctx, s.c).Err(); err != nil {
			return s.wrap("touch api keys", err)
		}
		err = run()
	}
	return s.wrap("touch api keys", err)
}

// touchBatch bounds the keys of one touch script call (one Lua call holds
// Redis for its whole loop).
const touchBatch = 256

// PurgeAPIKeys deletes keys revoked or expired before `before`
// (store.PurgeEligible at opts.Now). It walks accounts → users → each user's
// key set (no SCAN) and deletes per user with one script on the user's slot.
func (s *Store) PurgeAPIKeys(ctx context.Context, before time.Time) (int, error) {
	now := s.now()
	tags, err := s.allUserTags(ctx, "")
	if err != nil {
		return 0, err
	}
	total := 0
	for _, tag := range tags {
		after := ""
		for {
			page, err := s.readKeyBatch(ctx, tag, after, scanBatch)
			if err != nil {
				return total, err
			}
			var keys, full []string
			var ids []any
			for _, k := range page.keys {
				if store.PurgeEligible(k, before, now) {
					keys = append(keys, s.apiKeyKey(k.ID))
					ids = append(ids, k.ID[tagLen:])
					full = append(full, k.ID)
				}
			}
			if len(keys) > 0 {
				n, err := scriptPurgeKeys.Run(ctx, s.c,
					append([]string{s.keySetKey(tag), s.keyNamesKey(tag)}, keys...), ids...).Int()
				if err != nil {
					return total, s.wrap("purge api keys", err)
				}
				total += n
				if err := s.dropKeyLimits(ctx, "", full...); err != nil {
					return total, err
				}
			}
			if page.last == "" {
				break
			}
			after = page.last
		}
	}
	return total, nil
}

// scanBatch is how many key ids one listing round trip reads.
const scanBatch = 200

// keyBatch is one batch of a user's keys read in id order.
type keyBatch struct {
	keys []*store.APIKey
	// last is the last id read, "" when the user's set is exhausted.
	last string
}

// readKeyBatch reads up to n of tag's keys with ids after `after` (a full id
// of this tag, or "" from the start): ZRANGE BYLEX over the id suffixes the
// key set holds, then the records in one pipeline (same slot).
func (s *Store) readKeyBatch(ctx context.Context, tag, after string, n int) (keyBatch, error) {
	min := "-"
	if after != "" {
		min = "(" + after[tagLen:]
	}
	sufs, err := s.c.ZRangeByLex(ctx, s.keySetKey(tag), &redis.ZRangeBy{Min: min, Max: "+", Count: int64(n)}).Result()
	if err != nil {
		return keyBatch{}, s.wrap("list api keys", err)
	}
	if len(sufs) == 0 {
		return keyBatch{}, nil
	}
	ids := make([]string, len(sufs))
	for i, suf := range sufs {
		ids[i] = tag + suf
	}
	var owner *redis.SliceCmd
	cmds := make([]*redis.SliceCmd, len(ids))
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		owner = p.HMGet(ctx, s.userKey(tag), "n", "a")
		for i, id := range ids {
			cmds[i] = p.HMGet(ctx, s.apiKeyKey(id), keyFields...)
		}
		return nil
	})
	if err != nil {
		return keyBatch{}, s.wrap("list api keys", err)
	}
	ov := owner.Val()
	b := keyBatch{keys: make([]*store.APIKey, 0, len(ids))}
	// Keys of an owner being deleted are skipped, as GetAPIKey hides them.
	var buf [len(keyFieldsArr)]field
	for i, id := range ids {
		if len(ov) != 2 || ov[0] == nil {
			break
		}
		if !validKeyID(id) {
			continue
		}
		k, ok := decKey(id, fieldsOf(cmds[i].Val(), buf[:0]))
		if !ok {
			continue
		}
		k.Username, k.Account = str(ov[0]), str(ov[1])
		b.keys = append(b.keys, k)
	}
	if len(ids) == n {
		b.last = ids[len(ids)-1]
	}
	return b, nil
}

// allUserTags returns the tags of every user of account (every account when
// "") in byte order, which is key id order.
func (s *Store) allUserTags(ctx context.Context, account string) ([]string, error) {
	var accounts []string
	if account != "" {
		accounts = []string{account}
	} else {
		var err error
		if accounts, err = s.accountNames(ctx); err != nil {
			return nil, err
		}
	}
	if len(accounts) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.StringSliceCmd, len(accounts))
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, a := range accounts {
			cmds[i] = p.HVals(ctx, s.membersKey(a))
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap("list users", err)
	}
	var tags []string
	for _, c := range cmds {
		for _, t := range c.Val() {
			if validTag(t) {
				tags = append(tags, t)
			}
		}
	}
	slices.Sort(tags)
	return slices.Compact(tags), nil
}

// ListAPIKeys lists keys matching f in id order. Ids start with the owner's
// tag, so walking the selected users in tag order and each user's key set in
// lex order yields global id order; the cursor is the last id returned.
func (s *Store) ListAPIKeys(ctx context.Context, f store.KeyFilter) (*store.KeyPage, error) {
	f, after, err := store.NormalizeKeyFilter(f)
	if err != nil {
		return nil, err
	}
	if after != "" && !validKeyID(after) {
		return nil, fmt.Errorf("redisstore: malformed cursor: %w", store.ErrInvalid)
	}
	page := &store.KeyPage{Keys: []store.APIKey{}}
	var tags []string
	switch {
	case f.Username != "":
		tag, err := s.userTag(ctx, f.Username)
		if errors.Is(err, store.ErrNotFound) {
			return page, nil
		}
		if err != nil {
			return nil, err
		}
		tags = []string{tag}
	default:
		if tags, err = s.allUserTags(ctx, f.Account); err != nil {
			return nil, err
		}
	}
	now := s.now()
	startTag := ""
	if after != "" {
		startTag = after[:tagLen]
	}
	// Collect one more than the limit to know whether a next page exists.
	for _, tag := range tags {
		if tag < startTag {
			continue
		}
		from := ""
		if tag == startTag {
			from = after
		}
		for {
			b, err := s.readKeyBatch(ctx, tag, from, scanBatch)
			if err != nil {
				return nil, err
			}
			for _, k := range b.keys {
				if !store.MatchKey(k, f, now) {
					continue
				}
				if len(page.Keys) == f.Limit {
					page.NextCursor = store.EncodeCursor(page.Keys[len(page.Keys)-1].ID)
					return page, nil
				}
				page.Keys = append(page.Keys, *k)
			}
			if b.last == "" {
				break
			}
			from = b.last
		}
	}
	return page, nil
}
