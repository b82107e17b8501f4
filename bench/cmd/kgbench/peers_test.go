package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestNginxConfigs renders the nginx peers' configurations and has nginx
// itself check them (`nginx -t`), so the shared prelude and each peer's
// own part stay one valid file.
func TestNginxConfigs(t *testing.T) {
	if _, err := exec.LookPath("nginx"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nginx is not installed (CI=true)")
		}
		t.Skip("nginx is not installed: skipping the bench config check")
	}
	for name, start := range map[string]func(dir string) (*peer, error){
		"proxy":        func(dir string) (*peer, error) { return startNginx(dir, "127.0.0.1:9") },
		"auth_request": func(dir string) (*peer, error) { return startNginxAuthRequest(dir, "127.0.0.1:9", "127.0.0.1:10") },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p, err := start(dir)
			if errors.Is(err, errSkip) {
				t.Skipf("%v", err)
			}
			if err != nil {
				t.Fatalf("start: %v", err)
			}
			p.p.stop()
			confs, _ := filepath.Glob(filepath.Join(dir, "*", "nginx.conf"))
			if len(confs) != 1 {
				t.Fatalf("nginx.conf files: %v", confs)
			}
			d := filepath.Dir(confs[0])
			check := exec.Command("nginx", "-t", "-p", d, "-c", confs[0]) //nolint:gosec // G204: the paths are this test's temp dir
			if out, err := check.CombinedOutput(); err != nil {
				t.Fatalf("nginx -t: %v\n%s", err, out)
			}
		})
	}
}
