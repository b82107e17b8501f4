package token_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/keygate/keygate/authn"
)

// The cache key of a Bearer JWT is a MAC of its signature part bound to the
// whole token (authn.Chain.bearerKey): once a token is cached, no other
// token - same signature with another header or payload, the signature
// moved, padding, a character that is not token68 - is served its identity;
// each is checked in full and refused, and the cached token stays a hit.
func TestChainJWTKeyBindsWholeToken(t *testing.T) {
	chain, h, _ := jwtChain(t)
	ctx := context.Background()
	tok := h[len("Bearer "):]
	parts := bytes.Split(tok, []byte("."))
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return b
	}
	join := func(p ...[]byte) []byte { return append([]byte("Bearer "), bytes.Join(p, []byte("."))...) }
	cases := []struct {
		name      string
		h         []byte
		malformed bool
	}{
		{"payload changed, same signature", join(parts[0], flip(parts[1], len(parts[1])/2), parts[2]), false},
		{"header changed, same signature", join(flip(parts[0], 3), parts[1], parts[2]), false},
		{"payload of another length", join(parts[0], append(bytes.Clone(parts[1]), 'A'), parts[2]), false},
		{"signature alone", append([]byte("Bearer "), parts[2]...), true}, // not a JWT
		{"signature changed", join(parts[0], parts[1], flip(parts[2], 5)), false},
		{"padding appended", append(bytes.Clone(h), '='), false},
		{"extra part", join(parts[0], parts[1], parts[1], parts[2]), true}, // not a JWT
		{"not token68", join(parts[0], append(bytes.Clone(parts[1]), '!'), parts[2]), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := chain.Authenticate(ctx, tc.h, benchIP)
			if err == nil || id != nil {
				t.Fatalf("accepted: %+v", id)
			}
			if got := errors.Is(err, authn.ErrMalformedCredentials); got != tc.malformed {
				t.Fatalf("malformed = %v, want %v: %v", got, tc.malformed, err)
			}
			// The real token is still served from the cache.
			if id, err := chain.Authenticate(ctx, h, benchIP); err != nil || id.Username != "alice" {
				t.Fatalf("cached token after %q: %+v, %v", tc.name, id, err)
			}
		})
	}
}
