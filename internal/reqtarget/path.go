// Package reqtarget checks the target of an original HTTP request, its path
// and its Host, for the ambiguities through which a gateway and the server
// behind it may read one request as two different resources, and gives the
// canonical form the gateway decides on.
//
// It is shared by the proxy pipeline and the forward-auth listener (DESIGN.md
// §11), which must refuse the same requests: the proxy answers 400
// bad_path, forward-auth 403 with the reason. Every function here is free of
// allocation and keeps no reference to its arguments.
package reqtarget

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Error is why a request target was refused. The values are fixed (compare
// them with ==); Reason is safe to show to the client.
type Error struct{ Reason string }

func (e *Error) Error() string { return "ambiguous request target: " + e.Reason }

// The reasons a target is refused.
var (
	ErrNotOriginForm  = &Error{"not an origin-form target (must start with /)"}
	ErrBadByte        = &Error{"control, space, non-ASCII, backslash or # in the target"}
	ErrBadEscape      = &Error{"malformed percent escape"}
	ErrEncodedDelim   = &Error{"encoded /, \\, control character or DEL"}
	ErrEncodedPlain   = &Error{"percent-encoded unreserved character (letter, digit, - . _ ~)"}
	ErrEmptySegment   = &Error{"empty path segment (//)"}
	ErrDotSegment     = &Error{". or .. segment"}
	ErrTrailingDot    = &Error{"segment ending in a dot or a space"}
	ErrPathParam      = &Error{"path parameter (; or %3B)"}
	ErrDoubleEncoding = &Error{"double percent-encoding (%25 followed by two hex digits)"}
	ErrBadUTF8        = &Error{"percent-encoded bytes that are not valid UTF-8 (overlong, surrogate, truncated)"}
	ErrCompatibility  = &Error{"percent-encoded character that Unicode compatibility or best-fit mapping turns into ASCII"}
	ErrDataStream     = &Error{"NTFS stream suffix (:$)"}
	ErrBadQuery       = &Error{"control, space, non-ASCII or # in the query"}
)

// Split splits an origin-form request target into its raw path and raw
// query and checks the path with CheckPath. hasQuery reports a '?' (even
// with an empty query). The returned slices alias target.
func Split(target []byte) (path, query []byte, hasQuery bool, err error) {
	if len(target) == 0 || target[0] != '/' {
		return nil, nil, false, ErrNotOriginForm
	}
	path = target
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		path, query, hasQuery = target[:i], target[i+1:], true
		for _, c := range query {
			if c <= 0x20 || c >= 0x7f || c == '#' {
				return nil, nil, false, ErrBadQuery
			}
		}
	}
	if err := CheckPath(path); err != nil {
		return nil, nil, false, err
	}
	return path, query, hasQuery, nil
}

