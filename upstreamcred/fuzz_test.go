package upstreamcred

import (
	"errors"
	"strings"
	"testing"
)

// FuzzServiceAccountKey: any secret is either a usable key or an
// ErrBadRequest that does not quote it.
func FuzzServiceAccountKey(f *testing.F) {
	f.Add(`{"type":"service_account","client_email":"a@b","private_key":"k","token_uri":"https://t/token"}`)
	f.Add(`{"type":"service_account"`)
	f.Add(`[]`)
	f.Add(`{"type":"service_account","client_email":"a@b","private_key":"k","token_uri":"file:///x"}`)
	f.Fuzz(func(t *testing.T, s string) {
		k, err := parseServiceAccountKey([]byte(s))
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error does not wrap ErrBadRequest: %v", err)
			}
			if len(s) > 8 && strings.Contains(err.Error(), s) {
				t.Fatalf("error quotes the key: %v", err)
			}
			return
		}
		if k.ClientEmail == "" || k.PrivateKey == "" || !strings.HasPrefix(k.TokenURI, "http") {
			t.Fatalf("accepted an incomplete key: %+v", k)
		}
	})
}

// FuzzTypeCheck: Check never panics, refuses header-breaking values and
// never quotes the secret.
func FuzzTypeCheck(f *testing.F) {
	for _, n := range TypeNames() {
		f.Add(n, "username", "u", "pw")
		f.Add(n, "name", "X-Api-Key", "v\r\nX: y")
		f.Add(n, "token_url", "https://t", "s")
	}
	f.Fuzz(func(t *testing.T, typ, k, v, secret string) {
		ty, ok := Lookup(typ)
		if !ok {
			return
		}
		err := ty.Check(map[string]string{k: v}, []byte(secret))
		if err == nil {
			if strings.ContainsAny(secret, "\r\n\x00") && !ty.Refreshes() { // static types send the secret in a header
				t.Fatalf("%s accepted a secret with a line break", typ)
			}
			return
		}
		if !errors.Is(err, ErrBadRequest) {
			t.Fatalf("error does not wrap ErrBadRequest: %v", err)
		}
		if len(secret) > 8 && strings.Contains(err.Error(), secret) {
			t.Fatalf("error quotes the secret: %v", err)
		}
	})
}
