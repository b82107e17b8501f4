package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUpstreamCredentialsConfig(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "uc.key")
	if err := os.WriteFile(keyFile, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	route := func(extra string) string {
		return "routes:\n  - path_prefix: /\n    upstreams: [\"http://127.0.0.1:9000\"]\n" + extra
	}
	const keyEnv = "KEYGATE_UPSTREAM_CREDENTIALS_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	tests := []struct {
		name string
		yaml string
		env  []string
		want []string // problems expected ("" : valid)
	}{
		{"no credential, no key", route(""), nil, nil},
		{"credential without key", route("    upstream_credential: billing\n"), nil,
			[]string{"routes[0].upstream_credential: names a credential but no upstream_credentials key is configured"}},
		{"credential with key env", route("    upstream_credential: billing\n"), []string{keyEnv}, nil},
		{"credential with key file", "upstream_credentials: {key_file: " + keyFile + "}\n" + route("    upstream_credential: billing\n"), nil, nil},
		{"bad name", route("    upstream_credential: \"a/b\"\n"), []string{keyEnv}, []string{"is not a credential name"}},
		{"with forward_authorization", route("    upstream_credential: x\n    forward_authorization: true\n"), []string{keyEnv},
			[]string{"cannot go with forward_authorization"}},
		{"key and key_file", "upstream_credentials: {key_file: " + keyFile + "}\n" + route(""), []string{keyEnv},
			[]string{"key and key_file are mutually exclusive"}},
		{"missing key file", "upstream_credentials: {key_file: /nonexistent/uc.key}\n" + route(""), nil,
			[]string{"upstream_credentials.key_file: cannot read"}},
		{"previous without current", "upstream_credentials: {previous_key_file: " + keyFile + "}\n" + route(""), nil,
			[]string{"a previous key needs a current key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadBytes([]byte(tc.yaml), tc.env)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if strings.Contains(tc.yaml, "upstream_credential:") && c.Routes[0].UpstreamCredential == "" {
					t.Error("upstream_credential not loaded")
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a ValidationError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "MDEyMzQ1") {
				t.Error("the error repeats the key")
			}
		})
	}
	if !IsSecretEnv("KEYGATE_UPSTREAM_CREDENTIALS_KEY") || !IsSecretEnv("KEYGATE_UPSTREAM_CREDENTIALS_PREVIOUS_KEY") {
		t.Error("the key variables are not scrubbed as secrets")
	}
}
