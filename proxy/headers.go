package proxy

import (
	"bytes"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/httpx/hdr"
)

// checkRawHeaders scans the raw header block as the client sent it (as kept
// by fasthttp, valid only during the handler) for shapes fasthttp accepts
// but keygate refuses, and counts the headers that must not repeat.
//
// fasthttp v1.74.0 itself answers 400 for: two Content-Length headers (equal
// or not), two Transfer-Encoding headers, Transfer-Encoding other than
// exactly "chunked" or "identity" (so "chunked, identity" and "xchunked"),
// Transfer-Encoding on HTTP/1.0, an empty header name, whitespace between
// the name and the colon, a first header line starting with whitespace,
// control bytes in values and two Host headers. It accepts, and this
// function rejects (ErrSmuggling): Content-Length together with
// Transfer-Encoding (it lets chunked win), obs-fold continuation lines (it
// joins them), a header name with inner whitespace, a line without a colon,
// and bare LF line endings. Two Authorization headers give ErrDuplicateAuth.
func checkRawHeaders(raw []byte) error {
	var nCL, nTE, nAuth, nHost int
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		var line []byte
		if i < 0 {
			line, raw = raw, nil
		} else {
			line, raw = raw[:i], raw[i+1:]
			if len(line) == 0 || line[len(line)-1] != '\r' {
				return ErrSmuggling // bare LF
			}
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			return ErrSmuggling // obs-fold
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return ErrSmuggling
		}
		key := line[:colon]
		for _, c := range key {
			if c <= ' ' || c >= 0x7f {
				return ErrSmuggling
			}
		}
		switch {
		case hdr.EqualFold(key, fasthttp.HeaderContentLength):
			nCL++
		case hdr.EqualFold(key, fasthttp.HeaderTransferEncoding):
			nTE++
		case hdr.EqualFold(key, fasthttp.HeaderAuthorization):
			nAuth++
		case hdr.EqualFold(key, fasthttp.HeaderHost):
			nHost++
		}
	}
	switch {
	case nCL > 0 && nTE > 0, nCL > 1, nTE > 1:
		return ErrSmuggling
	case nAuth > 1:
		return ErrDuplicateAuth
	case nHost > 1:
		return ErrBadHost
	}
	return nil
}

// hopByHop are removed from requests and responses (RFC 9110 §7.6.1).
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// forwardingHeaders are dropped when the peer is not a trusted proxy
// (compared normalised: lower case, '_' and '.' as '-').
var forwardingHeaders = []string{"forwarded", "x-real-ip"}

const (
	identityPrefix  = "x-auth-"
	forwardedPrefix = "x-forwarded-"
)

// sanitizer removes from a header set what must not pass the gateway. It is
// built once from the configured identity header names.
type sanitizer struct {
	// identity holds the normalised configured identity header names.
	identity []string
	// override holds the normalised override headers to strip (override.go).
	override []string
	// ridName is the request id header name (its presence is noted).
	ridName []byte
	// reqNames and respNames (set by prepare) tell, by first byte and
	// length, which header names any check of sanitizeRequest or
	// sanitizeResponse may act on; the others are passed over after one
	// table lookup. Unprepared (zero), every name is checked.
	reqNames, respNames nameFilter
	prepared            bool
}

// nameFilter holds, per first byte, a bit per name length (bit 63: 63 or
// more) of the names that may match.
type nameFilter [256]uint64

// add records name (compared normalised or ASCII case-insensitively: its
// first byte in either case, and '-', '_', '.' for one another); with
// prefix, every name at least as long.
func (f *nameFilter) add(name string, prefix bool) {
	if name == "" {
		return
	}
	n := min(len(name), 63)
	bits := uint64(1) << n
	if prefix {
		bits = ^uint64(0) << n
	}
	c := name[0]
	var firsts []byte
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		firsts = []byte{c | 0x20, c &^ 0x20}
	case c == '-' || c == '_' || c == '.':
		firsts = []byte{'-', '_', '.'}
	default:
		firsts = []byte{c}
	}
	for _, b := range firsts {
		f[b] |= bits
	}
}

// may reports whether a check may act on header name k.
func (f *nameFilter) may(k []byte) bool {
	return len(k) == 0 || f[k[0]]&(uint64(1)<<min(len(k), 63)) != 0
}

// prepare builds the name filters from everything the sanitizer compares
// with: call it after identity, override and ridName are set.
func (z *sanitizer) prepare() {
	for _, h := range hopByHop {
		z.reqNames.add(h, false)
		z.respNames.add(h, false)
	}
	for _, n := range z.identity {
		z.reqNames.add(n, false)
	}
	for _, n := range z.override {
		z.reqNames.add(n, false)
	}
	for _, n := range forwardingHeaders {
		z.reqNames.add(n, false)
	}
	z.reqNames.add(identityPrefix, true)
	z.reqNames.add(forwardedPrefix, true)
	for _, n := range []string{fasthttp.HeaderAuthorization, fasthttp.HeaderExpect, string(z.ridName)} {
		z.reqNames.add(n, false)
	}
	z.respNames.add(string(z.ridName), false)
	z.prepared = true
}

