package proxy

import (
	"strings"

	"github.com/keygate/keygate/internal/reqtarget"

	"github.com/keygate/keygate/internal/httpx/hdr"
)

// splitTarget splits an origin-form request target into its raw path and raw
// query with reqtarget.Split, which refuses every path an upstream may read
// differently from the router (the list is on reqtarget.CheckPath). The
// returned slices alias target. Errors are ErrBadPath or one of its
// variants carrying the reason (same status and code).
func splitTarget(target []byte) (path, query []byte, hasQuery bool, err error) {
	path, query, hasQuery, err = reqtarget.Split(target)
	if err != nil {
		return nil, nil, false, badPath(err)
	}
	return path, query, hasQuery, nil
}

// reasonErrors builds, once, one answer per reqtarget reason: base's status
// and code, its message followed by the reason, so that refusing a request
// allocates nothing. The returned func answers base for any other error.
func reasonErrors(base *HTTPError, reasons ...*reqtarget.Error) func(error) *HTTPError {
	m := make(map[error]*HTTPError, len(reasons))
	for _, e := range reasons {
		m[e] = &HTTPError{Status: base.Status, Code: base.Code, Message: base.Message + ": " + e.Reason}
	}
	return func(err error) *HTTPError {
		if he, ok := m[err]; ok {
			return he
		}
		return base
	}
}

// badPath is the 400 bad_path answer for a reqtarget path error.
var badPath = reasonErrors(ErrBadPath,
	reqtarget.ErrNotOriginForm, reqtarget.ErrBadByte, reqtarget.ErrBadEscape, reqtarget.ErrEncodedDelim,
	reqtarget.ErrEncodedPlain, reqtarget.ErrEmptySegment, reqtarget.ErrDotSegment, reqtarget.ErrTrailingDot,
	reqtarget.ErrPathParam, reqtarget.ErrDoubleEncoding, reqtarget.ErrBadUTF8, reqtarget.ErrCompatibility,
	reqtarget.ErrDataStream, reqtarget.ErrBadQuery, reqtarget.ErrShortName)

// badHost is the 400 bad_host answer for a reqtarget host error.
var badHost = reasonErrors(ErrMalformedHost,
	reqtarget.ErrHostChars, reqtarget.ErrHostName, reqtarget.ErrHostIP, reqtarget.ErrHostPort)

// hasSegmentPrefix reports whether path starts with prefix at a segment
// boundary: "/api" matches "/api" and "/api/x", not "/apix"; "/" matches
// every path. prefix has no trailing '/' unless it is "/".
func hasSegmentPrefix(path []byte, prefix string) bool {
	if len(prefix) == 1 {
		return true
	}
	if len(path) < len(prefix) || string(path[:len(prefix)]) != prefix {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// foldSegmentPrefix is hasSegmentPrefix ignoring case, for case_insensitive
// routes (IIS-like upstreams). prefix is ASCII without '%' (cleanPrefix).
// It returns how many bytes of path the prefix covers. Besides ASCII
// letters of the other case, the percent-encoded characters that
// case-insensitive servers fold to an ASCII letter match that letter:
// U+0130 'İ' and U+0131 'ı' (i), U+017F 'ſ' (s), U+212A Kelvin sign (k).
// Counting them in is the safe side: at worst such a path is sent to the
// case-insensitive route it may mean, under that route's rules.
func foldSegmentPrefix(path []byte, prefix string) (int, bool) {
	if len(prefix) == 1 {
		return 0, true
	}
	i := 0
	for j := 0; j < len(prefix); j++ {
		c := hdr.Lower(prefix[j])
		if i >= len(path) {
			return 0, false
		}
		if path[i] != '%' {
			if hdr.Lower(path[i]) != c {
				return 0, false
			}
			i++
			continue
		}
		n, folded := foldedLetter(path[i:])
		if n == 0 || folded != c {
			return 0, false
		}
		i += n
	}
	if i == len(path) || path[i] == '/' {
		return i, true
	}
	return 0, false
}

// foldedLetter reads one percent-encoded character at the start of p and,
// if it is one that case folding turns into an ASCII letter, returns its
// encoded length and the letter (lower case).
func foldedLetter(p []byte) (int, byte) {
	var b [3]byte
	n := 0
	for n < 3 && len(p) >= 3*(n+1) && p[3*n] == '%' {
		hi, ok1 := reqtarget.Unhex(p[3*n+1])
		lo, ok2 := reqtarget.Unhex(p[3*n+2])
		if !ok1 || !ok2 {
			break
		}
		b[n] = hi<<4 | lo
		n++
	}
	switch {
	case n >= 2 && b[0] == 0xc4 && (b[1] == 0xb0 || b[1] == 0xb1):
		return 6, 'i'
	case n >= 2 && b[0] == 0xc5 && b[1] == 0xbf:
		return 6, 's'
	case n == 3 && b[0] == 0xe2 && b[1] == 0x84 && b[2] == 0xaa:
		return 9, 'k'
	}
	return 0, 0
}

// validPrefix reports whether a configured path prefix is a plain absolute
// path the router can match: accepted by reqtarget.CheckPath, without '?'
// or '%'.
func validPrefix(p string) bool {
	return reqtarget.CheckPath([]byte(p)) == nil && !strings.ContainsAny(p, "?%")
}
