package principal

import (
	"context"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
)

type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// countingStore counts account reads and can fail.
type countingStore struct {
	store.Store
	accounts atomic.Int64
	down     atomic.Bool
	// onGetAccount runs inside GetAccount (tests of races).
	onGetAccount func()
}

func (s *countingStore) GetAccount(ctx context.Context, name string) (*store.Account, error) {
	s.accounts.Add(1)
	if s.onGetAccount != nil {
		s.onGetAccount()
	}
	if s.down.Load() {
		return nil, store.ErrUnavailable
	}
	return s.Store.GetAccount(ctx, name)
}

type fixture struct {
	clk    *clock
	st     *countingStore
	states *AccountStates
}

// newFixture: a bbolt store holding account acme (enabled), and
// AccountStates over it trusted for a minute.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	clk := &clock{}
	clk.ns.Store(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC).UnixNano())
	raw, err := boltstore.Open(filepath.Join(t.TempDir(), "kg.db"), boltstore.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	must(t, raw.CreateAccount(context.Background(), &store.Account{Name: "acme"}))
	f := &fixture{clk: clk, st: &countingStore{Store: raw}}
	f.states = NewAccountStates(f.st, time.Minute, clk.Now)
	return f
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSortedRoles(t *testing.T) {
	cases := []struct{ in, want []string }{
		{nil, nil},
		{[]string{""}, nil},
		{[]string{"b", "a", "b"}, []string{"a", "b"}},
		{[]string{"ops", "", "dev", "ops"}, []string{"dev", "ops"}},
	}
	for _, tc := range cases {
		in := slices.Clone(tc.in)
		got := SortedRoles(in)
		if !slices.Equal(got, tc.want) || !slices.Equal(in, tc.in) {
			t.Errorf("SortedRoles(%v) = %v (input now %v), want %v", tc.in, got, in, tc.want)
		}
		if len(got) > 0 && len(in) > 0 && &got[0] == &in[0] {
			t.Errorf("SortedRoles(%v) shares the input's array", tc.in)
		}
	}
}

func TestIntersect(t *testing.T) {
	cases := []struct{ a, b, want []string }{
		{nil, nil, nil},
		{[]string{"a"}, nil, nil},
		{[]string{"b", "a", "c", "a"}, []string{"a", "c", "d"}, []string{"a", "c"}},
		{[]string{"x"}, []string{"y"}, nil},
		{[]string{"", "a"}, []string{"", "a"}, []string{"a"}},
	}
	for _, tc := range cases {
		if got := Intersect(tc.a, tc.b); !slices.Equal(got, tc.want) {
			t.Errorf("Intersect(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestIdentities(t *testing.T) {
	exp := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	u := &store.User{Username: "alice", Account: "acme", Type: store.TypeAccountAdmin, Roles: []string{"write", "read", "write", ""}, Generation: 7}
	k := &store.APIKey{ID: "k1", Name: "ci", Roles: []string{"read", "ghost", "write"}, ExpiresAt: exp}
	cases := []struct {
		name string
		got  *authn.Identity
		want authn.Identity
	}{
		{"basic", UserIdentity(u, authn.MethodBasic), authn.Identity{Username: "alice", Account: "acme", UserType: string(store.TypeAccountAdmin),
			Roles: []string{"read", "write"}, RolesHeader: "read,write", Method: authn.MethodBasic, Generation: 7}},
		{"bearer", UserIdentity(u, authn.MethodBearer), authn.Identity{Username: "alice", Account: "acme", UserType: string(store.TypeAccountAdmin),
			Roles: []string{"read", "write"}, RolesHeader: "read,write", Method: authn.MethodBearer, Generation: 7}},
		{"api key: key roles the owner still holds", KeyIdentity(k, u), authn.Identity{Username: "alice", Account: "acme",
			UserType: string(store.TypeAccountAdmin), Roles: []string{"read", "write"}, RolesHeader: "read,write", Method: authn.MethodAPIKey,
			KeyID: "k1", KeyName: "ci", Generation: 7, ExpiresAt: exp}},
		{"api key: no common role", KeyIdentity(&store.APIKey{ID: "k2", Roles: []string{"x"}}, u), authn.Identity{Username: "alice",
			Account: "acme", UserType: string(store.TypeAccountAdmin), Method: authn.MethodAPIKey, KeyID: "k2", Generation: 7}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, w := tc.got, tc.want
			if g.Username != w.Username || g.Account != w.Account || g.UserType != w.UserType || !slices.Equal(g.Roles, w.Roles) ||
				g.RolesHeader != w.RolesHeader || g.Method != w.Method || g.KeyID != w.KeyID || g.KeyName != w.KeyName ||
				g.Generation != w.Generation || !g.ExpiresAt.Equal(w.ExpiresAt) {
				t.Fatalf("got %+v\nwant %+v", *g, w)
			}
		})
	}
	if !slices.Equal(u.Roles, []string{"write", "read", "write", ""}) {
		t.Fatalf("user roles modified: %v", u.Roles)
	}
}

// StoreAccounts asks the store on every call.
func TestStoreAccounts(t *testing.T) {
	f := newFixture(t)
	sa := StoreAccounts(f.st)
	ctx := context.Background()
	for i, tc := range []struct {
		account string
		want    bool
	}{{"acme", true}, {"acme", true}, {"nope", false}} {
		ok, err := sa.Enabled(ctx, tc.account)
		must(t, err)
		if ok != tc.want || f.st.accounts.Load() != int64(i+1) {
			t.Fatalf("%s: %v after %d reads", tc.account, ok, f.st.accounts.Load())
		}
	}
	_, err := f.st.SetAccountState(ctx, "acme", store.StateDisabled)
	must(t, err)
	if ok, err := sa.Enabled(ctx, "acme"); ok || err != nil {
		t.Fatal("disabled account reported enabled", err)
	}
	f.st.down.Store(true)
	if _, err := sa.Enabled(ctx, "acme"); err == nil {
		t.Fatal("store failure not reported")
	}
}
