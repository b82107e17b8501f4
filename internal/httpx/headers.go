package httpx

import (
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// RetryAfterSeconds is d as the delay-seconds of a Retry-After header:
// rounded up to a whole second, and at least 1 (a client told to retry is
// never told to retry at once).
func RetryAfterSeconds(d time.Duration) int64 {
	secs := int64((d + time.Second - 1) / time.Second)
	return max(secs, 1)
}

// SetRetryAfter sets Retry-After to d in seconds (RetryAfterSeconds). It
// does not allocate.
func SetRetryAfter(h *fasthttp.ResponseHeader, d time.Duration) {
	var buf [20]byte
	h.SetBytesV(fasthttp.HeaderRetryAfter, strconv.AppendInt(buf[:0], RetryAfterSeconds(d), 10))
}

// Challenge is a WWW-Authenticate challenge: scheme realm="realm", with
// error="errCode" when errCode is not empty (RFC 6750 §3). The realm is an
// RFC 9110 quoted-string (Quote).
func Challenge(scheme, realm, errCode string) string {
	c := scheme + " realm=" + Quote(realm)
	if errCode != "" {
		c += `, error=` + Quote(errCode)
	}
	return c
}

// Quote returns s as an RFC 9110 quoted-string: '"' and '\' escaped,
// control characters (which a quoted-string cannot hold) dropped.
// configs.Validate refuses all of these in auth.realm; Quote keeps a
// challenge well-formed whatever it is given.
func Quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
