package store_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/keygate/keygate/store"
)

func TestCanonicalUsername(t *testing.T) {
	tests := []struct {
		name, in, want string // want "" = refused
	}{
		{"ascii lower", "alice", "alice"},
		{"upper case maps", "ADMIN", "admin"},
		{"mixed case maps", "Alice.Smith", "alice.smith"},
		{"fullwidth maps", "ａｄｍｉｎ", "admin"},
		{"fullwidth upper maps", "ＡＤＭＩＮ", "admin"},
		{"email", "Bob@Example.COM", "bob@example.com"},
		{"allowed punctuation", "a.b_c-d+e@f", "a.b_c-d+e@f"},
		{"digits only", "12345", "12345"},
		{"latin accents", "Zoë", "zoë"},
		{"decomposed accent composes (NFC)", "zoe\u0308", "zoë"},
		{"greek", "ΣΟΦΊΑ", "σοφία"},
		{"cyrillic only", "Пользователь", "пользователь"},
		{"japanese with latin", "田中taro", "田中taro"},
		{"kana and han", "やまだ太郎", "やまだ太郎"},
		{"korean with latin", "김kim", "김kim"},
		{"max length", strings.Repeat("x", 255), strings.Repeat("x", 255)},

		{"cyrillic a in latin", "\u0430dmin", ""},
		{"greek omicron in latin", "r\u03bfot", ""},
		{"latin and cyrillic digits", "admin\u0661", ""}, // Arabic-Indic digit one
		{"cyrillic and greek", "\u0430\u03b1", ""},
		{"hangul and kana", "김やま", ""},
		{"zero-width space", "ad\u200bmin", ""},
		{"zero-width joiner", "ad\u200dmin", ""},
		{"zero-width non-joiner", "ad\u200cmin", ""},
		{"word joiner", "ad\u2060min", ""},
		{"bom", "\ufeffadmin", ""},
		{"soft hyphen", "ad\u00admin", ""},
		{"rtl override", "admin\u202e", ""},
		{"variation selector", "admin\ufe0f", ""},
		{"hangul filler", "admin\u3164", ""},
		{"halfwidth hangul filler", "admin\uffa0", ""},
		{"combining grapheme joiner", "ad\u034fmin", ""},
		{"comma", "alice,admin", ""},
		{"fullwidth comma", "alice\uff0cadmin", ""},
		{"semicolon", "alice;admin", ""},
		{"colon", "alice:admin", ""},
		{"space", "alice admin", ""},
		{"nbsp", "alice\u00a0admin", ""},
		{"ideographic space", "alice\u3000admin", ""},
		{"tab", "alice\tadmin", ""},
		{"quote", `al"ice`, ""},
		{"backslash", `al\ice`, ""},
		{"equals", "a=b", ""},
		{"slash", "a/b", ""},
		{"percent", "a%2Fb", ""},
		{"brace", "{alice}", ""},
		{"newline", "alice\nadmin", ""},
		{"nul", "alice\x00", ""},
		{"del", "alice\x7f", ""},
		{"symbol", "alice☃", ""},
		{"emoji", "alice😀", ""},
		{"math bold (compatibility)", "\U0001d41admin", ""},
		{"ligature (compatibility)", "\ufb01le", ""},
		{"leading combining mark", "\u0301alice", ""},
		{"dot", ".", ""},
		{"dotdot", "..", ""},
		{"fullwidth dotdot", "．．", ""},
		{"empty", "", ""},
		{"too long", strings.Repeat("x", 256), ""},
		{"invalid utf8", "a\xffb", ""},
		{"reserved", "_api_key", ""},
		{"reserved upper", "_API_KEY", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := store.CanonicalUsername(tc.in)
			if tc.want == "" {
				if !errors.Is(err, store.ErrInvalid) {
					t.Fatalf("CanonicalUsername(%q) = %q, %v; want ErrInvalid", tc.in, got, err)
				}
				if len(tc.in) > 2 && strings.Contains(err.Error(), tc.in) {
					t.Errorf("error %q repeats the input", err)
				}
			} else if err != nil || got != tc.want {
				t.Fatalf("CanonicalUsername(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			// Account names follow the same rules (they are forwarded
			// too), except that _api_key is a fine account name.
			acc, aerr := store.CanonicalAccountName(tc.in)
			if strings.EqualFold(tc.in, store.ReservedUsername) {
				if aerr != nil {
					t.Errorf("CanonicalAccountName(%q) = %v", tc.in, aerr)
				}
				return
			}
			if acc != got || (aerr == nil) != (err == nil) {
				t.Errorf("CanonicalAccountName(%q) = %q, %v; username gives %q, %v", tc.in, acc, aerr, got, err)
			}
		})
	}
}

// TestCanonicalMessages: a refused name is told which rule it breaks.
func TestCanonicalMessages(t *testing.T) {
	for in, want := range map[string]string{
		"\u0430dmin":  "mixes scripts",
		"ad\u200bmin": "invisible",
		"alice,admin": "punctuation",
		"alice☃":      "may not have",
		"_api_key":    "reserved",
	} {
		_, err := store.CanonicalUsername(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CanonicalUsername(%q) = %v, want a message containing %q", in, err, want)
		}
	}
}

func TestFoldUsername(t *testing.T) {
	for in, want := range map[string]string{
		"admin": "admin", "ADMIN": "admin", "ａｄｍｉｎ": "admin", "Admin": "admin",
		"a,b": "a,b", "\u0430dmin": "\u0430dmin", "": "",
	} {
		if got := string(store.FoldUsername([]byte(in))); got != want {
			t.Errorf("FoldUsername(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzCanonicalUsername: the canonical form is idempotent, within limits,
// free of what the rules refuse, and never a panic.
func FuzzCanonicalUsername(f *testing.F) {
	for _, s := range []string{"alice", "ADMIN", "ａｄｍｉｎ", "\u0430dmin", "ad\u200bmin", "alice,admin", "Zoë", "zoe\u0308",
		"田中taro", "김kim", "ΣΟΦΊΑ", "İstanbul", "ß", "\ufb01", "..", "a\xff", strings.Repeat("Ｘ", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := store.CanonicalUsername(in)
		if err != nil {
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if store.ValidateUsername(in) == nil && len(in) > 3 && strings.Contains(err.Error(), in) {
				t.Fatalf("error %q repeats the input", err)
			}
			return
		}
		if c == "" || len(c) > store.MaxNameLen || !utf8.ValidString(c) {
			t.Fatalf("CanonicalUsername(%q) = %q: empty, too long or not UTF-8", in, c)
		}
		if again, err := store.CanonicalUsername(c); err != nil || again != c {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, c, again, err)
		}
		if err := store.ValidateUsername(c); err != nil {
			t.Fatalf("canonical %q fails the stored-name rules: %v", c, err)
		}
		if strings.ContainsAny(c, ",;:/\\\"= \t%{}()<>[]?#") {
			t.Fatalf("canonical %q holds a separator", c)
		}
		if got := string(store.FoldUsername([]byte(in))); got != c {
			t.Fatalf("FoldUsername(%q) = %q, canonical is %q", in, got, c)
		}
	})
}

// BenchmarkFoldUsername: the failure limiter's key, per miss-path login:
// a canonical ASCII name (the common case) against spellings that need the
// PRECIS mapping.
func BenchmarkFoldUsername(b *testing.B) {
	for _, name := range []string{"alice.smith", "Alice.Smith", "ａｌｉｃｅ", "zoë"} {
		b.Run(name, func(b *testing.B) {
			in := []byte(name)
			b.ReportAllocs()
			for b.Loop() {
				_ = store.FoldUsername(in)
			}
		})
	}
}
