package configs

import (
	"strings"
	"testing"
)

// TestRateLimitsValidation: every problem of rate_limits and routes[].rate_limit
// is reported at once, each naming its key.
func TestRateLimitsValidation(t *testing.T) {
	tests := []struct {
		name string
		rl   RateLimits
		rt   string // routes[0].rate_limit
		want []string
	}{
		{name: "ok", rl: RateLimits{Policies: []RatePolicy{{Name: "std", Requests: 10, Per: Duration(1e9), Burst: 20}}}, rt: "std"},
		{name: "none", rl: RateLimits{}},
		{name: "all bad", rl: RateLimits{Instances: -1, Policies: []RatePolicy{
			{Name: "a b", Requests: 0, Per: 0, Burst: -1},
			{Name: "x", Requests: 1, Per: Duration(1e9)},
			{Name: "x", Requests: 2e9, Per: Duration(1e9)},
		}}, rt: "nope", want: []string{
			"rate_limits.instances", "rate_limits.policies[0].name", "rate_limits.policies[0].requests",
			"rate_limits.policies[0].per", "rate_limits.policies[0].burst", "rate_limits.policies[2].name",
			"rate_limits.policies[2].per", "routes[0].rate_limit",
		}},
		{name: "unknown route policy", rl: RateLimits{}, rt: "std", want: []string{"routes[0].rate_limit"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Tokens.Signing.Secret = strings.Repeat("s3cr3t-", 8)
			c.Routes = []Route{{Name: "api", PathPrefix: "/", Upstreams: []string{"http://127.0.0.1:9000"}, RateLimit: tc.rt}}
			c.RateLimits = tc.rl
			err := c.Validate()
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %s:\n%s", w, msg)
				}
			}
			if len(tc.want) == 0 && strings.Contains(msg, "rate_limit") {
				t.Errorf("unexpected: %s", msg)
			}
		})
	}
}

func TestRateLimitsFromEnvAndYAML(t *testing.T) {
	pols, err := decodeList[RatePolicy](`[{name: std, requests: 5, per: 1m, burst: 2}]`, "p")
	if err != nil || len(pols) != 1 || pols[0].Per != Duration(60e9) || pols[0].Burst != 2 {
		t.Fatalf("decode = %+v, %v", pols, err)
	}
	if _, err := decodeList[RatePolicy](`[{name: std, request: 5}]`, "p"); err == nil {
		t.Fatal("unknown field accepted")
	}
}
