package authz

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Request signing between keygate and the plugin. When
// authorization.external.secret is set, every request keygate sends to the
// plugin carries
//
//	X-Keygate-Timestamp: <unix seconds>
//	X-Keygate-Signature: v1=<hex HMAC-SHA256(secret, method "\n" path "\n" timestamp "\n" body)>
//
// where path is the request path as sent (escaped form, no query) and body
// the exact bytes of the body (empty for DELETE). The plugin checks it with
// VerifySignature.
const (
	HeaderTimestamp = "X-Keygate-Timestamp"
	HeaderSignature = "X-Keygate-Signature"
	// HeaderNotificationID carries Notification.ID on lifecycle
	// notifications, so that a plugin can drop redeliveries.
	HeaderNotificationID = "X-Keygate-Notification-Id"

	signaturePrefix = "v1="
	// DefaultMaxSkew is the clock skew the reference plugin tolerates.
	DefaultMaxSkew = 5 * time.Minute
)

// Signature errors returned by VerifySignature.
var (
	ErrBadSignature     = errors.New("authz: missing or invalid signature")
	ErrTimestampSkew    = errors.New("authz: missing, malformed or skewed timestamp")
	errEmptySigningData = errors.New("authz: empty secret")
)

// Sign returns the X-Keygate-Signature value ("v1=<hex>") for a request.
func Sign(secret, method, path, timestamp string, body []byte) string {
	return string(AppendSignature(nil, secret, method, path, timestamp, body))
}

// AppendSignature appends the X-Keygate-Signature value to dst.
func AppendSignature(dst []byte, secret, method, path, timestamp string, body []byte) []byte {
	var sum [sha256.Size]byte
	mac := signMAC(sum[:0], secret, method, path, timestamp, body)
	dst = append(dst, signaturePrefix...)
	return hex.AppendEncode(dst, mac)
}

func signMAC(dst []byte, secret, method, path, timestamp string, body []byte) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(method))
	h.Write([]byte{'\n'})
	h.Write([]byte(path))
	h.Write([]byte{'\n'})
	h.Write([]byte(timestamp))
	h.Write([]byte{'\n'})
	h.Write(body)
	return h.Sum(dst)
}

// VerifySignature checks a request signed with Sign: timestamp (unix seconds)
// must be within maxSkew of now (either way) and signature must be the
// "v1=<hex>" HMAC of the request. The MAC comparison is constant-time. It
// returns nil, ErrTimestampSkew or ErrBadSignature.
func VerifySignature(secret, method, path, timestamp string, body []byte, signature string, now time.Time, maxSkew time.Duration) error {
	if secret == "" {
		return errEmptySigningData
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || timestamp == "" || timestamp[0] == '+' || timestamp[0] == '-' {
		return ErrTimestampSkew
	}
	// Compare in seconds; time.Unix with a huge value would overflow the
	// nanosecond arithmetic of Sub.
	d := now.Unix() - ts
	if limit := int64(maxSkew / time.Second); d > limit || d < -limit {
		return ErrTimestampSkew
	}
	hexSig, ok := strings.CutPrefix(signature, signaturePrefix)
	if !ok || len(hexSig) != 2*sha256.Size {
		return ErrBadSignature
	}
	var got [sha256.Size]byte
	if _, err := hex.Decode(got[:], []byte(hexSig)); err != nil {
		return ErrBadSignature
	}
	var sum [sha256.Size]byte
	want := signMAC(sum[:0], secret, method, path, timestamp, body)
	if !hmac.Equal(got[:], want) {
		return ErrBadSignature
	}
	return nil
}
