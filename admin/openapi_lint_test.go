package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// The OpenAPI linter is @redocly/cli, pinned by tools/openapi-lint/
// package-lock.json and installed there by `make openapi-lint-deps` (npm ci,
// part of make test). Its rules are tools/openapi-lint/redocly.yaml.
const lintDir = "../tools/openapi-lint"

// redoclyCLI returns the command that runs the pinned linter, or skips the
// test when node or the installed linter is missing, except under CI=true,
// where that fails.
func redoclyCLI(t *testing.T) []string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format+" (skipped outside CI)", args...)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed: cannot run the OpenAPI linter (@redocly/cli)")
	}
	out, err := exec.Command(node, "--version").Output() //nolint:gosec // runs the binary or tool the test built or needs; no outside input
	if err != nil {
		missing("node --version: %v", err)
	}
	// @redocly/cli needs node >= 20.19 (20.x) or >= 22.12.
	if m := regexp.MustCompile(`^v(\d+)\.(\d+)`).FindSubmatch(out); m != nil {
		major, _ := strconv.Atoi(string(m[1]))
		minor, _ := strconv.Atoi(string(m[2]))
		if major < 20 || major == 20 && minor < 19 || major == 21 || major == 22 && minor < 12 {
			missing("node %s is too old for @redocly/cli (want 20.19+ or 22.12+)", bytes.TrimSpace(out))
		}
	}
	cli := filepath.Join(lintDir, "node_modules", "@redocly", "cli", "bin", "cli.js")
	if _, err := os.Stat(cli); err != nil {
		missing("%s is not installed: run `make openapi-lint-deps` (npm ci in %s)", cli, lintDir)
	}
	return []string{node, cli}
}

// lint runs the linter on file with the project's rules and returns its
// output and whether it passed.
func lint(t *testing.T, cli []string, file string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append(cli[1:], "lint", "--config", filepath.Join(lintDir, "redocly.yaml"), "--format", "stylish", file)
	cmd := exec.CommandContext(ctx, cli[0], args...) //nolint:gosec // runs the binary or tool the test built or needs; no outside input
	cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true", "NO_COLOR=1", "CI=true")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the linter did not finish in 2 minutes:\n%s", out)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running the linter: %v\n%s", err, out)
	}
	return string(out), err == nil
}

// TestOpenAPILint: admin/openapi.json passes `redocly lint` with the
// recommended rules, warnings counted as errors.
func TestOpenAPILint(t *testing.T) {
	cli := redoclyCLI(t)
	if out, ok := lint(t, cli, "openapi.json"); !ok {
		t.Fatalf("redocly lint admin/openapi.json failed:\n%s", out)
	}
	// The linter really checks: the same document with a defect it must
	// report (the trailing-slash path of issue 12, an operation without a
	// 4xx answer) fails.
	var doc map[string]any
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	paths := doc["paths"].(map[string]any)
	paths["/debug/pprof/"] = paths["/debug/pprof"]
	delete(paths, "/debug/pprof")
	get := paths["/healthz"].(map[string]any)["get"].(map[string]any)
	get["responses"] = map[string]any{"200": map[string]any{"description": "ok"}}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(t.TempDir(), "broken.json")
	if err := os.WriteFile(broken, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, ok := lint(t, cli, broken)
	if ok {
		t.Fatalf("the linter passed a document with a trailing-slash path and no 4xx:\n%s", out)
	}
	for _, rule := range []string{"no-path-trailing-slash", "operation-4xx-response"} {
		if !bytes.Contains([]byte(out), []byte(rule)) {
			t.Errorf("the linter did not report %s:\n%s", rule, out)
		}
	}
}
