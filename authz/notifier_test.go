package authz_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/plugin"
)

var fastRetry = authz.NotifierOptions{
	BackoffMin: 2 * time.Millisecond,
	BackoffMax: 20 * time.Millisecond,
	Idle:       50 * time.Millisecond,
}

func newNotifier(t *testing.T, endpoint, secret string, out authz.Outbox, opts authz.NotifierOptions) *authz.Notifier {
	t.Helper()
	n, err := authz.NewNotifier(externalCfg(endpoint, secret, time.Second, 0), out, opts)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// runNotifier runs n until the returned stop is called (or the test ends).
func runNotifier(t *testing.T, n *authz.Notifier) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func pending(t *testing.T, o authz.Outbox) []authz.Notification {
	t.Helper()
	ns, err := o.Next(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// byName returns "op kind name" of the events about name, in arrival order,
// dropping redeliveries of the same notification id.
func byName(events []plugin.Event, kind, name string) []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range events {
		if e.Kind != kind || e.Name != name || (e.ID != "" && seen[e.ID]) {
			continue
		}
		seen[e.ID] = true
		out = append(out, e.Op)
	}
	return out
}

// TestNotifierPluginDownThenUp: while the plugin is down notifications pile
// up durably (surviving a restart of keygate), and once it is up they are
// all delivered, in order per name.
func TestNotifierPluginDownThenUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	endpoint, addr := closedEndpoint(t)
	path := filepath.Join(t.TempDir(), "outbox.db")

	// 1. Plugin down.
	o := openOutbox(t, path)
	n := newNotifier(t, endpoint, testSecret, o, fastRetry)
	stop := runNotifier(t, n)
	steps := []struct{ op, kind, name string }{
		{authz.OpCreate, authz.KindDomain, "acme"},
		{authz.OpCreate, authz.KindPrincipal, "alice"},
		{authz.OpDelete, authz.KindPrincipal, "alice"},
		{authz.OpCreate, authz.KindPrincipal, "alice"},
		{authz.OpDelete, authz.KindDomain, "never-created"}, // 404: delivered
		{authz.OpCreate, authz.KindPrincipal, "b/ob é"},     // escaped in the path
	}
	for _, s := range steps {
		if err := n.Notify(ctx, s.op, s.kind, s.name); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "failed attempts recorded", func() bool {
		p := pending(t, o)
		return len(p) == len(steps) && p[0].Attempts >= 2
	})
	stop()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	// 2. keygate restarts: the queue is still there.
	o = openOutbox(t, path)
	defer func() { _ = o.Close() }()
	if p := pending(t, o); len(p) != len(steps) || p[0].Attempts < 2 || p[0].NotBefore.IsZero() {
		t.Fatalf("after reopen: %+v", p)
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
	reg := prometheus.NewPedanticRegistry()
	opts := fastRetry
	opts.Registerer = reg
	runNotifier(t, newNotifier(t, endpoint, testSecret, o, opts))
	eventually(t, "outbox drained", func() bool { return len(pending(t, o)) == 0 })

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
	for _, e := range ev {
		if e.ID == "" {
			t.Errorf("event without a notification id: %+v", e)
		}
	}
	// The last acknowledgement can land just before its counter moves.
	eventually(t, "6 deliveries counted", func() bool {
		return strings.Contains(exposition(t, reg), `keygate_authz_notifications_total{result="delivered"} 6`)
	})
}

// memOutbox is an Outbox without Rescheduler (retry state in the Notifier).
type memOutbox struct {
	mu  sync.Mutex
	seq int
	ns  []authz.Notification
}

func (m *memOutbox) Enqueue(_ context.Context, n authz.Notification) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	n.ID = strings.Repeat("0", 5) + string(rune('a'+m.seq)) //nolint:gosec // bounded by the test's own values
	m.ns = append(m.ns, n)
	return nil
}

func (m *memOutbox) Next(_ context.Context, limit int) ([]authz.Notification, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.ns[:min(limit, len(m.ns))]), nil
}

func (m *memOutbox) Ack(_ context.Context, ids ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ns = slices.DeleteFunc(m.ns, func(n authz.Notification) bool { return slices.Contains(ids, n.ID) })
	return nil
}

// TestNotifierRetriesPerName: a name the plugin keeps rejecting is retried
// with backoff without holding up other names, and its later notifications
// wait for the earlier ones.
func TestNotifierRetriesPerName(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	failX := 3
	endpoint := startHandler(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		defer mu.Unlock()
		line := string(ctx.Method()) + " " + string(ctx.RequestURI())
		if strings.HasSuffix(line, "/x") && failX > 0 {
			failX--
			ctx.SetStatusCode(500)
			return
		}
		got = append(got, line)
		ctx.SetStatusCode(204)
	})
	out := &memOutbox{}
	reg := prometheus.NewPedanticRegistry()
	opts := fastRetry
	opts.Registerer = reg
	n := newNotifier(t, endpoint+"/base/", "", out, opts)
	ctx := context.Background()
	for _, s := range []struct{ op, name string }{
		{authz.OpCreate, "x"}, {authz.OpCreate, "y"}, {authz.OpDelete, "x"}, {authz.OpDelete, "y"},
	} {
		if err := n.Notify(ctx, s.op, authz.KindPrincipal, s.name); err != nil {
			t.Fatal(err)
		}
	}
	runNotifier(t, n)
	eventually(t, "all delivered", func() bool { return len(pending(t, out)) == 0 })
	mu.Lock()
	defer mu.Unlock()
	want := map[string][]string{
		"x": {"POST /base/v1/principals/x", "DELETE /base/v1/principals/x"},
		"y": {"POST /base/v1/principals/y", "DELETE /base/v1/principals/y"},
	}
	for name, w := range want {
		var seq []string
		for _, l := range got {
			if strings.HasSuffix(l, "/"+name) {
				seq = append(seq, l)
			}
		}
		if !slices.Equal(seq, w) {
			t.Errorf("%s: %v, want %v", name, seq, w)
		}
	}
	// y was not held up by x's failures.
	if !strings.HasSuffix(got[0], "/y") {
		t.Errorf("first delivery = %q, want y's", got[0])
	}
	if text := exposition(t, reg); !strings.Contains(text, `keygate_authz_notifications_total{result="retry"} 3`) {
		t.Errorf("metrics:\n%s", text)
	}
}

// TestNotifierWrongSecret: a plugin that rejects the signature never gets an
// acknowledged notification; it stays queued and is retried.
func TestNotifierWrongSecret(t *testing.T) {
	t.Parallel()
	srv, endpoint := startPlugin(t, testRules, testSecret)
	out := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"))
	defer func() { _ = out.Close() }()
	n := newNotifier(t, endpoint, "wrong-secret-wrong-secret-wrong!", out, fastRetry)
	if err := n.Notify(context.Background(), authz.OpCreate, authz.KindPrincipal, "alice"); err != nil {
		t.Fatal(err)
	}
	stop := runNotifier(t, n)
	eventually(t, "rejected attempts", func() bool {
		p := pending(t, out)
		return len(p) == 1 && p[0].Attempts >= 3
	})
	stop()
	if len(srv.Events()) != 0 {
		t.Fatalf("the plugin accepted a badly signed notification: %v", srv.Events())
	}
	if err := n.Notify(context.Background(), "rename", authz.KindPrincipal, "a"); !errors.Is(err, authz.ErrInvalidNotification) {
		t.Fatalf("Notify with a bad op = %v", err)
	}
}
