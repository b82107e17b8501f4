package hdr

import "testing"

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
