package configs

import (
	"fmt"
	"time"
)

// RateLimits holds the named rate-limit policies (DESIGN.md §13, issue 19)
// that keys, users, accounts (admin API) and routes (routes[].rate_limit)
// are assigned by name.
type RateLimits struct {
	Policies []RatePolicy `yaml:"policies"`
	// Instances is how many keygate instances share the store. While the
	// store cannot be reached, each instance enforces 1/instances of every
	// policy and quota on its own (never unlimited, never refusing all).
	// Default 1.
	Instances int `yaml:"instances"`
}

// RatePolicy admits Requests per Per, with bursts of up to Burst requests
// (default: Requests).
type RatePolicy struct {
	Name     string   `yaml:"name"`
	Requests int64    `yaml:"requests"`
	Per      Duration `yaml:"per"`
	Burst    int64    `yaml:"burst"`
}

// Policy returns the policy called name, or nil.
func (r *RateLimits) Policy(name string) *RatePolicy {
	for i := range r.Policies {
		if r.Policies[i].Name == name {
			return &r.Policies[i]
		}
	}
	return nil
}

// validPolicyName: a policy name appears as an sf-string in the RateLimit
// headers and in store keys, so it is kept to [A-Za-z0-9_.-], 1-64 bytes.
func validPolicyName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// ValidPolicyName reports whether s is a well-formed policy name.
func ValidPolicyName(s string) bool { return validPolicyName(s) }

func (p *problems) rateLimits(c *Config) {
	rl := &c.RateLimits
	if rl.Instances < 0 {
		p.add("rate_limits.instances", "must not be negative (got %d)", rl.Instances)
	}
	seen := make(map[string]int, len(rl.Policies))
	for i, pol := range rl.Policies {
		base := fmt.Sprintf("rate_limits.policies[%d]", i)
		switch j, dup := seen[pol.Name]; {
		case !validPolicyName(pol.Name):
			p.add(base+".name", "%s must be 1-64 characters of A-Z a-z 0-9 _ - .", quote(pol.Name))
		case dup:
			p.add(base+".name", "%s is also the name of rate_limits.policies[%d]", quote(pol.Name), j)
		default:
			seen[pol.Name] = i
		}
		if pol.Requests < 1 {
			p.add(base+".requests", "must be at least 1 (got %d)", pol.Requests)
		}
		if time.Duration(pol.Per) < time.Second {
			p.add(base+".per", "must be at least 1s (got %s)", pol.Per)
		} else if pol.Requests >= 1 && time.Duration(pol.Per)/time.Duration(pol.Requests) < time.Microsecond {
			p.add(base+".per", "%d requests per %s is more than one per microsecond", pol.Requests, pol.Per)
		}
		if pol.Burst < 0 {
			p.add(base+".burst", "must not be negative (got %d)", pol.Burst)
		}
	}
	for i, r := range c.Routes {
		if r.RateLimit != "" && rl.Policy(r.RateLimit) == nil {
			p.add(fmt.Sprintf("routes[%d].rate_limit", i), "%s is not a rate_limits.policies name", quote(r.RateLimit))
		}
	}
}
