package redisstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
)

// TestClusterSpread checks on a real 3-master cluster that users' records
// spread over the nodes (by their tags), that every record of a user sits on
// the user's slot, and that the one-round-trip fetch, revocation, listing and
// deletion work for users on every node.
func TestClusterSpread(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster in -short mode")
	}
	c := testredis.StartCluster(t, 3)
	s := newTestStore(t, c.Addrs(), nil, time.Second)
	cc, ok := s.c.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("several addrs gave a %T, want *redis.ClusterClient", s.c)
	}
	ctx := context.Background()
	mustNil(t, s.CreateAccount(ctx, &store.Account{Name: "acme"}))
	owners := map[string]string{} // node addr → a username on it
	keys := map[string]*store.APIKey{}
	for i := 0; i < 30; i++ {
		name := fmt.Sprintf("user%02d", i)
		mustNil(t, s.CreateUser(ctx, &store.User{Username: name, Account: "acme", Roles: []string{"r"}}))
		k := &store.APIKey{Username: name, Name: "ci", Hash: []byte("h-" + name)}
		mustNil(t, s.CreateAPIKey(ctx, k))
		keys[name] = k
		tag := k.ID[:tagLen]
		node, err := cc.MasterForKey(ctx, s.userKey(tag))
		mustNil(t, err)
		owners[node.Options().Addr] = name
		// Every record of the user hashes to the user's slot.
		want := redisSlot(t, cc, s.userKey(tag))
		for _, key := range []string{s.apiKeyKey(k.ID), s.keySetKey(tag), s.keyNamesKey(tag)} {
			if got := redisSlot(t, cc, key); got != want {
				t.Errorf("%s on slot %d, user on %d", key, got, want)
			}
		}
	}
	if len(owners) < 3 {
		t.Fatalf("30 users landed on %d nodes, want all 3", len(owners))
	}
	for node, name := range owners {
		k := keys[name]
		gk, gu, err := s.LookupAPIKey(ctx, k.ID)
		if err != nil || gu.Username != name || string(gk.Hash) != "h-"+name {
			t.Errorf("node %s: LookupAPIKey = %+v, %+v, %v", node, gk, gu, err)
		}
		if _, already, err := s.RevokeAPIKey(ctx, k.ID, time.Now()); err != nil || already {
			t.Errorf("node %s: RevokeAPIKey = %v, %v", node, already, err)
		}
		mustNil(t, s.TouchAPIKeys(ctx, map[string]time.Time{keys[name].ID: time.Now()}))
	}
	page, err := s.ListAPIKeys(ctx, store.KeyFilter{Status: store.StatusAll, Limit: 1000})
	if err != nil || len(page.Keys) != 30 {
		t.Fatalf("ListAPIKeys = %d keys, %v; want 30", len(page.Keys), err)
	}
	for i := 1; i < len(page.Keys); i++ {
		if page.Keys[i-1].ID >= page.Keys[i].ID {
			t.Fatalf("ListAPIKeys not in id order at %d", i)
		}
	}
	mustNil(t, s.Ping(ctx))
	mustNil(t, s.DeleteAccount(ctx, "acme"))
	for name, k := range keys {
		if _, err := s.GetAPIKey(ctx, k.ID); err == nil {
			t.Errorf("key of %s survived DeleteAccount", name)
		}
	}
}

func redisSlot(t *testing.T, cc *redis.ClusterClient, key string) int64 {
	t.Helper()
	n, err := cc.ClusterKeySlot(context.Background(), key).Result()
	mustNil(t, err)
	return n
}
