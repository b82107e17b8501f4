package store

// Canonical usernames and account names (issue 12 item 7).
//
// New names go through the PRECIS UsernameCaseMapped profile (RFC 8265
// §3.3: width mapping, Unicode default case folding, NFC, the
// IdentifierClass of RFC 8264 and the Bidi rule), then through rules of our
// own, because both names are forwarded upstream in X-Auth-User and
// X-Auth-Account and compared there by code we do not control:
//
//   - case mapping, not case preservation: "Alice", "ALICE" and "ａｌｉｃｅ"
//     are one name, "alice", so an upstream that compares names
//     case-insensitively (most directories do) can never see two keygate
//     users as one, and a login with any spelling finds the user;
//   - ASCII punctuation is limited to . _ - @ + (IdentifierClass allows
//     every printable ASCII character: "," ";" ":" "/" "\" "\"" "=" and the
//     rest would break a header list, a structured field, a path or a Basic
//     credential);
//   - no invisible or default-ignorable code point (zero-width space and
//     joiners, variation selectors, Hangul fillers, bidi controls), and no
//     name starting with a combining mark;
//   - one script: the "highly restrictive" level of UTS #39 §5.2. Characters
//     of the Common and Inherited scripts (ASCII digits and punctuation,
//     combining marks) go with any script; otherwise every character is of
//     one script, or of Latin with Han and Hiragana/Katakana, Han and
//     Bopomofo, or Han and Hangul. "аdmin" (Cyrillic а, Latin dmin) is
//     refused.
//
// Whole-script confusables (a name written entirely in Cyrillic letters
// that look Latin) are not detected: that needs the UTS #39 confusables
// data, which no maintained Go module ships.
//
// Names stored before these rules (any spelling the older rules allowed)
// keep working: LookupUser finds a presented name spelled exactly as stored
// first, and only then its canonical form; the admin API addresses users
// and accounts by their stored spelling.

import (
	"context"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
)

// ReservedUsername is the Basic user-id of the Anchore-style API key form
// (Basic base64("_api_key:<key>")): no user may have it.
const ReservedUsername = "_api_key"

// CanonicalUsername returns the canonical form of a new username, or an
// error wrapping ErrInvalid that says which rule the name breaks (never the
// name itself). A name that is already canonical is returned unchanged.
func CanonicalUsername(name string) (string, error) {
	c, err := canonicalName("username", name)
	if err == nil && c == ReservedUsername {
		return "", fmt.Errorf("this username is reserved for API key credentials: %w", ErrInvalid)
	}
	return c, err
}

// CanonicalAccountName returns the canonical form of a new account name
// (the rules of CanonicalUsername: account names are forwarded too).
func CanonicalAccountName(name string) (string, error) {
	return canonicalName("account name", name)
}

// LookupUser returns the user a presented login name (a Basic user-id, the
// username of the password grant) designates: the user stored under exactly
// that spelling, else the user stored under its canonical form, else
// ErrNotFound. The exact spelling comes first so that names stored before
// the canonical rules keep working; a name no user can have is ErrNotFound
// without a lookup. It is for the cache-miss path: a non-canonical name costs
// a second store round trip (small beside the password hash that follows).
func LookupUser(ctx context.Context, s Store, name string) (*User, error) {
	if ValidateUsername(name) == nil {
		if u, err := s.GetUser(ctx, name); !errors.Is(err, ErrNotFound) {
			return u, err
		}
	}
	c, cerr := CanonicalUsername(name)
	if cerr != nil || c == name {
		return nil, fmt.Errorf("user: %w", ErrNotFound)
	}
	return s.GetUser(ctx, c)
}

// FoldUsername returns the key under which failures of a presented login
// name are counted: its canonical form when it has one, else name itself.
// Every spelling of one user ("admin", "ADMIN", "ａｄｍｉｎ") shares one
// failure budget. It returns name itself, without allocating, when name is
// already canonical lower-case ASCII (the common case); the result must not
// be retained longer than name.
func FoldUsername(name []byte) []byte {
	simple := len(name) > 0
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@' || c == '+') {
			simple = false
			break
		}
	}
	if simple {
		return name
	}
	if c, err := CanonicalUsername(string(name)); err == nil {
		return []byte(c)
	}
	return name
}