// normEqual reports whether header name k, normalised (ASCII lower case,
// '_' and '.' read as '-'), equals want (already normalised).
func normEqual(k []byte, want string) bool {
	if len(k) != len(want) {
		return false
	}
	for i := range k {
		if normByte(k[i]) != want[i] {
			return false
		}
	}
	return true
}

// normHasPrefix is normEqual for a prefix.
func normHasPrefix(k []byte, prefix string) bool {
	return len(k) >= len(prefix) && normEqual(k[:len(prefix)], prefix)
}

func normByte(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case c == '_' || c == '.':
		return '-'
	}
	return c
}

// normalizeName returns the normalised form of a header name.
func normalizeName(s string) string {
	b := []byte(s)
	for i := range b {
		b[i] = normByte(b[i])
	}
	return string(b)
}

// isIdentityHeader reports whether k is equivalent to an identity header.
func (s *sanitizer) isIdentityHeader(k []byte) bool {
	if normHasPrefix(k, identityPrefix) {
		return true
	}
	for _, n := range s.identity {
		if normEqual(k, n) {
			return true
		}
	}
	return false
}

// scratch is per-request working memory, pooled.
type scratch struct {
	conn  []byte   // Connection header values, comma-joined
	keys  []byte   // names of headers to delete, concatenated
	ends  []int    // end offsets into keys
	xff   []byte   // client X-Forwarded-For (trusted peers only)
	uri   []byte   // outgoing request URI
	rid   []byte   // request id
	path  []byte   // raw request path, for the access log
	ip    []byte   // peer IP text
	rnd   [16]byte // request id block (requestid.go)
	close bool     // client asked for Connection: close
	host  []byte   // canonical Host (reqtarget.AppendHost), empty without Host
	// hostName is the length of the name part of host (no port).
	hostName int
	reqState
	// connAuth: Connection names Authorization. The header is kept for
	// authentication and removed after it (never forwarded).
	connAuth bool
	// untrustedFwd: the client sent X-Forwarded-For or Forwarded but the
	// peer is not a trusted proxy (the headers were dropped).
	untrustedFwd bool
	// now is the time the request started (Handler's one clock read).
	now time.Time
	// credValue is the upstream credential value sent (owned by the
	// credential source; read-only), for a retry after a 401.
	credValue []byte
	// What the sanitizer left in the request (fasthttp's name match: ASCII
	// case-insensitive): Expect, Authorization, the request id header; and
	// the request id header in the upstream's response. They spare the
	// forwarding step a Del (a copy and normalisation of the name) of a
	// header that is not there.
	sawExpect, sawAuth, sawRID, upRID bool
}

func (s *scratch) reset() {
	s.conn, s.keys, s.ends, s.xff = s.conn[:0], s.keys[:0], s.ends[:0], s.xff[:0]
	s.uri, s.rid, s.ip, s.path = s.uri[:0], s.rid[:0], s.ip[:0], s.path[:0]
	s.host, s.hostName = s.host[:0], 0
	s.close, s.connAuth, s.untrustedFwd = false, false, false
	s.credValue = nil
	s.sawExpect, s.sawAuth, s.sawRID, s.upRID = false, false, false, false
	s.resetState()
}

func (s *scratch) drop(k []byte) {
	s.keys = append(s.keys, k...)
	s.ends = append(s.ends, len(s.keys))
}

// inConnection reports whether k is named in the collected Connection values.
func (s *scratch) inConnection(k []byte) bool {
	v := s.conn
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var tok []byte
		if i < 0 {
			tok, v = v, nil
		} else {
			tok, v = v[:i], v[i+1:]
		}
		tok = hdr.TrimOWS(tok)
		if len(tok) > 0 && len(tok) == len(k) && hdr.EqualFold(tok, k) {
			return true
		}
	}
	return false
}

func isHopByHop(k []byte) bool {
	for _, h := range hopByHop {
		if hdr.EqualFold(k, h) {
			return true
		}
	}
	return false
}

