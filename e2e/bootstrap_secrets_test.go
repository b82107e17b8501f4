package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/internal/testredis"
)

// TestBootstrapSecretsScrubbed: the secret KEYGATE_* variables are read
// (the admin password logs in, the signing secret signs) and then gone from
// the process environment as any other process sees it
// (/proc/<pid>/environ), never printed; plain variables stay (issue 12
// item 8).
func TestBootstrapSecretsScrubbed(t *testing.T) {
	t.Parallel()
	public, adminAddr := freeAddr(t), freeAddr(t)
	secrets := map[string]string{ //nolint:gosec // test data, not a real credential
		"KEYGATE_ADMIN_PASSWORD":        "scrub-me-admin-Pa55word-7f3a",
		"KEYGATE_TOKENS_SIGNING_SECRET": testSigningSecret,
		"KEYGATE_STORE_REDIS_PASSWORD":  "scrub-me-redis-9d2e",
		"KEYGATE_API_KEY":               "scrub-me-cli-key-41c0",
	}
	env := []string{
		"KEYGATE_LISTEN=" + public,
		"KEYGATE_ADMIN_LISTEN=" + adminAddr,
		"KEYGATE_STORE_BOLT_PATH=" + filepath.Join(t.TempDir(), "keygate.db"),
	}
	for k, v := range secrets {
		env = append(env, k+"="+v)
	}
	p := startProc(t, env, "serve", "--demo")
	waitHTTP(t, p, "http://"+adminAddr+"/healthz", nil)

	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.cmd.Process.Pid))
	if err != nil {
		t.Skipf("cannot read the process environment here: %v", err)
	}
	for k, v := range secrets {
		if bytes.Contains(environ, []byte(v)) {
			t.Errorf("/proc/<pid>/environ still holds the value of %s", k)
		}
	}
	if !bytes.Contains(environ, []byte("KEYGATE_LISTEN="+public)) {
		t.Errorf("/proc/<pid>/environ lost a plain variable: %q", environ)
	}
	// Read before the scrub: the admin password logs in; the secret
	// signs tokens the gateway accepts.
	req, _ := http.NewRequest("GET", "http://"+adminAddr+"/v1/user", nil)
	req.SetBasicAuth("admin", secrets["KEYGATE_ADMIN_PASSWORD"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("admin login with KEYGATE_ADMIN_PASSWORD: %d", resp.StatusCode)
	}
	out := waitOutput(p, "keygate started") + p.stdout.String()
	for k, v := range secrets {
		if strings.Contains(out, v) {
			t.Errorf("the value of %s was printed", k)
		}
	}
	if !strings.Contains(out, `"proc_environ_cleared":true`) {
		t.Errorf("no log line says the environment was cleared:\n%s", out)
	}
}

// TestBootstrapPasswordFileConfigured: admin.generated_password_file puts
// the generated password where the operator said, replacing (never reusing)
// a file already there, mode 0600, not on stderr; an unwritable path stops
// the start before any admin exists.
func TestBootstrapPasswordFileConfigured(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "data", "keygate.db")

	// Unwritable: a path under a regular file. Exit 1, no admin created.
	blocker := filepath.Join(dir, "blocker")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := startProc(t, []string{"KEYGATE_LISTEN=" + freeAddr(t), "KEYGATE_ADMIN_LISTEN=" + freeAddr(t),
		"KEYGATE_STORE_BOLT_PATH=" + db, "KEYGATE_ADMIN_GENERATED_PASSWORD_FILE=" + filepath.Join(blocker, "pw")}, "serve", "--demo")
	if code := bad.wait(20 * time.Second); code != 1 {
		t.Fatalf("unwritable password file: exit %d, want 1:\n%s", code, bad.stderr.String())
	}
	if !strings.Contains(bad.stderr.String(), "generated_password_file") {
		t.Errorf("stderr does not explain:\n%s", bad.stderr.String())
	}

	// A file already there with a wide mode is replaced by a 0600 one.
	pwFile := filepath.Join(dir, "secrets", "admin-pw")
	if err := os.MkdirAll(filepath.Dir(pwFile), 0o755); err != nil { //nolint:gosec // a test directory in a temporary directory
		t.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte("stale\n"), 0o644); err != nil { //nolint:gosec // a test file in a temporary directory
		t.Fatal(err)
	}
	adminAddr := freeAddr(t)
	p := startProc(t, []string{"KEYGATE_LISTEN=" + freeAddr(t), "KEYGATE_ADMIN_LISTEN=" + adminAddr,
		"KEYGATE_STORE_BOLT_PATH=" + db, "KEYGATE_ADMIN_GENERATED_PASSWORD_FILE=" + pwFile}, "serve", "--demo")
	waitHTTP(t, p, "http://"+adminAddr+"/healthz", nil)
	stderr := waitOutput(p, "keygate started")
	if !strings.Contains(stderr, "written to "+pwFile+" (mode 0600") {
		t.Fatalf("stderr does not name %s:\n%s", pwFile, stderr)
	}
	pw := generatedPassword(t, stderr) // checks mode 0600
	if strings.Contains(stderr, pw) || strings.Contains(p.stdout.String(), pw) {
		t.Error("the generated password was printed")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(db), "admin-password")); !os.IsNotExist(err) {
		t.Errorf("a default password file exists too: %v", err)
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(pwFile), ".admin-password-*"))
	if len(matches) != 0 {
		t.Errorf("temporary files left: %v", matches)
	}
	req, _ := http.NewRequest("GET", "http://"+adminAddr+"/v1/user", nil)
	req.SetBasicAuth("admin", pw)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("login with the password of the file: %d", resp.StatusCode)
	}
}

