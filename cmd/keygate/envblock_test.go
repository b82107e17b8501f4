package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func isTestSecret(name string) bool { return strings.HasSuffix(name, "_SECRET") }

func TestClearSecretValues(t *testing.T) {
	tests := []struct{ in, want string }{
		{"A=1\x00K_SECRET=hunter2\x00B=2\x00", "A=1\x00K_SECRET=\x00\x00\x00\x00\x00\x00\x00\x00B=2\x00"},
		{"K_SECRET=x", "K_SECRET=\x00"},                                    // no final NUL
		{"K_SECRET=\x00A=K_SECRET=y\x00", "K_SECRET=\x00A=K_SECRET=y\x00"}, // empty value; a value that looks like a name
		{"K_SECRET=a=b\x00", "K_SECRET=\x00\x00\x00\x00"},
		{"NOEQUALS_SECRET\x00\x00", "NOEQUALS_SECRET\x00\x00"},
		{"", ""},
	}
	for _, tc := range tests {
		b := []byte(tc.in)
		changed := clearSecretValues(b, isTestSecret)
		if string(b) != tc.want || changed != (tc.in != tc.want) {
			t.Errorf("clearSecretValues(%q) = %q, %v; want %q", tc.in, b, changed, tc.want)
		}
	}
}

func FuzzClearSecretValues(f *testing.F) {
	f.Add([]byte("A=1\x00K_SECRET=hunter2\x00B=2\x00"))
	f.Add([]byte("K_SECRET==\x00\x00K_SECRET"))
	f.Fuzz(func(t *testing.T, in []byte) {
		b := bytes.Clone(in)
		clearSecretValues(b, isTestSecret)
		if len(b) != len(in) {
			t.Fatalf("length changed: %d -> %d", len(in), len(b))
		}
		// Entry by entry of the original (zeroed values would split the
		// result differently): a secret's value is all NUL, everything else
		// as it was.
		off := 0
		for _, e := range bytes.Split(in, []byte{0}) {
			name, _, ok := bytes.Cut(e, []byte("="))
			seg := b[off : off+len(e)]
			if ok && isTestSecret(string(name)) {
				if !bytes.Equal(seg[:len(name)+1], e[:len(name)+1]) || bytes.ContainsFunc(seg[len(name)+1:], func(r rune) bool { return r != 0 }) {
					t.Fatalf("secret entry %q became %q", e, seg)
				}
			} else if !bytes.Equal(seg, e) {
				t.Fatalf("entry %q became %q", e, seg)
			}
			off += len(e) + 1
		}
	})
}

func TestParseEnvRange(t *testing.T) {
	fields := make([]string, 49)
	for i := range fields {
		fields[i] = "0"
	}
	fields[47], fields[48] = "140737488351000", "140737488355000"
	stat := "1234 (a) b) c) S " + strings.Join(fields[1:], " ") + " 0\n"
	if lo, hi, ok := parseEnvRange([]byte(stat)); !ok || lo != 140737488351000 || hi != 140737488355000 {
		t.Errorf("parseEnvRange = %d, %d, %v", lo, hi, ok)
	}
	for _, bad := range []string{"", "1234 (x", "1234 (x) S 1 2", strings.Replace(stat, "140737488355000", "1", 1)} {
		if _, _, ok := parseEnvRange([]byte(bad)); ok {
			t.Errorf("parseEnvRange(%.40q) ok", bad)
		}
	}
	// The real file of this process parses, and the range holds its environment.
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		if lo, hi, ok := parseEnvRange(b); !ok || hi <= lo {
			t.Errorf("/proc/self/stat: %d, %d, %v", lo, hi, ok)
		}
	}
}

func FuzzParseEnvRange(f *testing.F) {
	f.Add([]byte("1 (keygate) S 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 100 200 0"))
	f.Fuzz(func(t *testing.T, in []byte) {
		lo, hi, ok := parseEnvRange(in)
		if ok && (lo == 0 || hi <= lo || hi-lo > 16<<20) {
			t.Fatalf("accepted range %d-%d", lo, hi)
		}
	})
}
