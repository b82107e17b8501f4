package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store/boltstore"
)

// TestCLILimits: --rate-limit and --quota on key create, key limit, user
// update and account update; get shows them with the quota's use; bad
// values are usage errors or the server's 422.
func TestCLILimits(t *testing.T) {
	s := startServer(t, func(d *admin.APIDeps, _ *boltstore.Store) {
		d.RateLimits = configs.RateLimits{Policies: []configs.RatePolicy{{Name: "std", Requests: 10, Per: configs.Duration(time.Second)}}}
	})
	s.run(t, asRoot, "", "account", "create", "acme").want(t, 0)
	r := s.run(t, asRoot, "", "account", "update", "acme", "--rate-limit", "std", "--quota", "1000/month").want(t, 0)
	if !strings.Contains(r.stdout, "std") || !strings.Contains(r.stdout, "1000/month: 0 used, 1000 remaining") {
		t.Fatalf("account update:\n%s", r.stdout)
	}
	s.run(t, asRoot, "Alice-Pa55word-long\n", "user", "create", "alice", "--account", "acme").want(t, 0)
	r = s.run(t, asRoot, "", "user", "update", "alice", "-a", "acme", "--quota", "50/day").want(t, 0)
	if !strings.Contains(r.stdout, "50/day") {
		t.Fatalf("user update:\n%s", r.stdout)
	}
	asAlice := []string{"KEYGATE_USERNAME=alice", "KEYGATE_PASSWORD=Alice-Pa55word-long"}
	r = s.run(t, asAlice, "", "key", "create", "ci", "--rate-limit", "std", "-o", "json").want(t, 0)
	id := between(r.stdout, `"id": "`, `"`)
	r = s.run(t, asAlice, "", "key", "get", id).want(t, 0)
	if !strings.Contains(r.stdout, "Rate limit") || !strings.Contains(r.stdout, "std") {
		t.Fatalf("key get:\n%s", r.stdout)
	}
	r = s.run(t, asAlice, "", "key", "update", id, "--rate-limit", "", "--quota", "10/day").want(t, 0)
	if !strings.Contains(r.stdout, "10/day") || strings.Contains(r.stdout, "std") {
		t.Fatalf("key update:\n%s", r.stdout)
	}
	s.run(t, asAlice, "", "key", "update", id).want(t, 2)
	s.run(t, asAlice, "", "key", "update", id, "--quota", "10/week").want(t, 2)
	r = s.run(t, asAlice, "", "key", "update", id, "--rate-limit", "nope").want(t, 1)
	if !strings.Contains(r.stderr, "rate_limits.policies") {
		t.Fatalf("unknown policy message: %s", r.stderr)
	}
}

func between(s, a, b string) string {
	_, rest, _ := strings.Cut(s, a)
	v, _, _ := strings.Cut(rest, b)
	return v
}
