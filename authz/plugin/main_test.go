package plugin

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

// syncBuffer is a bytes.Buffer safe for the server's and the test's
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMainUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n  - effect: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no rules", []string{"--listen", "127.0.0.1:0"}, "--rules is required"},
		{"unknown flag", []string{"--secret", "x"}, "flag provided but not defined"},
		{"extra argument", []string{"--rules", bad, "serve"}, `unexpected argument "serve"`},
		{"invalid rules", []string{"--rules", bad}, `effect must be allow or deny`},
		{"missing rules file", []string{"--rules", filepath.Join(dir, "none.yaml")}, "no such file"},
		{"missing secret file", []string{"--rules", "../../configs/authz-rules.example.yaml", "--secret-file", filepath.Join(dir, "none")}, "secret file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			if code := Main(tc.args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q lacks %q", stderr.String(), tc.want)
			}
		})
	}
	var stdout, stderr syncBuffer
	if code := Main([]string{"--rules", "../../configs/authz-rules.example.yaml", "--listen", "256.0.0.1:0"}, &stdout, &stderr); code != 1 {
		t.Fatalf("bad listen address: exit %d", code)
	}
}

// TestRun serves with a secret file, reloads on the reload signal (keeping
// the old rules when the new file is invalid) and stops cleanly.
func TestRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "rules.yaml")
	secretPath := filepath.Join(dir, "secret")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(rulesPath, testRules)
	write(secretPath, testSecret+"\n")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reload := make(chan os.Signal, 1)
	addrc := make(chan string, 1)
	var stdout, stderr syncBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"--listen", "127.0.0.1:0", "--rules", rulesPath, "--secret-file", secretPath},
			&stdout, &stderr, reload, func(a string) { addrc <- a })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case code := <-exit:
		t.Fatalf("exited %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "listening on "+addr) {
		t.Fatalf("stdout %q", stdout.String())
	}
	allowed := func() int {
		t.Helper()
		code, body := do(t, addr, call{method: "POST", path: authz.PathAuthorize, body: authorizeBody, sign: true})
		if code != 200 {
			t.Fatalf("authorize: %d %s", code, body)
		}
		return strings.Count(string(body[:strings.Index(string(body), `"denied"`)]), `"action"`)
	}
	if n := allowed(); n != 1 {
		t.Fatalf("%d allowed before reload", n)
	}
	if code, _ := do(t, addr, call{method: "POST", path: authz.PathAuthorize, body: authorizeBody}); code != 401 {
		t.Fatalf("unsigned request: %d", code)
	}

	write(rulesPath, "rules:\n  - effect: allow\n")
	reload <- syscall.SIGHUP
	waitFor(t, "reload", func() bool { return allowed() == 2 })

	write(rulesPath, "rules: [")
	reload <- syscall.SIGHUP
	waitFor(t, "failed reload logged", func() bool { return strings.Contains(stderr.String(), "keeping the previous ones") })
	if n := allowed(); n != 2 {
		t.Fatalf("an invalid reload changed the rules: %d allowed", n)
	}

	cancel()
	if code := <-exit; code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if strings.Contains(stderr.String(), testSecret) {
		t.Fatal("the secret was logged")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
