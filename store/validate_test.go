package store_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/keygate/keygate/store"
)

func TestValidateNames(t *testing.T) {
	tests := []struct {
		name           string
		in             string
		path, key, acc bool // valid as username, key name, account name
	}{
		{"plain", "alice", true, true, true},
		{"unicode", "ünï ☃", true, true, true},
		{"email", "a@b.example", true, true, true},
		{"max length", strings.Repeat("x", 255), true, true, true},
		{"too long", strings.Repeat("x", 256), false, false, false},
		{"empty", "", false, false, false},
		{"nul", "a\x00b", false, false, false},
		{"newline", "a\nb", false, false, false},
		{"del", "a\x7f", false, false, false},
		{"c1 control", "a\u0085", false, false, false},
		{"invalid utf8", "a\xffb", false, false, false},
		{"leading space", " a", false, false, false},
		{"trailing tab", "a\t", false, false, false},
		{"slash", "a/b", false, true, false},
		{"colon", "a:b", false, true, false},
		{"dot", ".", false, true, false},
		{"dotdot", "..", false, true, false},
		{"dots inside", "a..b", true, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check := func(what string, err error, valid bool) {
				t.Helper()
				if valid && err != nil {
					t.Errorf("%s: %v, want valid", what, err)
				}
				if !valid && !errors.Is(err, store.ErrInvalid) {
					t.Errorf("%s: %v, want ErrInvalid", what, err)
				}
				if err != nil && len(tc.in) > 2 && strings.Contains(err.Error(), tc.in) {
					t.Errorf("%s: error %q repeats the input", what, err)
				}
			}
			check("ValidateUsername", store.ValidateUsername(tc.in), tc.path)
			check("ValidateAccountName", store.ValidateAccountName(tc.in), tc.acc)
			check("ValidateKeyName", store.ValidateKeyName(tc.in), tc.key)
		})
	}
}

func TestValidateRoles(t *testing.T) {
	many := make([]string, store.MaxRoles+1)
	for i := range many {
		many[i] = "r" + strings.Repeat("x", i%60) + string(rune('a'+i%26)) + string(rune('A'+i/26))
	}
	tests := []struct {
		name  string
		roles []string
		ok    bool
	}{
		{"nil", nil, true},
		{"empty", []string{}, true},
		{"tokens", []string{"admin", "read:metrics", "a.b-c_D9"}, true},
		{"max length", []string{strings.Repeat("r", 64)}, true},
		{"too long", []string{strings.Repeat("r", 65)}, false},
		{"empty role", []string{""}, false},
		{"space", []string{"a b"}, false},
		{"comma", []string{"a,b"}, false},
		{"unicode", []string{"ü"}, false},
		{"duplicate", []string{"a", "b", "a"}, false},
		{"too many", many, false},
	}
	for _, tc := range tests {
		err := store.ValidateRoles(tc.roles)
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: ValidateRoles = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestValidateEnums(t *testing.T) {
	for _, s := range []store.State{store.StateEnabled, store.StateDisabled} {
		if err := store.ValidateState(s); err != nil {
			t.Errorf("ValidateState(%q) = %v", s, err)
		}
	}
	for _, s := range []store.State{"", "Enabled", "on", "enabled "} {
		if err := store.ValidateState(s); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ValidateState(%q) = %v, want ErrInvalid", s, err)
		}
	}
	for _, u := range []store.UserType{store.TypeAdmin, store.TypeAccountAdmin, store.TypeUser} {
		if err := store.ValidateUserType(u); err != nil {
			t.Errorf("ValidateUserType(%q) = %v", u, err)
		}
	}
	for _, u := range []store.UserType{"", "root", "Admin"} {
		if err := store.ValidateUserType(u); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ValidateUserType(%q) = %v, want ErrInvalid", u, err)
		}
	}
}

