package password

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
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
)

// memStore serves users and accounts from maps; down makes it unreachable.
type memStore struct {
	store.Store
	mu       sync.Mutex // guards users (background rehashes write)
	users    map[string]*store.User
	accounts map[string]*store.Account
	down     atomic.Bool
	reads    atomic.Int64
}

func (m *memStore) GetUser(_ context.Context, name string) (*store.User, error) {
	m.reads.Add(1)
	if m.down.Load() {
		return nil, store.ErrUnavailable
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[name]
	if !ok {
		return nil, store.ErrNotFound
	}
	c := *u
	return &c, nil
}

func (m *memStore) UpdateUser(_ context.Context, name string, upd store.UserUpdate) (*store.User, error) {
	if m.down.Load() {
		return nil, store.ErrUnavailable
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[name]
	if !ok {
		return nil, store.ErrNotFound
	}
	c := *u
	if _, err := store.ApplyUserUpdate(&c, upd, time.Now()); err != nil {
		return nil, err
	}
	m.users[name] = &c
	return &c, nil
}

func (m *memStore) GetAccount(_ context.Context, name string) (*store.Account, error) {
	if m.down.Load() {
		return nil, store.ErrUnavailable
	}
	a, ok := m.accounts[name]
	if !ok {
		return nil, store.ErrNotFound
	}
	c := *a
	return &c, nil
}

const authPW = "correct horse battery staple"

func newMemStore(t testing.TB, h *Hasher) *memStore {
	t.Helper()
	phc, err := h.Hash(authPW)
	if err != nil {
		t.Fatal(err)
	}
	old, err := New(Params{Memory: 32, Iterations: 1, Parallelism: 1}, 1).Hash(authPW)
	if err != nil {
		t.Fatal(err)
	}
	u := func(name, acct string, st store.State, hash string, roles ...string) *store.User {
		return &store.User{Username: name, Account: acct, Type: store.TypeUser, State: st, PasswordHash: hash, Roles: roles, Generation: 3}
	}
	return &memStore{
		users: map[string]*store.User{
			"alice":   u("alice", "acme", store.StateEnabled, phc, "write", "read", "write"),
			"dora":    u("dora", "acme", store.StateDisabled, phc),
			"eve":     u("eve", "closed", store.StateEnabled, phc),
			"oscar":   u("oscar", "gone", store.StateEnabled, phc),
			"broken":  u("broken", "acme", store.StateEnabled, "$argon2id$v=19$m=99999999,t=1,p=1$AAAA$AAAA"),
			"garbage": u("garbage", "acme", store.StateEnabled, "not a hash"),
			"old":     u("old", "acme", store.StateEnabled, old),
		},
		accounts: map[string]*store.Account{
			"acme":   {Name: "acme", State: store.StateEnabled},
			"closed": {Name: "closed", State: store.StateDisabled},
		},
	}
}

func basicCreds(user, pw string) *authn.Credentials {
	return &authn.Credentials{Kind: authn.KindBasic, Username: []byte(user), Password: []byte(pw)}
}

func TestAuthenticatorCases(t *testing.T) {
	h := New(testParams, 2)
	ms := newMemStore(t, h)
	var rehashed []string
	a := NewAuthenticator(ms, h, AuthOptions{NeedsRehash: func(u string) { rehashed = append(rehashed, u) }})
	done := make(chan error, 1)
	a.rehashDone = func(_ string, err error) { done <- err }
	ctx := context.Background()

	id, err := a.Authenticate(ctx, basicCreds("alice", authPW))
	if err != nil {
		t.Fatal(err)
	}
	if id.Username != "alice" || id.Account != "acme" || id.UserType != "user" || id.Method != authn.MethodBasic ||
		!slices.Equal(id.Roles, []string{"read", "write"}) || id.RolesHeader != "read,write" || id.Generation != 3 ||
		id.KeyID != "" || !id.ExpiresAt.IsZero() {
		t.Fatalf("%+v", *id)
	}

	cases := []struct {
		user, pw string
		want     error
		detail   string
	}{
		{"alice", "wrong", authn.ErrInvalidCredentials, "unknown user or wrong password"},
		{"alice", "", authn.ErrInvalidCredentials, "unknown user or wrong password"},
		{"nobody", authPW, authn.ErrInvalidCredentials, "unknown user or wrong password"},
		{"dora", authPW, authn.ErrDisabled, "user disabled"},
		{"dora", "wrong", authn.ErrInvalidCredentials, "unknown user or wrong password"}, // state only after the hash
		{"eve", authPW, authn.ErrDisabled, "account disabled"},
		{"eve", "wrong", authn.ErrInvalidCredentials, "unknown user or wrong password"},
		{"oscar", authPW, authn.ErrDisabled, "account disabled"}, // account gone
		{"broken", authPW, authn.ErrInvalidCredentials, "unusable"},
		{"garbage", authPW, authn.ErrInvalidCredentials, "unusable"},
	}
	for _, tc := range cases {
		id, err := a.Authenticate(ctx, basicCreds(tc.user, tc.pw))
		if id != nil || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.detail) {
			t.Errorf("%s/%q: (%v, %v), want %v (%s)", tc.user, tc.pw, id, err, tc.want, tc.detail)
		}
		if err != nil && strings.Contains(err.Error(), authPW) {
			t.Errorf("error contains the password: %v", err)
		}
	}

	// Old parameters: accepted, reported, rewritten in the background with
	// the same Generation.
	if _, err := a.Authenticate(ctx, basicCreds("old", authPW)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rehashed, []string{"old"}) {
		t.Fatalf("NeedsRehash calls %v", rehashed)
	}
	if err := <-done; err != nil {
		t.Fatalf("rehash: %v", err)
	}
	if u, _ := ms.GetUser(ctx, "old"); !hasParams(t, u.PasswordHash, h.Params()) || u.Generation != 3 {
		t.Fatalf("after rehash: Generation %d, current params %v", u.Generation, hasParams(t, u.PasswordHash, h.Params()))
	}
	if _, err := a.Authenticate(ctx, basicCreds("old", authPW)); err != nil {
		t.Fatal(err)
	}
	if len(rehashed) != 1 {
		t.Fatalf("NeedsRehash calls after the rehash %v", rehashed)
	}

	for _, c := range []*authn.Credentials{
		{Kind: authn.KindAPIKey, KeyID: []byte("x")},
		{Kind: authn.KindBearer, Token: []byte("x")},
	} {
		if _, err := a.Authenticate(ctx, c); !errors.Is(err, authn.ErrNotResponsible) {
			t.Errorf("%v: %v", c.Kind, err)
		}
	}
}

// A store that cannot answer and hashing capacity that cannot be had are
// both ErrUnavailable (503), never a wrong password. Hashing saturation is
// distinguishable (ErrBusy) for logs and metrics.
func TestAuthenticatorUnavailable(t *testing.T) {
	h := New(testParams, 1)
	ms := newMemStore(t, h)
	a := NewAuthenticator(ms, h, AuthOptions{})

	ms.down.Store(true)
	_, err := a.Authenticate(context.Background(), basicCreds("alice", authPW))
	if !errors.Is(err, authn.ErrUnavailable) || errors.Is(err, ErrBusy) || errors.Is(err, authn.ErrInvalidCredentials) {
		t.Fatalf("store down: %v", err)
	}
	ms.down.Store(false)

	// Context over before a hashing slot is had: busy, for known and
	// unknown users alike.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, user := range []string{"alice", "nobody", "garbage"} {
		_, err = a.Authenticate(ctx, basicCreds(user, authPW))
		if !errors.Is(err, authn.ErrUnavailable) || !errors.Is(err, ErrBusy) {
			t.Fatalf("%s, no slot: %v", user, err)
		}
	}

	// Hashing slots all held (a flood): the wait ends at the timeout.
	h.sem <- struct{}{}
	a2 := NewAuthenticator(ms, h, AuthOptions{Timeout: 1}) // 1 ns
	_, err = a2.Authenticate(context.Background(), basicCreds("alice", "wrong"))
	<-h.sem
	if !errors.Is(err, authn.ErrUnavailable) {
		t.Fatalf("saturated: %v", err)
	}
}

