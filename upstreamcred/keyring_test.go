package upstreamcred

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/keygate/keygate/store"
)

func TestParseKey(t *testing.T) {
	k := bytes.Repeat([]byte{0xfb}, KeySize)
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"std", base64.StdEncoding.EncodeToString(k), true},
		{"std newline", base64.StdEncoding.EncodeToString(k) + "\n", true},
		{"raw std", base64.RawStdEncoding.EncodeToString(k), true},
		{"url", base64.URLEncoding.EncodeToString(k), true},
		{"raw url", base64.RawURLEncoding.EncodeToString(k), true},
		{"short", base64.StdEncoding.EncodeToString(k[:16]), false},
		{"long", base64.StdEncoding.EncodeToString(append(k, 1)), false},
		{"not base64", "this is not a key!!", false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKey(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if tc.ok && !bytes.Equal(got, k) {
				t.Errorf("key = %x", got)
			}
			if err != nil && strings.Contains(err.Error(), tc.in) && tc.in != "" {
				t.Errorf("error quotes the input: %v", err)
			}
		})
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add(base64.StdEncoding.EncodeToString(make([]byte, 32)))
	f.Add("")
	f.Add("====")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err == nil && len(k) != KeySize {
			t.Fatalf("accepted a %d-byte key", len(k))
		}
	})
}

func TestKeyringSealOpen(t *testing.T) {
	k1, k2 := testKey(t), testKey(t)
	ring := testKeyring(t, k1, nil)
	secret := []byte("s3cret-client-secret-value")
	c := &store.UpstreamCredential{Account: "acme", Name: "billing", Type: "bearer"}
	if err := ring.Seal(c, secret); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(c.Sealed, secret) || c.KeyID != ring.CurrentID() || strings.Contains(c.KeyID, string(k1)) {
		t.Fatalf("sealed = %x, key id %q", c.Sealed, c.KeyID)
	}
	got, err := ring.Open(c)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// Two seals of one secret differ (random nonce).
	c2 := &store.UpstreamCredential{Account: "acme", Name: "billing", Type: "bearer"}
	_ = ring.Seal(c2, secret)
	if bytes.Equal(c.Sealed, c2.Sealed) {
		t.Error("two seals are equal")
	}

	// The ciphertext is bound to its record: moved, it does not open.
	moves := []struct {
		name string
		mod  func(*store.UpstreamCredential)
	}{
		{"other account", func(c *store.UpstreamCredential) { c.Account = "beta" }},
		{"other name", func(c *store.UpstreamCredential) { c.Name = "billing2" }},
		{"other type", func(c *store.UpstreamCredential) { c.Type = "basic" }},
		{"tampered", func(c *store.UpstreamCredential) { c.Sealed[len(c.Sealed)-1] ^= 1 }},
		{"truncated", func(c *store.UpstreamCredential) { c.Sealed = c.Sealed[:5] }},
		{"unknown key", func(c *store.UpstreamCredential) { c.KeyID = "0000" }},
	}
	for _, mv := range moves {
		m := c.Clone()
		mv.mod(m)
		if p, err := ring.Open(m); err == nil {
			t.Errorf("%s: opened: %q", mv.name, p)
		} else if strings.Contains(err.Error(), string(secret)) {
			t.Errorf("%s: error has the secret", mv.name)
		}
	}

	// Rotation: the previous key still opens; a ring without it does not.
	rotated := testKeyring(t, k2, k1)
	if got, err := rotated.Open(c); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("rotated ring: %q, %v", got, err)
	}
	if _, err := testKeyring(t, k2, nil).Open(c); err == nil {
		t.Error("a ring without the old key opened its record")
	}
	var none *Keyring
	if err := none.Seal(c, secret); !errors.Is(err, ErrNoKey) {
		t.Errorf("nil keyring Seal: %v", err)
	}
}
