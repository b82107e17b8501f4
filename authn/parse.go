package authn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/internal/httpx/hdr"
)

// CredKind is the kind of credential an Authorization header carries.
type CredKind uint8

// Credential kinds.
const (
	KindNone   CredKind = iota
	KindBasic           // Basic base64(username:password)
	KindAPIKey          // Basic base64(_api_key:<key>), ApiKey base64(<id>:<key>), Bearer kg_…
	KindBearer          // Bearer <token> other than an API key (a JWT)
)

// String names the kind.
func (k CredKind) String() string {
	switch k {
	case KindBasic:
		return "basic"
	case KindAPIKey:
		return "api_key"
	case KindBearer:
		return "bearer"
	default:
		return "none"
	}
}

// Limits of ParseAuthorization.
const (
	// MaxDecodedLen is the longest decoded Basic or ApiKey payload
	// ("username:password", "id:key"); longer is malformed.
	MaxDecodedLen = 1024
	// MaxTokenLen is the longest bearer token; longer is malformed.
	MaxTokenLen = 8 << 10
	// MaxAuthorizationLen is the longest Authorization value looked at.
	MaxAuthorizationLen = 16 << 10
)

// APIKeyUser is the Basic username that marks the password as an API key
// (Anchore style).
const APIKeyUser = "_api_key"

// Credentials is a parsed Authorization header. Its byte slices alias either
// the header passed to ParseAuthorization or the Credentials' own buffer:
// they are valid until the next ParseAuthorization or Reset on the same
// Credentials, and only while the header bytes are alive and unchanged (with
// fasthttp: until the handler returns). Copy them before keeping them.
//
// A Credentials is about 1.2 KB; keep one per request (pooled or on the
// stack) rather than allocating it per parse.
type Credentials struct {
	Kind CredKind
	// Username and Password are set for KindBasic. Both are valid UTF-8
	// without control characters; Username is not empty.
	Username, Password []byte
	// For KindAPIKey: APIKey is the whole key value (kg_<id>_<secret><sum>)
	// with a valid checksum; KeyID and Secret are its parts.
	KeyID, Secret, APIKey []byte
	// Token is set for KindBearer: 1..MaxTokenLen token68 characters.
	Token []byte

	// buf holds decoded base64. Two spare bytes: a 1368-character payload
	// without padding decodes to 1026 bytes, refused after decoding.
	buf  [MaxDecodedLen + 2]byte
	used int // bytes of buf written by the last parse
}

// Reset clears c, including the decoded bytes (passwords) in its buffer.
func (c *Credentials) Reset() {
	clear(c.buf[:c.used])
	c.used = 0
	c.Kind = KindNone
	c.Username, c.Password = nil, nil
	c.KeyID, c.Secret, c.APIKey = nil, nil, nil
	c.Token = nil
}

// Parse errors: fixed messages wrapping the sentinels, so returning them does
// not allocate and never echoes the credential.
var (
	errUnknownScheme = fmt.Errorf("%w: unsupported authorization scheme", ErrMalformedCredentials)
	errNoSpace       = fmt.Errorf("%w: want one or more spaces between scheme and credentials", ErrMalformedCredentials)
	errEmpty         = fmt.Errorf("%w: empty credentials after scheme", ErrMalformedCredentials)
	errTooLong       = fmt.Errorf("%w: credentials too long", ErrMalformedCredentials)
	errBadChar       = fmt.Errorf("%w: invalid character in credentials", ErrMalformedCredentials)
	errBase64        = fmt.Errorf("%w: invalid base64 (standard alphabet with padding required)", ErrMalformedCredentials)
	errNoColon       = fmt.Errorf("%w: decoded credentials have no ':'", ErrMalformedCredentials)
	errEmptyUser     = fmt.Errorf("%w: empty username", ErrMalformedCredentials)
	errUTF8          = fmt.Errorf("%w: username and password must be UTF-8 without control characters", ErrMalformedCredentials)
	errKeyShape      = fmt.Errorf("%w: %w", ErrMalformedCredentials, apikey.ErrMalformed)
	errKeyChecksum   = fmt.Errorf("%w: %w", ErrInvalidCredentials, apikey.ErrChecksum)
	errKeyIDMismatch = fmt.Errorf("%w: ApiKey id does not match the key", ErrMalformedCredentials)
)

