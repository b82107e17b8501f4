package authn

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// refDecode is what Credentials.decode replaced: an alphabet pass (so that
// '\r' and '\n', which encoding/base64 skips, are refused) and
// base64.StdEncoding.Strict().Decode.
func refDecode(s []byte) ([]byte, error) {
	if len(s) > base64.StdEncoding.EncodedLen(MaxDecodedLen) {
		return nil, errTooLong
	}
	for _, ch := range s {
		if !('A' <= ch && ch <= 'Z' || 'a' <= ch && ch <= 'z' || '0' <= ch && ch <= '9' || ch == '+' || ch == '/' || ch == '=') {
			return nil, errBase64
		}
	}
	buf := make([]byte, MaxDecodedLen+2)
	n, err := base64.StdEncoding.Strict().Decode(buf, s)
	if err != nil {
		return nil, errBase64
	}
	if n > MaxDecodedLen {
		return nil, errTooLong
	}
	return buf[:n], nil
}

func checkDecode(t *testing.T, s []byte) {
	t.Helper()
	var c Credentials
	got, err := c.decode(s)
	want, wantErr := refDecode(s)
	if !errors.Is(err, wantErr) || !bytes.Equal(got, want) {
		t.Fatalf("decode(%q) = %q, %v; want %q, %v", s, got, err, want, wantErr)
	}
	if c.used < len(got) || c.used > len(c.buf) {
		t.Fatalf("decode(%q): used = %d, %d bytes decoded", s, c.used, len(got))
	}
	if bytes.ContainsFunc(c.buf[c.used:], func(r rune) bool { return r != 0 }) {
		t.Fatalf("decode(%q) wrote past used (%d): Reset would not wipe it", s, c.used)
	}
}

// TestDecodeMatchesStrictBase64: the single-pass decoder agrees with the
// two-pass reference on every padding case and on every byte in every
// position of a short input.
func TestDecodeMatchesStrictBase64(t *testing.T) {
	for _, s := range []string{
		"", "=", "==", "===", "====", "A", "AA", "AAA", "AAAA", "AA==", "AAA=", "AB==", "AAB=",
		"YQ==", "YWI=", "YWJj", "YQ==YQ==", "YQ=a", "Y===", "=AAA", "A=AA", "AA=A", "YWxpY2U6cHd=",
		"YWxp\nY2U6cHc=", "YWxp\rY2U6cHc=", "YWxpY2U6cHc", "YWxpY2U6cHc==", "-_-_", "YWxpY2U6cHc=\n",
		strings.Repeat("QUJD", 341) + "QQ==", strings.Repeat("QUJD", 342), strings.Repeat("QUJD", 342) + "QQ==",
		strings.Repeat("QUJD", 256), base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, MaxDecodedLen)),
	} {
		checkDecode(t, []byte(s))
	}
	for _, base := range []string{"YWJjZA==", "YWJjZGU=", "YWJjZGVm"} {
		for i := range len(base) {
			for ch := range 256 {
				s := []byte(base)
				s[i] = byte(ch)
				checkDecode(t, s)
			}
		}
	}
	for n := range 40 { // every length and padding of random-ish payloads
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i*151 + n*7) //nolint:gosec // bounded by the test's own values
		}
		checkDecode(t, []byte(base64.StdEncoding.EncodeToString(p)))
	}
}

func FuzzDecodeBase64(f *testing.F) {
	for _, s := range []string{"", "YQ==", "YWI=", "YWJj", "YQ=a", "AB==", "AAB=", "YWxp\nY2U6cHc=", strings.Repeat("QUJD", 342)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) { checkDecode(t, s) })
}

// refToken68 is the original character-class loop of isToken68.
func refToken68(s []byte) bool {
	i := 0
	for i < len(s) {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(s) && s[i] == '=' {
		i++
	}
	return i == len(s)
}

// checkText compares the word-at-a-time validText and isToken68 with their
// byte-at-a-time references.
func checkText(t *testing.T, b []byte) {
	t.Helper()
	if got, want := validText(b), validTextSlow(b); got != want {
		t.Fatalf("validText(%q) = %v, want %v", b, got, want)
	}
	if got, want := isToken68(b), refToken68(b); got != want {
		t.Fatalf("isToken68(%q) = %v, want %v", b, got, want)
	}
}

func TestValidTextAndToken68(t *testing.T) {
	base := []byte("correct horse battery staple")
	for i := range len(base) {
		for ch := range 256 {
			b := bytes.Clone(base)
			b[i] = byte(ch)
			checkText(t, b)
			checkText(t, b[:i+1])
			checkText(t, b[i:])
		}
	}
	for _, s := range []string{"", "a", "zoë:pw", "p\u0085w", "p\u009fw", "p\u00a0w", "\xff\xfe", "abcdefg\xc3", "abcdefgh\xc3\xa9",
		"abc+/-._~==", "abc=d", "=", "a=", "eyJhbGciOiJIUzI1NiJ9.e30.x"} {
		checkText(t, []byte(s))
	}
}

func FuzzValidText(f *testing.F) {
	for _, s := range []string{"", "correct horse", "zoë:pässwörd", "p\u0085w12345678", "abcdefgh\x7f", "abc+/-._~=="} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkText(t, b) })
}
