package authz_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/plugin"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
	"github.com/keygate/keygate/store/redisstore"
)

// storeKind opens a store for the outbox tests; reopen closes and opens it
// again on the same data (a restart of keygate), or is nil when the store
// is shared and outlives keygate (Redis).
type storeKind struct {
	name string
	open func(t *testing.T) (s store.Outbox, reopen func() store.Outbox)
}

func outboxStores() []storeKind {
	return []storeKind{
		{"bolt", func(t *testing.T) (store.Outbox, func() store.Outbox) {
			path := filepath.Join(t.TempDir(), "kg.db")
			open := func() *boltstore.Store {
				s, err := boltstore.Open(path, boltstore.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = s.Close() })
				return s
			}
			s := open()
			return s, func() store.Outbox {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				s = open()
				return s
			}
		}},
		{"redis", func(t *testing.T) (store.Outbox, func() store.Outbox) {
			srv := testredis.Start(t)
			s, err := redisstore.New(configs.Redis{Addrs: []string{srv.Addr()}}, redisstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s, nil
		}},
	}
}

// queued reads the store's queue without claiming anything.
func queued(t *testing.T, s store.Outbox) []store.OutboxEntry {
	t.Helper()
	es, err := s.NextOutbox(context.Background(), store.OutboxClaim{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// TestStoreOutboxPluginDownThenUp: with the queue in the store, notifications
// pile up while the plugin is down (surviving a restart of keygate on bolt),
// and once it is back they are all delivered, in order per name.
func TestStoreOutboxPluginDownThenUp(t *testing.T) {
	t.Parallel()
	for _, sk := range outboxStores() {
		t.Run(sk.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			endpoint, addr := closedEndpoint(t)
			s, reopen := sk.open(t)

			// 1. Plugin down.
			out := authz.NewStoreOutbox(s)
			if _, ok := out.(authz.Rescheduler); !ok {
				t.Fatal("the store outbox does not persist retry state")
			}
			n := newNotifier(t, endpoint, testSecret, out, fastRetry)
			stop := runNotifier(t, n)
			steps := []struct{ op, kind, name string }{
				{authz.OpCreate, authz.KindDomain, "acme"},
				{authz.OpCreate, authz.KindPrincipal, "alice"},
				{authz.OpDelete, authz.KindPrincipal, "alice"},
				{authz.OpCreate, authz.KindPrincipal, "alice"},
				{authz.OpDelete, authz.KindDomain, "never-created"}, // 404: delivered
				{authz.OpCreate, authz.KindPrincipal, "b/ob é"},     // escaped in the path
			}
			for _, st := range steps {
				if err := n.Notify(ctx, st.op, st.kind, st.name); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, "failed attempts recorded", func() bool {
				p := queued(t, s)
				return len(p) == len(steps) && p[0].Attempts >= 2
			})
			stop()

			// 2. keygate restarts (bolt) or keeps running (Redis): the
			// queue is still there, with its retry state.
			if reopen != nil {
				s = reopen()
				out = authz.NewStoreOutbox(s)
			}
			if p := queued(t, s); len(p) != len(steps) || p[0].Attempts < 2 || p[0].NotBefore.IsZero() {
				t.Fatalf("queue: %+v", p)
			}

			// 3. The plugin comes back on the same address.
			r, err := plugin.ParseRules([]byte(testRules))
			if err != nil {
				t.Fatal(err)
			}
			srv := plugin.New(r, testSecret, nil)
			var ln net.Listener
			eventually(t, "listening on "+addr, func() bool {
				ln, err = net.Listen("tcp", addr)
				return err == nil
			})
			servePlugin(t, srv, ln)
			runNotifier(t, newNotifier(t, endpoint, testSecret, out, fastRetry))
			eventually(t, "queue drained", func() bool { return len(queued(t, s)) == 0 })

			ev := srv.Events()
			for _, c := range []struct {
				kind, name string
				want       []string
			}{
				{authz.KindDomain, "acme", []string{"create"}},
				{authz.KindPrincipal, "alice", []string{"create", "delete", "create"}},
				{authz.KindDomain, "never-created", []string{"delete"}},
				{authz.KindPrincipal, "b/ob é", []string{"create"}},
			} {
				if got := byName(ev, c.kind, c.name); !slices.Equal(got, c.want) {
					t.Errorf("%s %q: got %v, want %v (all: %+v)", c.kind, c.name, got, c.want, ev)
				}
			}
		})
	}
}

// TestStoreOutboxSharedByInstances: several gateway instances on one store
// share one queue: whichever enqueued a notification, they deliver every one
// of them, in enqueue order per name. (An instance that stops leaves its
// claims to lapse: the store suite's Lease test covers the takeover.)
func TestStoreOutboxSharedByInstances(t *testing.T) {
	t.Parallel()
	for _, sk := range outboxStores() {
		t.Run(sk.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv, endpoint := startPlugin(t, testRules, testSecret)
			s, _ := sk.open(t)
			const instances = 3
			var ns []*authz.Notifier
			for range instances {
				n := newNotifier(t, endpoint, testSecret, authz.NewStoreOutbox(s), fastRetry)
				ns = append(ns, n)
				runNotifier(t, n)
			}
			want := map[string][]string{}
			for i := range 60 {
				name := fmt.Sprintf("user%d", i%7)
				op := authz.OpCreate
				if len(want[name])%2 == 1 {
					op = authz.OpDelete
				}
				want[name] = append(want[name], op)
				if err := ns[i%instances].Notify(ctx, op, authz.KindPrincipal, name); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, "queue drained", func() bool { return len(queued(t, s)) == 0 })
			ev := srv.Events()
			for name, w := range want {
				if got := byName(ev, authz.KindPrincipal, name); !slices.Equal(got, w) {
					t.Errorf("%s: got %v, want %v", name, got, w)
				}
			}
		})
	}
}

// TestStoreOutboxInvalid: the adapter validates like every Outbox.
func TestStoreOutboxInvalid(t *testing.T) {
	t.Parallel()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "kg.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	out := authz.NewStoreOutbox(s)
	ctx := context.Background()
	for _, bad := range []authz.Notification{
		{Op: "update", Kind: authz.KindPrincipal, Name: "a"},
		{Op: authz.OpCreate, Kind: "role", Name: "a"},
		{Op: authz.OpCreate, Kind: authz.KindDomain, Name: ""},
	} {
		if err := out.Enqueue(ctx, bad); err == nil {
			t.Errorf("Enqueue(%+v) succeeded", bad)
		}
	}
	nb := time.Now().Add(time.Hour).UTC()
	if err := out.Enqueue(ctx, authz.Notification{Op: authz.OpCreate, Kind: authz.KindDomain, Name: "d", Attempts: 2, NotBefore: nb}); err != nil {
		t.Fatal(err)
	}
	got, err := out.Next(ctx, 10)
	if err != nil || len(got) != 1 || got[0].ID == "" || got[0].Attempts != 2 || !got[0].NotBefore.Equal(nb) {
		t.Fatalf("Next = %+v, %v", got, err)
	}
	if got, err := out.Next(ctx, 0); err != nil || len(got) != 0 {
		t.Fatalf("Next(0) = %+v, %v", got, err)
	}
}
