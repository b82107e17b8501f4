package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/keygate/keygate/store"
)

// scripted delivers invs to Watch's fn synchronously, then returns
// errLost (a lost subscription).
type scripted struct {
	store.Store
	invs []store.Invalidation
	log  *[]string
}

var errLost = errors.New("subscription lost")

func (s scripted) Watch(_ context.Context, fn func(store.Invalidation)) error {
	*s.log = append(*s.log, "subscribed")
	for _, inv := range s.invs {
		fn(inv)
	}
	return errLost
}

func recorder(log *[]string, name string, reset bool) store.Subscriber {
	sub := store.Subscriber{Name: name, Apply: func(inv store.Invalidation) {
		*log = append(*log, fmt.Sprintf("%s %s", name, inv.Username))
	}}
	if reset {
		sub.Reset = func() { *log = append(*log, name+" reset") }
	}
	return sub
}

// TestWatchThrough: every invalidation reaches the subscribers in their
// order and then the caller's fn; subscribers with a Reset are reset when
// the subscription starts and when it ends; the store's error comes back.
func TestWatchThrough(t *testing.T) {
	invs := []store.Invalidation{{Username: "alice"}, {Username: "bob"}}
	tests := []struct {
		name string
		subs func(log *[]string) []store.Subscriber
		want []string
	}{
		{"none", func(*[]string) []store.Subscriber { return nil },
			[]string{"subscribed", "fn alice", "fn bob"}},
		{"one with reset", func(l *[]string) []store.Subscriber {
			return []store.Subscriber{recorder(l, "states", true)}
		}, []string{"states reset", "subscribed", "states alice", "fn alice", "states bob", "fn bob", "states reset"}},
		{"ordered", func(l *[]string) []store.Subscriber {
			return []store.Subscriber{recorder(l, "states", true), recorder(l, "decisions", false)}
		}, []string{"states reset", "subscribed",
			"states alice", "decisions alice", "fn alice",
			"states bob", "decisions bob", "fn bob", "states reset"}},
		{"order kept as given", func(l *[]string) []store.Subscriber {
			return []store.Subscriber{recorder(l, "b", false), recorder(l, "a", true)}
		}, []string{"a reset", "subscribed", "b alice", "a alice", "fn alice", "b bob", "a bob", "fn bob", "a reset"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var log []string
			s := store.WatchThrough(scripted{invs: invs, log: &log}, tc.subs(&log)...)
			err := s.Watch(context.Background(), func(inv store.Invalidation) {
				log = append(log, "fn "+inv.Username)
			})
			if !errors.Is(err, errLost) {
				t.Errorf("Watch = %v, want the store's %v", err, errLost)
			}
			if !slices.Equal(log, tc.want) {
				t.Errorf("events:\n got  %q\n want %q", log, tc.want)
			}
		})
	}
}

// TestWatchThroughKeepsStore: with no subscriber the store is returned as
// it is; with some, every method but Watch is the store's.
func TestWatchThroughKeepsStore(t *testing.T) {
	s, _ := newBolt(t)
	if got := store.WatchThrough(s); got != store.Store(s) {
		t.Errorf("WatchThrough(s) with no subscriber = %T, want s", got)
	}
	w := store.WatchThrough(s, store.Subscriber{Name: "x", Apply: func(store.Invalidation) {}})
	ctx := context.Background()
	if err := w.CreateAccount(ctx, &store.Account{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccount(ctx, "acme"); err != nil {
		t.Errorf("the account created through the wrapper is not in the store: %v", err)
	}
}
