package tokencli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/authn/token"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testport"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
)

const (
	secret  = "q8Vd0p3Jx1Rm7Lz2Nc5Hw9Tb4Ky6Fg0Ua8Se3Oi1Pr5=" //nolint:gosec // test data, not a real credential
	alicePW = "correct horse battery staple"
)

// server runs the token endpoint on 127.0.0.1 and returns its base URL and
// verifier.
func server(t *testing.T) (string, *token.Verifier) {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "kg.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	h := password.New(password.Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}, 2)
	phc, _ := h.Hash(alicePW)
	ctx := context.Background()
	if err := s.CreateAccount(ctx, &store.Account{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, &store.User{Username: "alice", Account: "acme", PasswordHash: phc}); err != nil {
		t.Fatal(err)
	}
	cfg := configs.Tokens{Issuer: "keygate", Audience: "keygate", Lifetime: configs.Duration(time.Hour),
		RefreshLifetime: configs.Duration(time.Hour), Path: "/oauth/token",
		Signing: configs.Signing{Algorithm: configs.AlgHS256, Secret: secret}}
	signer, err := token.NewSigner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := token.NewEndpoint(cfg, signer, token.EndpointOptions{Store: s, Refresh: s, Passwords: password.NewAuthenticator(s, h, password.AuthOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == token.V1Path {
			ep.Handler(ctx)
			return
		}
		ctx.NotFound()
	}, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return "http://" + ln.Addr().String(), signer.Verifier()
}

func run(args []string, stdin string, environ ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(args, strings.NewReader(stdin), &out, &errb, environ)
	return code, out.String(), errb.String()
}

func TestTokenCommand(t *testing.T) {
	base, v := server(t)
	t.Run("env password", func(t *testing.T) {
		code, out, errs := run([]string{"--user", "alice", "--url", base}, "", "KEYGATE_PASSWORD=stale", "KEYGATE_PASSWORD="+alicePW)
		if code != ExitOK {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if _, err := v.Verify(strings.TrimSpace(out)); err != nil {
			t.Errorf("printed token does not verify: %v (%q)", err, out)
		}
		if strings.Contains(errs, alicePW) {
			t.Error("stderr shows the password")
		}
	})
	t.Run("stdin password, json", func(t *testing.T) {
		code, out, errs := run([]string{"--user", "alice", "--url", base + "/", "-o", "json"}, alicePW+"\r\nnext line")
		if code != ExitOK {
			t.Fatalf("exit %d: %s", code, errs)
		}
		var res map[string]any
		if err := json.Unmarshal([]byte(out), &res); err != nil || res["token_type"] != "Bearer" || res["refresh_token"] == "" {
			t.Errorf("json output %q: %v", out, err)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		code, out, errs := run([]string{"--user", "alice", "--url", base}, "", "KEYGATE_PASSWORD=nope")
		if code != ExitFailure || out != "" || !strings.Contains(errs, "invalid_grant") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		addr := testport.Addr(t) // nothing listens there
		code, _, errs := run([]string{"--user", "alice", "--url", "http://" + addr, "--timeout", "2s"}, alicePW)
		if code != ExitFailure || errs == "" {
			t.Errorf("exit %d, stderr %q", code, errs)
		}
	})
	usage := []struct {
		name string
		args []string
	}{
		{"no user", []string{"--url", base}},
		{"password flag", []string{"--user", "alice", "--password", alicePW}},
		{"positional password", []string{"--user", "alice", alicePW}},
		{"bad output", []string{"--user", "alice", "-o", "yaml"}},
		{"bad url", []string{"--user", "alice", "--url", "ftp://x"}},
		{"url with query", []string{"--user", "alice", "--url", base + "?a=b"}},
	}
	for _, u := range usage {
		code, out, errs := run(u.args, alicePW)
		if code != ExitUsage || out != "" {
			t.Errorf("%s: exit %d, stdout %q", u.name, code, out)
		}
		if strings.Contains(errs, alicePW) {
			t.Errorf("%s: stderr echoes the password: %q", u.name, errs)
		}
	}
	if code, _, _ := run([]string{"-h"}, ""); code != ExitOK {
		t.Errorf("-h: exit %d", code)
	}
	if code, _, errs := run([]string{"--user", "alice", "--url", base}, ""); code != ExitFailure || !strings.Contains(errs, "no password") {
		t.Errorf("empty stdin: %d %q", code, errs)
	}
}

func TestEndpointURL(t *testing.T) {
	cases := []struct {
		in, want string
		insecure bool
	}{
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/oauth/token", false},
		{"http://localhost:8080/", "http://localhost:8080/v1/oauth/token", false},
		{"http://[::1]:8080", "http://[::1]:8080/v1/oauth/token", false},
		{"http://gw.example.com", "http://gw.example.com/v1/oauth/token", true},
		{"https://gw.example.com/prefix", "https://gw.example.com/prefix/v1/oauth/token", false},
	}
	for _, c := range cases {
		got, insecure, err := endpointURL(c.in)
		if err != nil || got != c.want || insecure != c.insecure {
			t.Errorf("endpointURL(%q) = %q, %v, %v", c.in, got, insecure, err)
		}
	}
}
