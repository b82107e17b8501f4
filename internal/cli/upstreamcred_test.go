package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/cli"
	"github.com/keygate/keygate/internal/testoauth"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
	"github.com/keygate/keygate/upstreamcred"
)

func startUCServer(t *testing.T) *server {
	t.Helper()
	return startServer(t, func(d *admin.APIDeps, st *boltstore.Store) {
		ring, err := upstreamcred.NewKeyring(bytes.Repeat([]byte{9}, 32), nil)
		must(t, err)
		m := upstreamcred.New(upstreamcred.Options{Store: st, Keys: ring})
		t.Cleanup(m.Close)
		d.UpstreamCredentials = m
	})
}

func TestCLIUpstreamCredentials(t *testing.T) {
	s := startUCServer(t)
	must(t, s.st.CreateAccount(context.Background(), &store.Account{Name: "acme"}))
	srv := testoauth.New(t)
	srv.AddClient("svc", "Client-Secret-4242")
	const secret = "Cli-Bearer-Secret-991" //nolint:gosec // test data
	withSecret := append([]string{cli.EnvUpstreamSecret + "=" + secret}, asRoot...)

	// Secrets never come from a flag.
	for _, a := range [][]string{
		{"upstream-credential", "add", "x", "--account", "acme", "--type", "bearer", "--secret", secret},
		{"upstream-credential", "add", "x", "--account", "acme", "--type", "bearer", "--secret=" + secret},
	} {
		r := s.run(t, asRoot, "", a...).want(t, 2)
		if !strings.Contains(r.stderr, "never taken from flags") || strings.Contains(r.stderr+r.stdout, secret) {
			t.Errorf("%v: %s", a, r.stderr)
		}
	}
	s.run(t, asRoot, "", "upstream-credential", "add", "x", "--account", "acme").want(t, 2)

	// From the environment; --validate=false skips the (impossible) check.
	r := s.run(t, withSecret, "", "upstream-credential", "add", "svc", "--account", "acme", "--type", "bearer",
		"--field", "validate_url=http://127.0.0.1:1/", "--validate=false").want(t, 0)
	if strings.Contains(r.stdout, secret) || !strings.Contains(r.stdout, "set (write-only)") {
		t.Errorf("add output: %s", r.stdout)
	}
	// With validation, the unreachable validate_url fails (exit 1, 422).
	r = s.run(t, withSecret, "", "upstream-credential", "add", "svc2", "--account", "acme", "--type", "bearer",
		"--field", "validate_url=http://127.0.0.1:1/").want(t, 1)
	if !strings.Contains(r.stderr, "credential_invalid") || strings.Contains(r.stderr, secret) {
		t.Errorf("failed validation: %s", r.stderr)
	}
	// From stdin (a pipe: the prompt's no-echo path is for terminals).
	s.run(t, asRoot, "Client-Secret-4242\n", "upstream-credential", "add", "cc", "--account", "acme",
		"--type", "oauth2_client_credentials", "--field", "token_url="+srv.TokenURL, "--field", "client_id=svc").want(t, 0)
	// From a file: a Google JSON key.
	keyFile := filepath.Join(t.TempDir(), "sa.json")
	must(t, os.WriteFile(keyFile, srv.ServiceAccountKey("robot@example.iam.gserviceaccount.com"), 0o600))
	s.run(t, asRoot, "", "upstream-credential", "add", "gsa", "--account", "acme", "--type", "google_service_account",
		"--field", "scopes=https://www.googleapis.com/auth/cloud-platform", "--secret-file", keyFile).want(t, 0)

	r = s.run(t, asRoot, "", "upstream-credential", "list", "--account", "acme").want(t, 0)
	for _, w := range []string{"svc", "bearer", "skipped", "cc", "oauth2_client_credentials", "gsa", "google_service_account", "ok"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("list lacks %q:\n%s", w, r.stdout)
		}
	}
	r = s.run(t, asRoot, "", "upstream-credential", "get", "cc", "--account", "acme", "-o", "json").want(t, 0)
	var c struct {
		SecretSet bool              `json:"secret_set"`
		Fields    map[string]string `json:"fields"`
	}
	must(t, json.Unmarshal([]byte(r.stdout), &c))
	if !c.SecretSet || c.Fields["client_id"] != "svc" || strings.Contains(r.stdout, "Client-Secret-4242") {
		t.Errorf("get: %s", r.stdout)
	}
	// update: fields only, then a new secret from the environment.
	s.run(t, asRoot, "", "upstream-credential", "update", "svc", "--account", "acme").want(t, 2)
	s.run(t, asRoot, "", "upstream-credential", "update", "svc", "--account", "acme", "--validate=false", "--field", "validate_url=http://127.0.0.1:2/").want(t, 0)
	s.run(t, []string{cli.EnvUpstreamSecret + "=New-Secret-1", cli.EnvUsername + "=admin", cli.EnvPassword + "=" + rootPW}, "",
		"upstream-credential", "update", "svc", "--account", "acme", "--validate=false").want(t, 0)
	s.run(t, asRoot, "", "upstream-credential", "delete", "svc", "--account", "acme").want(t, 0)
	s.run(t, asRoot, "", "upstream-credential", "get", "svc", "--account", "acme").want(t, 1)
}
