package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/keyauth"
	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/cli"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
)

var hasher = password.New(password.Params{Memory: 1024, Iterations: 1, Parallelism: 1}, 4)

const rootPW = "root-Pa55word-long"

// server is a real admin API (boltstore, chain with the password and key
// authenticators, no cache) on 127.0.0.1:0.
type server struct {
	url string
	st  store.Store
}

// startServer starts the API; mods may add to its dependencies.
func startServer(t *testing.T, mods ...func(*admin.APIDeps, *boltstore.Store)) *server {
	t.Helper()
	dir := t.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "kg-cli-test-"); err == nil {
			dir = d
			t.Cleanup(func() { _ = os.RemoveAll(d) })
		}
	}
	st, err := boltstore.Open(filepath.Join(dir, "kg.db"), boltstore.Options{})
	must(t, err)
	t.Cleanup(func() { _ = st.Close() })
	_, err = store.Bootstrap(context.Background(), st, hasher.Hash, rootPW, io.Discard)
	must(t, err)
	chain, err := authn.NewChain(authn.ChainConfig{Authenticators: map[authn.CredKind]authn.Authenticator{
		authn.KindAPIKey: keyauth.NewAuthenticator(st, keyauth.AuthOptions{}),
		authn.KindBasic:  password.NewAuthenticator(st, hasher, password.AuthOptions{}),
	}})
	must(t, err)
	var r admin.Router
	deps := admin.APIDeps{Store: st, Auth: chain, Hasher: hasher,
		APIKeys: configs.APIKeys{MaxLifetime: configs.Duration(8760 * time.Hour)}}
	for _, m := range mods {
		m(&deps, st)
	}
	must(t, admin.RegisterAPI(&r, deps))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &fasthttp.Server{Handler: r.Serve, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return &server{url: "http://" + ln.Addr().String(), st: st}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// result of one CLI run.
type result struct {
	code           int
	stdout, stderr string
}

// run runs the CLI with env (plus the admin URL) and stdin.
func (s *server) run(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	env = append([]string{cli.EnvAdminURL + "=" + s.url}, env...)
	code := cli.Main(args, strings.NewReader(stdin), &out, &errb, env)
	return result{code, out.String(), errb.String()}
}

func (r result) want(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

var asRoot = []string{cli.EnvUsername + "=admin", cli.EnvPassword + "=" + rootPW}

func TestCLIWorkflow(t *testing.T) {
	s := startServer(t)

	// Accounts.
	s.run(t, asRoot, "", "account", "create", "acme").want(t, 0)
	r := s.run(t, asRoot, "", "account", "list").want(t, 0)
	if !strings.Contains(r.stdout, "NAME") || !strings.Contains(r.stdout, "acme") || !strings.Contains(r.stdout, "enabled") {
		t.Fatalf("account list:\n%s", r.stdout)
	}
	r = s.run(t, asRoot, "", "account", "create", "acme").want(t, 1)
	if !strings.Contains(r.stderr, "already exists") || !strings.Contains(r.stderr, "409") {
		t.Fatalf("conflict message: %s", r.stderr)
	}
	r = s.run(t, asRoot, "", "account", "get", "acme", "-o", "json").want(t, 0)
	var acc map[string]any
	must(t, json.Unmarshal([]byte(r.stdout), &acc))
	if acc["name"] != "acme" || acc["state"] != "enabled" {
		t.Fatalf("account json %v", acc)
	}

	// Users: the new password comes from stdin (not a terminal), never a flag.
	s.run(t, asRoot, "Alice-Pa55word-long\n", "user", "create", "alice", "--account", "acme", "--role", "read", "--roles", "write,ops").want(t, 0)
	r = s.run(t, asRoot, "", "user", "list", "--account=acme").want(t, 0)
	if !strings.Contains(r.stdout, "alice") || !strings.Contains(r.stdout, "ops,read,write") && !strings.Contains(r.stdout, "read,write,ops") {
		t.Fatalf("user list:\n%s", r.stdout)
	}
	asAlice := []string{cli.EnvUsername + "=alice", cli.EnvPassword + "=Alice-Pa55word-long"}
	r = s.run(t, asAlice, "", "user", "whoami").want(t, 0)
	if !strings.Contains(r.stdout, "alice") || !strings.Contains(r.stdout, "basic") {
		t.Fatalf("whoami:\n%s", r.stdout)
	}
	s.run(t, asRoot, "", "user", "update", "alice", "-a", "acme", "--roles", "read,write").want(t, 0)
	r = s.run(t, asRoot, "", "user", "get", "alice", "--account", "acme", "-o", "json").want(t, 0)
	if strings.Contains(r.stdout, "argon2") || strings.Contains(r.stdout, "Pa55word") {
		t.Fatalf("user get leaks: %s", r.stdout)
	}

	// Keys: created once, value shown once with a warning.
	r = s.run(t, asAlice, "", "key", "create", "ci", "--expires-in", "720h", "--role", "read").want(t, 0)
	if !strings.Contains(r.stderr, "cannot be shown again") {
		t.Fatalf("no warning: %s", r.stderr)
	}
	var value string
	for line := range strings.Lines(r.stdout) {
		if v, ok := strings.CutPrefix(line, "API key:"); ok {
			value = strings.TrimSpace(v)
		}
	}
	if !strings.HasPrefix(value, "kg_") {
		t.Fatalf("no key in:\n%s", r.stdout)
	}
	asKey := []string{cli.EnvAPIKey + "=" + value}
	r = s.run(t, asKey, "", "user", "whoami", "-o", "json").want(t, 0)
	var who map[string]any
	must(t, json.Unmarshal([]byte(r.stdout), &who))
	if who["method"] != "api_key" || who["username"] != "alice" {
		t.Fatalf("whoami by key: %v", who)
	}
	id, _ := who["key_id"].(string)
	r = s.run(t, asKey, "", "key", "list").want(t, 0)
	if !strings.Contains(r.stdout, id) || strings.Contains(r.stdout, value) {
		t.Fatalf("key list:\n%s", r.stdout)
	}
	// An API key may not write.
	r = s.run(t, asKey, "", "key", "create", "other").want(t, 1)
	if !strings.Contains(r.stderr, "403") {
		t.Fatalf("key create by key: %s", r.stderr)
	}
	// Admin search and get by owner.
	r = s.run(t, asRoot, "", "key", "list", "--account", "acme", "-o", "json").want(t, 0)
	var page struct {
		APIKeys []map[string]any `json:"api_keys"`
	}
	must(t, json.Unmarshal([]byte(r.stdout), &page))
	if len(page.APIKeys) != 1 || page.APIKeys[0]["id"] != id {
		t.Fatalf("search: %s", r.stdout)
	}
	s.run(t, asRoot, "", "key", "get", id, "--account", "acme", "--user", "alice").want(t, 0)
	r = s.run(t, asRoot, "", "key", "create", "deploy", "--account", "acme", "--user", "alice", "-o", "json").want(t, 0)
	var created map[string]any
	must(t, json.Unmarshal([]byte(r.stdout), &created))
	deployID, _ := created["id"].(string)
	// KEYGATE_API_KEY also takes the "encoded" form (Authorization: ApiKey).
	r = s.run(t, []string{cli.EnvAPIKey + "=" + created["encoded"].(string)}, "", "user", "whoami").want(t, 0)
	if !strings.Contains(r.stdout, deployID) {
		t.Fatalf("whoami by encoded key:\n%s", r.stdout)
	}

	// Revoke: own, then bulk.
	r = s.run(t, asAlice, "", "key", "revoke", id).want(t, 0)
	if !strings.Contains(r.stdout, "revoked") {
		t.Fatal(r.stdout)
	}
	s.run(t, asKey, "", "user", "whoami").want(t, 3)
	r = s.run(t, asRoot, "", "key", "revoke", "--bulk", deployID, id, "AAAAAAAAAAAAAAAAAAAA").want(t, 1)
	if !strings.Contains(r.stdout, "already revoked") || !strings.Contains(r.stdout, "not_found") || !strings.Contains(r.stderr, "1 of the keys") {
		t.Fatalf("bulk:\n%s\n%s", r.stdout, r.stderr)
	}

	// Own password change: current and new from stdin.
	s.run(t, asAlice, "Alice-Pa55word-long\nAlice-New-Pa55word\n", "user", "password").want(t, 0)
	s.run(t, asAlice, "", "user", "whoami").want(t, 3)
	s.run(t, []string{cli.EnvUsername + "=alice", cli.EnvPassword + "=Alice-New-Pa55word"}, "", "user", "whoami").want(t, 0)

	// Delete.
	s.run(t, asRoot, "", "user", "delete", "alice", "--account", "acme").want(t, 0)
	s.run(t, asRoot, "", "account", "update", "acme", "--state", "disabled").want(t, 0)
	s.run(t, asRoot, "", "account", "delete", "acme").want(t, 0)
	r = s.run(t, asRoot, "", "account", "get", "acme").want(t, 1)
	if !strings.Contains(r.stderr, "404") {
		t.Fatal(r.stderr)
	}
}

func TestCLIPagination(t *testing.T) {
	s := startServer(t)
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		s.run(t, asRoot, "", "key", "create", n).want(t, 0)
	}
	r := s.run(t, asRoot, "", "key", "list", "-o", "json").want(t, 0)
	var page struct {
		APIKeys []map[string]any `json:"api_keys"`
	}
	must(t, json.Unmarshal([]byte(r.stdout), &page))
	if len(page.APIKeys) != 5 {
		t.Fatalf("%d keys", len(page.APIKeys))
	}
	r = s.run(t, asRoot, "", "key", "list", "--limit", "2").want(t, 0)
	if strings.Count(r.stdout, "\n") != 3 || !strings.Contains(r.stderr, "--cursor") {
		t.Fatalf("one page of 2:\n%s\n%s", r.stdout, r.stderr)
	}
}

func TestCLICredentials(t *testing.T) {
	s := startServer(t)
	// Username and password from stdin when not in the environment.
	s.run(t, nil, "admin\n"+rootPW+"\n", "user", "whoami").want(t, 0)
	// Password from stdin, username from the environment.
	s.run(t, []string{cli.EnvUsername + "=admin"}, rootPW+"\n", "account", "list").want(t, 0)
	// Nothing anywhere.
	r := s.run(t, nil, "", "account", "list").want(t, 3)
	if !strings.Contains(r.stderr, cli.EnvUsername) {
		t.Fatalf("message: %s", r.stderr)
	}
	// Wrong password: exit 3 and a hint.
	r = s.run(t, []string{cli.EnvUsername + "=admin", cli.EnvPassword + "=nope-nope-nope"}, "", "account", "list").want(t, 3)
	if !strings.Contains(r.stderr, "authentication failed") {
		t.Fatalf("message: %s", r.stderr)
	}
	// Passwords are never flags.
	r = s.run(t, asRoot, "", "user", "create", "carl", "--account", "admin", "--password=secret").want(t, 2)
	if !strings.Contains(r.stderr, "never taken from flags") {
		t.Fatalf("message: %s", r.stderr)
	}
	// Unreachable server: exit 1 with a hint.
	var out, errb bytes.Buffer
	code := cli.Main([]string{"account", "list", "--admin-url", "http://127.0.0.1:1"}, strings.NewReader(""), &out, &errb, asRoot)
	if code != 1 || !strings.Contains(errb.String(), "is keygate running") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

func TestCLIUsage(t *testing.T) {
	s := startServer(t)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: keygate <account|user|key>"},
		{[]string{"widget"}, 2, "unknown command"},
		{[]string{"account"}, 2, "subcommands"},
		{[]string{"account", "frob"}, 2, "unknown subcommand"},
		{[]string{"account", "get"}, 2, "expected NAME"},
		{[]string{"account", "get", "a", "b"}, 2, "expected NAME"},
		{[]string{"account", "update", "a"}, 2, "--state"},
		{[]string{"user", "list"}, 2, "--account"},
		{[]string{"key", "list", "-o", "yaml"}, 2, "table or json"},
		{[]string{"key", "get", "X", "--user", "u"}, 2, "both --account and --user"},
		{[]string{"key", "revoke"}, 2, "one key ID"},
		{[]string{"key", "revoke", "--bulk"}, 2, "which keys"},
		{[]string{"key", "create", "x", "--expires-in", "1h", "--expires-at", "2030-01-01T00:00:00Z"}, 2, "not both"},
		{[]string{"account", "list", "--nope"}, 2, "flag provided but not defined"},
		{[]string{"account", "create", "-h"}, 0, "usage: keygate account create"},
		{[]string{"account", "list", "--admin-url", "ftp://x"}, 2, "not an http(s) URL"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := s.run(t, asRoot, "", tc.args...).want(t, tc.code)
			if !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("stderr %q lacks %q", r.stderr, tc.want)
			}
		})
	}
}

func TestCLIServerErrorMessages(t *testing.T) {
	s := startServer(t)
	r := s.run(t, asRoot, "", "key", "create", "k", "--expires-in", "100000h").want(t, 1)
	if !strings.Contains(r.stderr, "max_lifetime") || !strings.Contains(r.stderr, "422") {
		t.Fatalf("message: %s", r.stderr)
	}
	r = s.run(t, asRoot, "weak\n", "user", "create", "carl", "--account", "admin").want(t, 1)
	if !strings.Contains(r.stderr, "at least 8") {
		t.Fatalf("message: %s", r.stderr)
	}
	r = s.run(t, asRoot, "", "user", "delete", "admin", "--account", "admin").want(t, 1)
	if !strings.Contains(r.stderr, "last enabled global admin") {
		t.Fatalf("message: %s", r.stderr)
	}
}
