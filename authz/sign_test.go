package authz_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

func TestSignKnownValue(t *testing.T) {
	t.Parallel()
	// HMAC-SHA256("secret", "POST\n/v1/authorize\n1700000000\n{}"), computed
	// independently (python3 hmac).
	got := authz.Sign("secret", "POST", "/v1/authorize", "1700000000", []byte("{}"))
	const want = "v1=ae663cc45e3533c05165cff35437625236d1e2ae2aa3622589d3da9ca4522842"
	if got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}

func TestVerifySignature(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	body := []byte(`{"principal":{"name":"alice","type":"user"}}`)
	good := authz.Sign(testSecret, "POST", "/v1/authorize", ts, body)
	cases := []struct {
		name              string
		secret, method, p string
		ts                string
		body              []byte
		sig               string
		at                time.Time
		want              error
	}{
		{"good", testSecret, "POST", "/v1/authorize", ts, body, good, now, nil},
		{"good at skew limit", testSecret, "POST", "/v1/authorize", ts, body, good, now.Add(5 * time.Minute), nil},
		{"good just before", testSecret, "POST", "/v1/authorize", ts, body, good, now.Add(-5 * time.Minute), nil},
		{"wrong secret", testSecret + "x", "POST", "/v1/authorize", ts, body, good, now, authz.ErrBadSignature},
		{"body tampered", testSecret, "POST", "/v1/authorize", ts, append([]byte{' '}, body...), good, now, authz.ErrBadSignature},
		{"method changed", testSecret, "DELETE", "/v1/authorize", ts, body, good, now, authz.ErrBadSignature},
		{"path changed", testSecret, "POST", "/v1/authorizE", ts, body, good, now, authz.ErrBadSignature},
		{"timestamp changed", testSecret, "POST", "/v1/authorize", strconv.FormatInt(now.Unix()+1, 10), body, good, now, authz.ErrBadSignature},
		{"missing signature", testSecret, "POST", "/v1/authorize", ts, body, "", now, authz.ErrBadSignature},
		{"no prefix", testSecret, "POST", "/v1/authorize", ts, body, strings.TrimPrefix(good, "v1="), now, authz.ErrBadSignature},
		{"other version", testSecret, "POST", "/v1/authorize", ts, body, "v2=" + good[3:], now, authz.ErrBadSignature},
		{"upper-case hex ok", testSecret, "POST", "/v1/authorize", ts, body, "v1=" + strings.ToUpper(good[3:]), now, nil},
		{"truncated", testSecret, "POST", "/v1/authorize", ts, body, good[:len(good)-2], now, authz.ErrBadSignature},
		{"not hex", testSecret, "POST", "/v1/authorize", ts, body, good[:len(good)-1] + "z", now, authz.ErrBadSignature},
		{"skewed late", testSecret, "POST", "/v1/authorize", ts, body, good, now.Add(5*time.Minute + time.Second), authz.ErrTimestampSkew},
		{"skewed early", testSecret, "POST", "/v1/authorize", ts, body, good, now.Add(-5*time.Minute - time.Second), authz.ErrTimestampSkew},
		{"missing timestamp", testSecret, "POST", "/v1/authorize", "", body, good, now, authz.ErrTimestampSkew},
		{"signed timestamp", testSecret, "POST", "/v1/authorize", "+" + ts, body, good, now, authz.ErrTimestampSkew},
		{"huge timestamp", testSecret, "POST", "/v1/authorize", "9223372036854775807", body, good, now, authz.ErrTimestampSkew},
		{"timestamp not a number", testSecret, "POST", "/v1/authorize", "soon", body, good, now, authz.ErrTimestampSkew},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := authz.VerifySignature(tc.secret, tc.method, tc.p, tc.ts, tc.body, tc.sig, tc.at, authz.DefaultMaxSkew)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("VerifySignature = %v, want %v", err, tc.want)
			}
		})
	}
	if err := authz.VerifySignature("", "POST", "/", ts, nil, authz.Sign("", "POST", "/", ts, nil), now, time.Minute); err == nil {
		t.Fatal("an empty secret verified")
	}
}
