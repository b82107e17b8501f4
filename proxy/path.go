package proxy

import "bytes"

// splitTarget splits an origin-form request target into its raw path and raw
// query and checks the path is unambiguous, so that the route decision made
// on it holds for the upstream too. hasQuery reports a '?' (even with an
// empty query). The returned slices alias target.
//
// Rejected (ErrBadPath): a target not starting with '/'; '#'; bytes outside
// printable ASCII (controls, space, DEL, raw non-ASCII) anywhere; a literal
// backslash in the path; a malformed percent escape; an encoded '/', '\',
// control character or DEL in the path; empty segments ("//"); "." or ".."
// segments ("." and ".."); and any percent-encoded unreserved character
// (ALPHA, DIGIT, '-', '.', '_', '~', so also "%2e"): RFC 3986 normalisers
// decode those, so "/%61dmin" could reach the upstream as "/admin" after
// being routed as something else.
func splitTarget(target []byte) (path, query []byte, hasQuery bool, err error) {
	if len(target) == 0 || target[0] != '/' {
		return nil, nil, false, ErrBadPath
	}
	path = target
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		path, query, hasQuery = target[:i], target[i+1:], true
		for _, c := range query {
			if c <= 0x20 || c >= 0x7f || c == '#' {
				return nil, nil, false, ErrBadPath
			}
		}
	}
	if !validPath(path) {
		return nil, nil, false, ErrBadPath
	}
	return path, query, hasQuery, nil
}

// validPath reports whether p (starting with '/') is an unambiguous raw path.
func validPath(p []byte) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	// segDots counts the (decoded) dots of the current segment; segOther
	// reports any other byte in it.
	segDots, segLen := 0, 0
	segOther := false
	endSeg := func() bool {
		return segOther || segDots == 0 || segDots > 2
	}
	for i := 1; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			if segLen == 0 {
				return false // "//"
			}
			if !endSeg() {
				return false // "." or ".."
			}
			segDots, segLen, segOther = 0, 0, false
			continue
		case c <= 0x20 || c >= 0x7f || c == '\\' || c == '#':
			return false
		case c == '%':
			if i+2 >= len(p) {
				return false
			}
			hi, ok1 := unhex(p[i+1])
			lo, ok2 := unhex(p[i+2])
			if !ok1 || !ok2 {
				return false
			}
			d := hi<<4 | lo
			if d == '/' || d == '\\' || d < 0x20 || d == 0x7f || unreserved(d) {
				return false
			}
			i += 2
			c = d
		}
		segLen++
		if c == '.' {
			segDots++
		} else {
			segOther = true
		}
	}
	if segLen > 0 && !endSeg() {
		return false
	}
	return true
}

// unreserved reports RFC 3986 unreserved characters.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
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