// canonicalName applies the rules described at the top of this file.
func canonicalName(kind, name string) (string, error) {
	if err := validPathName(kind, name); err != nil {
		return "", err
	}
	for _, r := range name {
		if invisible(r) {
			return "", fmt.Errorf("%s contains an invisible character (zero-width, joiner, filler, variation selector or format control): %w", kind, ErrInvalid)
		}
	}
	c, err := precis.UsernameCaseMapped.String(name)
	if err != nil {
		// precis errors do not repeat the input, but say little; ours
		// names the rule.
		return "", fmt.Errorf("%s contains a character names may not have "+
			"(letters and digits of one script, and . _ - @ +; no spaces, symbols or compatibility forms): %w", kind, ErrInvalid)
	}
	if len(c) > MaxNameLen {
		return "", fmt.Errorf("%s is longer than %d bytes once normalised: %w", kind, MaxNameLen, ErrInvalid)
	}
	if c == "." || c == ".." {
		return "", fmt.Errorf("%s may not be \".\" or \"..\": %w", kind, ErrInvalid)
	}
	for i := 0; i < len(c); i++ {
		if b := c[i]; b < utf8.RuneSelf && !asciiNameByte(b) {
			return "", fmt.Errorf("%s contains %q: punctuation other than . _ - @ + is not allowed "+
				"(it would break header lists, paths or credentials): %w", kind, b, ErrInvalid)
		}
	}
	if first, _ := utf8.DecodeRuneInString(c); unicode.In(first, unicode.Mn, unicode.Mc, unicode.Me) {
		return "", fmt.Errorf("%s starts with a combining mark: %w", kind, ErrInvalid)
	}
	if !singleScript(c) {
		return "", fmt.Errorf("%s mixes scripts (such as Latin and Cyrillic look-alikes); "+
			"use one script (Latin may mix with Han, Kana, Hangul or Bopomofo as in Japanese, Korean or Chinese): %w", kind, ErrInvalid)
	}
	return c, nil
}

// asciiNameByte reports whether an ASCII byte may appear in a canonical name.
func asciiNameByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
		b == '.' || b == '_' || b == '-' || b == '@' || b == '+'
}

// invisible reports whether r renders as nothing, or changes how its
// neighbours render without being seen: format controls (Cf: zero-width
// space, ZWJ/ZWNJ, bidi controls, BOM, tags), other default-ignorable code
// points (Hangul fillers, combining grapheme joiner), variation selectors
// and white space.
func invisible(r rune) bool {
	return unicode.In(r, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point,
		unicode.Variation_Selector, unicode.Join_Control, unicode.White_Space)
}

// Script sets of the UTS #39 "highly restrictive" rule.
const (
	scLatin uint8 = 1 << iota
	scHan
	scHiragana
	scKatakana
	scHangul
	scBopomofo
)

// allowedMixes are the script combinations "highly restrictive" accepts
// besides a single script: Latin + Japanese, Latin + Chinese with
// Bopomofo, Latin + Korean.
var allowedMixes = [...]uint8{
	scLatin | scHan | scHiragana | scKatakana,
	scLatin | scHan | scBopomofo,
	scLatin | scHan | scHangul,
}

// otherScripts are the scripts other than Common, Inherited and the six
// above, looked up for a rune outside those.
var otherScripts = func() []*unicode.RangeTable {
	skip := map[string]bool{"Common": true, "Inherited": true, "Latin": true, "Han": true,
		"Hiragana": true, "Katakana": true, "Hangul": true, "Bopomofo": true}
	var out []*unicode.RangeTable
	for name, t := range unicode.Scripts {
		if !skip[name] {
			out = append(out, t)
		}
	}
	return out
}()

// singleScript reports whether s passes the UTS #39 highly restrictive
// rule (see the top of this file).
func singleScript(s string) bool {
	var set uint8
	var other *unicode.RangeTable
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf:
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
				set |= scLatin
			}
			continue
		case unicode.In(r, unicode.Common, unicode.Inherited):
			continue
		case unicode.Is(unicode.Latin, r):
			set |= scLatin
		case unicode.Is(unicode.Han, r):
			set |= scHan
		case unicode.Is(unicode.Hiragana, r):
			set |= scHiragana
		case unicode.Is(unicode.Katakana, r):
			set |= scKatakana
		case unicode.Is(unicode.Hangul, r):
			set |= scHangul
		case unicode.Is(unicode.Bopomofo, r):
			set |= scBopomofo
		default:
			if other != nil && unicode.Is(other, r) {
				continue
			}
			if other != nil {
				return false // a second other script
			}
			for _, t := range otherScripts {
				if unicode.Is(t, r) {
					other = t
					break
				}
			}
			if other == nil {
				return false // unassigned: not a letter of any script
			}
		}
	}
	if other != nil {
		return set == 0
	}
	if set&(set-1) == 0 {
		return true // one script (or none: digits only)
	}
	for _, m := range allowedMixes {
		if set&^m == 0 {
			return true
		}
	}
	return false
}
