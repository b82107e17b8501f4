package redisstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
)

// logWatch is a Watch of one store, its deliveries on a channel.
type logWatch struct {
	t  *testing.T
	ch chan store.Invalidation
}

func startLogWatch(t *testing.T, s *Store) *logWatch {
	t.Helper()
	w := &logWatch{t: t, ch: make(chan store.Invalidation, 4096)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Watch(ctx, func(inv store.Invalidation) { w.ch <- inv }) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// until collects deliveries until one matches stop (returned last), failing
// after d.
func (w *logWatch) until(what string, d time.Duration, stop func(store.Invalidation) bool) []store.Invalidation {
	w.t.Helper()
	var got []store.Invalidation
	timer := time.After(d)
	for {
		select {
		case inv := <-w.ch:
			got = append(got, inv)
			if stop(inv) {
				return got
			}
		case <-timer:
			w.t.Fatalf("%s: nothing matching within %v; delivered %+v", what, d, got)
			return nil
		}
	}
}

// live publishes probes from p until w delivers one: w's subscription (and
// its log position) is live.
func (w *logWatch) live(p *Store, what string) {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		name := fmt.Sprintf("%s-%d", what, i)
		p.publish(context.Background(), store.Invalidation{Account: name})
		timer := time.After(100 * time.Millisecond)
		for {
			select {
			case inv := <-w.ch:
				if inv.Account == name {
					if inv.Pos == "" {
						w.t.Errorf("%s: live message without a log position", what)
					}
					return
				}
				continue
			case <-timer:
			}
			break
		}
	}
	w.t.Fatalf("%s: no probe delivered", what)
}

// cutFixture is a watcher store logged in as its own ACL user, whose
// subscription the test can cut (no channel permission, pub/sub connection
// killed) while its data commands and a publisher store keep working.
type cutFixture struct {
	t         *testing.T
	root      *redis.Client
	watcher   *Store
	publisher *Store
	user      string
}

// newCutFixture makes the fixture; acl are more ACL rules for the watcher's
// user (after "+@all").
func newCutFixture(t *testing.T, srv *testredis.Server, acl ...any) *cutFixture {
	t.Helper()
	ctx := context.Background()
	root := redis.NewClient(&redis.Options{Addr: srv.Addr(), DisableIdentity: true})
	t.Cleanup(func() { _ = root.Close() })
	user, pw := "gwcut"+strings.TrimSuffix(uniquePrefix(), ":"), "gwcut-test-password-0123456789" //nolint:gosec // test data, not a real credential
	mustNil(t, root.Do(ctx, append([]any{"ACL", "SETUSER", user, "reset", "on", ">" + pw, "~*", "&*", "+@all"}, acl...)...).Err())
	prefix := uniquePrefix()
	w, err := New(configs.Redis{Addrs: []string{srv.Addr()}, KeyPrefix: prefix, Username: user, Password: pw,
		Timeout: configs.Duration(faultTimeout)}, Options{})
	mustNil(t, err)
	t.Cleanup(func() { _ = w.Close() })
	p, err := New(configs.Redis{Addrs: []string{srv.Addr()}, KeyPrefix: prefix, Timeout: configs.Duration(faultTimeout)}, Options{})
	mustNil(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return &cutFixture{t: t, root: root, watcher: w, publisher: p, user: user}
}

func (f *cutFixture) subscribers() int64 {
	n, _ := f.root.PubSubNumSub(context.Background(), f.watcher.kChannel).Result()
	return n[f.watcher.kChannel]
}

// cut leaves the watcher without a subscription until restore.
func (f *cutFixture) cut() {
	f.t.Helper()
	ctx := context.Background()
	mustNil(f.t, f.root.Do(ctx, "ACL", "SETUSER", f.user, "resetchannels").Err())
	mustNil(f.t, f.root.Do(ctx, "CLIENT", "KILL", "USER", f.user, "TYPE", "pubsub").Err())
	deadline := time.Now().Add(5 * time.Second)
	for f.subscribers() != 0 {
		if time.Now().After(deadline) {
			f.t.Fatal("the watcher is still subscribed after the cut")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *cutFixture) restore() {
	f.t.Helper()
	mustNil(f.t, f.root.Do(context.Background(), "ACL", "SETUSER", f.user, "allchannels").Err())
}

// TestWatchReplaysMissedInvalidations (issue 13 item 5): invalidations
// published while a subscription was down are delivered from the log once it
// is back, in order, before Revalidate; nothing is flushed. When the log no
// longer reaches back to the watcher's position (trimmed, or lost as in a
// restart without persistence), a Flush is delivered instead, and the
// watcher continues from a new position: the next cut is replayed again.
func TestWatchReplaysMissedInvalidations(t *testing.T) {
	missed := []store.Invalidation{
		{KeyID: "K1", Username: "alice"},
		{Username: "bob"},
		{Account: "acme"},
	}
	cases := []struct {
		name string
		// damage is done to the log while the watcher is cut off.
		damage    func(f *cutFixture)
		wantFlush bool
	}{
		{"log intact: replayed", nil, false},
		{"log trimmed past the position: flush", func(f *cutFixture) {
			mustNil(t, f.root.XTrimMaxLen(context.Background(), f.watcher.kInvLog, 0).Err())
		}, true},
		{"log lost: flush", func(f *cutFixture) {
			mustNil(t, f.root.Del(context.Background(), f.watcher.kInvLog).Err())
		}, true},
	}
	srv := testredis.Start(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newCutFixture(t, srv)
			w := startLogWatch(t, f.watcher)
			w.live(f.publisher, "before")

			for round := range 2 {
				f.cut()
				f.publisher.publish(context.Background(), missed...)
				if tc.damage != nil && round == 0 {
					tc.damage(f)
				}
				f.restore()
				got := w.until(fmt.Sprintf("round %d", round), 10*time.Second, func(inv store.Invalidation) bool {
					return inv.Revalidate || inv.Flush
				})
				end := got[len(got)-1]
				if wantFlush := tc.wantFlush && round == 0; end.Flush != wantFlush {
					t.Fatalf("round %d: ended with %+v, want Flush=%v (delivered %+v)", round, end, wantFlush, got)
				}
				if end.Flush {
					w.live(f.publisher, "after the flush")
					continue
				}
				// Replayed: exactly the missed ones, in order, each with its
				// log position, increasing.
				replayed := got[:len(got)-1]
				if len(replayed) != len(missed) {
					t.Fatalf("round %d: replayed %+v, want %+v", round, replayed, missed)
				}
				var prev logPos
				for i, inv := range replayed {
					p, ok := parseLogPos(inv.Pos)
					if !ok || !prev.less(p) {
						t.Errorf("round %d: position %q after %v", round, inv.Pos, prev)
					}
					prev = p
					inv.Pos = ""
					if inv != missed[i] {
						t.Errorf("round %d: replayed #%d = %+v, want %+v", round, i, inv, missed[i])
					}
				}
				w.live(f.publisher, fmt.Sprintf("after round %d", round))
			}
		})
	}
}

// A watcher that cannot read the log's tail (here its ACL refuses scripts)
// takes its position from the first message it receives, and replays from
// there after a cut instead of flushing.
func TestWatchAdoptsPositionFromMessages(t *testing.T) {
	srv := testredis.Start(t)
	f := newCutFixture(t, srv, "-evalsha", "-eval")
	w := startLogWatch(t, f.watcher)
	w.live(f.publisher, "before")
	f.cut()
	f.publisher.publish(context.Background(), store.Invalidation{Username: "bob"})
	f.restore()
	got := w.until("after the cut", 10*time.Second, func(inv store.Invalidation) bool { return inv.Revalidate || inv.Flush })
	if len(got) != 2 || got[0].Username != "bob" || !got[1].Revalidate {
		t.Fatalf("delivered %+v, want bob's invalidation then Revalidate", got)
	}
}

// Redis refusing the log for good (an ACL without its key) does not stop
// invalidations: they are published without a position.
func TestPublishWithoutLog(t *testing.T) {
	srv := testredis.Start(t)
	ctx := context.Background()
	root := redis.NewClient(&redis.Options{Addr: srv.Addr(), DisableIdentity: true})
	t.Cleanup(func() { _ = root.Close() })
	const user, pw = "nolog", "nolog-test-password-0123456789"
	// Keys with a hash tag only: the records, not <prefix>invlog.
	mustNil(t, root.Do(ctx, "ACL", "SETUSER", user, "on", ">"+pw, "~*{*", "&*", "+@all").Err())
	prefix := uniquePrefix()
	p, err := New(configs.Redis{Addrs: []string{srv.Addr()}, KeyPrefix: prefix, Username: user, Password: pw,
		Timeout: configs.Duration(faultTimeout)}, Options{})
	mustNil(t, err)
	t.Cleanup(func() { _ = p.Close() })
	w, err := New(configs.Redis{Addrs: []string{srv.Addr()}, KeyPrefix: prefix, Timeout: configs.Duration(faultTimeout)}, Options{})
	mustNil(t, err)
	t.Cleanup(func() { _ = w.Close() })
	lw := startLogWatch(t, w)
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		name := fmt.Sprint("nolog-", i)
		p.publish(ctx, store.Invalidation{Username: name})
		select {
		case inv := <-lw.ch:
			if inv.Username != name || inv.Pos != "" {
				t.Fatalf("delivered %+v, want %s without a position", inv, name)
			}
			if n, _ := root.XLen(ctx, w.kInvLog).Result(); n > 1 { // at most the watcher's start marker
				t.Fatalf("the log holds %d entries although its writer may not write it", n)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing delivered")
		}
	}
}

// TestWatchRestartRevalidates (issue 13 item 5): a Redis restart that keeps
// its data (AOF) does not flush: the subscription comes back, nothing was
// missed, Revalidate is delivered. The same restart without persistence
// loses the log, so a Flush is delivered (nothing can prove that no
// invalidation was lost).
func TestWatchRestartRevalidates(t *testing.T) {
	cases := []struct {
		name      string
		args      []string
		wantFlush bool
	}{
		{"aof", []string{"--appendonly", "yes", "--appendfsync", "always"}, false},
		{"no persistence", nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := testredis.Start(t, tc.args...)
			s := newTestStore(t, []string{srv.Addr()}, nil, faultTimeout)
			w := startLogWatch(t, s)
			w.live(s, "before")
			srv.Stop()
			time.Sleep(300 * time.Millisecond) // the watcher notices and retries
			srv.Restart()
			got := w.until("after the restart", 15*time.Second, func(inv store.Invalidation) bool {
				return inv.Revalidate || inv.Flush
			})
			if end := got[len(got)-1]; end.Flush != tc.wantFlush {
				t.Fatalf("delivered %+v, want Flush=%v", got, tc.wantFlush)
			}
			w.live(s, "after")
		})
	}
}

// The log stays bounded: MAXLEN ~ trims it as invalidations are appended.
func TestInvalidationLogBounded(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, []string{srv.Addr()}, nil, 0)
	ctx := context.Background()
	batch := make([]store.Invalidation, 1000)
	for i := range batch {
		batch[i] = store.Invalidation{Username: fmt.Sprint("u", i)}
	}
	for range 3 * InvalidationLogLen / len(batch) {
		s.publish(ctx, batch...)
	}
	n, err := s.c.XLen(ctx, s.kInvLog).Result()
	mustNil(t, err)
	if n < InvalidationLogLen || n > InvalidationLogLen+InvalidationLogLen/5 {
		t.Fatalf("log holds %d entries, want about %d", n, InvalidationLogLen)
	}
}

