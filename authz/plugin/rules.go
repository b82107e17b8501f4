package plugin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/authz"
)

// Effects of a rule.
const (
	EffectAllow = "allow"
	EffectDeny  = "deny"
)

// Rules is a rules file:
//
//	rules:
//	  - effect: allow            # allow | deny (required)
//	    principals: ["*"]        # usernames or "*"
//	    types: [user]            # admin | account_admin | user, or "*"
//	    domains: [acme]          # accounts or "*"
//	    actions: [GET, HEAD]     # HTTP methods / admin actions, or "*"
//	    targets: ["api:/v1/**"]  # glob patterns over "<route>:<path>"
//
// A tuple (principal, domain, action, target) is denied if any deny rule
// matches it, else allowed if any allow rule matches it, else denied. A rule
// matches when every field matches; an omitted (or empty) field matches
// anything, like ["*"]. Names, types, domains and actions compare exactly
// (case-sensitive).
//
// Target patterns: "*" matches any run of characters except '/', "**" any
// run including '/', "{principal}" and "{domain}" the caller's username and
// domain literally (a name containing '*' is not a wildcard). Everything else
// is literal.
type Rules struct {
	Rules []Rule `yaml:"rules"`

	compiled []compiledRule
}

// Rule is one allow or deny rule.
type Rule struct {
	Effect     string   `yaml:"effect"`
	Principals []string `yaml:"principals"`
	Types      []string `yaml:"types"`
	Domains    []string `yaml:"domains"`
	Actions    []string `yaml:"actions"`
	Targets    []string `yaml:"targets"`
}

// LoadRules reads and validates a rules file.
func LoadRules(path string) (Rules, error) {
	b, err := os.ReadFile(path) //nolint:gosec // the path is the operator's (flag or config), not a client's
	if err != nil {
		return Rules{}, fmt.Errorf("rules: %w", err)
	}
	r, err := ParseRules(b)
	if err != nil {
		return Rules{}, fmt.Errorf("rules %s: %w", path, err)
	}
	return r, nil
}

// ParseRules decodes a rules document strictly (unknown keys are errors) and
// validates it, reporting every problem.
func ParseRules(b []byte) (Rules, error) {
	var r Rules
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil && !errors.Is(err, io.EOF) {
		return Rules{}, err
	}
	if err := r.compile(); err != nil {
		return Rules{}, err
	}
	return r, nil
}

// compile validates the rules and prepares them for matching.
func (r *Rules) compile() error {
	var errs []error
	r.compiled = r.compiled[:0]
	for i, rule := range r.Rules {
		bad := func(format string, a ...any) {
			errs = append(errs, fmt.Errorf("rules[%d]: "+format, append([]any{i}, a...)...))
		}
		c := compiledRule{deny: rule.Effect == EffectDeny}
		if rule.Effect != EffectAllow && rule.Effect != EffectDeny {
			bad("effect must be allow or deny, got %q", rule.Effect)
		}
		for field, list := range map[string][]string{
			"principals": rule.Principals, "types": rule.Types, "domains": rule.Domains,
			"actions": rule.Actions, "targets": rule.Targets,
		} {
			if slices.Contains(list, "") {
				bad("%s: empty entry", field)
			}
		}
		c.principals = anyList(rule.Principals)
		c.types = anyList(rule.Types)
		c.domains = anyList(rule.Domains)
		c.actions = anyList(rule.Actions)
		if !slices.Contains(rule.Targets, "*") && !slices.Contains(rule.Targets, "**") {
			for _, t := range rule.Targets {
				c.targets = append(c.targets, compileGlob(t))
			}
		}
		r.compiled = append(r.compiled, c)
	}
	return errors.Join(errs...)
}

// anyList returns nil (match anything) for an empty list or one holding "*".
func anyList(l []string) []string {
	if len(l) == 0 || slices.Contains(l, "*") {
		return nil
	}
	return l
}

type compiledRule struct {
	deny                                bool
	principals, types, domains, actions []string // nil: any
	targets                             []glob   // nil: any
}

func (c *compiledRule) matches(p authz.Principal, domain string, a authz.Action) bool {
	return in(c.principals, p.Name) && in(c.types, p.Type) && in(c.domains, domain) &&
		in(c.actions, a.Action) && c.matchTarget(p.Name, domain, a.Target)
}

func (c *compiledRule) matchTarget(principal, domain, target string) bool {
	if c.targets == nil {
		return true
	}
	for _, g := range c.targets {
		if g.match(target, principal, domain) {
			return true
		}
	}
	return false
}

func in(list []string, s string) bool { return list == nil || slices.Contains(list, s) }

// Decide returns whether the tuple is allowed: deny rules win, then allow
// rules; nothing matching is a denial.
func (r *Rules) Decide(p authz.Principal, domain string, a authz.Action) bool {
	allowed := false
	for i := range r.compiled {
		c := &r.compiled[i]
		if !c.matches(p, domain, a) {
			continue
		}
		if c.deny {
			return false
		}
		allowed = true
	}
	return allowed
}

// glob is a compiled target pattern.
type glob []token

type tokenKind uint8

const (
	tLiteral    tokenKind = iota
	tStar                 // any run without '/'
	tDoubleStar           // any run
	tPrincipal
	tDomain
)

type token struct {
	kind tokenKind
	lit  string
}

func compileGlob(p string) glob {
	var g glob
	lit := strings.Builder{}
	flush := func() {
		if lit.Len() > 0 {
			g = append(g, token{kind: tLiteral, lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(p); {
		switch {
		case strings.HasPrefix(p[i:], "**"):
			flush()
			g = append(g, token{kind: tDoubleStar})
			i += 2
		case p[i] == '*':
			flush()
			g = append(g, token{kind: tStar})
			i++
		case strings.HasPrefix(p[i:], "{principal}"):
			flush()
			g = append(g, token{kind: tPrincipal})
			i += len("{principal}")
		case strings.HasPrefix(p[i:], "{domain}"):
			flush()
			g = append(g, token{kind: tDomain})
			i += len("{domain}")
		default:
			lit.WriteByte(p[i])
			i++
		}
	}
	flush()
	return g
}

// match reports whether s matches g. It tracks the set of positions in s
// reachable after each token, so its cost is O(len(g)·len(s)) whatever the
// pattern (no exponential backtracking on targets chosen by clients).
func (g glob) match(s, principal, domain string) bool {
	cur := make([]bool, len(s)+1)
	next := make([]bool, len(s)+1)
	cur[0] = true
	for _, t := range g {
		clear(next)
		hit := false
		switch t.kind {
		case tStar, tDoubleStar:
			for pos := 0; pos <= len(s); pos++ {
				if !cur[pos] {
					continue
				}
				for j := pos; j <= len(s); j++ {
					if next[j] && t.kind == tDoubleStar {
						break // the rest is already marked
					}
					next[j], hit = true, true
					if j < len(s) && s[j] == '/' && t.kind == tStar {
						break
					}
				}
			}
		default:
			lit := t.lit
			switch t.kind {
			case tPrincipal:
				lit = principal
			case tDomain:
				lit = domain
			default: // tLiteral: t.lit as is
			}
			if lit == "" && t.kind != tLiteral {
				return false
			}
			for pos := 0; pos+len(lit) <= len(s); pos++ {
				if cur[pos] && s[pos:pos+len(lit)] == lit {
					next[pos+len(lit)], hit = true, true
				}
			}
		}
		if !hit {
			return false
		}
		cur, next = next, cur
	}
	return cur[len(s)]
}
