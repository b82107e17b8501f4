package boltstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// TestLegacyNamesKeepWorking: users and accounts stored before canonical
// names (upper case, a space, a Cyrillic look-alike) are still found by
// their exact spelling, can still get API keys and new users, and a
// canonical user is found by any spelling of its name (issue 12 item 7).
func TestLegacyNamesKeepWorking(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "kg.db"), time.Now)
	ctx := context.Background()
	now := time.Now()
	for _, u := range []store.User{
		{Username: "Alice", Account: "Legacy Corp"},
		{Username: "\u0430dmin", Account: "Legacy Corp"}, // Cyrillic а
		{Username: "Bob Smith", Account: "Legacy Corp"},
	} {
		u.Type, u.State, u.Generation, u.CreatedAt, u.UpdatedAt = store.TypeUser, store.StateEnabled, 1, now, now
		if err := s.PutLegacyUser(&u); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateAccount(ctx, &store.Account{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "admin"} {
		if err := s.CreateUser(ctx, &store.User{Username: name, Account: "acme"}); err != nil {
			t.Fatalf("CreateUser(%q): %v", name, err)
		}
	}
	// A legacy account takes new (canonical) users; a legacy user new keys.
	if err := s.CreateUser(ctx, &store.User{Username: "carol", Account: "Legacy Corp"}); err != nil {
		t.Errorf("CreateUser in a legacy account: %v", err)
	}
	if err := s.CreateAPIKey(ctx, &store.APIKey{Username: "Bob Smith", Name: "ci", Hash: []byte("h")}); err != nil {
		t.Errorf("CreateAPIKey for a legacy user: %v", err)
	}

	tests := []struct {
		presented, want string // want "" = not found
	}{
		{"Alice", "Alice"},           // legacy, exact spelling wins
		{"alice", "alice"},           // canonical
		{"ALICE", "alice"},           // another spelling: the canonical user
		{"ａｌｉｃｅ", "alice"},           // fullwidth
		{"\u0430dmin", "\u0430dmin"}, // legacy look-alike: only exactly
		{"ADMIN", "admin"},
		{"Bob Smith", "Bob Smith"},
		{"bob smith", ""}, // no canonical form (space)
		{"BOB SMITH", ""},
		{"carol", "carol"},
		{"Carol", "carol"},
		{"ad\u200bmin", ""}, // invisible: no canonical form, nothing stored
		{"a/b", ""},         // a name no user can have: no lookup error
		{"", ""},
		{"nobody", ""},
		{"NOBODY", ""},
	}
	for _, tc := range tests {
		u, err := store.LookupUser(ctx, s, tc.presented)
		switch {
		case tc.want == "":
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("LookupUser(%q) = %v, %v; want ErrNotFound", tc.presented, u, err)
			}
		case err != nil || u.Username != tc.want:
			t.Errorf("LookupUser(%q) = %v, %v; want user %q", tc.presented, u, err, tc.want)
		}
	}
}
