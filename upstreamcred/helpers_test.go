package upstreamcred

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
)

func testKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func testKeyring(t testing.TB, cur, prev []byte) *Keyring {
	t.Helper()
	k, err := NewKeyring(cur, prev)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fixture is a bolt store with accounts admin, acme and beta, and a
// Manager on it whose invalidations come from the store's Watch.
type fixture struct {
	t    testing.TB
	path string
	st   *boltstore.Store
	m    *Manager
	reg  *prometheus.Registry
	key  []byte
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{t: t, path: filepath.Join(t.TempDir(), "kg.db"), key: testKey(t)}
	st, err := boltstore.Open(f.path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	f.st = st
	for _, a := range []string{store.AdminAccount, "acme", "beta"} {
		if err := st.CreateAccount(context.Background(), &store.Account{Name: a}); err != nil {
			t.Fatal(err)
		}
	}
	f.m = f.manager(testKeyring(t, f.key, nil))
	return f
}

// manager returns a Manager on the fixture's store, subscribed to its
// invalidations until the test ends.
func (f *fixture) manager(keys *Keyring) *Manager {
	f.reg = prometheus.NewRegistry()
	m := New(Options{Store: f.st, Keys: keys, Registerer: f.reg, RetryInterval: 200 * time.Millisecond,
		FetchTimeout: 3 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	seen := make(chan struct{}, 64)
	go func() {
		_ = store.WatchThrough(f.st, m.Subscriber()).Watch(ctx, func(store.Invalidation) {
			select {
			case seen <- struct{}{}:
			default:
			}
		})
	}()
	f.t.Cleanup(func() { cancel(); m.Close() })
	// The subscription is up once a probe write is delivered.
	eventually(f.t, 3*time.Second, "watch delivers", func() bool {
		_, _ = f.st.SetAccountState(context.Background(), "beta", store.StateEnabled)
		select {
		case <-seen:
			return true
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
	return m
}

func (f *fixture) create(account, name, typ string, fields map[string]string, secret string, validate bool) error {
	c := &store.UpstreamCredential{Account: account, Name: name, Type: typ, Fields: fields}
	gen := f.gen()
	err := f.m.Create(context.Background(), c, []byte(secret), validate)
	if err == nil {
		// The store's invalidation of the create reaches the Manager
		// asynchronously: wait for it, so that it does not drop what the
		// test caches next.
		eventually(f.t, 3*time.Second, "create invalidation", func() bool { return f.gen() != gen })
	}
	return err
}

func (f *fixture) gen() uint64 {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	return f.m.gen
}

func (f *fixture) mustCreate(account, name, typ string, fields map[string]string, secret string) {
	f.t.Helper()
	if err := f.create(account, name, typ, fields, secret, true); err != nil {
		f.t.Fatalf("create %s/%s: %v", account, name, err)
	}
}

// header calls Header and fails the test on an error.
func (f *fixture) header(name, account string) (string, string) {
	f.t.Helper()
	k, v, missing, err := f.m.Header(name, account, time.Now())
	if err != nil || missing {
		f.t.Fatalf("Header(%s, %s): missing %v, err %v", name, account, missing, err)
	}
	return string(k), string(v)
}

// eventually retries cond for up to d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// upstream is an HTTP server that accepts a request iff check says so,
// recording what it saw.
func upstream(t testing.TB, check func(r *http.Request) bool) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !check(r) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(s.Close)
	return s
}

func bearerOf(r *http.Request) string {
	v := r.Header.Get("Authorization")
	if !strings.HasPrefix(v, "Bearer ") {
		return ""
	}
	return v[len("Bearer "):]
}
