package reqtarget

import (
	"bytes"
	"errors"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func TestCheckPath(t *testing.T) {
	tests := []struct {
		path string
		want *Error // nil: accepted
	}{
		// Accepted: one reading only.
		{"/", nil},
		{"/admin", nil},
		{"/admin/", nil},
		{"/admin/x.json", nil},
		{"/a%20b", nil},
		{"/a%3Ab", nil},
		{"/a%3fb", nil},
		{"/100%25", nil},
		{"/100%25off", nil},    // %25 then "of": 'o' is not hex
		{"/a%25zz", nil},       // literal '%' then "zz"
		{"/caf%C3%A9", nil},    // é, valid UTF-8, canonical decomposition only
		{"/%E6%97%A5", nil},    // 日
		{"/%EF%BF%BD", nil},    // U+FFFD itself, encoded validly
		{"/%F0%9F%98%80", nil}, // emoji, 4 bytes
		{"/%D0%B0dmin", nil},   // Cyrillic а: not ASCII under NFKC (confusable, but one reading)
		{"/v1/x:batchGet", nil},
		{"/a$b", nil},
		{"/a.b/c", nil},
		{"/.well-known/x", nil},
		{"/~user/x", nil},
		{"/a:/b", nil},

		// Not origin-form, bytes.
		{"", ErrNotOriginForm},
		{"admin", ErrNotOriginForm},
		{"/a b", ErrBadByte},
		{"/a\\b", ErrBadByte},
		{"/a#b", ErrBadByte},
		{"/caf\xc3\xa9", ErrBadByte},
		{"/a\x00", ErrBadByte},
		{"/a\x7f", ErrBadByte},

		// Escapes.
		{"/a%2", ErrBadEscape},
		{"/a%", ErrBadEscape},
		{"/a%zz", ErrBadEscape},
		{"/%u002e%u002e/admin", ErrBadEscape}, // IIS %u encoding
		{"/admin%u002f", ErrBadEscape},
		{"/a%2fb", ErrEncodedDelim},
		{"/a%2Fb", ErrEncodedDelim},
		{"/a%5cb", ErrEncodedDelim},
		{"/a%00", ErrEncodedDelim},
		{"/a%0d%0a", ErrEncodedDelim},
		{"/a%7F", ErrEncodedDelim},
		{"/%61dmin", ErrEncodedPlain},
		{"/%2e%2e/admin", ErrEncodedPlain},
		{"/admin%2E/x", ErrEncodedPlain},
		{"/a%7e", ErrEncodedPlain},

		// Segments.
		{"//admin", ErrEmptySegment},
		{"/public//admin", ErrEmptySegment},
		{"/public/../admin", ErrDotSegment},
		{"/public/./admin", ErrDotSegment},
		{"/public/..", ErrDotSegment},
		{"/public/.", ErrDotSegment},
		{"/admin./x", ErrTrailingDot},
		{"/admin.", ErrTrailingDot},
		{"/admin../x", ErrTrailingDot},
		{"/public/...", ErrTrailingDot},
		{"/public/..../admin", ErrTrailingDot},
		{"/admin%20/x", ErrTrailingDot},
		{"/admin%20", ErrTrailingDot},
		{"/admin.%20/x", ErrTrailingDot},
		{"/admin%20%20", ErrTrailingDot},

		// Path parameters (servlet).
		{"/admin;x/secret", ErrPathParam},
		{"/admin;/secret", ErrPathParam},
		{"/app;jsessionid=ABC/admin", ErrPathParam},
		{"/public/..;/admin", ErrPathParam},
		{"/..;/admin", ErrPathParam},
		{"/admin%3Bx/secret", ErrPathParam},
		{"/admin%3bx/secret", ErrPathParam},
		{"/public/..%3B/admin", ErrPathParam},
		{"/x;", ErrPathParam},

		// Double encoding.
		{"/public/%252e%252e/admin", ErrDoubleEncoding},
		{"/a%252fb", ErrDoubleEncoding},
		{"/a%255cb", ErrDoubleEncoding},
		{"/admin%253bx/secret", ErrDoubleEncoding},
		{"/a%2525", ErrDoubleEncoding},
		{"/%2561dmin", ErrDoubleEncoding},
		{"/a%25C0%25AE", ErrDoubleEncoding},

		// Invalid UTF-8 after decoding.
		{"/%c0%ae%c0%ae/admin", ErrBadUTF8}, // overlong '.'
		{"/%C0%AF", ErrBadUTF8},             // overlong '/'
		{"/%c1%9c", ErrBadUTF8},             // overlong '\'
		{"/%e0%80%ae", ErrBadUTF8},          // 3-byte overlong '.'
		{"/%f0%80%80%ae", ErrBadUTF8},       // 4-byte overlong '.'
		{"/%ed%a0%80", ErrBadUTF8},          // surrogate
		{"/%f4%90%80%80", ErrBadUTF8},       // > U+10FFFF
		{"/%80", ErrBadUTF8},                // stray continuation
		{"/%c3", ErrBadUTF8},                // truncated at end
		{"/%c3/x", ErrBadUTF8},              // truncated by '/'
		{"/%c3a", ErrBadUTF8},               // truncated by ASCII
		{"/%e6%97", ErrBadUTF8},
		{"/%ff", ErrBadUTF8},
		{"/%f8%88%80%80%80", ErrBadUTF8},

		// Compatibility and best-fit.
		{"/admin%EF%BC%8Fx", ErrCompatibility},          // fullwidth solidus ／
		{"/%EF%BC%8E%EF%BC%8E/admin", ErrCompatibility}, // fullwidth full stop ．
		{"/a%EF%BC%BCb", ErrCompatibility},              // fullwidth reverse solidus ＼
		{"/admin%EF%BC%9Bx", ErrCompatibility},          // fullwidth semicolon ；
		{"/%EF%BD%81dmin", ErrCompatibility},            // fullwidth a
		{"/%E2%80%A4%E2%80%A4/admin", ErrCompatibility}, // one dot leader
		{"/%EF%B9%92/x", ErrCompatibility},              // small full stop
		{"/a%CD%BEb", ErrCompatibility},                 // Greek question mark → ';'
		{"/admin%C2%A0", ErrCompatibility},              // NBSP → ' '
		{"/a%E2%88%95b", ErrCompatibility},              // division slash (best fit)
		{"/a%E2%88%96b", ErrCompatibility},              // set minus (best fit)
		{"/a%C2%A5b", ErrCompatibility},                 // yen sign (cp932 '\')
		{"/%EF%AC%81le", ErrCompatibility},              // ligature fi

		// NTFS streams.
		{"/admin/page.aspx::$DATA", ErrDataStream},
		{"/admin::$data/x", ErrDataStream},
		{"/a:stream:$DATA", ErrDataStream},
		{"/a%3A%24DATA", ErrDataStream},
		{"/a:%24DATA", ErrDataStream},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := CheckPath([]byte(tt.path)); got != error(tt.want) && (tt.want != nil || got != nil) { //nolint:errorlint // want is a typed pointer (nil: no error); CheckPath returns the sentinels as they are
				t.Fatalf("CheckPath(%q) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

func TestHasShortName(t *testing.T) {
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/ADMINI~1/secret", true},
		{"/admini~1", true},
		{"/x/PROGR~12/y", true},
		{"/WEB~1.CON", true},
		{"/a~1.js", true},
		{"/ABCDEF~1.TXT/x", true},
		{"/~1/x", false},       // nothing before '~'
		{"/~user/x", false},    // home directory
		{"/ABCDEFG~1", false},  // seven before '~'
		{"/ABCDEF~123", false}, // nine up to the extension
		{"/a~b", false},
		{"/a~1.json", false},
		{"/a~1.b.c", false},
		{"/a~1x", false},
		{"/", false},
	} {
		if got := HasShortName([]byte(tc.path)); got != tc.want {
			t.Errorf("HasShortName(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		target, path, query string
		hasQuery            bool
		err                 *Error
	}{
		{"/a?b=c", "/a", "b=c", true, nil},
		{"/a?", "/a", "", true, nil},
		{"/a?x=/../admin;%2f", "/a", "x=/../admin;%2f", true, nil},
		{"/a", "/a", "", false, nil},
		{"*", "", "", false, ErrNotOriginForm},
		{"http://example.com/admin", "", "", false, ErrNotOriginForm},
		{"/a?b#c", "", "", false, ErrBadQuery},
		{"/a?b c", "", "", false, ErrBadQuery},
		{"/a;b?c", "", "", false, ErrPathParam},
	}
	for _, tt := range tests {
		path, query, hasQuery, err := Split([]byte(tt.target))
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("Split(%q) err %v, want %v", tt.target, err, tt.err)
			}
			continue
		}
		if err != nil || string(path) != tt.path || string(query) != tt.query || hasQuery != tt.hasQuery {
			t.Errorf("Split(%q) = %q %q %v %v", tt.target, path, query, hasQuery, err)
		}
	}
}

func TestAppendHost(t *testing.T) {
	tests := []struct {
		in, want, name string
		err            *Error
	}{
		{"", "", "", nil},
		{"example.com", "example.com", "example.com", nil},
		{"INTERNAL.Example.COM", "internal.example.com", "internal.example.com", nil},
		{"internal.example.com.", "internal.example.com", "internal.example.com", nil},
		{"INTERNAL.example.com:8080", "internal.example.com:8080", "internal.example.com", nil},
		{"internal.example.com.:8080", "internal.example.com:8080", "internal.example.com", nil},
		{"h:", "h", "h", nil},
		{"h:0080", "h:80", "h", nil},
		{"10.0.0.1:80", "10.0.0.1:80", "10.0.0.1", nil},
		{"my_host", "my_host", "my_host", nil},
		{"[::1]", "[::1]", "[::1]", nil},
		{"[0:0::1]:8080", "[::1]:8080", "[::1]", nil},
		{"[2001:DB8::1]", "[2001:db8::1]", "[2001:db8::1]", nil},
		{"a,b", "", "", ErrHostChars},
		{"a;b", "", "", ErrHostChars},
		{"a!b", "", "", ErrHostChars},
		{"a$b", "", "", ErrHostChars},
		{"a&b", "", "", ErrHostChars},
		{"a'b", "", "", ErrHostChars},
		{"a(b)", "", "", ErrHostChars},
		{"a*b", "", "", ErrHostChars},
		{"*.example.com", "", "", ErrHostChars},
		{"a+b", "", "", ErrHostChars},
		{"a=b", "", "", ErrHostChars},
		{"a%2eb", "", "", ErrHostChars},
		{"evil@a", "", "", ErrHostChars},
		{"a~b", "", "", ErrHostChars},
		{"a b", "", "", ErrHostChars},
		{"a/b", "", "", ErrHostChars},
		{"caf\xc3\xa9", "", "", ErrHostChars},
		{"a..b", "", "", ErrHostName},
		{".a", "", "", ErrHostName},
		{"a..", "", "", ErrHostName},
		{".", "", "", ErrHostName},
		{":80", "", "", ErrHostName},
		{strings.Repeat("a", 64) + ".com", "", "", ErrHostName},
		{strings.Repeat("a.", 127) + "aa", "", "", ErrHostName},
		{"a:b", "", "", ErrHostPort},
		{"a:1:2", "", "", ErrHostPort},
		{"a:0", "", "", ErrHostPort},
		{"a:65536", "", "", ErrHostPort},
		{"a:123456", "", "", ErrHostPort},
		{"a:-1", "", "", ErrHostPort},
		{"::1", "", "", ErrHostName},
		{"[::1", "", "", ErrHostIP},
		{"[1.2.3.4]", "", "", ErrHostIP},
		{"[fe80::1%25eth0]", "", "", ErrHostIP},
		{"[::1]x", "", "", ErrHostChars},
		{"[::1]:x", "", "", ErrHostPort},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			pre := []byte("pre")
			out, n, err := AppendHost(pre, []byte(tt.in))
			if tt.err != nil {
				if !errors.Is(err, tt.err) || string(out) != "pre" {
					t.Fatalf("AppendHost(%q) = %q, %v; want %v and dst untouched", tt.in, out, err, tt.err)
				}
				return
			}
			if err != nil || string(out[3:]) != tt.want || string(out[3:3+n]) != tt.name {
				t.Fatalf("AppendHost(%q) = %q name %q, %v; want %q name %q", tt.in, out[3:], out[3:3+n], err, tt.want, tt.name)
			}
		})
	}
}

func TestMatchHost(t *testing.T) {
	tests := []struct {
		name, pattern string
		want          bool
	}{
		{"a.corp.example.com", "*.corp.example.com", true},
		{"x-1.corp.example.com", "*.corp.example.com", true},
		{"corp.example.com", "*.corp.example.com", false},
		{"a.b.corp.example.com", "*.corp.example.com", false},
		{".corp.example.com", "*.corp.example.com", false},
		{"acorp.example.com", "*.corp.example.com", false},
		{"a.corp.example.co", "*.corp.example.com", false},
		{"corp.example.com", "corp.example.com", true},
		{"a.corp.example.com", "corp.example.com", false},
		{"*.corp.example.com", "*.corp.example.com", true}, // never a canonical name
	}
	for _, tt := range tests {
		if got := MatchHost([]byte(tt.name), tt.pattern); got != tt.want {
			t.Errorf("MatchHost(%q, %q) = %v", tt.name, tt.pattern, got)
		}
	}
}

// decodeOnce percent-decodes s once, reporting false on a bad escape.
func decodeOnce(s string) (string, bool) {
	d, err := url.PathUnescape(s)
	return d, err == nil
}

func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"/", "/admin;x/secret", "/..;/", "/%3b", "/%252e", "/%c0%ae", "/%e0%80%ae",
		"/admin./x", "/admin%20/x", "/%u002e", "/a::$DATA", "/caf%C3%A9", "/%EF%BC%8F", "/a%25", "/a/b.c/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if CheckPath([]byte(p)) != nil {
			return
		}
		// What is accepted decodes once, cleanly, to a path that every
		// lenient reading leaves alone.
		d, ok := decodeOnce(p)
		if !ok {
			t.Fatalf("accepted %q that does not decode", p)
		}
		if !utf8.ValidString(d) {
			t.Fatalf("accepted %q decoding to invalid UTF-8", p)
		}
		if strings.ContainsAny(d, ";\\\x00\x7f") || strings.Contains(d, ":$") {
			t.Fatalf("accepted %q decoding to %q", p, d)
		}
		if strings.Count(d, "/") != strings.Count(p, "/") {
			t.Fatalf("accepted %q with an encoded slash", p)
		}
		for _, seg := range strings.Split(d[1:], "/") {
			if seg == "" && !strings.HasSuffix(d, "/") || strings.HasSuffix(seg, ".") || strings.HasSuffix(seg, " ") {
				t.Fatalf("accepted %q with segment %q", p, seg)
			}
		}
		if strings.Contains(d[:max(len(d)-1, 0)], "//") {
			t.Fatalf("accepted empty segment in %q", p)
		}
		// A second decoding finds no escape to decode.
		for rest := d; ; {
			i := strings.IndexByte(rest, '%')
			if i < 0 {
				break
			}
			if i+2 < len(rest) && isHex(rest[i+1]) && isHex(rest[i+2]) {
				t.Fatalf("accepted %q: decodes to %q, which decodes again", p, d)
			}
			rest = rest[i+1:]
		}
		// NFKC does not bring new ASCII.
		k := norm.NFKC.String(d)
		if ascii(k) != ascii(norm.NFC.String(d)) {
			t.Fatalf("NFKC of %q brings ASCII: %q", d, k)
		}
	})
}

