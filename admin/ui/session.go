package ui

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Sessions are stateless: the cookie holds who (username), the user's
// generation at login, when the session started and when it was last
// used, and a random session id, signed with HMAC-SHA256 under a key
// derived from the server secret. Every instance sharing the secret
// accepts it (no session store to keep in step), and every request checks
// the generation against the user's current store record, so a password
// change, disable or role change on any instance ends every session of the
// user at once. Logout records the session id as ended in the store
// (store.EndedSessions, until the session's absolute expiry) and clears the
// cookie: every instance reads that record on every request, so a copy of
// the cookie taken before the logout is refused at once everywhere.

// session is the signed content of the session cookie.
type session struct {
	V    int    `json:"v"`
	User string `json:"u"`
	Gen  uint64 `json:"g"`
	// Start and Seen: Unix seconds of the login and of the last request
	// (refreshed at most once a minute: idle expiry).
	Start int64  `json:"s"`
	Seen  int64  `json:"l"`
	SID   string `json:"i"` // random; the CSRF token is bound to it
}

// keys are the secrets derived from the server secret, one per use.
type keys struct {
	session, csrf, flash, login []byte
}

func deriveKeys(secret []byte) (keys, error) {
	d := func(info string) ([]byte, error) {
		return hkdf.Key(sha256.New, secret, nil, "keygate ui "+info, 32)
	}
	var k keys
	var err error
	for _, p := range []struct {
		dst  *[]byte
		info string
	}{{&k.session, "session"}, {&k.csrf, "csrf"}, {&k.flash, "flash"}, {&k.login, "login"}} {
		if *p.dst, err = d(p.info); err != nil {
			return k, err
		}
	}
	return k, nil
}

func mac(key []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		_, _ = m.Write([]byte(p))
		_, _ = m.Write([]byte{0})
	}
	return m.Sum(nil)
}

var b64 = base64.RawURLEncoding

// encodeSession is the cookie value of s: payload "." signature.
func (k *keys) encodeSession(s *session) string {
	b, _ := json.Marshal(s) // plain fields: cannot fail
	p := b64.EncodeToString(b)
	return p + "." + b64.EncodeToString(mac(k.session, p))
}

var errBadSession = errors.New("ui: bad session cookie")

// decodeSession verifies v and returns its session (not yet checked for
// expiry).
func (k *keys) decodeSession(v string) (*session, error) {
	p, sig, ok := strings.Cut(v, ".")
	if !ok || len(v) > 4096 {
		return nil, errBadSession
	}
	got, err := b64.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(k.session, p)) {
		return nil, errBadSession
	}
	b, err := b64.DecodeString(p)
	if err != nil {
		return nil, errBadSession
	}
	var s session
	if err := json.Unmarshal(b, &s); err != nil || s.V != 1 || s.User == "" || s.SID == "" {
		return nil, errBadSession
	}
	return &s, nil
}

// expired reports whether s is past its idle or absolute expiry at now.
func (s *session) expired(now time.Time, idle, absolute time.Duration) bool {
	t := now.Unix()
	return t-s.Seen > int64(idle/time.Second) || t-s.Start > int64(absolute/time.Second) || s.Seen > t+60
}

// csrfToken is the CSRF token of session id sid.
func (k *keys) csrfToken(sid string) string { return b64.EncodeToString(mac(k.csrf, sid)) }

func (k *keys) checkCSRF(sid, token string) bool {
	got, err := b64.DecodeString(token)
	return err == nil && hmac.Equal(got, mac(k.csrf, sid))
}

// loginToken binds the login form to the pre-login cookie nonce (login
// CSRF: another site cannot log a browser in as someone else).
func (k *keys) loginToken(nonce string) string { return b64.EncodeToString(mac(k.login, nonce)) }

func (k *keys) checkLogin(nonce, token string) bool {
	got, err := b64.DecodeString(token)
	return nonce != "" && err == nil && hmac.Equal(got, mac(k.login, nonce))
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// seal encrypts plain for the one-time flash cookie (AES-256-GCM, the
// session id as additional data: only that session can open it).
func (k *keys) seal(plain []byte, sid string) string {
	g := k.gcm()
	nonce := make([]byte, g.NonceSize())
	_, _ = rand.Read(nonce)
	return b64.EncodeToString(g.Seal(nonce, nonce, plain, []byte(sid)))
}

func (k *keys) open(v, sid string) ([]byte, bool) {
	b, err := b64.DecodeString(v)
	g := k.gcm()
	if err != nil || len(b) < g.NonceSize() {
		return nil, false
	}
	out, err := g.Open(nil, b[:g.NonceSize()], b[g.NonceSize():], []byte(sid))
	return out, err == nil
}

func (k *keys) gcm() cipher.AEAD {
	blk, err := aes.NewCipher(k.flash)
	if err != nil {
		panic(err) // 32-byte key: cannot happen
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		panic(err)
	}
	return g
}
