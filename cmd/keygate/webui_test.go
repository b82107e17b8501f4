package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/configs"
)

// The UI's session secret: admin.ui_session_secret, else the HS256 tokens
// secret (value or file), else random and not shared.
func TestUISecret(t *testing.T) {
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte("file-Zq8v3Lr1Tw6Yp0Ks4Nd7Hb2Xm5Jc9Gf"), 0o600); err != nil {
		t.Fatal(err)
	}
	const ui, tok = "ui-Zq8v3Lr1Tw6Yp0Ks4Nd7Hb2Xm5Jc9Gf00", "tok-Zq8v3Lr1Tw6Yp0Ks4Nd7Hb2Xm5Jc9Gf0"
	for _, tc := range []struct {
		name   string
		set    func(c *configs.Config)
		want   string
		shared bool
	}{
		{"ui secret first", func(c *configs.Config) { c.Admin.UISessionSecret = ui; c.Tokens.Signing.Secret = tok }, ui, true},
		{"hs256 secret", func(c *configs.Config) { c.Tokens.Signing.Secret = tok }, tok, true},
		{"hs256 secret file", func(c *configs.Config) { c.Tokens.Signing.SecretFile = file }, "file-Zq8v3Lr1Tw6Yp0Ks4Nd7Hb2Xm5Jc9Gf", true},
		{"key pair: random", func(c *configs.Config) { c.Tokens.Signing.Algorithm = configs.AlgEdDSA }, "", false},
		{"nothing: random", func(*configs.Config) {}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := configs.Default()
			tc.set(c)
			got, shared := uiSecret(c)
			if shared != tc.shared || (tc.want != "" && string(got) != tc.want) || len(got) < 32 {
				t.Fatalf("uiSecret = %d bytes, shared %v", len(got), shared)
			}
			if !shared {
				if again, _ := uiSecret(c); string(again) == string(got) {
					t.Fatal("the random secret repeats")
				}
			}
		})
	}
}
