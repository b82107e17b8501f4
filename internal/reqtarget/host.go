package reqtarget

import (
	"net/netip"
	"strconv"
	"unsafe"
)

// Host errors.
var (
	ErrHostChars = &Error{"Host has characters other than letters, digits, - _ . (sub-delimiters, %, userinfo...)"}
	ErrHostName  = &Error{"Host has an empty or too long label, or is too long"}
	ErrHostIP    = &Error{"Host has a malformed IPv6 literal"}
	ErrHostPort  = &Error{"Host has a malformed port"}
)

// AppendHost appends the canonical form of the Host header value h to dst
// and returns the extended slice and the length of the name part it
// appended: the name in ASCII lower case with one trailing dot removed (an
// IPv6 literal in brackets, in its RFC 5952 form), then ":" and the port
// in decimal when h has a non-empty port. An empty h appends nothing.
//
// A name is one or more labels of letters, digits, '-' and '_' separated
// by dots, at most 63 bytes a label and 253 in all; RFC 3986 sub-delimiters
// (",;!$&'()*+="), '%', '@', '~', a second ':' and empty labels ("a..b",
// ".a", "a.." after the one trailing dot) are refused, so "a,b" or
// "a;.b" cannot read as two hosts or as another host to a different parser.
// An IPv4 address is a name like any other. IPv6 zones are refused.
func AppendHost(dst, h []byte) ([]byte, int, error) {
	if len(h) == 0 {
		return dst, 0, nil
	}
	start := len(dst)
	var port []byte
	if h[0] == '[' {
		end := -1
		for i, c := range h {
			if c == ']' {
				end = i
				break
			}
		}
		if end < 0 {
			return dst[:start], 0, ErrHostIP
		}
		a, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(h[1:end]), end-1)) //nolint:gosec // audited zero-copy view: the bytes are not modified while it lives
		if err != nil || !a.Is6() || a.Zone() != "" {
			return dst[:start], 0, ErrHostIP
		}
		dst = append(dst, '[')
		dst = a.AppendTo(dst)
		dst = append(dst, ']')
		rest := h[end+1:]
		if len(rest) > 0 {
			if rest[0] != ':' {
				return dst[:start], 0, ErrHostChars
			}
			port = rest[1:]
		}
	} else {
		name := h
		for i, c := range h {
			if c == ':' {
				name, port = h[:i], h[i+1:]
				break
			}
		}
		if len(name) > 0 && name[len(name)-1] == '.' {
			name = name[:len(name)-1]
		}
		if len(name) == 0 || len(name) > 253 {
			return dst[:start], 0, ErrHostName
		}
		label := 0
		for _, c := range name {
			switch {
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			case c == '.':
				if label == 0 {
					return dst[:start], 0, ErrHostName
				}
				label = -1
			default:
				return dst[:start], 0, ErrHostChars
			}
			label++
			if label > 63 {
				return dst[:start], 0, ErrHostName
			}
			dst = append(dst, c)
		}
		if label == 0 {
			return dst[:start], 0, ErrHostName
		}
	}
	nameLen := len(dst) - start
	if len(port) > 0 {
		if len(port) > 5 {
			return dst[:start], 0, ErrHostPort
		}
		n := 0
		for _, c := range port {
			if c < '0' || c > '9' {
				return dst[:start], 0, ErrHostPort
			}
			n = n*10 + int(c-'0')
		}
		if n == 0 || n > 65535 {
			return dst[:start], 0, ErrHostPort
		}
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, int64(n), 10)
	}
	return dst, nameLen, nil
}

// MatchHost reports whether the canonical host name (as AppendHost gives
// it, without the port) is matched by pattern: an exact canonical name, or
// "*." followed by one, which matches exactly one more label in front of it
// ("*.corp.example.com" matches "a.corp.example.com", neither
// "corp.example.com" nor "a.b.corp.example.com"), as Caddy does.
func MatchHost(name []byte, pattern string) bool {
	if len(pattern) < 2 || pattern[0] != '*' || pattern[1] != '.' {
		return string(name) == pattern
	}
	suffix := pattern[1:] // ".corp.example.com"
	n := len(name) - len(suffix)
	if n <= 0 || string(name[n:]) != suffix {
		return false
	}
	for _, c := range name[:n] {
		if c == '.' {
			return false
		}
	}
	return true
}
