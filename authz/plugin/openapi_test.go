package plugin

import (
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/authz"
)

// TestOpenAPIDocument keeps configs/authz-plugin.openapi.yaml in step with
// the paths and headers the code uses.
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../configs/authz-plugin.openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                               `yaml:"openapi"`
		Paths   map[string]map[string]any            `yaml:"paths"`
		Comps   map[string]map[string]map[string]any `yaml:"components"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	want := map[string][]string{
		authz.PathAuthorize:              {"post"},
		authz.PathPrincipals + "/{name}": {"post", "delete"},
		authz.PathDomains + "/{name}":    {"post", "delete"},
		authz.PathPrincipals:             {"get"},
		authz.PathDomains:                {"get"},
	}
	for p, methods := range want {
		ops, ok := doc.Paths[p]
		if !ok {
			t.Errorf("path %s missing", p)
			continue
		}
		for _, m := range methods {
			if _, ok := ops[m]; !ok {
				t.Errorf("%s %s missing", m, p)
			}
		}
	}
	for _, h := range []string{authz.HeaderSignature, authz.HeaderTimestamp, authz.HeaderNotificationID} {
		if !strings.Contains(string(b), "name: "+h) {
			t.Errorf("header %s not documented", h)
		}
	}
	for _, s := range []string{"Principal", "Action", "AuthorizeRequest", "AuthorizeResponse"} {
		if _, ok := doc.Comps["schemas"][s]; !ok {
			t.Errorf("schema %s missing", s)
		}
	}
}
