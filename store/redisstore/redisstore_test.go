package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// prefixSeq makes a unique key prefix per store, so subtests sharing one
// redis-server never see each other's records (and prefixing is tested).
var prefixSeq atomic.Int64

func uniquePrefix() string { return fmt.Sprintf("t%d:", prefixSeq.Add(1)) }

// newTestStore opens a store on addrs with a unique prefix, closed at cleanup.
func newTestStore(t testing.TB, addrs []string, now func() time.Time, timeout time.Duration) *Store {
	t.Helper()
	s, err := New(configs.Redis{Addrs: addrs, KeyPrefix: uniquePrefix(), Timeout: configs.Duration(timeout)}, Options{Now: now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	srv := testredis.Start(t)
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Driver {
		return newTestStore(t, []string{srv.Addr()}, now, 0)
	})
}

func TestConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster in -short mode")
	}
	c := testredis.StartCluster(t, 3)
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Driver {
		return newTestStore(t, c.Addrs(), now, 0)
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  configs.Redis
	}{
		{"no addrs", configs.Redis{}},
		{"empty addr", configs.Redis{Addrs: []string{" "}}},
		{"brace prefix", configs.Redis{Addrs: []string{"127.0.0.1:1"}, KeyPrefix: "{kg}:"}},
		{"negative db", configs.Redis{Addrs: []string{"127.0.0.1:1"}, DB: -1}},
		{"db on a cluster", configs.Redis{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, DB: 1}},
		{"negative pool", configs.Redis{Addrs: []string{"127.0.0.1:1"}, PoolSize: -1}},
		{"negative timeout", configs.Redis{Addrs: []string{"127.0.0.1:1"}, Timeout: configs.Duration(-time.Second)}},
	}
	for _, tc := range tests {
		if _, err := New(tc.cfg, Options{}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: New = %v, want ErrInvalid", tc.name, err)
		}
	}
}

// TestKeyLayout checks the records' placement: every record of a user and
// their keys shares the user's hash tag, the directory uses {a}, and nothing
// lands outside the prefix.
func TestKeyLayout(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, []string{srv.Addr()}, nil, 0)
	ctx := context.Background()
	mustNil(t, s.CreateAccount(ctx, &store.Account{Name: "acme"}))
	mustNil(t, s.CreateUser(ctx, &store.User{Username: "alice", Account: "acme", PasswordHash: "pw"}))
	k := &store.APIKey{Username: "alice", Name: "ci", Hash: []byte("h")}
	mustNil(t, s.CreateAPIKey(ctx, k))
	keys, err := s.c.Keys(ctx, "*").Result()
	mustNil(t, err)
	tag := k.ID[:tagLen]
	for _, key := range keys {
		if !strings.HasPrefix(key, s.prefix) {
			t.Errorf("key %q outside prefix %q", key, s.prefix)
		}
		rest := key[len(s.prefix):]
		if !strings.HasPrefix(rest, "{a}") && !strings.HasPrefix(rest, "{"+tag+"}") {
			t.Errorf("key %q has neither the directory nor the user tag", key)
		}
	}
	if len(keys) != 8 { // acct, accts, members, un, user, key, keyset, keynames
		t.Errorf("%d keys stored, want 8: %q", len(keys), keys)
	}
}

func mustNil(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// countHook counts commands and pipelines sent to Redis.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestOneRoundTrip checks the API key fetches cost one round trip each (once
// the script is cached by Redis), on a single node and on a cluster.
func TestOneRoundTrip(t *testing.T) {
	srv := testredis.Start(t)
	addrs := map[string][]string{"single": {srv.Addr()}}
	if !testing.Short() {
		addrs["cluster"] = testredis.StartCluster(t, 3).Addrs()
	}
	for name, a := range addrs {
		t.Run(name, func(t *testing.T) {
			s := newTestStore(t, a, nil, 0)
			ctx := context.Background()
			mustNil(t, s.CreateAccount(ctx, &store.Account{Name: "acme"}))
			mustNil(t, s.CreateUser(ctx, &store.User{Username: "alice", Account: "acme"}))
			k := &store.APIKey{Username: "alice", Name: "ci", Hash: []byte("h")}
			mustNil(t, s.CreateAPIKey(ctx, k))
			// Warm up: the first EVALSHA of a script may meet NOSCRIPT.
			_, _ = s.GetAPIKey(ctx, k.ID)
			_, _, _ = s.LookupAPIKey(ctx, k.ID)
			h := &countHook{}
			s.c.AddHook(h)
			for _, op := range []struct {
				name string
				fn   func() error
			}{
				{"GetAPIKey", func() error { _, err := s.GetAPIKey(ctx, k.ID); return err }},
				{"LookupAPIKey", func() error { _, _, err := s.LookupAPIKey(ctx, k.ID); return err }},
				{"LookupAPIKey unknown", func() error {
					_, _, err := s.LookupAPIKey(ctx, k.ID[:tagLen]+"000000000000")
					if errors.Is(err, store.ErrNotFound) {
						return nil
					}
					return err
				}},
			} {
				h.n.Store(0)
				mustNil(t, op.fn())
				if n := h.n.Load(); n != 1 {
					t.Errorf("%s: %d round trips, want 1", op.name, n)
				}
			}
		})
	}
}