func TestParseLogPos(t *testing.T) {
	cases := []struct {
		in   string
		want logPos
		ok   bool
	}{
		{"1733460000000-0", logPos{1733460000000, 0}, true},
		{"0-1", logPos{0, 1}, true},
		{"18446744073709551615-18446744073709551615", logPos{1<<64 - 1, 1<<64 - 1}, true},
		{"", logPos{}, false},
		{"-", logPos{}, false},
		{"5", logPos{}, false},
		{"5-", logPos{}, false},
		{"-5", logPos{}, false},
		{"5-*", logPos{}, false},
		{"+5-1", logPos{}, false},
		{"5-+1", logPos{}, false},
		{"5-1-2", logPos{}, false},
		{"18446744073709551616-0", logPos{}, false},
		{" 5-1", logPos{}, false},
	}
	for _, tc := range cases {
		got, ok := parseLogPos(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseLogPos(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if ok && got.String() != tc.in {
			t.Errorf("parseLogPos(%q).String() = %q", tc.in, got.String())
		}
	}
	if !(logPos{1, 9}).less(logPos{2, 0}) || !(logPos{2, 0}).less(logPos{2, 1}) || (logPos{2, 1}).less(logPos{2, 1}) {
		t.Error("less does not order positions by ms, then seq")
	}
}

func FuzzParseLogPos(f *testing.F) {
	for _, s := range []string{"1-0", "1733460000000-12", "", "-", "+1-1", "1-1-1", "99999999999999999999-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := parseLogPos(s)
		if !ok {
			if p != (logPos{}) {
				t.Fatalf("parseLogPos(%q) failed but returned %v", s, p)
			}
			return
		}
		// A position prints back to a form that parses to itself.
		q, ok := parseLogPos(p.String())
		if !ok || q != p {
			t.Fatalf("parseLogPos(%q) = %v, which prints %q and parses to %v, %v", s, p, p.String(), q, ok)
		}
	})
}
