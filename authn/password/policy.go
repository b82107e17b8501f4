package password

import (
	_ "embed"
	"errors"
	"strings"
	"sync"
	"unicode/utf8"
)

// Policy limits.
const (
	// MinRunes is the shortest acceptable password, in characters (runes).
	MinRunes = 8
	// MaxBytes is the longest acceptable password, in bytes of UTF-8.
	MaxBytes = 1024
)

// ErrPolicy is wrapped by every CheckPolicy error; match with errors.Is. The
// messages say what to fix and never contain the password.
var ErrPolicy = errors.New("password: does not meet the password policy")

// Policy errors, each wrapping ErrPolicy.
var (
	ErrTooShort       = policyError("password must be at least 8 characters long")
	ErrTooLong        = policyError("password must be at most 1024 bytes long")
	ErrInvalidUTF8    = policyError("password must be valid UTF-8 text")
	ErrSameAsUsername = policyError("password must not be the username")
	ErrCommon         = policyError("password is too common; choose one that is not on public breach lists")
)

type policyErr struct{ msg string }

func (e *policyErr) Error() string { return e.msg }
func (e *policyErr) Unwrap() error { return ErrPolicy }

func policyError(msg string) error { return &policyErr{msg: msg} }

//go:embed common.txt
var commonTxt string

var commonSet = sync.OnceValue(func() map[string]struct{} {
	m := make(map[string]struct{}, 1500)
	for line := range strings.Lines(commonTxt) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" || line[0] == '#' {
			continue
		}
		m[strings.ToLower(line)] = struct{}{}
	}
	return m
})

// IsCommon reports whether pw is on the embedded list of common passwords,
// compared case-insensitively.
func IsCommon(pw string) bool {
	_, ok := commonSet()[strings.ToLower(pw)]
	return ok
}

// CheckPolicy reports whether pw is acceptable as a new password for
// username: valid UTF-8, at most MaxBytes bytes, at least MinRunes
// characters, not the username (case-insensitive) and not a common password
// (case-insensitive). The error is one of the Err* policy errors above.
func CheckPolicy(pw, username string) error {
	switch {
	case len(pw) > MaxBytes:
		return ErrTooLong
	case !utf8.ValidString(pw):
		return ErrInvalidUTF8
	case utf8.RuneCountInString(pw) < MinRunes:
		return ErrTooShort
	case username != "" && strings.EqualFold(pw, username):
		return ErrSameAsUsername
	case IsCommon(pw):
		return ErrCommon
	}
	return nil
}