// ParseAuthorization parses the value of an Authorization header into c
// (DESIGN.md §3). c is reset first. For well-formed input it does not
// allocate; see Credentials for the lifetime of the slices it sets.
//
// Accepted forms (scheme names case-insensitive, one or more spaces after
// the scheme, surrounding spaces and tabs ignored):
//
//	Basic base64(username:password)   → KindBasic (split at the first ':')
//	Basic base64(_api_key:<api key>)  → KindAPIKey
//	ApiKey base64(<id>:<api key>)     → KindAPIKey (id must be the key's id)
//	Bearer kg_…                       → KindAPIKey
//	Bearer <token68>                  → KindBearer
//
// Base64 is the standard alphabet with padding (RFC 7617). Errors: an empty
// header (or one of only spaces and tabs) is ErrNoCredentials; an API key whose checksum fails is
// ErrInvalidCredentials (reject it without a store lookup); everything else
// that does not parse is ErrMalformedCredentials. It never panics.
func ParseAuthorization(h []byte, c *Credentials) error {
	return parseAuthorization(h, c, false)
}

// parseAuthorization is ParseAuthorization; with lazyToken a Bearer token's
// characters are not checked (the caller checks them with checkToken before
// anything but a cache lookup, see Chain.bearerKey).
func parseAuthorization(h []byte, c *Credentials, lazyToken bool) error {
	c.Reset()
	if len(h) == 0 {
		return ErrNoCredentials
	}
	if len(h) > MaxAuthorizationLen {
		return errTooLong
	}
	h = hdr.TrimOWS(h)
	if len(h) == 0 {
		return ErrNoCredentials // only spaces: an empty field value
	}
	// Scheme: up to the first space.
	i := 0
	for i < len(h) && h[i] != ' ' {
		i++
	}
	scheme := h[:i]
	if i == len(h) {
		switch {
		case knownScheme(scheme):
			return errEmpty // "Basic"
		case bytes.IndexByte(scheme, '\t') >= 0, knownSchemePrefix(scheme):
			return errNoSpace // "Basic\tdXN…", "BasicdXN…"
		}
		return errUnknownScheme
	}
	for i < len(h) && h[i] == ' ' {
		i++
	}
	cred := h[i:] // not empty: h has no trailing space
	switch {
	case hdr.EqualFold(scheme, "basic"):
		return c.parseBasic(cred)
	case hdr.EqualFold(scheme, "apikey"):
		return c.parseAPIKeyScheme(cred)
	case hdr.EqualFold(scheme, "bearer"):
		return c.parseBearer(cred, lazyToken)
	}
	return errUnknownScheme
}

func knownScheme(s []byte) bool {
	return hdr.EqualFold(s, "basic") || hdr.EqualFold(s, "apikey") || hdr.EqualFold(s, "bearer")
}

func knownSchemePrefix(s []byte) bool {
	return len(s) > 5 && hdr.EqualFold(s[:5], "basic") ||
		len(s) > 6 && (hdr.EqualFold(s[:6], "apikey") || hdr.EqualFold(s[:6], "bearer"))
}

// maxEncodedLen is the longest base64 payload decoded: the padded encoding
// of MaxDecodedLen bytes (1368 characters).
const maxEncodedLen = (MaxDecodedLen + 2) / 3 * 4

