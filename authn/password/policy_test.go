package password

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckPolicy(t *testing.T) {
	tests := []struct {
		name, pw, user string
		want           error
	}{
		{"good", "tr0ub4dor&3-horse", "alice", nil},
		{"good passphrase", "correct horse battery staple", "alice", nil},
		{"good 8 chars", "Zq8#vL2!", "alice", nil},
		{"8 emoji runes", "🔑🔒🦀🐹🐍🦫🐧🐘", "alice", nil},
		{"accented 8 runes", "ünïcødé!", "alice", nil},
		{"colon allowed", "a:b:c:d:e:f", "alice", nil},
		{"no username given", "xX9!mallory", "", nil},
		{"empty", "", "alice", ErrTooShort},
		{"7 chars", "Zq8#vL2", "alice", ErrTooShort},
		{"7 emoji (28 bytes)", "🔑🔒🦀🐹🐍🦫🐧", "alice", ErrTooShort},
		{"1024 bytes", strings.Repeat("k", 1024), "alice", nil},
		{"1025 bytes", strings.Repeat("k", 1025), "alice", ErrTooLong},
		{"257 emoji", strings.Repeat("🔑", 257), "alice", ErrTooLong},
		{"invalid UTF-8", "abcdefgh\xff", "alice", ErrInvalidUTF8},
		{"lone continuation", "\x80abcdefgh", "alice", ErrInvalidUTF8},
		{"overlong NUL", "abcdefgh\xc0\x80", "alice", ErrInvalidUTF8},
		{"surrogate", "abcdefgh\xed\xa0\x80", "alice", ErrInvalidUTF8},
		{"username", "alice-the-great", "alice-the-great", ErrSameAsUsername},
		{"username other case", "Alice-The-Great", "alice-the-great", ErrSameAsUsername},
		{"contains username is fine", "alice-the-great!", "alice-the-great", nil},
		{"common", "password", "alice", ErrCommon},
		{"common upper", "PASSWORD", "alice", ErrCommon},
		{"common mixed", "PassWord123", "alice", ErrCommon},
		{"common digits", "12345678", "alice", ErrCommon},
		{"common qwerty", "qwertyuiop", "alice", ErrCommon},
		{"common iloveyou", "ILoveYou", "alice", ErrCommon},
		{"common p@ssw0rd", "P@ssw0rd", "alice", ErrCommon},
		{"common trustno1", "trustno1", "alice", ErrCommon},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckPolicy(tc.pw, tc.user)
			if !errors.Is(err, tc.want) {
				t.Fatalf("CheckPolicy = %v, want %v", err, tc.want)
			}
			if err == nil {
				return
			}
			// The error is a fixed sentinel (checked above), so its message
			// cannot echo the password.
			if !errors.Is(err, ErrPolicy) {
				t.Fatal("policy error does not wrap ErrPolicy")
			}
		})
	}
}

func TestCommonList(t *testing.T) {
	set := commonSet()
	if len(set) < 500 {
		t.Fatalf("common list has %d entries, want at least 500", len(set))
	}
	long := 0
	for pw := range set {
		if pw != strings.ToLower(pw) || strings.TrimSpace(pw) != pw || pw == "" {
			t.Errorf("bad entry %q", pw)
		}
		if !utf8.ValidString(pw) {
			t.Errorf("entry %q is not UTF-8", pw)
		}
		if utf8.RuneCountInString(pw) >= MinRunes {
			long++
		}
	}
	// Entries shorter than MinRunes are already refused; make sure the list
	// carries weight for passwords that pass the length rule.
	if long < 400 {
		t.Fatalf("only %d entries of %d+ characters", long, MinRunes)
	}
}

func FuzzCheckPolicy(f *testing.F) {
	f.Add("password", "alice")
	f.Add("🔑🔒🦀🐹🐍🦫🐧🐘", "")
	f.Add("\xff\xfe", "x")
	f.Fuzz(func(t *testing.T, pw, user string) {
		err := CheckPolicy(pw, user)
		if err == nil {
			if !utf8.ValidString(pw) || len(pw) > MaxBytes || utf8.RuneCountInString(pw) < MinRunes || IsCommon(pw) {
				t.Fatalf("accepted a password that breaks the policy")
			}
			return
		}
		if !errors.Is(err, ErrPolicy) {
			t.Fatalf("error %v does not wrap ErrPolicy", err)
		}
	})
}