// CheckPath reports whether the raw path p (the target before any '?') is
// one that every server behind the gateway reads the same way: nil, or the
// *Error saying why not. It refuses, in the raw path or after decoding its
// percent escapes once:
//
//   - a path not starting with '/'; controls, space, DEL, '#', '\' or raw
//     non-ASCII bytes; malformed escapes (also IIS "%u002e");
//   - encoded '/', '\', controls and DEL; encoded unreserved characters
//     (RFC 3986 normalisers decode "%61dmin" to "admin");
//   - empty, "." and ".." segments;
//   - ';' and "%3B": servlet containers (Jetty, Tomcat, Spring) drop path
//     parameters, so "/admin;x/secret" and "/..;/" mean "/admin/secret" and
//     "/../" to them;
//   - "%25" followed by two hex digits: a server or framework that decodes
//     twice reads "%252e" as ".", "%252f" as "/", "%2541" as "A". Every such
//     pair is refused, not only the ones decoding to . / \ ; %, because the
//     second decoding can produce any byte, and a literal '%' followed by
//     two hex digits in a real path is vanishingly rare;
//   - a segment whose last character is '.' or ' ' ("/admin./x",
//     "/admin%20/x", "/admin%20"): Windows and IIS drop them;
//   - ":$" (NTFS alternate data streams, "/page.aspx::$DATA");
//   - percent-encoded bytes that are not valid UTF-8: overlong forms
//     ("%c0%ae" is a '.' to lenient decoders), surrogates, truncated or
//     stray continuation bytes;
//   - encoded characters that Unicode compatibility normalisation (NFKC) or
//     Windows best-fit mapping turns into ASCII: fullwidth "．／＼；",
//     "ａｄｍｉｎ", one-dot leader, division slash, set minus, NBSP...
//
// Encoded reserved characters other than '/', '\' and ';' ("%3A", "%3F",
// "%20" inside a segment, "%25" not followed by two hex digits) and valid
// encoded UTF-8 are accepted: they decode to one thing only.
func CheckPath(p []byte) error {
	if len(p) == 0 || p[0] != '/' {
		return ErrNotOriginForm
	}
	var (
		segLen   int  // decoded characters in the current segment
		segOther bool // the segment has a character other than '.'
		last     byte // last decoded byte of the segment
		seq      [4]byte
		seqLen   int // bytes collected of the current encoded UTF-8 sequence
		seqNeed  int // bytes the current sequence needs in all
	)
	for i := 1; i < len(p); i++ {
		c := p[i]
		if plain[c] && seqNeed == 0 {
			segLen++
			segOther = true
			last = c
			continue
		}
		switch {
		case c == '/':
			if seqNeed > 0 {
				return ErrBadUTF8
			}
			if err := segmentEnd(segLen, segOther, last); err != nil {
				return err
			}
			segLen, segOther, last = 0, false, 0
			continue
		case c <= 0x20 || c >= 0x7f || c == '\\' || c == '#':
			return ErrBadByte
		case c == ';':
			return ErrPathParam
		case c == '%':
			if i+2 >= len(p) {
				return ErrBadEscape
			}
			hi, ok1 := Unhex(p[i+1])
			lo, ok2 := Unhex(p[i+2])
			if !ok1 || !ok2 {
				return ErrBadEscape
			}
			d := hi<<4 | lo
			switch {
			case d == '/' || d == '\\' || d < 0x20 || d == 0x7f:
				return ErrEncodedDelim
			case unreserved(d):
				return ErrEncodedPlain
			case d == ';':
				return ErrPathParam
			case d == '%' && i+4 < len(p) && isHex(p[i+3]) && isHex(p[i+4]):
				return ErrDoubleEncoding
			}
			i += 2
			c = d
		}
		if c >= 0x80 {
			// Only reachable encoded: collect one UTF-8 sequence.
			if seqNeed == 0 {
				seqNeed = utf8Len(c)
				if seqNeed == 0 {
					return ErrBadUTF8 // stray continuation, C0, C1, F5..FF
				}
				seqLen = 0
			} else if c&0xc0 != 0x80 {
				return ErrBadUTF8
			}
			seq[seqLen] = c
			seqLen++
			if seqLen < seqNeed {
				continue
			}
			seqNeed = 0
			r, size := utf8.DecodeRune(seq[:seqLen])
			if r == utf8.RuneError && size == 1 {
				return ErrBadUTF8 // overlong, surrogate, > U+10FFFF
			}
			if compatASCII(r) {
				return ErrCompatibility
			}
			segLen++
			segOther = true
			last = 0x80
			continue
		}
		if seqNeed > 0 {
			return ErrBadUTF8 // truncated sequence
		}
		if c == '$' && last == ':' {
			return ErrDataStream
		}
		segLen++
		if c != '.' {
			segOther = true
		}
		last = c
	}
	if seqNeed > 0 {
		return ErrBadUTF8
	}
	if segLen > 0 {
		return segmentEnd(segLen, segOther, last)
	}
	return nil
}

// segmentEnd checks a finished segment: its decoded length, whether it has
// a character other than '.', and its last character.
func segmentEnd(segLen int, segOther bool, last byte) error {
	switch {
	case segLen == 0:
		return ErrEmptySegment
	case !segOther:
		if segLen <= 2 {
			return ErrDotSegment
		}
		return ErrTrailingDot
	case last == '.' || last == ' ':
		return ErrTrailingDot
	}
	return nil
}

// plain are the raw path bytes that need no more than counting: pchar
// (RFC 3986) but '%', '.', ';' and '$' (':' then '$' is an NTFS stream).
var plain = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-_~!&'()*+,=:@", byte(c)) >= 0
	}
	return t
}()

// utf8Len is the length of the UTF-8 sequence led by b, or 0 if b cannot
// lead one (continuation bytes, the overlong leaders C0 and C1, F5..FF).
func utf8Len(b byte) int {
	switch {
	case b >= 0xc2 && b <= 0xdf:
		return 2
	case b >= 0xe0 && b <= 0xef:
		return 3
	case b >= 0xf0 && b <= 0xf4:
		return 4
	}
	return 0
}

