package cli_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/internal/cli"
)

// TestCLIKeys2: key create with metadata and an allow-list, key update
// (each flag, clearing), key rotate (value shown once, the old key records
// rotated_to), key list --expiring-within, and a service account created
// without a password prompt.
func TestCLIKeys2(t *testing.T) {
	s := startServer(t)
	s.run(t, asRoot, "", "account", "create", "acme").want(t, 0)
	s.run(t, asRoot, "Alice-Pa55word-long\n", "user", "create", "alice", "--account", "acme", "--roles", "read,write").want(t, 0)
	asAlice := []string{cli.EnvUsername + "=alice", cli.EnvPassword + "=Alice-Pa55word-long"}

	r := s.run(t, asAlice, "", "key", "create", "ci", "-o", "json", "--metadata", `{"team":"core"}`,
		"--allowed-cidrs", "127.0.0.1,::1", "--expires-in", "720h").want(t, 0)
	var ck adminapi.CreatedKey
	must(t, json.Unmarshal([]byte(r.stdout), &ck))
	if compact(ck.Metadata) != `{"team":"core"}` || len(ck.AllowedCIDRs) != 2 {
		t.Fatalf("created: %s", r.stdout)
	}
	s.run(t, asAlice, "", "key", "create", "bad", "--metadata", "[1]").want(t, 2)

	r = s.run(t, asAlice, "", "key", "update", ck.ID, "-o", "json", "--description", "deploys", "--metadata", `{"tier":"gold"}`,
		"--roles", "read", "--expires-in", "24h").want(t, 0)
	var k adminapi.Key
	must(t, json.Unmarshal([]byte(r.stdout), &k))
	if k.Description != "deploys" || compact(k.Metadata) != `{"tier":"gold"}` || len(k.Roles) != 1 || len(k.AllowedCIDRs) != 2 {
		t.Fatalf("updated: %s", r.stdout)
	}
	r = s.run(t, asAlice, "", "key", "update", ck.ID, "-o", "json", "--allowed-cidrs", "", "--description", "").want(t, 0)
	k = adminapi.Key{}
	must(t, json.Unmarshal([]byte(r.stdout), &k))
	if k.Description != "" || len(k.AllowedCIDRs) != 0 || compact(k.Metadata) != `{"tier":"gold"}` {
		t.Fatalf("cleared: %s", r.stdout)
	}
	r = s.run(t, asAlice, "", "key", "update", ck.ID).want(t, 2)
	if !strings.Contains(r.stderr, "nothing to change") {
		t.Errorf("no flags: %s", r.stderr)
	}
	r = s.run(t, asAlice, "", "key", "update", ck.ID, "--expires-in", "48h").want(t, 1)
	if !strings.Contains(r.stderr, "never extended") {
		t.Errorf("later expiry: %s", r.stderr)
	}

	r = s.run(t, asAlice, "", "key", "list", "--expiring-within", "168h").want(t, 0)
	if !strings.Contains(r.stdout, ck.ID) {
		t.Errorf("expiring list:\n%s", r.stdout)
	}

	r = s.run(t, asAlice, "", "key", "rotate", ck.ID, "--grace", "1h").want(t, 0)
	if !strings.Contains(r.stdout, "API key:  kg_") || !strings.Contains(r.stderr, "cannot be shown again") || !strings.Contains(r.stdout, ck.ID) {
		t.Fatalf("rotate:\n%s\n%s", r.stdout, r.stderr)
	}
	r = s.run(t, asAlice, "", "key", "get", ck.ID, "-o", "json").want(t, 0)
	k = adminapi.Key{}
	must(t, json.Unmarshal([]byte(r.stdout), &k))
	if k.RotatedTo == "" {
		t.Errorf("old key: %s", r.stdout)
	}
	s.run(t, asAlice, "", "key", "rotate", ck.ID).want(t, 1)

	// A service account: no password prompt, no stdin needed.
	r = s.run(t, asRoot, "", "user", "create", "ci-bot", "--account", "acme", "--type", "service", "--roles", "read").want(t, 0)
	if !strings.Contains(r.stdout, "service") {
		t.Errorf("service account:\n%s", r.stdout)
	}
	s.run(t, asRoot, "", "key", "create", "deploy", "--account", "acme", "--user", "ci-bot").want(t, 0)
}

func compact(m json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, m) != nil {
		return string(m)
	}
	return b.String()
}