func TestIsBase62ID(t *testing.T) {
	tests := map[string]bool{
		"a": true, "0123456789ABCDEFGHIJabcdefghij": true, strings.Repeat("Z", 32): true,
		"": false, strings.Repeat("Z", 33): false, "a-b": false, "a_b": false, "ü": false, "a b": false,
	}
	for id, want := range tests {
		if got := store.IsBase62ID(id); got != want {
			t.Errorf("IsBase62ID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestValidateNewUserDefaults(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	u := &store.User{Username: "bob", Account: "acme", Generation: 9}
	if err := store.ValidateNewUser(u, now); err != nil {
		t.Fatal(err)
	}
	if u.Type != store.TypeUser || u.State != store.StateEnabled || u.Generation != 1 || !u.CreatedAt.Equal(now) || !u.UpdatedAt.Equal(now) {
		t.Errorf("defaults not applied: %+v", u)
	}
	err := store.ValidateNewUser(&store.User{Username: "root", Account: "acme", Type: store.TypeAdmin}, now)
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("admin outside the admin account: %v", err)
	}
	if err := store.ValidateNewUser(&store.User{Username: "root", Account: store.AdminAccount, Type: store.TypeAdmin}, now); err != nil {
		t.Errorf("admin in the admin account: %v", err)
	}
}

func TestApplyUserUpdate(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	created := now.Add(-time.Hour)
	base := store.User{Username: "u", Account: "acme", Type: store.TypeUser, State: store.StateEnabled, Generation: 3,
		Roles: []string{"a"}, PasswordHash: "old", UpdatedAt: created}
	admin := store.TypeAdmin
	bad := store.State("x")
	dis := store.StateDisabled
	roles := []string{"b"}
	oldH, newH, otherH, empty := "old", "new", "other", ""
	long := strings.Repeat("h", store.MaxHashLen+1)
	for _, tc := range []struct {
		name    string
		upd     store.UserUpdate
		changed bool
		err     error
		gen     uint64 // want Generation
		hash    string // want PasswordHash
		updated time.Time
	}{
		{"nothing", store.UserUpdate{}, false, nil, 3, "old", created},
		{"state", store.UserUpdate{State: &dis}, true, nil, 4, "old", now},
		{"bad state", store.UserUpdate{State: &bad}, false, store.ErrInvalid, 3, "old", created},
		{"admin outside admin account", store.UserUpdate{Type: &admin}, false, store.ErrInvalid, 3, "old", created},
		{"password", store.UserUpdate{PasswordHash: &newH}, true, nil, 4, "new", now},
		{"cas match", store.UserUpdate{PasswordHash: &newH, IfPasswordHash: &oldH}, true, nil, 4, "new", now},
		{"cas match other field", store.UserUpdate{State: &dis, IfPasswordHash: &oldH}, true, nil, 4, "old", now},
		{"cas only", store.UserUpdate{IfPasswordHash: &oldH}, false, nil, 3, "old", created},
		{"cas mismatch", store.UserUpdate{PasswordHash: &newH, IfPasswordHash: &otherH}, false, store.ErrConflict, 3, "old", created},
		{"cas mismatch empty", store.UserUpdate{State: &dis, IfPasswordHash: &empty}, false, store.ErrConflict, 3, "old", created},
		{"cas too long", store.UserUpdate{State: &dis, IfPasswordHash: &long}, false, store.ErrInvalid, 3, "old", created},
		{"rehash", store.UserUpdate{PasswordHash: &newH, IfPasswordHash: &oldH, Rehash: true}, true, nil, 3, "new", created},
		{"rehash same hash", store.UserUpdate{PasswordHash: &oldH, IfPasswordHash: &oldH, Rehash: true}, false, nil, 3, "old", created},
		{"rehash mismatch", store.UserUpdate{PasswordHash: &newH, IfPasswordHash: &otherH, Rehash: true}, false, store.ErrConflict, 3, "old", created},
		{"rehash without cas", store.UserUpdate{PasswordHash: &newH, Rehash: true}, false, store.ErrInvalid, 3, "old", created},
		{"rehash without hash", store.UserUpdate{IfPasswordHash: &oldH, Rehash: true}, false, store.ErrInvalid, 3, "old", created},
		{"rehash to empty", store.UserUpdate{PasswordHash: &empty, IfPasswordHash: &oldH, Rehash: true}, false, store.ErrInvalid, 3, "old", created},
		{"rehash with state", store.UserUpdate{PasswordHash: &newH, IfPasswordHash: &oldH, Rehash: true, State: &dis}, false, store.ErrInvalid, 3, "old", created},
		{"rehash with roles", store.UserUpdate{PasswordHash: &newH, IfPasswordHash: &oldH, Rehash: true, Roles: &roles}, false, store.ErrInvalid, 3, "old", created},
		{"rehash with type", store.UserUpdate{PasswordHash: &newH, IfPasswordHash: &oldH, Rehash: true, Type: &admin}, false, store.ErrInvalid, 3, "old", created},
	} {
		u := base
		changed, err := store.ApplyUserUpdate(&u, tc.upd, now)
		if changed != tc.changed || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%s: changed=%v err=%v, want %v %v", tc.name, changed, err, tc.changed, tc.err)
		}
		if u.Generation != tc.gen || u.PasswordHash != tc.hash || !u.UpdatedAt.Equal(tc.updated) {
			t.Errorf("%s: Generation=%d PasswordHash=%q UpdatedAt=%v, want %d %q %v",
				tc.name, u.Generation, u.PasswordHash, u.UpdatedAt, tc.gen, tc.hash, tc.updated)
		}
		if err != nil && (strings.Contains(err.Error(), "old") || strings.Contains(err.Error(), "other")) {
			t.Errorf("%s: error names a hash: %v", tc.name, err)
		}
	}
}

func TestNormalizeKeyFilter(t *testing.T) {
	f, after, err := store.NormalizeKeyFilter(store.KeyFilter{})
	if err != nil || f.Status != store.KeyActive || f.Limit != store.DefaultPageLimit || after != "" {
		t.Errorf("defaults: %+v %q %v", f, after, err)
	}
	f, _, _ = store.NormalizeKeyFilter(store.KeyFilter{Limit: 1 << 20})
	if f.Limit != store.MaxPageLimit {
		t.Errorf("limit cap: %d", f.Limit)
	}
	_, after, err = store.NormalizeKeyFilter(store.KeyFilter{Cursor: store.EncodeCursor("abc123")})
	if err != nil || after != "abc123" {
		t.Errorf("cursor round trip: %q %v", after, err)
	}
	for _, f := range []store.KeyFilter{{Status: "x"}, {Limit: -1}, {Cursor: "@@"}, {Cursor: store.EncodeCursor("not base62")}} {
		if _, _, err := store.NormalizeKeyFilter(f); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("NormalizeKeyFilter(%+v) = %v, want ErrInvalid", f, err)
		}
	}
}

