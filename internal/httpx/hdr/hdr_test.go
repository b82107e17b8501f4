package hdr

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestTrimOWSAndEqualFold(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""}, {" \t", ""}, {"\t a b \t", "a b"}, {"x", "x"}, {"\r x\n", "\r x\n"},
	} {
		if got := string(TrimOWS([]byte(tc.in))); got != tc.want {
			t.Errorf("TrimOWS(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"Bearer", "bearer", true}, {"BEARER", "bearer", true}, {"bearer", "BeArEr", true},
		{"bearer", "bearers", false}, {"", "", true}, {"ſ", "s", false}, {"K", "k", true},
		{"\u212a", "k", false}, {"a-b", "A-B", true}, {"a_b", "a-b", false},
	} {
		if got := EqualFold([]byte(tc.a), tc.b); got != tc.want {
			t.Errorf("EqualFold(%q, %q) = %v", tc.a, tc.b, got)
		}
		if got := EqualFold([]byte(tc.a), []byte(tc.b)); got != tc.want {
			t.Errorf("EqualFold(%q, []byte %q) = %v", tc.a, tc.b, got)
		}
	}
}

// Canonical gives the names fasthttp stores after parsing: a header set
// with SetCanonical(Canonical(n)) is found by Peek(n) in any case.
func TestCanonical(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"x-auth-user", "X-Auth-User"},
		{"X-AUTH-ROLES", "X-Auth-Roles"},
		{"x-request-id", "X-Request-Id"},
		{"X_Weird.Name", "X_weird.name"},
		{"a", "A"},
		{"--x", "--X"},
		{"X-Forwarded-For", "X-Forwarded-For"},
	} {
		if got := string(Canonical(tc.in)); got != tc.want {
			t.Errorf("Canonical(%q) = %q, want %q", tc.in, got, tc.want)
		}
		var h fasthttp.RequestHeader
		h.SetCanonical(Canonical(tc.in), []byte("v"))
		if string(h.Peek(tc.in)) != "v" || string(h.Peek(strings.ToLower(tc.in))) != "v" {
			t.Errorf("%q: set canonically, not found by Peek", tc.in)
		}
	}
}
