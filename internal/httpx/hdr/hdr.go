// Package hdr holds the small byte-level helpers of HTTP header values that
// the listeners and the authn leaf share. It imports nothing but the
// standard library, so authn (which imports no other keygate package but
// its own) can use it; everything else of the shared HTTP layer is in
// internal/httpx. Nothing here allocates.
package hdr

import "unsafe"

// TrimOWS trims spaces and tabs around a header value (RFC 9110 OWS).
func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// EqualFold reports whether b and s are equal ignoring ASCII case only
// (unlike bytes.EqualFold, "ſ" never matches "s" nor "K" "k").
func EqualFold[T ~string | ~[]byte](b []byte, s T) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if Lower(b[i]) != Lower(s[i]) {
			return false
		}
	}
	return true
}

// Lower is c in ASCII lower case.
func Lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// BytesView views s as bytes without copying; the result must never be
// written to (Go strings are immutable).
func BytesView(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) } //nolint:gosec // audited zero-copy view: the bytes are not modified while it lives

// StringView views b as a string without copying; b must not change while
// the string is in use.
func StringView(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) } //nolint:gosec // audited zero-copy view: the bytes are not modified while it lives

// Canonical is name in fasthttp's canonical form (the form header names are
// stored in after parsing, and the form SetCanonical and PeekCanonical
// expect): upper case at the start and after each '-', lower case
// elsewhere. Built once at start-up, it spares the request path fasthttp's
// copy-and-normalise of the name on every SetBytesKV. name must be a valid
// header name (token characters).
func Canonical(name string) []byte {
	b := []byte(name)
	upper := true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
		upper = c == '-'
	}
	return b
}