func TestPurgeEligible(t *testing.T) {
	now := time.Date(2030, 1, 10, 0, 0, 0, 0, time.UTC)
	before := now.Add(-7 * 24 * time.Hour)
	old, recent := before.Add(-time.Second), before.Add(time.Second)
	for _, tc := range []struct {
		name string
		k    store.APIKey
		want bool
	}{
		{"active", store.APIKey{}, false},
		{"active with expiry", store.APIKey{ExpiresAt: now.Add(time.Hour)}, false},
		{"revoked long ago", store.APIKey{RevokedAt: old}, true},
		{"revoked recently", store.APIKey{RevokedAt: recent}, false},
		{"revoked exactly at cutoff", store.APIKey{RevokedAt: before}, false},
		{"expired long ago", store.APIKey{ExpiresAt: old}, true},
		{"expired recently", store.APIKey{ExpiresAt: recent}, false},
		{"expired long ago, revoked recently", store.APIKey{ExpiresAt: old, RevokedAt: now}, true},
	} {
		if got := store.PurgeEligible(&tc.k, before, now); got != tc.want {
			t.Errorf("%s: PurgeEligible = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func FuzzDecodeCursor(f *testing.F) {
	for _, s := range []string{"", store.EncodeCursor("abc"), "!!", "azEuYWJj", strings.Repeat("A", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, c string) {
		id, err := store.DecodeCursor(c)
		if err != nil {
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if !store.IsBase62ID(id) {
			t.Fatalf("decoded id %q is not base62", id)
		}
		if back, err := store.DecodeCursor(store.EncodeCursor(id)); err != nil || back != id {
			t.Fatalf("round trip of %q: %q %v", id, back, err)
		}
	})
}

func FuzzValidateUsername(f *testing.F) {
	for _, s := range []string{"alice", "", "a/b", "ü", "\x00", " a", ".."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := store.ValidateUsername(s)
		if err != nil {
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if len(s) == 0 || len(s) > store.MaxNameLen || !utf8.ValidString(s) ||
			strings.ContainsAny(s, "/:\x00\r\n\t") || s == "." || s == ".." {
			t.Fatalf("accepted %q", s)
		}
		if store.ValidateKeyName(s) != nil || store.ValidateAccountName(s) != nil {
			t.Fatalf("valid username %q rejected as a key or account name", s)
		}
	})
}

func FuzzValidateRoles(f *testing.F) {
	f.Add("admin,read:x")
	f.Add("a,a")
	f.Add(",")
	f.Fuzz(func(t *testing.T, s string) {
		roles := strings.Split(s, ",")
		if err := store.ValidateRoles(roles); err == nil {
			seen := map[string]bool{}
			for _, r := range roles {
				if !store.ValidRole(r) || seen[r] {
					t.Fatalf("accepted %q", roles)
				}
				seen[r] = true
			}
		} else if !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("error %v does not wrap ErrInvalid", err)
		}
	})
}
