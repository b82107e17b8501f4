package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// RunRefresh runs the conformance suite of store.RefreshStore against the
// stores newStore makes (which must implement it):
//
//	func TestRefreshConformance(t *testing.T) {
//		storetest.RunRefresh(t, factory)
//	}
func RunRefresh(t *testing.T, newStore Factory) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(e *refreshEnv)
	}{
		{"CreateUse", testRefreshCreateUse},
		{"Rotation/ReuseRevokesFamily", testRefreshReuse},
		{"Expiry", testRefreshExpiry},
		{"Purge", testRefreshPurge},
		{"NotFound", testRefreshNotFound},
		{"Validation", testRefreshValidation},
		{"RevokeFamily", testRefreshRevokeFamily},
		{"RevokeUser", testRefreshRevokeUser},
		{"FamilyOwner", testRefreshFamilyOwner},
		{"ConcurrentUse", testRefreshConcurrentUse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := NewClock(time.Now().UTC().Truncate(time.Second))
			s := newStore(t, clock.Now)
			tc.fn(&refreshEnv{t: t, s: s, clock: clock, ctx: context.Background()})
		})
	}
}

type refreshEnv struct {
	t     *testing.T
	s     store.Driver
	clock *Clock
	ctx   context.Context
}

// RefreshID returns the store.RefreshToken.ID of a token value.
func RefreshID(value string) string {
	sum := sha256.Sum256([]byte(value))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func randomFamily() string { return base64.RawURLEncoding.EncodeToString(randomBytes(16)) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// newToken stores a fresh token of family for username, valid for an hour.
func (e *refreshEnv) newToken(family, username string) *store.RefreshToken {
	e.t.Helper()
	now := e.clock.Now()
	tok := &store.RefreshToken{
		ID:            RefreshID(base64.RawURLEncoding.EncodeToString(randomBytes(32))),
		Family:        family,
		Username:      username,
		Generation:    3,
		UserCreatedAt: now.Add(-time.Hour),
		IssuedAt:      now,
		ExpiresAt:     now.Add(time.Hour),
	}
	if err := e.s.CreateRefreshToken(e.ctx, tok); err != nil {
		e.t.Fatalf("CreateRefreshToken: %v", err)
	}
	return tok
}

func (e *refreshEnv) use(tok *store.RefreshToken) (*store.RefreshToken, error) {
	return e.s.UseRefreshToken(e.ctx, tok.Family, tok.ID, e.clock.Now())
}

func (e *refreshEnv) mustUse(tok *store.RefreshToken) *store.RefreshToken {
	e.t.Helper()
	got, err := e.use(tok)
	if err != nil {
		e.t.Fatalf("UseRefreshToken: %v", err)
	}
	return got
}

func (e *refreshEnv) wantUseErr(what string, tok *store.RefreshToken, want error) {
	e.t.Helper()
	_, err := e.use(tok)
	wantErr(e.t, what, err, want)
}

func testRefreshCreateUse(e *refreshEnv) {
	tok := e.newToken(randomFamily(), "alice")
	e.clock.Advance(time.Minute)
	got := e.mustUse(tok)
	if got.ID != tok.ID || got.Family != tok.Family || got.Username != "alice" || got.Generation != 3 {
		e.t.Errorf("used record = %+v, want the created one", got)
	}
	sameTime(e.t, "UserCreatedAt", got.UserCreatedAt, tok.UserCreatedAt)
	sameTime(e.t, "IssuedAt", got.IssuedAt, tok.IssuedAt)
	sameTime(e.t, "ExpiresAt", got.ExpiresAt, tok.ExpiresAt)
	sameTime(e.t, "UsedAt", got.UsedAt, e.clock.Now())
	// The second use is a reuse: conflict, and the family is revoked.
	e.wantUseErr("second use", tok, store.ErrConflict)
	e.wantUseErr("third use (family revoked)", tok, store.ErrNotFound)
}

func testRefreshReuse(e *refreshEnv) {
	fam := randomFamily()
	t1 := e.newToken(fam, "alice")
	e.mustUse(t1)
	t2 := e.newToken(fam, "alice")
	e.mustUse(t2)
	t3 := e.newToken(fam, "alice")
	other := e.newToken(randomFamily(), "alice")

	// An attacker replays t1: the whole family dies, including the latest.
	e.wantUseErr("reuse of t1", t1, store.ErrConflict)
	e.wantUseErr("latest of the family after reuse", t3, store.ErrNotFound)
	e.wantUseErr("t2 after reuse", t2, store.ErrNotFound)
	// A successor issued after the revocation is refused.
	late := &store.RefreshToken{ID: RefreshID("late"), Family: fam, Username: "alice", Generation: 3,
		IssuedAt: e.clock.Now(), ExpiresAt: e.clock.Now().Add(time.Hour)}
	wantErr(e.t, "create in a revoked family", e.s.CreateRefreshToken(e.ctx, late), store.ErrConflict)
	// Other families are untouched.
	e.mustUse(other)
}

func testRefreshExpiry(e *refreshEnv) {
	fam := randomFamily()
	tok := e.newToken(fam, "alice")
	e.clock.Set(tok.ExpiresAt.Add(-time.Second))
	early := e.newToken(fam, "alice") // fresh: expires an hour later
	e.clock.Set(tok.ExpiresAt)
	e.wantUseErr("use at expiry", tok, store.ErrNotFound)
	e.mustUse(early)
	// A new token in the family still works after an expired one was swept.
	next := e.newToken(fam, "alice")
	e.mustUse(next)
}

// testRefreshPurge: the periodic purge (a sweep in bolt, nothing in Redis,
// whose records expire by themselves) leaves live tokens usable, and an
// expired one stays unusable.
func testRefreshPurge(e *refreshEnv) {
	expired := e.newToken(randomFamily(), "alice")
	e.clock.Advance(30 * time.Minute)
	live := e.newToken(randomFamily(), "alice")
	e.clock.Set(expired.ExpiresAt.Add(time.Second))
	n, err := e.s.PurgeRefreshTokens(e.ctx, e.clock.Now())
	if err != nil || n < 0 || n > 1 {
		e.t.Fatalf("PurgeRefreshTokens = %d, %v; want 0 or 1 (the expired token), no error", n, err)
	}
	e.wantUseErr("expired, after the purge", expired, store.ErrNotFound)
	e.mustUse(live)
}

func testRefreshNotFound(e *refreshEnv) {
	tok := e.newToken(randomFamily(), "alice")
	cases := []struct {
		name, family, id string
	}{
		{"unknown id", tok.Family, RefreshID("nope")},
		{"other family", randomFamily(), tok.ID},
		{"malformed id", tok.Family, "x"},
		{"malformed family", "a}b{c", tok.ID},
		{"empty", "", ""},
	}
	for _, c := range cases {
		_, err := e.s.UseRefreshToken(e.ctx, c.family, c.id, e.clock.Now())
		wantErr(e.t, c.name, err, store.ErrNotFound)
	}
	e.mustUse(tok) // none of those touched it
}

func testRefreshValidation(e *refreshEnv) {
	now := e.clock.Now()
	good := func() *store.RefreshToken {
		return &store.RefreshToken{ID: RefreshID(randomFamily()), Family: randomFamily(), Username: "alice",
			Generation: 1, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	cases := []struct {
		name string
		mod  func(*store.RefreshToken)
	}{
		{"bad id", func(t *store.RefreshToken) { t.ID = "value-not-hash" }},
		{"bad family", func(t *store.RefreshToken) { t.Family = "a{b}" }},
		{"long family", func(t *store.RefreshToken) { t.Family = string(make([]byte, 65)) }},
		{"no username", func(t *store.RefreshToken) { t.Username = "" }},
		{"no issued", func(t *store.RefreshToken) { t.IssuedAt = time.Time{} }},
		{"expires before issued", func(t *store.RefreshToken) { t.ExpiresAt = t.IssuedAt }},
		{"already used", func(t *store.RefreshToken) { t.UsedAt = now }},
	}
	for _, c := range cases {
		tok := good()
		c.mod(tok)
		wantErr(e.t, c.name, e.s.CreateRefreshToken(e.ctx, tok), store.ErrInvalid)
	}
	wantErr(e.t, "nil", e.s.CreateRefreshToken(e.ctx, nil), store.ErrInvalid)
	tok := good()
	if err := e.s.CreateRefreshToken(e.ctx, tok); err != nil {
		e.t.Fatal(err)
	}
	dup := *tok
	wantErr(e.t, "duplicate id", e.s.CreateRefreshToken(e.ctx, &dup), store.ErrConflict)
}

func testRefreshRevokeFamily(e *refreshEnv) {
	fam := randomFamily()
	t1 := e.newToken(fam, "alice")
	t2 := e.newToken(fam, "alice")
	if err := e.s.RevokeRefreshFamily(e.ctx, fam); err != nil {
		e.t.Fatal(err)
	}
	e.wantUseErr("t1", t1, store.ErrNotFound)
	e.wantUseErr("t2", t2, store.ErrNotFound)
	late := &store.RefreshToken{ID: RefreshID("late2"), Family: fam, Username: "alice", Generation: 3,
		IssuedAt: e.clock.Now(), ExpiresAt: e.clock.Now().Add(time.Hour)}
	wantErr(e.t, "create in a revoked family", e.s.CreateRefreshToken(e.ctx, late), store.ErrConflict)
	for _, f := range []string{fam, randomFamily(), "bad{family}"} {
		if err := e.s.RevokeRefreshFamily(e.ctx, f); err != nil {
			e.t.Errorf("RevokeRefreshFamily(%q) = %v, want nil", f, err)
		}
	}
}

func testRefreshRevokeUser(e *refreshEnv) {
	a1 := e.newToken(randomFamily(), "alice")
	a2 := e.newToken(randomFamily(), "alice")
	b1 := e.newToken(randomFamily(), "bob")
	if err := e.s.RevokeUserRefreshTokens(e.ctx, "alice"); err != nil {
		e.t.Fatal(err)
	}
	e.wantUseErr("alice 1", a1, store.ErrNotFound)
	e.wantUseErr("alice 2", a2, store.ErrNotFound)
	e.mustUse(b1)
	if err := e.s.RevokeUserRefreshTokens(e.ctx, "nobody"); err != nil {
		e.t.Errorf("RevokeUserRefreshTokens(unknown) = %v", err)
	}
	// New families of the user work again.
	e.mustUse(e.newToken(randomFamily(), "alice"))
}

func testRefreshFamilyOwner(e *refreshEnv) {
	fam := randomFamily()
	e.newToken(fam, "alice")
	tok := &store.RefreshToken{ID: RefreshID("bob's"), Family: fam, Username: "bob", Generation: 1,
		IssuedAt: e.clock.Now(), ExpiresAt: e.clock.Now().Add(time.Hour)}
	wantErr(e.t, "create in another user's family", e.s.CreateRefreshToken(e.ctx, tok), store.ErrConflict)
}

// testRefreshConcurrentUse: of many concurrent uses of one token, exactly
// one succeeds; the others see a reuse (or the family already revoked).
func testRefreshConcurrentUse(e *refreshEnv) {
	tok := e.newToken(randomFamily(), "alice")
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.use(tok)
		}()
	}
	wg.Wait()
	ok, conflict := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrConflict):
			conflict++
		case errors.Is(err, store.ErrNotFound):
		default:
			e.t.Errorf("concurrent use: %v", err)
		}
	}
	if ok != 1 || conflict < 1 {
		e.t.Errorf("concurrent uses: %d succeeded, %d conflicts; want exactly 1 and at least 1", ok, conflict)
	}
}
