package redisstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
)

// TestDanglingUsernameRepaired simulates a crash inside DeleteUser after the
// user's records went but before the directory entries did: the user reads
// as gone, and the username can be taken again.
func TestDanglingUsernameRepaired(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, []string{srv.Addr()}, nil, 0)
	ctx := context.Background()
	mustNil(t, s.CreateAccount(ctx, &store.Account{Name: "a1"}))
	mustNil(t, s.CreateAccount(ctx, &store.Account{Name: "a2"}))
	mustNil(t, s.CreateUser(ctx, &store.User{Username: "alice", Account: "a1"}))
	k := &store.APIKey{Username: "alice", Name: "ci", Hash: []byte("h")}
	mustNil(t, s.CreateAPIKey(ctx, k))
	tag, err := s.userTag(ctx, "alice")
	mustNil(t, err)
	if _, _, err := s.deleteUserData(ctx, tag); err != nil { // the "crash" follows
		t.Fatal(err)
	}
	if _, err := s.GetUser(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUser with a dangling index = %v, want ErrNotFound", err)
	}
	if _, _, err := s.LookupAPIKey(ctx, k.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LookupAPIKey of a deleted user's key = %v", err)
	}
	if list, err := s.ListUsers(ctx, "a1"); err != nil || len(list) != 0 {
		t.Errorf("ListUsers(a1) = %v, %v; want none", list, err)
	}
	mustNil(t, s.CreateUser(ctx, &store.User{Username: "alice", Account: "a2"}))
	if u, err := s.GetUser(ctx, "alice"); err != nil || u.Account != "a2" {
		t.Errorf("re-created alice = %+v, %v", u, err)
	}
	if list, _ := s.ListUsers(ctx, "a1"); len(list) != 0 {
		t.Errorf("new alice listed in her old account: %v", list)
	}
	// Deleting the old account must not touch the new alice.
	mustNil(t, s.DeleteAccount(ctx, "a1"))
	if u, err := s.GetUser(ctx, "alice"); err != nil || u.Account != "a2" {
		t.Errorf("alice after deleting a1 = %+v, %v", u, err)
	}
	mustNil(t, s.DeleteUser(ctx, "alice"))
}

// TestDeleteAccountResumes simulates a crash inside DeleteAccount after the
// account was marked deleting: it reads as gone, nobody can join it or
// re-create it, and a second DeleteAccount finishes the job.
func TestDeleteAccountResumes(t *testing.T) {
	srv := testredis.Start(t)
	s := newTestStore(t, []string{srv.Addr()}, nil, 0)
	ctx := context.Background()
	mustNil(t, s.CreateAccount(ctx, &store.Account{Name: "acme"}))
	mustNil(t, s.CreateUser(ctx, &store.User{Username: "alice", Account: "acme"}))
	k := &store.APIKey{Username: "alice", Name: "ci", Hash: []byte("h")}
	mustNil(t, s.CreateAPIKey(ctx, k))
	mustNil(t, scriptDeleteAccountBegin.Run(ctx, s.c, []string{s.acctKey("acme"), s.membersKey("acme")}).Err())

	if _, err := s.GetAccount(ctx, "acme"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAccount while deleting = %v", err)
	}
	if list, _ := s.ListAccounts(ctx); len(list) != 0 {
		t.Errorf("ListAccounts while deleting = %v", list)
	}
	if err := s.CreateUser(ctx, &store.User{Username: "bob", Account: "acme"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CreateUser in a deleting account = %v, want ErrNotFound", err)
	}
	if _, err := s.SetAccountState(ctx, "acme", store.StateDisabled); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetAccountState while deleting = %v", err)
	}
	if err := s.CreateAccount(ctx, &store.Account{Name: "acme"}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateAccount while deleting = %v, want ErrConflict", err)
	}
	mustNil(t, s.DeleteAccount(ctx, "acme"))
	if _, err := s.GetAPIKey(ctx, k.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("key after resumed delete = %v", err)
	}
	if _, err := s.GetUser(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("user after resumed delete = %v", err)
	}
	mustNil(t, s.CreateAccount(ctx, &store.Account{Name: "acme"}))
	mustNil(t, s.CreateUser(ctx, &store.User{Username: "alice", Account: "acme"}))
	// Nothing of the deleted account is left but the new records and the
	// bounded invalidation log (watch.go), which is not the account's.
	n, err := s.c.Keys(ctx, s.prefix+"*").Result()
	mustNil(t, err)
	n = slices.DeleteFunc(n, func(k string) bool { return k == s.prefix+"invlog" })
	if len(n) != 5 { // acct, accts, members, un, user
		t.Errorf("%d keys left, want 5: %q", len(n), n)
	}
}

// TestAuth uses a password-protected Redis: the right password works; a
// wrong one is ErrUnavailable and never shows in the error.
func TestAuth(t *testing.T) {
	const pw = "s3cr3t-Redis-pw" //nolint:gosec // test data, not a real credential
	srv := testredis.Start(t, "--requirepass", pw)
	ctx := context.Background()
	good, err := New(configs.Redis{Addrs: []string{srv.Addr()}, Password: pw, KeyPrefix: uniquePrefix()}, Options{})
	mustNil(t, err)
	defer func() { _ = good.Close() }()
	mustNil(t, good.Ping(ctx))
	mustNil(t, good.CreateAccount(ctx, &store.Account{Name: "acme"}))

	for _, bad := range []string{"", "wrong-" + pw} {
		s, err := New(configs.Redis{Addrs: []string{srv.Addr()}, Password: bad, KeyPrefix: good.prefix}, Options{})
		mustNil(t, err)
		_, gerr := s.GetAccount(ctx, "acme")
		perr := s.Ping(ctx)
		_ = s.Close()
		for _, err := range []error{gerr, perr} {
			if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) {
				t.Errorf("password of %d bytes: %v, want ErrUnavailable", len(bad), err)
			}
			if err != nil && strings.Contains(err.Error(), pw) {
				t.Errorf("error shows the password: %v", err)
			}
		}
	}
}
