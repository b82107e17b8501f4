package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/keygate/keygate/store"
)

// keys2Tests are the cases of issue 18 (update, rotate, metadata,
// allow-lists, service accounts), run by Run with the others.
var keys2Tests = []struct {
	name string
	fn   func(e *env)
}{
	{"Keys/Extras", testKeyExtras},
	{"Keys/Update", testKeyUpdate},
	{"Keys/UpdateInvalidates", testKeyUpdateInvalidates},
	{"Keys/Rotate", testKeyRotate},
	{"Keys/RotateGraceZero", testKeyRotateGraceZero},
	{"Keys/RotateRevokeNewInGrace", testKeyRotateRevokeNewInGrace},
	{"Keys/RotateConcurrent", testKeyRotateConcurrent},
	{"Users/Service", testUserService},
	{"Keys/ListExpiresBefore", testKeyListExpiresBefore},
}

// testKeyListExpiresBefore: KeyFilter.ExpiresBefore keeps the keys with an
// expiry before it (never those without one), with the status filter and
// across pages.
func testKeyListExpiresBefore(e *env) {
	t := e.t
	e.account("acme")
	e.user("acme", "alice", store.TypeUser)
	now := e.clock.Now()
	var soon []*store.APIKey
	for i := range 5 {
		soon = append(soon, e.key("alice", fmt.Sprintf("soon%d", i), expires(now.Add(time.Duration(i+1)*time.Hour))))
	}
	e.key("alice", "later", expires(now.Add(30*24*time.Hour)))
	e.key("alice", "never")
	revoked := e.key("alice", "revoked", expires(now.Add(time.Hour)))
	if _, _, err := e.s.RevokeAPIKey(e.ctx, revoked.ID, now); err != nil {
		t.Fatal(err)
	}
	before := now.Add(7 * 24 * time.Hour)
	if got := e.list(store.KeyFilter{ExpiresBefore: before, Limit: 2}); !slices.Equal(got, sortedIDs(soon...)) {
		t.Errorf("active expiring = %v, want %v", got, sortedIDs(soon...))
	}
	if got := e.list(store.KeyFilter{Username: "alice", ExpiresBefore: before, Status: store.StatusAll}); !slices.Equal(got, sortedIDs(append(soon, revoked)...)) {
		t.Errorf("all expiring = %v", got)
	}
	if got := e.list(store.KeyFilter{ExpiresBefore: now.Add(90 * time.Minute)}); !slices.Equal(got, []string{soon[0].ID}) {
		t.Errorf("within 90m = %v", got)
	}
}

func rawp(s string) *json.RawMessage { m := json.RawMessage(s); return &m }

