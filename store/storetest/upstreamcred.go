package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/keygate/keygate/store"
)

// Upstream credentials (store.UpstreamCredentials).

func (e *env) creds() store.UpstreamCredentials {
	e.t.Helper()
	u, ok := e.s.(store.UpstreamCredentials)
	if !ok {
		e.t.Fatalf("%T does not implement store.UpstreamCredentials", e.s)
	}
	return u
}

func newCred(account, name string) *store.UpstreamCredential {
	return &store.UpstreamCredential{Account: account, Name: name, Type: "bearer",
		Fields: map[string]string{"validate_url": "http://127.0.0.1/x"},
		Sealed: []byte("sealed-" + account + "-" + name), KeyID: "k1"}
}

func testUpstreamCreateGet(e *env) {
	t, u := e.t, e.creds()
	e.account("acme")
	c := newCred("acme", "billing")
	if err := u.CreateUpstreamCredential(e.ctx, c); err != nil {
		t.Fatalf("create: %v", err)
	}
	if c.Version != 1 {
		t.Errorf("version = %d, want 1", c.Version)
	}
	sameTime(t, "created_at", c.CreatedAt, e.clock.Now())
	got, err := u.GetUpstreamCredential(e.ctx, "acme", "billing")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.Type != "bearer" || got.Fields["validate_url"] != "http://127.0.0.1/x" || !bytes.Equal(got.Sealed, c.Sealed) ||
		got.KeyID != "k1" || got.Version != 1 || got.Account != "acme" || got.Name != "billing" {
		t.Errorf("got %+v, want %+v", got, c)
	}
	sameTime(t, "created_at", got.CreatedAt, e.clock.Now())
	sameTime(t, "updated_at", got.UpdatedAt, e.clock.Now())

	tests := []struct {
		name string
		c    *store.UpstreamCredential
		want error
	}{
		{"duplicate", newCred("acme", "billing"), store.ErrConflict},
		{"no account", newCred("nope", "billing"), store.ErrNotFound},
		{"empty name", newCred("acme", ""), store.ErrInvalid},
		{"slash in name", newCred("acme", "a/b"), store.ErrInvalid},
		{"control in name", newCred("acme", "a\x00b"), store.ErrInvalid},
		{"no secret", func() *store.UpstreamCredential { c := newCred("acme", "x"); c.Sealed = nil; return c }(), store.ErrInvalid},
		{"no type", func() *store.UpstreamCredential { c := newCred("acme", "x"); c.Type = ""; return c }(), store.ErrInvalid},
	}
	for _, tc := range tests {
		wantErr(t, "create "+tc.name, u.CreateUpstreamCredential(e.ctx, tc.c), tc.want)
	}
	_, err = u.GetUpstreamCredential(e.ctx, "acme", "other")
	wantErr(t, "get missing", err, store.ErrNotFound)
	_, err = u.GetUpstreamCredential(e.ctx, "other", "billing")
	wantErr(t, "get other account", err, store.ErrNotFound)
}