// sanitizeRequest removes, in place: hop-by-hop headers, every header named
// in any Connection header (except Host and Content-Length, which frame
// the request, and Authorization, which authentication reads first: s.connAuth
// says the caller must remove it after authentication), every header
// equivalent to an identity header, the override headers not kept by
// configuration (override.go), and, unless trusted, the client's
// X-Forwarded-* and Forwarded headers (s.untrustedFwd records that an
// X-Forwarded-For or Forwarded was dropped). When trusted, the client's
// X-Forwarded-For values, every line of them in order, are moved into s.xff
// (comma-joined) so the caller can append the peer. s.close records a client
// "Connection: close".
func (z *sanitizer) sanitizeRequest(h *fasthttp.RequestHeader, s *scratch, trusted bool) {
	s.close = h.ConnectionClose()
	for k, v := range h.All() {
		if hdr.EqualFold(k, fasthttp.HeaderConnection) {
			if len(s.conn) > 0 {
				s.conn = append(s.conn, ',')
			}
			s.conn = append(s.conn, v...)
		}
	}
	filter := z.prepared && len(s.conn) == 0
	for k, v := range h.All() {
		if filter && !z.reqNames.may(k) {
			continue // no check below can match: kept
		}
		switch {
		case isHopByHop(k), z.isIdentityHeader(k), z.isOverrideHeader(k):
		case len(s.conn) > 0 && s.inConnection(k) &&
			!hdr.EqualFold(k, fasthttp.HeaderHost) && !hdr.EqualFold(k, fasthttp.HeaderContentLength):
			if hdr.EqualFold(k, fasthttp.HeaderAuthorization) {
				s.connAuth, s.sawAuth = true, true
				continue
			}
		case normHasPrefix(k, forwardedPrefix) || normEqual(k, forwardingHeaders[0]) || normEqual(k, forwardingHeaders[1]):
			isXFF := normEqual(k, "x-forwarded-for")
			if !trusted {
				if isXFF || normEqual(k, forwardingHeaders[0]) {
					s.untrustedFwd = true
				}
				break
			}
			if !isXFF {
				continue
			}
			s.xff = appendXFF(s.xff, v)
		default:
			switch {
			case hdr.EqualFold(k, fasthttp.HeaderAuthorization):
				s.sawAuth = true
			case hdr.EqualFold(k, fasthttp.HeaderExpect):
				s.sawExpect = true
			case hdr.EqualFold(k, z.ridName):
				s.sawRID = true
			}
			continue
		}
		s.drop(k)
	}
	s.deleteCollected(h.DelBytes)
}

// collectForCheck is sanitizeRequest for a forward-auth check (from a
// trusted proxy, never forwarded): it removes nothing and collects what the
// decision reads, s.close and the X-Forwarded-For lines (any spelling, in
// order) into s.xff for the client address.
func (z *sanitizer) collectForCheck(h *fasthttp.RequestHeader, s *scratch) {
	s.close = h.ConnectionClose()
	for k, v := range h.All() {
		if len(k) == len("x-forwarded-for") && normEqual(k, "x-forwarded-for") {
			s.xff = appendXFF(s.xff, v)
		}
	}
}

// sanitizeResponse removes hop-by-hop headers and headers named in the
// upstream's Connection headers from an upstream response, and notes in
// s.upRID whether what is left has a request id header.
func (z *sanitizer) sanitizeResponse(h *fasthttp.ResponseHeader, s *scratch) {
	s.conn, s.keys, s.ends = s.conn[:0], s.keys[:0], s.ends[:0]
	for k, v := range h.All() {
		if hdr.EqualFold(k, fasthttp.HeaderConnection) {
			if len(s.conn) > 0 {
				s.conn = append(s.conn, ',')
			}
			s.conn = append(s.conn, v...)
		}
	}
	filter := z.prepared && len(s.conn) == 0
	for k := range h.All() {
		if filter && !z.respNames.may(k) {
			continue
		}
		if isHopByHop(k) || (len(s.conn) > 0 && s.inConnection(k) &&
			!hdr.EqualFold(k, fasthttp.HeaderContentLength) && !hdr.EqualFold(k, fasthttp.HeaderContentType)) {
			s.drop(k)
		} else if hdr.EqualFold(k, z.ridName) {
			s.upRID = true
		}
	}
	s.deleteCollected(h.DelBytes)
}

// appendXFF appends one X-Forwarded-For line's value to the comma-joined
// list dst (every line of the header is one part of one list, RFC 9110
// §5.3).
func appendXFF(dst, v []byte) []byte {
	if len(v) == 0 {
		return dst
	}
	if len(dst) > 0 {
		dst = append(dst, ", "...)
	}
	return append(dst, v...)
}

func (s *scratch) deleteCollected(del func([]byte)) {
	start := 0
	for _, end := range s.ends {
		del(s.keys[start:end])
		start = end
	}
}

// validRequestID reports whether a client-sent request id is kept: 1 to 128
// bytes of [A-Za-z0-9._-].
func validRequestID(b []byte) bool {
	if len(b) == 0 || len(b) > 128 {
		return false
	}
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
