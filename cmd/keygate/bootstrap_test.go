package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/authn/failurelimit"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
)

func TestPasswordSinkChoice(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                 string
		driver, bolt, config string
		want                 string
	}{
		{"bolt default", configs.DriverBolt, "/var/lib/keygate/keygate.db", "", "/var/lib/keygate/admin-password"},
		{"redis default", configs.DriverRedis, "", "", filepath.Join(wd, "keygate-admin-password")},
		{"configured", configs.DriverBolt, "/var/lib/keygate/keygate.db", "/run/secrets/pw", "/run/secrets/pw"},
		{"configured relative", configs.DriverRedis, "", "pw/admin", filepath.Join(wd, "pw/admin")},
	}
	for _, tc := range tests {
		cfg := &configs.Config{}
		cfg.Store.Driver, cfg.Store.Bolt.Path, cfg.Admin.GeneratedPasswordFile = tc.driver, tc.bolt, tc.config
		// A buffer is not a terminal: always a file.
		sink, ok := passwordSink(cfg, &bytes.Buffer{}).(*fileSink)
		if !ok || sink.path != tc.want {
			t.Errorf("%s: sink %#v, want a file at %s", tc.name, sink, tc.want)
		}
	}
	// A pipe is not a terminal either.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	defer func() { _ = w.Close() }()
	if isTerminal(w) {
		t.Error("a pipe counts as a terminal")
	}
	if _, ok := passwordSink(&configs.Config{}, w).(*store.WriterSink); ok {
		t.Error("the password would go to a pipe")
	}
}

func TestFileSink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "admin-password")
	var notice bytes.Buffer
	s := &fileSink{path: path, notice: &notice}
	if err := s.Prepare("s3cret-generated"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the file exists before Commit: %v", err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file %v, %v; want mode 0600", fi, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "s3cret-generated\n" { //nolint:gosec // a file the test itself wrote
		t.Errorf("file holds %q", b)
	}
	if strings.Contains(notice.String(), "s3cret") || !strings.Contains(notice.String(), path) {
		t.Errorf("notice %q: want the path, never the password", notice.String())
	}
	// Abort leaves nothing behind.
	s2 := &fileSink{path: filepath.Join(dir, "other"), notice: &notice}
	if err := s2.Prepare("x"); err != nil {
		t.Fatal(err)
	}
	s2.Abort()
	if m, _ := filepath.Glob(filepath.Join(dir, ".admin-password-*")); len(m) != 0 {
		t.Errorf("Abort left %v", m)
	}
}

// TestScrubProcessEnv: after the scrub, neither os.Getenv nor a child
// process sees a secret variable; plain ones stay.
func TestScrubProcessEnv(t *testing.T) {
	t.Setenv("KEYGATE_TOKENS_SIGNING_SECRET", "scrub-test-secret-value")
	t.Setenv("KEYGATE_ADMIN_PASSWORD", "scrub-test-admin-password")
	t.Setenv("KEYGATE_LISTEN", ":18080")
	names, _ := scrubProcessEnv()
	if strings.Join(names, ",") != "KEYGATE_ADMIN_PASSWORD,KEYGATE_TOKENS_SIGNING_SECRET" &&
		strings.Join(names, ",") != "KEYGATE_TOKENS_SIGNING_SECRET,KEYGATE_ADMIN_PASSWORD" {
		t.Errorf("scrubbed %v", names)
	}
	for _, n := range names {
		if _, ok := os.LookupEnv(n); ok {
			t.Errorf("%s still set", n)
		}
	}
	out, err := exec.Command("env").Output()
	if err != nil {
		t.Skipf("no env command: %v", err)
	}
	if bytes.Contains(out, []byte("scrub-test")) {
		t.Errorf("a child process sees a secret:\n%s", out)
	}
	if !bytes.Contains(out, []byte("KEYGATE_LISTEN=:18080")) {
		t.Error("a child process lost a plain variable")
	}
}

func TestWithoutSecrets(t *testing.T) {
	rest, secrets := withoutSecrets([]string{"A=1", "KEYGATE_ADMIN_PASSWORD=p", "KEYGATE_LISTEN=:1", "KEYGATE_STORE_REDIS_PASSWORD=r"})
	if strings.Join(rest, " ") != "A=1 KEYGATE_LISTEN=:1" || strings.Join(secrets, " ") != "KEYGATE_ADMIN_PASSWORD=p KEYGATE_STORE_REDIS_PASSWORD=r" {
		t.Errorf("rest %v secrets %v", rest, secrets)
	}
}

// TestFoldedLimiter: every spelling of a username draws on one budget, and
// a release under another spelling gives back to it.
func TestFoldedLimiter(t *testing.T) {
	f := foldedLimiter{failurelimit.New(3, 100, nil)}
	var stamps []int64
	for _, s := range []string{"admin", "ADMIN", "ａｄｍｉｎ"} {
		stamp, ok, _ := f.Reserve([]byte(s))
		if !ok {
			t.Fatalf("Reserve(%q) refused within the budget", s)
		}
		stamps = append(stamps, stamp)
	}
	if _, ok, ra := f.Reserve([]byte("Admin")); ok || ra <= 0 {
		t.Fatalf("a 4th spelling got a 4th guess (ok %v, retry after %v)", ok, ra)
	}
	if _, ok, _ := f.Reserve([]byte("bob")); !ok {
		t.Error("another user is limited too")
	}
	f.Release([]byte("Ａｄｍｉｎ"), stamps[0])
	if _, ok, _ := f.Reserve([]byte("admin")); !ok {
		t.Error("a release under another spelling gave nothing back")
	}
}
