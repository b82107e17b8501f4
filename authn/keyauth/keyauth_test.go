package keyauth

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/authn/principal"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
)

type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// countingStore counts account reads and can fail.
type countingStore struct {
	store.Store
	accounts atomic.Int64
	down     atomic.Bool
}

func (s *countingStore) GetAccount(ctx context.Context, name string) (*store.Account, error) {
	s.accounts.Add(1)
	if s.down.Load() {
		return nil, store.ErrUnavailable
	}
	return s.Store.GetAccount(ctx, name)
}

func (s *countingStore) LookupAPIKey(ctx context.Context, id string) (*store.APIKey, *store.User, error) {
	if s.down.Load() {
		return nil, nil, store.ErrUnavailable
	}
	return s.Store.LookupAPIKey(ctx, id)
}

type touches struct {
	mu  sync.Mutex
	ids []string
	at  []time.Time
}

func (t *touches) Touch(id string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ids = append(t.ids, id)
	t.at = append(t.at, at)
}

type fixture struct {
	t      testing.TB
	clk    *clock
	st     *countingStore
	a      *Authenticator
	touch  *touches
	key    *store.APIKey
	secret string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	clk := newClock()
	raw, err := boltstore.Open(filepath.Join(t.TempDir(), "kg.db"), boltstore.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	ctx := context.Background()
	must(t, raw.CreateAccount(ctx, &store.Account{Name: "acme"}))
	must(t, raw.CreateUser(ctx, &store.User{Username: "alice", Account: "acme", Roles: []string{"write", "read", "ops"}, PasswordHash: "x"}))
	f := &fixture{t: t, clk: clk, st: &countingStore{Store: raw}, touch: &touches{}}
	f.key, f.secret = f.newKey("ci", []string{"read", "write", "ghost"}, time.Time{})
	states := principal.NewAccountStates(f.st, time.Minute, clk.Now)
	f.a = NewAuthenticator(f.st, AuthOptions{Now: clk.Now, Touch: f.touch, Accounts: states})
	return f
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) newKey(name string, roles []string, exp time.Time) (*store.APIKey, string) {
	f.t.Helper()
	secret, err := apikey.NewSecret()
	must(f.t, err)
	h, err := apikey.Hash([]byte(secret))
	must(f.t, err)
	k := &store.APIKey{Name: name, Username: "alice", Roles: roles, Hash: h, ExpiresAt: exp}
	must(f.t, f.st.CreateAPIKey(context.Background(), k))
	return k, secret
}

func creds(id, secret string) *authn.Credentials {
	v := apikey.Format(id, secret)
	return &authn.Credentials{Kind: authn.KindAPIKey, KeyID: []byte(id), Secret: []byte(secret), APIKey: []byte(v)}
}

func TestAuthenticate(t *testing.T) {
	f := newFixture(t)
	id, err := f.a.Authenticate(context.Background(), creds(f.key.ID, f.secret))
	must(t, err)
	want := authn.Identity{Username: "alice", Account: "acme", UserType: "user", Roles: []string{"read", "write"},
		RolesHeader: "read,write", Method: authn.MethodAPIKey, KeyID: f.key.ID, KeyName: "ci", Generation: 1}
	if id.Username != want.Username || id.Account != want.Account || id.UserType != want.UserType ||
		!slices.Equal(id.Roles, want.Roles) || id.RolesHeader != want.RolesHeader || id.Method != want.Method ||
		id.KeyID != want.KeyID || id.KeyName != want.KeyName || id.Generation != want.Generation || !id.ExpiresAt.IsZero() {
		t.Fatalf("got %+v\nwant %+v", *id, want)
	}
	if len(f.touch.ids) != 1 || f.touch.ids[0] != f.key.ID || !f.touch.at[0].Equal(f.clk.Now()) {
		t.Fatalf("touches %v %v", f.touch.ids, f.touch.at)
	}
	// Expiry is carried.
	exp := f.clk.Now().Add(time.Hour)
	k2, s2 := f.newKey("exp", nil, exp)
	id, err = f.a.Authenticate(context.Background(), creds(k2.ID, s2))
	must(t, err)
	if !id.ExpiresAt.Equal(exp) || id.Roles != nil || id.RolesHeader != "" {
		t.Fatalf("%+v", *id)
	}
}

func TestNotResponsible(t *testing.T) {
	f := newFixture(t)
	for _, c := range []*authn.Credentials{
		{Kind: authn.KindBasic, Username: []byte("alice"), Password: []byte("x")},
		{Kind: authn.KindBearer, Token: []byte("x")},
	} {
		if _, err := f.a.Authenticate(context.Background(), c); !errors.Is(err, authn.ErrNotResponsible) {
			t.Fatalf("%v: %v", c.Kind, err)
		}
	}
}

// The secret is verified before anything about the key or its owner is
// reported: with a wrong secret, a revoked, expired, disabled or foreign key
// looks exactly like an unknown one.
func TestSecretVerifiedFirst(t *testing.T) {
	ctx := context.Background()
	wrong, _ := apikey.NewSecret()
	cases := []struct {
		name   string
		setup  func(f *fixture) (*store.APIKey, string)
		right  error
		detail string
	}{
		{"revoked", func(f *fixture) (*store.APIKey, string) {
			_, _, err := f.st.RevokeAPIKey(ctx, f.key.ID, f.clk.Now())
			must(f.t, err)
			return f.key, f.secret
		}, authn.ErrSecretVerified, "revoked"},
		{"expired", func(f *fixture) (*store.APIKey, string) {
			k, s := f.newKey("short", nil, f.clk.Now().Add(time.Minute))
			f.clk.Advance(time.Minute)
			return k, s
		}, authn.ErrSecretVerified, "expired"},
		{"owner disabled", func(f *fixture) (*store.APIKey, string) {
			_, err := f.st.UpdateUser(ctx, "alice", store.UserUpdate{State: ptr(store.StateDisabled)})
			must(f.t, err)
			return f.key, f.secret
		}, authn.ErrDisabled, "owner disabled"},
		{"account disabled", func(f *fixture) (*store.APIKey, string) {
			_, err := f.st.SetAccountState(ctx, "acme", store.StateDisabled)
			must(f.t, err)
			return f.key, f.secret
		}, authn.ErrDisabled, "account disabled"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			k, s := tc.setup(f)
			_, errWrong := f.a.Authenticate(ctx, creds(k.ID, wrong))
			_, errUnknown := f.a.Authenticate(ctx, creds("AAAAAAAAAAAAAAAAAAAA", wrong))
			if errWrong != errUnknown || errWrong != errInvalid { //nolint:errorlint // one value for both answers is the point: identity, not a chain
				t.Fatalf("wrong secret: %v; unknown id: %v; want both %v", errWrong, errUnknown, errInvalid)
			}
			_, err := f.a.Authenticate(ctx, creds(k.ID, s))
			if !errors.Is(err, tc.right) || !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("right secret: %v, want %v (%s)", err, tc.right, tc.detail)
			}
			if len(f.touch.ids) != 0 {
				t.Fatal("failure touched the key")
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestStoreUnavailable(t *testing.T) {
	f := newFixture(t)
	f.st.down.Store(true)
	_, err := f.a.Authenticate(context.Background(), creds(f.key.ID, f.secret))
	if !errors.Is(err, authn.ErrUnavailable) || errors.Is(err, authn.ErrInvalidCredentials) {
		t.Fatalf("%v", err)
	}
	// Key fine, account unreadable.
	f.st.down.Store(false)
	a := NewAuthenticator(f.st, AuthOptions{Now: f.clk.Now, Accounts: failingAccounts{}})
	if _, err := a.Authenticate(context.Background(), creds(f.key.ID, f.secret)); !errors.Is(err, authn.ErrUnavailable) {
		t.Fatalf("account unreadable: %v", err)
	}
	// Caller context already over: unavailable, not invalid.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.a.Authenticate(ctx, creds(f.key.ID, f.secret)); !errors.Is(err, authn.ErrUnavailable) {
		t.Fatalf("cancelled: %v", err)
	}
}

type failingAccounts struct{}

func (failingAccounts) Enabled(context.Context, string) (bool, error) {
	return false, store.ErrUnavailable
}

// Without AccountStates the account is read from the store on every miss.
func TestDefaultAccounts(t *testing.T) {
	f := newFixture(t)
	a := NewAuthenticator(f.st, AuthOptions{})
	for range 3 {
		_, err := a.Authenticate(context.Background(), creds(f.key.ID, f.secret))
		must(t, err)
	}
	if n := f.st.accounts.Load(); n != 3 {
		t.Fatalf("%d account reads", n)
	}
}

// BenchmarkUnknownIDVsWrongSecret: the two failures must cost the same
// (SECURITY.md "enumeration by timing"). They run alternately and are timed
// apart, so load and drift hit both alike: compare unknown-ns/op with
// wrong-ns/op (ratio ≈ 1).
func BenchmarkUnknownIDVsWrongSecret(b *testing.B) {
	f := newFixture(b)
	wrong, _ := apikey.NewSecret()
	ctx := context.Background()
	cu, cw := creds("AAAAAAAAAAAAAAAAAAAA", wrong), creds(f.key.ID, wrong)
	run := func(c *authn.Credentials) time.Duration {
		t0 := time.Now()
		if _, err := f.a.Authenticate(ctx, c); !errors.Is(err, errInvalid) {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	var du, dw time.Duration
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			du += run(cu)
			dw += run(cw)
		} else {
			dw += run(cw)
			du += run(cu)
		}
		i++
	}
	b.ReportMetric(float64(du.Nanoseconds())/float64(i), "unknown-ns/op")
	b.ReportMetric(float64(dw.Nanoseconds())/float64(i), "wrong-ns/op")
	b.ReportMetric(float64(du)/float64(dw), "unknown/wrong")
}
