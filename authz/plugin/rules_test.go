package plugin

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
)

func TestGlob(t *testing.T) {
	t.Parallel()
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"api:/v1/things", "api:/v1/things", true},
		{"api:/v1/things", "api:/v1/things/", false},
		{"api:/v1/*", "api:/v1/things", true},
		{"api:/v1/*", "api:/v1/", true},
		{"api:/v1/*", "api:/v1/a/b", false},
		{"api:/v1/**", "api:/v1/a/b", true},
		{"api:/v1/**", "api:/v1/", true},
		{"api:/v1/**", "api:/v1", false},
		{"api:/**", "api:/", true},
		{"api:*", "api:/x", false},
		{"api:**", "api:/x/y", true},
		{"*:/health", "api:/health", true},
		{"*:/health", "api:/x/health", false},
		{"api:/v1/*/items", "api:/v1/abc/items", true},
		{"api:/v1/*/items", "api:/v1/a/b/items", false},
		{"api:/v1/**/items", "api:/v1/a/b/items", true},
		{"api:/*.json", "api:/x.json", true},
		{"api:/*.json", "api:/x.jsonp", false},
		{"api:/users/{principal}/**", "api:/users/alice/keys", true},
		{"api:/users/{principal}/**", "api:/users/bob/keys", false},
		{"api:/users/{principal}", "api:/users/alice", true},
		{"api:/d/{domain}/*", "api:/d/acme/x", true},
		{"api:/d/{domain}/*", "api:/d/other/x", false},
		{"", "", true},
		{"", "x", false},
		{"**a**a**a**a**a**a**b", strings.Repeat("a", 2000), false}, // no exponential backtracking
	}
	for _, tc := range cases {
		if got := compileGlob(tc.pattern).match(tc.s, "alice", "acme"); got != tc.want {
			t.Errorf("%q matches %q = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
	// A principal named like a wildcard is literal.
	g := compileGlob("api:/users/{principal}/x")
	if g.match("api:/users/anything/x", "*", "") || !g.match("api:/users/*/x", "*", "") {
		t.Error("{principal} is not literal")
	}
	if g.match("api:/users//x", "", "") {
		t.Error("an empty principal matched")
	}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	r, err := ParseRules([]byte(`
rules:
  - effect: allow
    principals: [alice, bob]
    domains: [acme]
    actions: [GET]
    targets: ["api:/v1/**"]
  - effect: allow
    types: [admin]
  - effect: deny
    principals: [bob]
    targets: ["api:/v1/secret/**"]
  - effect: allow
    principals: ["*"]
    actions: [GET]
    targets: ["api:/users/{principal}/**"]
  - effect: deny
    domains: [frozen]
`))
	if err != nil {
		t.Fatal(err)
	}
	user := func(name string) authz.Principal { return authz.Principal{Name: name, Type: "user"} }
	cases := []struct {
		name   string
		p      authz.Principal
		domain string
		a      authz.Action
		want   bool
	}{
		{"allowed", user("alice"), "acme", authz.Action{Action: "GET", Target: "api:/v1/x"}, true},
		{"other action", user("alice"), "acme", authz.Action{Action: "POST", Target: "api:/v1/x"}, false},
		{"action case", user("alice"), "acme", authz.Action{Action: "get", Target: "api:/v1/x"}, false},
		{"other domain", user("alice"), "other", authz.Action{Action: "GET", Target: "api:/v1/x"}, false},
		{"other target", user("alice"), "acme", authz.Action{Action: "GET", Target: "api:/v2/x"}, false},
		{"unknown principal", user("carol"), "acme", authz.Action{Action: "GET", Target: "api:/v1/x"}, false},
		{"deny wins over allow", user("bob"), "acme", authz.Action{Action: "GET", Target: "api:/v1/secret/k"}, false},
		{"deny is scoped", user("alice"), "acme", authz.Action{Action: "GET", Target: "api:/v1/secret/k"}, true},
		{"type rule, omitted fields match all", authz.Principal{Name: "root", Type: "admin"}, "admin", authz.Action{Action: "DELETE", Target: "x"}, true},
		{"deny beats admin", authz.Principal{Name: "root", Type: "admin"}, "frozen", authz.Action{Action: "GET", Target: "x"}, false},
		{"own subtree", user("carol"), "acme", authz.Action{Action: "GET", Target: "api:/users/carol/keys"}, true},
		{"someone else's subtree", user("carol"), "acme", authz.Action{Action: "GET", Target: "api:/users/alice/keys"}, false},
	}
	for _, tc := range cases {
		if got := r.Decide(tc.p, tc.domain, tc.a); got != tc.want {
			t.Errorf("%s: Decide = %v, want %v", tc.name, got, tc.want)
		}
	}
	var empty Rules
	if empty.Decide(user("alice"), "acme", authz.Action{Action: "GET", Target: "api:/"}) {
		t.Error("no rules allowed something")
	}
}

func TestParseRulesErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"bad effect", "rules:\n  - effect: permit\n", []string{`rules[0]: effect must be allow or deny, got "permit"`}},
		{"missing effect", "rules:\n  - principals: [a]\n", []string{`rules[0]: effect must be allow or deny, got ""`}},
		{"empty entry", "rules:\n  - effect: allow\n    targets: ['']\n", []string{"rules[0]: targets: empty entry"}},
		{"all errors at once", "rules:\n  - effect: x\n  - effect: allow\n    actions: ['']\n", []string{"rules[0]: effect", "rules[1]: actions: empty entry"}},
		{"unknown key", "rules:\n  - effect: allow\n    principal: [a]\n", []string{"field principal not found"}},
		{"not yaml", "rules: [", []string{"yaml"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRules([]byte(tc.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if r, err := ParseRules(nil); err != nil || len(r.Rules) != 0 {
		t.Fatalf("empty document: %v", err)
	}
}

func TestExampleRulesFile(t *testing.T) {
	t.Parallel()
	r, err := LoadRules("../../configs/authz-rules.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rules) == 0 {
		t.Fatal("no rules in the example")
	}
	if _, err := LoadRules("does-not-exist.yaml"); err == nil {
		t.Fatal("missing file accepted")
	}
}

func FuzzGlob(f *testing.F) {
	f.Add("api:/v1/**", "api:/v1/a/b")
	f.Add("*:/{principal}/*", "x:/alice/y")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		g := compileGlob(pattern)
		got := g.match(s, "alice", "acme")
		// A pattern without wildcards or placeholders matches only itself.
		if !strings.ContainsAny(pattern, "*{") && got != (pattern == s) {
			t.Fatalf("literal %q vs %q = %v", pattern, s, got)
		}
		// "**" matches everything.
		if pattern == "**" && !got {
			t.Fatalf("** did not match %q", s)
		}
	})
}