// bestFit are characters that Windows best-fit mapping (IIS, ASP.NET,
// Win32 ANSI APIs) turns into a path delimiter although NFKC keeps them.
var bestFit = [...]rune{
	0x2215, // DIVISION SLASH → '/'
	0x2044, // FRACTION SLASH → '/'
	0x2216, // SET MINUS → '\'
	0x00a5, // YEN SIGN → '\' (code page 932)
	0x20a9, // WON SIGN → '\' (code page 949)
}

// compatASCII reports whether the character r (non-ASCII) is one that NFKC
// or best-fit mapping changes into something containing ASCII: fullwidth
// forms, small form variants, ligatures, NBSP, mathematical letters, the
// Greek question mark (';' even under NFC)... A character NFKC leaves alone
// ("é") is accepted. The set is computed once, on first use, so the check
// itself allocates nothing.
func compatASCII(r rune) bool {
	t := compatTable()
	_, found := slices.BinarySearchFunc(t, r, func(rg runeRange, r rune) int {
		switch {
		case rg.hi < r:
			return -1
		case rg.lo > r:
			return 1
		}
		return 0
	})
	return found
}

// Prepare builds the tables CheckPath needs now rather than on the first
// path with an encoded non-ASCII character (about 15 ms).
func Prepare() { compatTable() }

type runeRange struct{ lo, hi rune }

// compatTable is the sorted set of compatASCII characters. Only the blocks
// where NFKC yields ASCII are scanned beyond the BMP: mathematical
// alphanumerics, enclosed alphanumeric supplement, segmented digits.
var compatTable = sync.OnceValue(func() []runeRange {
	var t []runeRange
	add := func(r rune) {
		if n := len(t); n > 0 && t[n-1].hi == r-1 {
			t[n-1].hi = r
			return
		}
		t = append(t, runeRange{r, r})
	}
	var buf [utf8.UTFMax]byte
	scan := func(lo, hi rune) {
		for r := lo; r <= hi; r++ {
			if slices.Contains(bestFit[:], r) {
				add(r)
				continue
			}
			n := utf8.EncodeRune(buf[:], r)
			if !utf8.ValidRune(r) || norm.NFKC.IsNormal(buf[:n]) {
				continue
			}
			for _, c := range norm.NFKC.Properties(buf[:n]).Decomposition() {
				if c < utf8.RuneSelf {
					add(r)
					break
				}
			}
		}
	}
	scan(0x80, 0xffff)
	scan(0x1d400, 0x1d7ff)
	scan(0x1f100, 0x1f1ff)
	scan(0x1fbf0, 0x1fbf9)
	return t
})

// unreserved reports RFC 3986 unreserved characters.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool { _, ok := Unhex(c); return ok }

// Unhex is the value of the hex digit c (either case) of a %XX escape.
func Unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// ErrShortName refuses Windows 8.3 short names where an IIS-like upstream
// is configured (see HasShortName).
var ErrShortName = &Error{"Windows 8.3 short name segment (like ADMINI~1)"}

// HasShortName reports whether a raw path (accepted by CheckPath) has a
// segment shaped like a Windows 8.3 short name: one to six characters
// other than '.', '~',
// digits, at most eight characters up to there, then nothing or a dot and
// at most three characters ("ADMINI~1", "WEB~1.CON"). IIS serves
// "/ADMINI~1/x" as "/administration/x", so a gateway in front of a
// case-insensitive (Windows) upstream refuses them. It does not allocate.
func HasShortName(p []byte) bool {
	for len(p) > 0 {
		if p[0] == '/' {
			p = p[1:]
			continue
		}
		end := bytes.IndexByte(p, '/')
		if end < 0 {
			end = len(p)
		}
		if shortName(p[:end]) {
			return true
		}
		p = p[end:]
	}
	return false
}

func shortName(seg []byte) bool {
	tilde := bytes.IndexByte(seg, '~')
	if tilde < 1 || tilde > 6 || bytes.IndexByte(seg[:tilde], '.') >= 0 {
		return false
	}
	i := tilde + 1
	for i < len(seg) && '0' <= seg[i] && seg[i] <= '9' {
		i++
	}
	if i == tilde+1 || i > 8 {
		return false
	}
	rest := seg[i:]
	return len(rest) == 0 || rest[0] == '.' && len(rest) <= 4 && bytes.IndexByte(rest[1:], '.') < 0
}
