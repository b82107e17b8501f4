package redisstore

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
)

// A SUBSCRIBE the server refuses (here: an ACL user without the channel)
// leaves a connection that still answers PING. Watch must keep trying on new
// connections, and once the permission is back, subscribe, flush and deliver.
func TestWatchResubscribesAfterRefusal(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	root := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = root.Close() })
	const user, pw = "gw", "gw-test-password-0123456789"
	if err := root.Do(ctx, "ACL", "SETUSER", user, "on", ">"+pw, "~*", "+@all", "resetchannels").Err(); err != nil {
		t.Fatal(err)
	}
	s, err := New(configs.Redis{Addrs: []string{srv.Addr()}, KeyPrefix: "kgacl:", Username: user, Password: pw,
		Timeout: configs.Duration(300 * time.Millisecond)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	got := make(chan store.Invalidation, 16)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Watch(wctx, func(inv store.Invalidation) { got <- inv }) }()
	t.Cleanup(func() { cancel(); <-done })

	// Refused: nothing can arrive.
	time.Sleep(1500 * time.Millisecond)
	if n, _ := root.PubSubNumSub(ctx, "kgacl:invalidate").Result(); n["kgacl:invalidate"] != 0 {
		t.Fatalf("subscribed although the ACL refuses the channel: %v", n)
	}
	// The permission comes back: Watch subscribes again by itself.
	if err := root.Do(ctx, "ACL", "SETUSER", user, "allchannels").Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := root.PubSubNumSub(ctx, "kgacl:invalidate").Result()
		if n["kgacl:invalidate"] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Watch did not subscribe again within 10s of the permission coming back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	msg, _ := json.Marshal(store.Invalidation{Username: "alice"})
	if err := root.Publish(ctx, "kgacl:invalidate", msg).Err(); err != nil {
		t.Fatal(err)
	}
	sawFlush := false
	timeout := time.After(5 * time.Second)
	for {
		select {
		case inv := <-got:
			if inv.Flush {
				sawFlush = true
			}
			if inv.Username == "alice" {
				if !sawFlush {
					t.Error("no Flush before the first delivery after the subscription came back")
				}
				return
			}
		case <-timeout:
			t.Fatal("the invalidation was not delivered after resubscribing")
		}
	}
}