// waitOutput returns p's stderr once it holds want (or after 5 s): the
// copy from the process's pipe may lag behind what it already served.
func waitOutput(p *proc, want string) string {
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.stderr.String(), want) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return p.stderr.String()
}

// TestBootstrapPasswordFileRedis: with Redis (several instances, no data
// directory of their own) the generated password goes to
// ./keygate-admin-password in the working directory of the instance that
// created the admin, and nowhere for one that finds it created.
func TestBootstrapPasswordFileRedis(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	start := func(dir string) (*proc, string) {
		adminAddr := freeAddr(t)
		p := &proc{t: t, done: make(chan struct{})}
		p.cmd = exec.Command(binPath, "serve", "--demo")
		p.cmd.Dir = dir
		p.cmd.Env = append(cleanEnv(), "KEYGATE_LISTEN="+freeAddr(t), "KEYGATE_ADMIN_LISTEN="+adminAddr,
			"KEYGATE_STORE_DRIVER=redis", "KEYGATE_STORE_REDIS_ADDRS="+srv.Addr())
		p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.err = p.cmd.Wait(); close(p.done) }()
		t.Cleanup(func() {
			select {
			case <-p.done:
			default:
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		})
		waitHTTP(t, p, "http://"+adminAddr+"/healthz", nil)
		return p, adminAddr
	}
	first, second := t.TempDir(), t.TempDir()
	p1, adminAddr := start(first)
	stderr := waitOutput(p1, "keygate started")
	want := filepath.Join(first, "keygate-admin-password")
	if !strings.Contains(stderr, "written to "+want+" (mode 0600") {
		t.Fatalf("stderr does not name %s:\n%s", want, stderr)
	}
	pw := generatedPassword(t, stderr)
	if strings.Contains(stderr, pw) {
		t.Error("the generated password was printed")
	}
	req, _ := http.NewRequest("GET", "http://"+adminAddr+"/v1/user", nil)
	req.SetBasicAuth("admin", pw)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("login with the password of the file: %d", resp.StatusCode)
	}

	p2, _ := start(second)
	if s := waitOutput(p2, "keygate started"); strings.Contains(s, "written to") {
		t.Errorf("a second instance wrote a password file:\n%s", s)
	}
	if entries, _ := os.ReadDir(second); len(entries) != 0 {
		t.Errorf("the second instance left %v in its working directory", entries)
	}
}

// TestBootstrapPasswordOnTerminal: when stderr is a terminal (here a
// pseudo-terminal) and no file is configured, the generated password is
// shown there, and no password file is written.
func TestBootstrapPasswordOnTerminal(t *testing.T) {
	t.Parallel()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer func() { _ = master.Close() }()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pts: %v", err)
	}
	defer func() { _ = tty.Close() }()
	var screen syncBuffer
	go func() { _, _ = io.Copy(&screen, master) }() // ends with EIO when the terminal closes

	dir := t.TempDir()
	adminAddr := freeAddr(t)
	cmd := exec.Command(binPath, "serve", "--demo")
	cmd.Env = append(cleanEnv(), "KEYGATE_LISTEN="+freeAddr(t), "KEYGATE_ADMIN_LISTEN="+adminAddr,
		"KEYGATE_STORE_BOLT_PATH="+filepath.Join(dir, "keygate.db"))
	var stdout syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(screen.String(), "keygate started") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	out := screen.String()
	i := strings.Index(out, "with the generated password:")
	if i < 0 {
		t.Fatalf("no password on the terminal:\n%s", out)
	}
	pw := strings.Fields(out[i+len("with the generated password:"):])[0]
	if len(pw) != 24 {
		t.Fatalf("terminal shows %q, want a 24-character password", pw)
	}
	if _, err := os.Stat(filepath.Join(dir, "admin-password")); !os.IsNotExist(err) {
		t.Errorf("a password file was written although stderr is a terminal: %v", err)
	}
	req, _ := http.NewRequest("GET", "http://"+adminAddr+"/v1/user", nil)
	req.SetBasicAuth("admin", pw)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("login with the password shown: %d", resp.StatusCode)
	}
}
