package ui

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
	"github.com/keygate/keygate/store/redisstore"
)

// TestLogoutEndsSessionEverywhere: a copy of the session cookie taken
// before a logout is refused afterwards, on the instance that logged out
// and on another instance sharing the store: two UIs over one bolt store
// (one process), and two instances with their own clients on one Redis.
// Other sessions of the same user go on.
func TestLogoutEndsSessionEverywhere(t *testing.T) {
	now := func() time.Time { return time.Now() }
	tests := []struct {
		name string
		open func(t *testing.T) (a, b store.Driver)
	}{
		{"bolt", func(t *testing.T) (store.Driver, store.Driver) {
			st, err := boltstore.Open(filepath.Join(t.TempDir(), "kg.db"), boltstore.Options{Now: now})
			must(t, err)
			t.Cleanup(func() { _ = st.Close() })
			return st, st
		}},
		{"redis", func(t *testing.T) (store.Driver, store.Driver) {
			srv := testredis.Start(t)
			open := func() store.Driver {
				st, err := redisstore.New(configs.Redis{Addrs: []string{srv.Addr()}}, redisstore.Options{Now: now})
				must(t, err)
				t.Cleanup(func() { _ = st.Close() })
				return st
			}
			return open(), open()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sa, sb := tc.open(t)
			ctx := context.Background()
			_, err := store.Bootstrap(ctx, sa, testHasher.Hash, pwRoot, nil)
			must(t, err)
			must(t, sa.CreateAccount(ctx, &store.Account{Name: "acme"}))
			h, err := testHasher.Hash(pwAlice)
			must(t, err)
			must(t, sa.CreateUser(ctx, &store.User{Username: "alice", Account: "acme", Type: store.TypeUser, Roles: []string{"read"}, PasswordHash: h}))
			uiA, _ := newUI(t, sa, now)
			uiB, _ := newUI(t, sb, now)
			ea, eb := &env{t: t, ui: uiA}, &env{t: t, ui: uiB}

			// alice logs in on A; the cookie is copied (to B and to a thief).
			alice := ea.browser()
			alice.mustLogin("alice", pwAlice)
			stolen := alice.cookies[sessionCookie]
			onB := eb.browser()
			onB.cookies[sessionCookie] = stolen
			if p := onB.req("GET", "/ui/keys", nil); p.status != 200 {
				t.Fatalf("the session on instance B before the logout: %d", p.status)
			}
			// A second session of alice's, on B.
			other := eb.browser()
			other.mustLogin("alice", pwAlice)

			tok := field(t, reCSRF, alice.req("GET", "/ui/keys", nil).body)
			if p := alice.req("POST", "/ui/logout", url.Values{"csrf": {tok}}); p.status != 303 || p.loc != "/ui/login" {
				t.Fatalf("logout: %d %s\n%s", p.status, p.loc, p.body)
			}
			if _, ok := alice.cookies[sessionCookie]; ok {
				t.Error("the cookie was not cleared")
			}
			for name, b := range map[string]*browser{"A": ea.browser(), "B": onB} {
				b.cookies[sessionCookie] = stolen
				if p := b.req("GET", "/ui/keys", nil); p.status != 303 || p.loc != "/ui/login" {
					t.Errorf("the logged-out session's cookie on instance %s: %d %s", name, p.status, p.loc)
				}
				b.cookies[sessionCookie] = stolen
				if p := b.req("POST", "/ui/keys/new", url.Values{"csrf": {tok}, "name": {"after-logout"}}); p.status != 401 {
					t.Errorf("a form with the logged-out session on %s: %d", name, p.status)
				}
			}
			if p := other.req("GET", "/ui/keys", nil); p.status != 200 {
				t.Errorf("alice's other session ended too: %d", p.status)
			}
			keys, err := sb.ListAPIKeys(ctx, store.KeyFilter{Account: "acme", Username: "alice", Status: store.StatusAll})
			must(t, err)
			if len(keys.Keys) != 0 {
				t.Errorf("a key was created with the ended session")
			}
		})
	}
}

// failingEnd is a store whose ended-session records cannot be written or
// read.
type failingEnd struct{ store.Driver }

var errDown = errors.Join(store.ErrUnavailable, errors.New("down"))

func (failingEnd) EndSession(context.Context, string, time.Time) error { return errDown }

// TestLogoutStoreDown: a logout that cannot be recorded says so (503) and
// still clears the cookie; a session whose state cannot be checked is
// refused (fail closed).
func TestLogoutStoreDown(t *testing.T) {
	e := newEnv(t)
	u, _ := newUI(t, failingEnd{e.st}, e.now)
	e.ui = u
	b := e.browser()
	b.mustLogin("alice", pwAlice)
	tok := b.csrf("/ui/keys")
	p := b.req("POST", "/ui/logout", url.Values{"csrf": {tok}})
	if p.status != 503 || !regexp503.MatchString(p.body) {
		t.Fatalf("logout with the store down: %d\n%s", p.status, p.body)
	}
	if _, ok := b.cookies[sessionCookie]; ok {
		t.Error("the cookie was not cleared")
	}
}

var regexp503 = regexp.MustCompile(`could not be ended on the server`)