// With a real store.
func TestAuthenticatorBolt(t *testing.T) {
	h := New(testParams, 2)
	s := newBolt(t, h)
	a := NewAuthenticator(s, h, AuthOptions{})
	if _, err := a.Authenticate(context.Background(), basicCreds("alice", authPW)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(context.Background(), basicCreds("alice", authPW+" ")); !errors.Is(err, authn.ErrInvalidCredentials) {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(context.Background(), basicCreds("bob", authPW)); !errors.Is(err, authn.ErrInvalidCredentials) {
		t.Fatal(err)
	}
}

// oldParams are parameters other than testParams: hashes made with them
// need a rehash.
var oldParams = Params{Memory: 32, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

// hasParams reports whether phc was made with p.
func hasParams(t *testing.T, phc string, p Params) bool {
	t.Helper()
	got, _, _, err := ParsePHC(phc)
	if err != nil {
		t.Fatalf("stored hash: %v", err)
	}
	return got == p
}

// boltWithOldHash returns a bbolt store with user alice (Generation 1) whose
// hash of authPW was made with oldParams.
func boltWithOldHash(t *testing.T) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "kg.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	old, err := New(oldParams, 1).Hash(authPW)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.CreateAccount(ctx, &store.Account{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, &store.User{Username: "alice", Account: "acme", PasswordHash: old}); err != nil {
		t.Fatal(err)
	}
	return s
}

// A login with a hash of old parameters stores a new hash of the same
// password with the current ones; the Generation stays, no invalidation is
// published, and the password keeps working. The rehash holds its own copy
// of the password: the caller may reuse its buffer at once.
func TestAuthenticatorRehash(t *testing.T) {
	h := New(testParams, 2)
	s := boltWithOldHash(t)
	ctx := context.Background()
	before, err := s.GetUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	var reported atomic.Int64
	a := NewAuthenticator(s, h, AuthOptions{NeedsRehash: func(string) { reported.Add(1) }})

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	invs := make(chan store.Invalidation, 16)
	go func() { _ = s.Watch(wctx, func(inv store.Invalidation) { invs <- inv }) }()
	for live := false; !live; { // wait until the watch delivers
		if _, err := s.SetAccountState(ctx, "acme", store.StateEnabled); err != nil {
			t.Fatal(err)
		}
		select {
		case <-invs:
			live = true
		case <-time.After(10 * time.Millisecond):
		}
	}
	for len(invs) > 0 {
		<-invs
	}

	creds := basicCreds("alice", authPW)
	id, err := a.Authenticate(ctx, creds)
	if err != nil {
		t.Fatal(err)
	}
	clear(creds.Password) // the request buffer is reused
	if id.Generation != 1 || reported.Load() != 1 {
		t.Fatalf("Generation %d, NeedsRehash calls %d", id.Generation, reported.Load())
	}

	deadline := time.Now().Add(5 * time.Second)
	var u *store.User
	for {
		if u, err = s.GetUser(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if u.PasswordHash != before.PasswordHash || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !hasParams(t, u.PasswordHash, h.Params()) {
		t.Fatal("stored hash was not rewritten with the current parameters")
	}
	if u.Generation != before.Generation || !u.UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("rehash changed Generation %d→%d, UpdatedAt %v→%v", before.Generation, u.Generation, before.UpdatedAt, u.UpdatedAt)
	}
	ok, again, err := h.Verify(ctx, u.PasswordHash, authPW)
	if !ok || again || err != nil {
		t.Fatalf("new hash does not verify the password: ok=%v needsRehash=%v err=%v", ok, again, err)
	}
	id, err = a.Authenticate(ctx, basicCreds("alice", authPW))
	if err != nil || id.Generation != before.Generation {
		t.Fatalf("login after rehash: %+v, %v", id, err)
	}
	if reported.Load() != 1 {
		t.Errorf("NeedsRehash calls %d after the rehash, want 1", reported.Load())
	}
	if _, err := a.Authenticate(ctx, basicCreds("alice", "wrong")); !errors.Is(err, authn.ErrInvalidCredentials) {
		t.Errorf("wrong password after rehash: %v", err)
	}
	select {
	case inv := <-invs:
		t.Errorf("rehash published %+v", inv)
	case <-time.After(200 * time.Millisecond):
	}
}

// A password changed between the login and the rehash's write wins: the
// rehash's compare-and-set fails with ErrConflict and changes nothing.
func TestAuthenticatorRehashLosesToPasswordChange(t *testing.T) {
	h := New(testParams, 2)
	s := boltWithOldHash(t)
	ctx := context.Background()
	a := NewAuthenticator(s, h, AuthOptions{})
	changed, err := h.Hash("a new password")
	if err != nil {
		t.Fatal(err)
	}
	a.beforeRehashWrite = func(username string) {
		if _, err := s.UpdateUser(ctx, username, store.UserUpdate{PasswordHash: &changed}); err != nil {
			t.Errorf("password change: %v", err)
		}
	}
	done := make(chan error, 1)
	a.rehashDone = func(_ string, err error) { done <- err }

	if _, err := a.Authenticate(ctx, basicCreds("alice", authPW)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("rehash after a password change: %v, want ErrConflict", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("rehash did not finish")
	}
	u, err := s.GetUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if u.PasswordHash != changed || u.Generation != 2 {
		t.Fatalf("the rehash overwrote the password change (Generation %d)", u.Generation)
	}
	if _, err := a.Authenticate(ctx, basicCreds("alice", authPW)); !errors.Is(err, authn.ErrInvalidCredentials) {
		t.Errorf("old password after the change: %v", err)
	}
	if _, err := a.Authenticate(ctx, basicCreds("alice", "a new password")); err != nil {
		t.Errorf("new password: %v", err)
	}
}

// While a rehash runs, another login that needs one skips it (and is still
// reported).
func TestAuthenticatorRehashSkipsWhenBusy(t *testing.T) {
	h := New(testParams, 2)
	s := boltWithOldHash(t)
	ctx := context.Background()
	var reported atomic.Int64
	a := NewAuthenticator(s, h, AuthOptions{NeedsRehash: func(string) { reported.Add(1) }})
	a.rehashDone = func(string, error) { t.Error("a rehash ran while another was running") }
	a.rehashing <- struct{}{} // one is running
	before, _ := s.GetUser(ctx, "alice")
	for range 3 {
		if _, err := a.Authenticate(ctx, basicCreds("alice", authPW)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if u, _ := s.GetUser(ctx, "alice"); u.PasswordHash != before.PasswordHash {
		t.Error("the hash was rewritten while a rehash was running")
	}
	if reported.Load() != 3 {
		t.Errorf("NeedsRehash calls %d, want 3", reported.Load())
	}
	<-a.rehashing
}

func newBolt(t testing.TB, h *Hasher) store.Store {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "kg.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	phc, err := h.Hash(authPW)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.CreateAccount(ctx, &store.Account{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, &store.User{Username: "alice", Account: "acme", PasswordHash: phc}); err != nil {
		t.Fatal(err)
	}
	return s
}

// BenchmarkAuthenticateUnknownUserVsWrongPassword: the authenticator-level
// timing pair (DefaultParams, bbolt store). The two run alternately and are
// timed apart, so load and GC drift hit both alike: unknown-ns/op must match
// wrong-ns/op within noise (SECURITY.md "enumeration by timing").
func BenchmarkAuthenticateUnknownUserVsWrongPassword(b *testing.B) {
	h := New(DefaultParams, 1)
	a := NewAuthenticator(newBolt(b, h), h, AuthOptions{})
	ctx := context.Background()
	cu, cw := basicCreds("mallory", "not the password"), basicCreds("alice", "not the password")
	run := func(c *authn.Credentials) time.Duration {
		t0 := time.Now()
		if _, err := a.Authenticate(ctx, c); !errors.Is(err, errInvalid) {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	run(cu) // warm-up
	run(cw)
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

// TestCheckOneHashPerAttempt: Check, which Basic and the token endpoint's
// password grant share, computes exactly one argon2id for every outcome
// (success, wrong password, unknown user, disabled user or account, unusable
// stored hash), so timing does not tell them apart.
func TestCheckOneHashPerAttempt(t *testing.T) {
	h := New(testParams, 2)
	ms := newMemStore(t, h)
	var hashes atomic.Int64
	h.onHash = func(start bool) {
		if start {
			hashes.Add(1)
		}
	}
	a := NewAuthenticator(ms, h, AuthOptions{})
	cases := []struct {
		user, pw string
		want     error // nil: success
	}{
		{"alice", authPW, nil},
		{"alice", "wrong", authn.ErrInvalidCredentials},
		{"nobody", authPW, authn.ErrInvalidCredentials},
		{"", authPW, authn.ErrInvalidCredentials},
		{"dora", authPW, authn.ErrDisabled},
		{"eve", authPW, authn.ErrDisabled},
		{"broken", authPW, authn.ErrInvalidCredentials},
		{"garbage", authPW, authn.ErrInvalidCredentials},
	}
	for _, tc := range cases {
		hashes.Store(0)
		u, err := a.Check(context.Background(), tc.user, []byte(tc.pw))
		switch {
		case tc.want == nil && (err != nil || u == nil || u.Username != tc.user):
			t.Errorf("%s: (%v, %v), want the user", tc.user, u, err)
		case tc.want != nil && (u != nil || !errors.Is(err, tc.want)):
			t.Errorf("%s: (%v, %v), want %v", tc.user, u, err, tc.want)
		}
		if n := hashes.Load(); n != 1 {
			t.Errorf("%s/%q: %d argon2id computations, want 1", tc.user, tc.pw, n)
		}
	}
}
