package forwardauth

import "unsafe"

// s2b views s as bytes; the result must not be written to.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) } //nolint:gosec // audited zero-copy view: the bytes are not modified while it lives