func testUpstreamList(e *env) {
	t, u := e.t, e.creds()
	e.account("acme")
	e.account("beta")
	for _, n := range []string{"zeta", "alpha", "mid"} {
		if err := u.CreateUpstreamCredential(e.ctx, newCred("acme", n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := u.CreateUpstreamCredential(e.ctx, newCred("beta", "alpha")); err != nil {
		t.Fatal(err)
	}
	l, err := u.ListUpstreamCredentials(e.ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range l {
		if c.Account != "acme" {
			t.Errorf("list acme returned a credential of %q", c.Account)
		}
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "alpha,mid,zeta" {
		t.Errorf("names = %v, want alpha,mid,zeta", names)
	}
	l, err = u.ListUpstreamCredentials(e.ctx, "empty")
	if err != nil || l == nil || len(l) != 0 {
		t.Errorf("list of an account without credentials = %v, %v; want [], nil", l, err)
	}
}

func testUpstreamUpdate(e *env) {
	t, u := e.t, e.creds()
	e.account("acme")
	c := newCred("acme", "billing")
	if err := u.CreateUpstreamCredential(e.ctx, c); err != nil {
		t.Fatal(err)
	}
	created := c.CreatedAt
	e.clock.Advance(10e9)
	upd := c.Clone()
	upd.Sealed, upd.KeyID, upd.Validation, upd.ValidatedAt = []byte("new-sealed"), "k2", "ok", e.clock.Now()
	upd.CreatedAt = created.Add(-1e12) // ignored
	if err := u.UpdateUpstreamCredential(e.ctx, upd); err != nil {
		t.Fatalf("update: %v", err)
	}
	if upd.Version != 2 {
		t.Errorf("version after update = %d, want 2", upd.Version)
	}
	got, err := u.GetUpstreamCredential(e.ctx, "acme", "billing")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Sealed) != "new-sealed" || got.KeyID != "k2" || got.Validation != "ok" || got.Version != 2 {
		t.Errorf("after update: %+v", got)
	}
	sameTime(t, "created_at kept", got.CreatedAt, created)
	sameTime(t, "updated_at", got.UpdatedAt, e.clock.Now())
	sameTime(t, "validated_at", got.ValidatedAt, e.clock.Now())

	// A stale version changes nothing.
	stale := c.Clone() // version 1
	stale.Sealed = []byte("lost-update")
	wantErr(t, "stale update", u.UpdateUpstreamCredential(e.ctx, stale), store.ErrConflict)
	got, _ = u.GetUpstreamCredential(e.ctx, "acme", "billing")
	if got == nil || string(got.Sealed) != "new-sealed" {
		t.Errorf("stale update changed the record: %+v", got)
	}
	wantErr(t, "update missing", u.UpdateUpstreamCredential(e.ctx, newCred("acme", "nope")), store.ErrNotFound)

	// Concurrent updates from the same version: exactly one wins.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := got.Clone()
			n.Sealed = []byte(strconv.Itoa(i))
			if err := u.UpdateUpstreamCredential(e.ctx, n); err == nil {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d concurrent updates from one version succeeded, want 1", wins.Load())
	}
}

func testUpstreamDelete(e *env) {
	t, u := e.t, e.creds()
	e.account("acme")
	e.account("gone")
	for _, c := range []*store.UpstreamCredential{newCred("acme", "a"), newCred("acme", "b"), newCred("gone", "a")} {
		if err := u.CreateUpstreamCredential(e.ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := u.DeleteUpstreamCredential(e.ctx, "acme", "a"); err != nil {
		t.Fatal(err)
	}
	_, err := u.GetUpstreamCredential(e.ctx, "acme", "a")
	wantErr(t, "get deleted", err, store.ErrNotFound)
	wantErr(t, "delete twice", u.DeleteUpstreamCredential(e.ctx, "acme", "a"), store.ErrNotFound)
	if _, err := u.GetUpstreamCredential(e.ctx, "acme", "b"); err != nil {
		t.Errorf("sibling went too: %v", err)
	}
	// Deleting an account deletes its credentials; a new account of the
	// same name starts without them.
	if err := e.s.DeleteAccount(e.ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	e.account("gone")
	if l, err := u.ListUpstreamCredentials(e.ctx, "gone"); err != nil || len(l) != 0 {
		t.Errorf("credentials of a deleted account survive: %v, %v", l, err)
	}
}

// testUpstreamCreateDuringAccountDelete: a credential created while its
// account is being deleted either fails or is deleted with the account; it
// never survives into a new account of the same name.
func testUpstreamCreateDuringAccountDelete(e *env) {
	t, u := e.t, e.creds()
	for i := range 150 {
		name := fmt.Sprintf("race%d", i)
		e.account(name)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			err := u.CreateUpstreamCredential(e.ctx, newCred(name, "billing"))
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("create during delete: %v, want success or ErrNotFound", err)
			}
		}()
		go func() {
			defer wg.Done()
			if err := e.s.DeleteAccount(e.ctx, name); err != nil {
				t.Errorf("delete account: %v", err)
			}
		}()
		wg.Wait()
		e.account(name)
		if l, err := u.ListUpstreamCredentials(e.ctx, name); err != nil || len(l) != 0 {
			t.Fatalf("round %d: a credential created during the account's deletion survives it: %v, %v", i, l, err)
		}
	}
}

func testUpstreamInvalidations(e *env) {
	t, u := e.t, e.creds()
	e.account("acme")
	e.account("probe")
	w := e.watch()
	c := newCred("acme", "billing")
	is := func(i store.Invalidation) bool {
		return i.CredentialOnly() && i.UpstreamCredential == store.UpstreamCredentialRef{Account: "acme", Name: "billing"} &&
			i.Account == "" && i.Username == "" && i.KeyID == "" && !i.All()
	}
	broader := func(i store.Invalidation) bool { return i.All() || i.Account == "acme" || i.Username != "" }
	steps := []struct {
		name string
		fn   func() error
	}{
		{"create", func() error { return u.CreateUpstreamCredential(e.ctx, c) }},
		{"update", func() error { return u.UpdateUpstreamCredential(e.ctx, c.Clone()) }},
		{"delete", func() error { return u.DeleteUpstreamCredential(e.ctx, "acme", "billing") }},
	}
	for _, st := range steps {
		if err := st.fn(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		w.wait(st.name, is)
		w.quiet(st.name, "probe", broader)
	}
	if err := u.CreateUpstreamCredential(e.ctx, newCred("acme", "billing")); err != nil {
		t.Fatal(err)
	}
	w.wait("re-create", is)
	if err := e.s.DeleteAccount(e.ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	w.wait("delete account", is)
}

// testUpstreamSecretNotSerialised: the JSON of a record never carries the
// ciphertext or the key id.
func testUpstreamSecretNotSerialised(e *env) {
	t, u := e.t, e.creds()
	e.account("acme")
	if err := u.CreateUpstreamCredential(e.ctx, newCred("acme", "billing")); err != nil {
		t.Fatal(err)
	}
	got, err := u.GetUpstreamCredential(e.ctx, "acme", "billing")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	if bytes.Contains(b, []byte("sealed-")) || bytes.Contains(b, []byte("c2VhbGVk")) || bytes.Contains(b, []byte(`"k1"`)) {
		t.Errorf("record JSON carries the sealed secret or key id: %s", b)
	}
}