// testKeyExtras: metadata and the allow-list are stored normalised (compact
// JSON, canonical prefixes) and read back by Get, Lookup and List.
func testKeyExtras(e *env) {
	t := e.t
	e.account("acme")
	e.user("acme", "alice", store.TypeUser)
	k := e.key("alice", "ci", func(k *store.APIKey) {
		k.Metadata = json.RawMessage(`{ "team" : "core", "tier": 2 }`)
		k.AllowedCIDRs = []string{"10.1.2.3/8", "2001:db8::1", "::ffff:192.0.2.0/120"}
	})
	want := func(what string, got *store.APIKey) {
		t.Helper()
		if string(got.Metadata) != `{"team":"core","tier":2}` {
			t.Errorf("%s: metadata = %s", what, got.Metadata)
		}
		if w := []string{"10.0.0.0/8", "2001:db8::1/128", "192.0.2.0/24"}; !slices.Equal(got.AllowedCIDRs, w) {
			t.Errorf("%s: allowed_cidrs = %q, want %q", what, got.AllowedCIDRs, w)
		}
		if got.RotatedTo != "" {
			t.Errorf("%s: rotated_to = %q", what, got.RotatedTo)
		}
	}
	want("create", k)
	want("get", e.getKey(k.ID))
	lk, _, err := e.s.LookupAPIKey(e.ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	want("lookup", lk)
	p, err := e.s.ListAPIKeys(e.ctx, store.KeyFilter{Username: "alice"})
	if err != nil || len(p.Keys) != 1 {
		t.Fatalf("list = %v, %v", p, err)
	}
	want("list", &p.Keys[0])
	// A key without extras has none.
	plain := e.key("alice", "plain")
	if g := e.getKey(plain.ID); g.Metadata != nil || g.AllowedCIDRs != nil {
		t.Errorf("plain key: metadata %s, cidrs %q", g.Metadata, g.AllowedCIDRs)
	}
	for _, bad := range []func(*store.APIKey){
		func(k *store.APIKey) { k.Metadata = json.RawMessage(`[1]`) },
		func(k *store.APIKey) { k.Metadata = json.RawMessage(`{"a b":1}`) },
		func(k *store.APIKey) { k.Metadata = json.RawMessage(`{"a":1,"a":2}`) },
		func(k *store.APIKey) { k.AllowedCIDRs = []string{"10.0.0.0/33"} },
		func(k *store.APIKey) { k.AllowedCIDRs = []string{"fe80::1%eth0"} },
	} {
		nk := &store.APIKey{Username: "alice", Name: "bad", Hash: []byte("h")}
		bad(nk)
		wantErr(t, "create with bad extras", e.s.CreateAPIKey(e.ctx, nk), store.ErrInvalid)
	}
}

// testKeyUpdate: each field changes alone; the expiry only moves earlier;
// revoked and expired keys cannot change; unknown ids are ErrNotFound.
func testKeyUpdate(e *env) {
	t := e.t
	e.account("acme")
	e.user("acme", "alice", store.TypeUser, "a", "b")
	now := e.clock.Now()
	k := e.key("alice", "ci", expires(now.Add(48*time.Hour)), func(k *store.APIKey) {
		k.Description, k.Roles = "old", []string{"a", "b"}
		k.Metadata = json.RawMessage(`{"team":"core"}`)
	})
	desc, roles, cidrs := "new", []string{"a"}, []string{"192.0.2.7"}
	earlier := now.Add(24 * time.Hour)
	got, err := e.s.UpdateAPIKey(e.ctx, k.ID, store.KeyUpdate{Description: &desc})
	if err != nil {
		t.Fatal(err)
	}
	if got.Description != "new" || !slices.Equal(got.Roles, []string{"a", "b"}) || string(got.Metadata) != `{"team":"core"}` {
		t.Errorf("after description: %+v", got)
	}
	if _, err := e.s.UpdateAPIKey(e.ctx, k.ID, store.KeyUpdate{Roles: &roles, AllowedCIDRs: &cidrs,
		Metadata: rawp(`{"tier":"gold"}`), ExpiresAt: &earlier}); err != nil {
		t.Fatal(err)
	}
	g := e.getKey(k.ID)
	if g.Description != "new" || !slices.Equal(g.Roles, roles) || string(g.Metadata) != `{"tier":"gold"}` ||
		!slices.Equal(g.AllowedCIDRs, []string{"192.0.2.7/32"}) || g.Name != "ci" || g.Username != "alice" {
		t.Errorf("stored after update: %+v", g)
	}
	sameTime(t, "ExpiresAt", g.ExpiresAt, earlier)
	// Clearing metadata and the allow-list.
	empty := []string{}
	if _, err := e.s.UpdateAPIKey(e.ctx, k.ID, store.KeyUpdate{Metadata: rawp(`{}`), AllowedCIDRs: &empty}); err != nil {
		t.Fatal(err)
	}
	if g := e.getKey(k.ID); g.Metadata != nil || g.AllowedCIDRs != nil {
		t.Errorf("after clearing: metadata %s, cidrs %q", g.Metadata, g.AllowedCIDRs)
	}
	// Never later, never removed.
	later, zero := earlier.Add(time.Second), time.Time{}
	_, err = e.s.UpdateAPIKey(e.ctx, k.ID, store.KeyUpdate{ExpiresAt: &later})
	wantErr(t, "later expiry", err, store.ErrInvalid)
	_, err = e.s.UpdateAPIKey(e.ctx, k.ID, store.KeyUpdate{ExpiresAt: &zero})
	wantErr(t, "zero expiry", err, store.ErrInvalid)
	sameTime(t, "ExpiresAt after refused updates", e.getKey(k.ID).ExpiresAt, earlier)
	// A key without expiry may get one.
	forever := e.key("alice", "forever")
	if g, err := e.s.UpdateAPIKey(e.ctx, forever.ID, store.KeyUpdate{ExpiresAt: &later}); err != nil || !g.ExpiresAt.Equal(later) {
		t.Errorf("first expiry: %v, %v", g, err)
	}
	// Name uniqueness still holds after an update.
	err = e.s.CreateAPIKey(e.ctx, &store.APIKey{Username: "alice", Name: "ci", Hash: []byte("h")})
	wantErr(t, "create name of updated key", err, store.ErrConflict)
	// Invalid values change nothing.
	bad := []string{"nope"}
	_, err = e.s.UpdateAPIKey(e.ctx, k.ID, store.KeyUpdate{AllowedCIDRs: &bad})
	wantErr(t, "bad cidr", err, store.ErrInvalid)
	_, err = e.s.UpdateAPIKey(e.ctx, k.ID, store.KeyUpdate{Metadata: rawp(`"x"`)})
	wantErr(t, "bad metadata", err, store.ErrInvalid)
	// Revoked and expired keys are final.
	if _, _, err := e.s.RevokeAPIKey(e.ctx, forever.ID, now); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.UpdateAPIKey(e.ctx, forever.ID, store.KeyUpdate{Description: &desc})
	wantErr(t, "update revoked", err, store.ErrConflict)
	e.clock.Advance(25 * time.Hour)
	_, err = e.s.UpdateAPIKey(e.ctx, k.ID, store.KeyUpdate{Description: &desc})
	wantErr(t, "update expired", err, store.ErrConflict)
	_, err = e.s.UpdateAPIKey(e.ctx, "0000000000000000000Z", store.KeyUpdate{Description: &desc})
	wantErr(t, "update unknown", err, store.ErrNotFound)
}

// testKeyUpdateInvalidates: an update publishes an invalidation of that key
// only (KeyOnly); a no-op update publishes nothing.
func testKeyUpdateInvalidates(e *env) {
	e.account("acme")
	e.account("probe")
	e.user("acme", "alice", store.TypeUser, "a")
	k := e.key("alice", "ci")
	w := e.watch()
	desc := "changed"
	if _, err := e.s.UpdateAPIKey(e.ctx, k.ID, store.KeyUpdate{Description: &desc}); err != nil {
		e.t.Fatal(err)
	}
	w.wait("update", func(inv store.Invalidation) bool {
		return inv.KeyOnly() && inv.KeyID == k.ID && inv.Username == "alice"
	})
	if _, err := e.s.UpdateAPIKey(e.ctx, k.ID, store.KeyUpdate{Description: &desc}); err != nil {
		e.t.Fatal(err)
	}
	w.quiet("no-op update", "probe", func(inv store.Invalidation) bool { return inv.KeyID == k.ID || inv.Username == "alice" })
	_, _, err := e.s.RotateAPIKey(e.ctx, k.ID, store.KeyRotation{Hash: []byte("h2"), Grace: time.Hour})
	if err != nil {
		e.t.Fatal(err)
	}
	w.wait("rotate", func(inv store.Invalidation) bool { return inv.KeyOnly() && inv.KeyID == k.ID })
}

// testKeyRotate: the new key copies the old one's fields and takes its name;
// the old one expires at min(expiry, now+grace), records rotated_to, and is
// listed with it; it cannot be rotated or updated into a second life.
func testKeyRotate(e *env) {
	t := e.t
	e.account("acme")
	e.user("acme", "alice", store.TypeUser, "a")
	now := e.clock.Now()
	exp := now.Add(72 * time.Hour)
	k := e.key("alice", "ci", expires(exp), func(k *store.APIKey) {
		k.Description, k.Roles = "d", []string{"a"}
		k.Metadata, k.AllowedCIDRs = json.RawMessage(`{"team":"core"}`), []string{"10.0.0.0/8"}
	})
	e.clock.Advance(time.Minute)
	nk, old, err := e.s.RotateAPIKey(e.ctx, k.ID, store.KeyRotation{Hash: []byte("new-hash"), Grace: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if nk.ID == "" || nk.ID == k.ID || nk.Name != "ci" || nk.Description != "d" || !slices.Equal(nk.Roles, []string{"a"}) ||
		string(nk.Metadata) != `{"team":"core"}` || !slices.Equal(nk.AllowedCIDRs, []string{"10.0.0.0/8"}) ||
		nk.Account != "acme" || nk.Username != "alice" || nk.RotatedTo != "" {
		t.Errorf("new key = %+v", nk)
	}
	sameTime(t, "new ExpiresAt", nk.ExpiresAt, exp)
	sameTime(t, "new CreatedAt", nk.CreatedAt, e.clock.Now())
	sameTime(t, "old ExpiresAt", old.ExpiresAt, e.clock.Now().Add(24*time.Hour))
	if old.RotatedTo != nk.ID {
		t.Errorf("old rotated_to = %q, want %q", old.RotatedTo, nk.ID)
	}
	g := e.getKey(nk.ID)
	if string(g.Hash) != "new-hash" || g.Name != "ci" {
		t.Errorf("stored new key = %+v", g)
	}
	go2 := e.getKey(k.ID)
	if go2.RotatedTo != nk.ID || string(go2.Hash) != string(k.Hash) {
		t.Errorf("stored old key = %+v", go2)
	}
	sameTime(t, "stored old ExpiresAt", go2.ExpiresAt, e.clock.Now().Add(24*time.Hour))
	// Both are active and listed during the grace period.
	if ids := e.list(store.KeyFilter{Username: "alice", Name: "ci"}); !slices.Equal(ids, sortedIDs(k, nk)) {
		t.Errorf("listed = %v, want both", ids)
	}
	// The name belongs to the new key.
	err = e.s.CreateAPIKey(e.ctx, &store.APIKey{Username: "alice", Name: "ci", Hash: []byte("h")})
	wantErr(t, "create rotated name", err, store.ErrConflict)
	// A rotated key is not rotated again; the new one may be.
	_, _, err = e.s.RotateAPIKey(e.ctx, k.ID, store.KeyRotation{Hash: []byte("h3"), Grace: time.Hour})
	wantErr(t, "rotate rotated", err, store.ErrConflict)
	// Revoking the old key leaves the new key's name alone.
	if _, _, err := e.s.RevokeAPIKey(e.ctx, k.ID, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	err = e.s.CreateAPIKey(e.ctx, &store.APIKey{Username: "alice", Name: "ci", Hash: []byte("h")})
	wantErr(t, "create name after revoking the old key", err, store.ErrConflict)
	_, _, err = e.s.RotateAPIKey(e.ctx, k.ID, store.KeyRotation{Hash: []byte("h3")})
	wantErr(t, "rotate revoked", err, store.ErrConflict)
	// Grace beyond the expiry: the old key keeps its own (earlier) expiry.
	short := e.key("alice", "short", expires(e.clock.Now().Add(time.Hour)))
	_, old, err = e.s.RotateAPIKey(e.ctx, short.ID, store.KeyRotation{Hash: []byte("h4"), Grace: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	sameTime(t, "old ExpiresAt capped", old.ExpiresAt, short.ExpiresAt)
	// Bad input.
	_, _, err = e.s.RotateAPIKey(e.ctx, nk.ID, store.KeyRotation{Hash: []byte("h"), Grace: -time.Second})
	wantErr(t, "negative grace", err, store.ErrInvalid)
	_, _, err = e.s.RotateAPIKey(e.ctx, nk.ID, store.KeyRotation{})
	wantErr(t, "no hash", err, store.ErrInvalid)
	_, _, err = e.s.RotateAPIKey(e.ctx, "0000000000000000000Z", store.KeyRotation{Hash: []byte("h")})
	wantErr(t, "rotate unknown", err, store.ErrNotFound)
	// After the grace period the old key is expired; the new one is
	// active, and its name still taken.
	e.clock.Advance(25 * time.Hour)
	if st := e.getKey(nk.ID).Status(e.clock.Now()); st != store.KeyActive {
		t.Errorf("new key status = %s", st)
	}
	err = e.s.CreateAPIKey(e.ctx, &store.APIKey{Username: "alice", Name: "ci", Hash: []byte("h")})
	wantErr(t, "create name after grace", err, store.ErrConflict)
}

// testKeyRotateGraceZero: grace 0 (a leaked key) expires the old key at once.
func testKeyRotateGraceZero(e *env) {
	t := e.t
	e.account("acme")
	e.user("acme", "alice", store.TypeUser)
	k := e.key("alice", "ci")
	nk, old, err := e.s.RotateAPIKey(e.ctx, k.ID, store.KeyRotation{Hash: []byte("h2")})
	if err != nil {
		t.Fatal(err)
	}
	if st := e.getKey(k.ID).Status(e.clock.Now()); st != store.KeyExpired {
		t.Errorf("old key status = %s, want expired", st)
	}
	sameTime(t, "old ExpiresAt", old.ExpiresAt, e.clock.Now())
	if !nk.ExpiresAt.IsZero() {
		t.Errorf("new key of a key without expiry expires at %v", nk.ExpiresAt)
	}
	if ids := e.list(store.KeyFilter{Username: "alice"}); !slices.Equal(ids, []string{nk.ID}) {
		t.Errorf("active keys = %v, want only the new one", ids)
	}
}

// testKeyRotateRevokeNewInGrace: the name stays held while any key of that
// name is active. Revoking the new key of a rotation (or of two) while an
// old one is in its grace does not free the name; it is free once the last
// old key's grace ends, or it is revoked too.
func testKeyRotateRevokeNewInGrace(e *env) {
	t := e.t
	e.account("acme")
	e.user("acme", "alice", store.TypeUser)
	k := e.key("alice", "ci")
	mid, _, err := e.s.RotateAPIKey(e.ctx, k.ID, store.KeyRotation{Hash: []byte("h2"), Grace: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	nk, _, err := e.s.RotateAPIKey(e.ctx, mid.ID, store.KeyRotation{Hash: []byte("h3"), Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	third := func() error {
		return e.s.CreateAPIKey(e.ctx, &store.APIKey{Username: "alice", Name: "ci", Hash: []byte("h4")})
	}
	if _, _, err := e.s.RevokeAPIKey(e.ctx, nk.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "create while two old keys are in grace", third(), store.ErrConflict)
	// mid's grace (1h) ends first; k's (2h) still holds the name.
	e.clock.Advance(90 * time.Minute)
	wantErr(t, "create while the first key is in grace", third(), store.ErrConflict)
	if _, _, err := e.s.RevokeAPIKey(e.ctx, k.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := third(); err != nil {
		t.Fatalf("create once no key of the name is active: %v", err)
	}
	// Without a revocation the grace's end frees the name too.
	a := e.key("alice", "deploy")
	b, _, err := e.s.RotateAPIKey(e.ctx, a.ID, store.KeyRotation{Hash: []byte("h5"), Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.s.RevokeAPIKey(e.ctx, b.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}
	err = e.s.CreateAPIKey(e.ctx, &store.APIKey{Username: "alice", Name: "deploy", Hash: []byte("h6")})
	wantErr(t, "create during the grace", err, store.ErrConflict)
	e.clock.Advance(time.Hour + time.Second)
	if err := e.s.CreateAPIKey(e.ctx, &store.APIKey{Username: "alice", Name: "deploy", Hash: []byte("h6")}); err != nil {
		t.Fatalf("create after the grace: %v", err)
	}
}

// testKeyRotateConcurrent: of concurrent rotations of one key exactly one
// succeeds; the others get ErrConflict; one new key exists.
func testKeyRotateConcurrent(e *env) {
	t := e.t
	e.account("acme")
	e.user("acme", "alice", store.TypeUser)
	k := e.key("alice", "ci")
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	news := make([]*store.APIKey, n)
	for i := range n {
		wg.Go(func() {
			news[i], _, errs[i] = e.s.RotateAPIKey(e.ctx, k.ID, store.KeyRotation{Hash: fmt.Appendf(nil, "h%d", i), Grace: time.Hour})
		})
	}
	wg.Wait()
	ok := 0
	var winner *store.APIKey
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
			winner = news[i]
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("rotation %d: %v, want ErrConflict", i, err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d rotations succeeded, want exactly 1", ok)
	}
	if ids := e.list(store.KeyFilter{Username: "alice", Status: store.StatusAll}); !slices.Equal(ids, sortedIDs(k, winner)) {
		t.Errorf("keys = %v, want the old and the one new key", ids)
	}
	if got := e.getKey(k.ID).RotatedTo; got != winner.ID {
		t.Errorf("rotated_to = %q, want the winner %q", got, winner.ID)
	}
}

// testUserService: a service account has no password, and its type is fixed.
func testUserService(e *env) {
	t := e.t
	e.account("acme")
	svc := &store.User{Username: "ci-bot", Account: "acme", Type: store.TypeService, Roles: []string{"deploy"}}
	if err := e.s.CreateUser(e.ctx, svc); err != nil {
		t.Fatal(err)
	}
	if g := e.getUser("ci-bot"); g.Type != store.TypeService || g.PasswordHash != "" {
		t.Errorf("stored service account = %+v", g)
	}
	err := e.s.CreateUser(e.ctx, &store.User{Username: "bot2", Account: "acme", Type: store.TypeService, PasswordHash: "$argon2id$x"}) //nolint:gosec // test data, not a real credential
	wantErr(t, "service account with a password", err, store.ErrInvalid)
	h := "$argon2id$x"
	_, err = e.s.UpdateUser(e.ctx, "ci-bot", store.UserUpdate{PasswordHash: &h})
	wantErr(t, "set a service account's password", err, store.ErrInvalid)
	typ := store.TypeUser
	_, err = e.s.UpdateUser(e.ctx, "ci-bot", store.UserUpdate{Type: &typ})
	wantErr(t, "service account to user", err, store.ErrInvalid)
	e.user("acme", "alice", store.TypeUser)
	typ = store.TypeService
	_, err = e.s.UpdateUser(e.ctx, "alice", store.UserUpdate{Type: &typ})
	wantErr(t, "user to service account", err, store.ErrInvalid)
	// Its keys work like any other.
	k := e.key("ci-bot", "deploy")
	if _, u, err := e.s.LookupAPIKey(e.ctx, k.ID); err != nil || u.Type != store.TypeService {
		t.Errorf("lookup service key: %v, %v", u, err)
	}
}