// b64dec maps a byte of the standard base64 alphabet to its 6-bit value and
// every other byte (including '=', '\r' and '\n') to 0xff.
var b64dec = func() (t [256]byte) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// decode decodes standard padded base64 into c.buf and returns the bytes.
//
// It accepts exactly what base64.StdEncoding.Strict().Decode accepts from
// input made only of the alphabet and '=' (differential test and fuzz
// target in parse_fast_test.go): a multiple of 4 characters, '=' only as the
// last one or two characters, and zero unused bits before the padding. Unlike
// encoding/base64 it never skips '\r' or '\n'. It validates and decodes in
// one pass, 8 characters at a time; a bad character is detected from the OR
// of the looked-up values (0xff has the high bit set), checked once after
// the loop. Replacing an alphabet pass and encoding/base64 roughly halved
// the parse of the Basic and ApiKey forms (BenchmarkParseAuthorization).
func (c *Credentials) decode(s []byte) ([]byte, error) {
	if len(s) > maxEncodedLen {
		return nil, errTooLong
	}
	if len(s) == 0 {
		return c.buf[:0], nil
	}
	if len(s)%4 != 0 {
		return nil, errBase64
	}
	// Full quanta: all but the last, which may hold padding. len(s) <=
	// 1368, so the output (at most 1026 bytes) fits in buf; 8 characters
	// are stored as one 8-byte word (6 bytes of data, 2 zero bytes that the
	// next store overwrites) while buf has room for it.
	body := s[:len(s)-4]
	n := len(body) / 4 * 3
	dst := c.buf[:]
	var bad byte
	for len(body) >= 8 && len(dst) >= 8 {
		a0, a1, a2, a3 := b64dec[body[0]], b64dec[body[1]], b64dec[body[2]], b64dec[body[3]]
		a4, a5, a6, a7 := b64dec[body[4]], b64dec[body[5]], b64dec[body[6]], b64dec[body[7]]
		bad |= a0 | a1 | a2 | a3 | a4 | a5 | a6 | a7
		binary.BigEndian.PutUint64(dst, uint64(a0)<<58|uint64(a1)<<52|uint64(a2)<<46|uint64(a3)<<40|
			uint64(a4)<<34|uint64(a5)<<28|uint64(a6)<<22|uint64(a7)<<16)
		body, dst = body[8:], dst[6:]
	}
	for len(body) >= 4 && len(dst) >= 3 {
		a, b, x, y := b64dec[body[0]], b64dec[body[1]], b64dec[body[2]], b64dec[body[3]]
		bad |= a | b | x | y
		v := uint32(a)<<18 | uint32(b)<<12 | uint32(x)<<6 | uint32(y)
		dst[0], dst[1], dst[2] = byte(v>>16), byte(v>>8), byte(v) //nolint:gosec // deliberate truncation: one byte of the 24-bit group
		body, dst = body[4:], dst[3:]
	}
	c.used = n
	if bad&0x80 != 0 {
		return nil, errBase64
	}
	// Last quantum: "xxxx", "xxx=" or "xx==".
	q := s[len(s)-4:]
	a, b := b64dec[q[0]], b64dec[q[1]]
	if (a|b)&0x80 != 0 {
		return nil, errBase64
	}
	v := uint32(a)<<18 | uint32(b)<<12
	switch {
	case q[2] == '=' && q[3] == '=':
		if b&0x0f != 0 { // strict: unused bits must be zero
			return nil, errBase64
		}
		c.buf[n] = byte(v >> 16) //nolint:gosec // deliberate truncation: one byte of the 24-bit group
		n++
	case q[3] == '=':
		x := b64dec[q[2]]
		if x&0x80 != 0 || x&0x03 != 0 {
			return nil, errBase64
		}
		v |= uint32(x) << 6
		c.buf[n], c.buf[n+1] = byte(v>>16), byte(v>>8) //nolint:gosec // deliberate truncation: one byte of the 24-bit group
		n += 2
	default:
		x, y := b64dec[q[2]], b64dec[q[3]]
		if (x|y)&0x80 != 0 {
			return nil, errBase64
		}
		v |= uint32(x)<<6 | uint32(y)
		c.buf[n], c.buf[n+1], c.buf[n+2] = byte(v>>16), byte(v>>8), byte(v) //nolint:gosec // deliberate truncation: one byte of the 24-bit group
		n += 3
	}
	c.used = n
	if n > MaxDecodedLen {
		return nil, errTooLong
	}
	return c.buf[:n], nil
}