func ascii(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] < utf8.RuneSelf {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func FuzzAppendHost(f *testing.F) {
	for _, s := range []string{"a", "A.B.", "a:80", "[::1]:8080", "a,b", "a..b", "*.x", "[fe80::1%25x]", "a:", "1.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		out, n, err := AppendHost(nil, []byte(h))
		if err != nil {
			if len(out) != 0 {
				t.Fatalf("error %v with output %q", err, out)
			}
			return
		}
		if n > len(out) {
			t.Fatalf("name length %d > %d", n, len(out))
		}
		if bytes.ContainsAny(out, ",;!$&'()*+=%@~ /\\") {
			t.Fatalf("AppendHost(%q) = %q", h, out)
		}
		if string(out) != strings.ToLower(string(out)) {
			t.Fatalf("not lower case: %q", out)
		}
		name := string(out[:n])
		if strings.HasSuffix(name, ".") || strings.Contains(name, "..") || strings.HasPrefix(name, ".") {
			t.Fatalf("name %q", name)
		}
		// Idempotent.
		again, n2, err := AppendHost(nil, out)
		if err != nil || !bytes.Equal(again, out) || n2 != n {
			t.Fatalf("not idempotent: %q → %q → %q (%v)", h, out, again, err)
		}
	})
}

var shortNameRE = regexp.MustCompile(`^([^/~.]{1,6}~[0-9]+)(\.[^/.]{0,3})?$`)

func FuzzHasShortName(f *testing.F) {
	for _, s := range []string{"/ADMINI~1/x", "/a~1.js", "/~user", "/ABCDEFG~1", "/a~1.b.c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if strings.ContainsFunc(p, func(r rune) bool { return r >= utf8.RuneSelf }) {
			return // raw non-ASCII never passes CheckPath
		}
		want := false
		for _, seg := range strings.Split(p, "/") {
			if m := shortNameRE.FindStringSubmatch(seg); m != nil && len(m[1]) <= 8 {
				want = true
			}
		}
		if got := HasShortName([]byte(p)); got != want {
			t.Fatalf("HasShortName(%q) = %v, want %v", p, got, want)
		}
	})
}