func (c *Credentials) parseBasic(s []byte) error {
	d, err := c.decode(s)
	if err != nil {
		return err
	}
	colon := bytes.IndexByte(d, ':')
	if colon < 0 {
		return errNoColon
	}
	user, pass := d[:colon], d[colon+1:]
	if string(user) == APIKeyUser {
		return c.setKey(pass)
	}
	if len(user) == 0 {
		return errEmptyUser
	}
	if !validText(user) || !validText(pass) {
		return errUTF8
	}
	c.Kind, c.Username, c.Password = KindBasic, user, pass
	return nil
}

func (c *Credentials) parseAPIKeyScheme(s []byte) error {
	d, err := c.decode(s)
	if err != nil {
		return err
	}
	colon := bytes.IndexByte(d, ':')
	if colon < 0 {
		return errNoColon
	}
	id, key := d[:colon], d[colon+1:]
	if err := c.setKey(key); err != nil {
		return err
	}
	if string(id) != string(c.KeyID) {
		c.Kind, c.KeyID, c.Secret, c.APIKey = KindNone, nil, nil, nil
		return errKeyIDMismatch
	}
	return nil
}

func (c *Credentials) parseBearer(s []byte, lazy bool) error {
	if apikey.LooksLikeKey(s) {
		return c.setKey(s)
	}
	if len(s) > MaxTokenLen {
		return errTooLong
	}
	if !lazy && !isToken68(s) {
		return errBadChar
	}
	c.Kind, c.Token = KindBearer, s
	return nil
}

// checkToken is the character check parseAuthorization skips with lazyToken.
func checkToken(tok []byte) error {
	if !isToken68(tok) {
		return errBadChar
	}
	return nil
}

// setKey parses an API key value and records it as KindAPIKey.
func (c *Credentials) setKey(v []byte) error {
	id, secret, err := apikey.Parse(v)
	switch {
	case errors.Is(err, apikey.ErrChecksum):
		return errKeyChecksum
	case err != nil:
		return errKeyShape
	}
	c.Kind, c.APIKey, c.KeyID, c.Secret = KindAPIKey, v, id, secret
	return nil
}

// notToken68 is 1 for the bytes that are not token68 characters other than
// '=' (token68 is ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/").
var notToken68 = func() (t [256]byte) {
	for c := range 256 {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			t[c] = 1
		}
	}
	return t
}()

// isToken68 reports whether s is token68 (RFC 9110 §11.2):
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
// Without its trailing '=', s must be one or more of the other characters;
// they are checked without branches, 8 at a time (a JWT is 300 bytes or
// more).
func isToken68(s []byte) bool {
	j := len(s)
	for j > 0 && s[j-1] == '=' {
		j--
	}
	if j == 0 {
		return false
	}
	x := s[:j]
	var bad byte
	for len(x) >= 8 {
		bad |= notToken68[x[0]] | notToken68[x[1]] | notToken68[x[2]] | notToken68[x[3]] |
			notToken68[x[4]] | notToken68[x[5]] | notToken68[x[6]] | notToken68[x[7]]
		x = x[8:]
	}
	for _, c := range x {
		bad |= notToken68[c]
	}
	return bad == 0
}

// validText reports whether b is valid UTF-8 with no control characters
// (RFC 7617 §2: user-id and password must not contain them). Printable
// ASCII is checked 8 bytes at a time; from the first other byte on,
// validTextSlow decides.
func validText(b []byte) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		del := x ^ 0x7f*lo
		// A byte >= 0x80, < 0x20 or == 0x7f sets its high bit (these
		// tests have no false negatives).
		if (x|(x-0x20*lo)&^x|(del-lo)&^del)&hi != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		c := b[i]
		if c < 0x20 || c == 0x7f {
			return false
		}
		if c >= 0x80 {
			return validTextSlow(b[i:])
		}
	}
	return true
}

// validTextSlow is validText for any input.
func validTextSlow(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	if !utf8.Valid(b) {
		return false
	}
	// C1 controls (U+0080–U+009F) are control characters too.
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r >= 0x80 && r <= 0x9f {
			return false
		}
		i += n
	}
	return true
}
