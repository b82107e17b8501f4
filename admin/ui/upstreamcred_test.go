package ui

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

const upSecret = "Upstream-S3cret-Value-8812"

// TestUpstreamCredentialPages: an account admin adds, updates and deletes
// an account's upstream credentials through the JSON routes' handlers; the
// secret is never in a page (not even a form shown again after an error);
// errors are next to their field; values are escaped.
func TestUpstreamCredentialPages(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	aa := e.browser()
	aa.mustLogin("aadmin", pwAAdm)
	base := "/ui/accounts/acme/upstream-credentials"
	page := aa.req("GET", base, nil)
	if page.status != 200 || !strings.Contains(page.body, "No upstream credentials.") || !strings.Contains(page.body, `href="`+base+`"`) {
		t.Fatalf("empty list: %d\n%s", page.status, page.body)
	}
	tok := field(t, reCSRF, page.body)
	form := formOf(url.Values{"csrf": {tok}, "name": {"billing"}, "type": {"header"}, "fields": {"name=X-Api-Key\nvalidate_url=\n"}, "secret": {upSecret}})
	for _, tc := range []struct {
		name  string
		form  url.Values
		field string
	}{
		{"bad fields line", form("fields", "name X-Api-Key"), "fields"},
		{"unknown type", form("type", "kerberos"), "type"},
		{"no secret", form("secret", ""), "secret"},
		{"bad header name", form("fields", "name=Host"), "fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := aa.req("POST", base, tc.form)
			if p.status != 422 || !strings.Contains(p.body, `id="`+tc.field+`-err"`) {
				t.Fatalf("status %d, want 422 with an error next to %s\n%s", p.status, tc.field, p.body)
			}
			if strings.Contains(p.body, upSecret) {
				t.Fatal("the secret is in the page shown again")
			}
			if list, err := e.st.ListUpstreamCredentials(ctx, "acme"); err != nil || len(list) != 0 {
				t.Fatalf("stored: %v %v", list, err)
			}
		})
	}
	p := aa.req("POST", base, form("fields", "name=X-Api-Key", "validate", "1"))
	if p.status != 303 || p.loc != base {
		t.Fatalf("create: %d %s\n%s", p.status, p.loc, p.body)
	}
	list := aa.req("GET", base, nil)
	for _, want := range []string{"Upstream credential billing saved.", "billing", "header", "name=X-Api-Key", ">set<"} {
		if !strings.Contains(list.body, want) {
			t.Errorf("list lacks %q:\n%s", want, list.body)
		}
	}
	if p := aa.req("POST", base, form()); p.status != 409 || !strings.Contains(p.body, `id="name-err"`) {
		t.Errorf("duplicate name: %d\n%s", p.status, p.body)
	}
	// Update: fields and a new secret; the edit page never shows a secret.
	edit := aa.req("GET", base+"/billing", nil)
	if edit.status != 200 || strings.Contains(edit.body, upSecret) || !strings.Contains(edit.body, "set (not shown)") {
		t.Fatalf("edit page: %d\n%s", edit.status, edit.body)
	}
	before, err := e.st.GetUpstreamCredential(ctx, "acme", "billing")
	must(t, err)
	if p := aa.req("POST", base+"/billing", url.Values{"csrf": {tok}, "fields": {"name=X-Api-Key"}, "secret": {""}}); p.status != 303 {
		t.Fatalf("no change: %d\n%s", p.status, p.body)
	}
	if n := aa.req("GET", base, nil); !strings.Contains(n.body, "Nothing changed.") {
		t.Error("no notice for an update that changes nothing")
	}
	if p := aa.req("POST", base+"/billing", url.Values{"csrf": {tok}, "fields": {"name=X-Other-Key"}, "secret": {"New-" + upSecret}}); p.status != 303 {
		t.Fatalf("update: %d\n%s", p.status, p.body)
	}
	after, err := e.st.GetUpstreamCredential(ctx, "acme", "billing")
	must(t, err)
	if after.Fields["name"] != "X-Other-Key" || string(after.Sealed) == string(before.Sealed) {
		t.Fatalf("updated record: fields %v, secret changed %v", after.Fields, string(after.Sealed) != string(before.Sealed))
	}
	// A plain user of the account: names and types only, no form, no way in.
	al := e.browser()
	al.mustLogin("alice", pwAlice)
	up := al.req("GET", base, nil)
	if up.status != 200 || !strings.Contains(up.body, "billing") || strings.Contains(up.body, "X-Other-Key") ||
		strings.Contains(up.body, "Add an upstream credential") || strings.Contains(up.body, ">set<") {
		t.Fatalf("user's view: %d\n%s", up.status, up.body)
	}
	if !strings.Contains(up.body, `>Upstream credentials</a>`) {
		t.Error("no nav link for a user of the account")
	}
	utok := field(t, reCSRF, up.body)
	for _, tc := range []struct{ method, path string }{
		{"GET", base + "/billing"}, {"POST", base + "/billing"}, {"POST", base}, {"POST", base + "/billing/delete"},
	} {
		p := al.req(tc.method, tc.path, url.Values{"csrf": {utok}, "name": {"x"}, "type": {"bearer"}, "secret": {"s"}, "fields": {"name=X"}})
		if p.status != 403 {
			t.Errorf("user %s %s: %d, want 403", tc.method, tc.path, p.status)
		}
	}
	// Another account: 404 to an account admin and to a user.
	for _, b := range []*browser{aa, al} {
		if p := b.req("GET", "/ui/accounts/globex/upstream-credentials", nil); p.status != 404 {
			t.Errorf("another account's credentials: %d, want 404", p.status)
		}
	}
	// Delete: confirmation, CSRF, then gone.
	if d := aa.req("GET", base+"/billing/delete", nil); d.status != 200 || !strings.Contains(d.body, "irreversible") {
		t.Fatalf("delete page: %d\n%s", d.status, d.body)
	}
	if p := aa.req("POST", base+"/billing/delete", url.Values{"csrf": {"nope"}}); p.status != 403 {
		t.Errorf("delete without a CSRF token: %d", p.status)
	}
	if p := aa.req("POST", base+"/billing/delete", url.Values{"csrf": {tok}}); p.status != 303 {
		t.Fatalf("delete: %d\n%s", p.status, p.body)
	}
	if _, err := e.st.GetUpstreamCredential(ctx, "acme", "billing"); err == nil {
		t.Fatal("the credential is still there")
	}
	// The secret is in no page and no audit line.
	for _, l := range e.audit.All() {
		for k, v := range l.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, upSecret) {
				t.Errorf("audit field %s holds the secret", k)
			}
		}
	}
	// Global admins reach it from the account page; escaping of names.
	root := e.browser()
	root.mustLogin("admin", pwRoot)
	if p := root.req("GET", "/ui/accounts/acme", nil); !strings.Contains(p.body, `href="`+base+`"`) {
		t.Error("no link from the account page")
	}
	if p := root.req("GET", "/ui/accounts/acme/upstream-credentials/%3Cb%3E", nil); p.status != 404 || strings.Contains(p.body, "<b>") {
		t.Errorf("unknown name: %d", p.status)
	}
	// Field values are escaped.
	if p := aa.req("POST", base, form("name", "legacy", "type", "basic", "fields", "username=<b>u</b>")); p.status != 303 {
		t.Fatalf("basic credential: %d\n%s", p.status, p.body)
	}
	if l := aa.req("GET", base, nil); strings.Contains(l.body, "<b>u</b>") || !regexp.MustCompile(`username=&lt;b&gt;u&lt;/b&gt;`).MatchString(l.body) {
		t.Errorf("a field value is not escaped:\n%s", l.body)
	}
}

// FuzzParseFields: the fields text area's parser never panics; what it
// accepts round-trips through fieldsText (names trimmed, one value each).
func FuzzParseFields(f *testing.F) {
	for _, s := range []string{"", "name=X-Api-Key", "a=1\nb=2\r\n", "=x", "noequals", "a==b", " k = v \n\n", "a=1\na=2", "\x00=\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, bad := parseFields(s)
		if bad != "" {
			if m != nil {
				t.Fatalf("an error and a result for %q", s)
			}
			return
		}
		back, bad2 := parseFields(fieldsText(m))
		if bad2 != "" || len(back) != len(m) {
			t.Fatalf("%q → %v → %q → %v (%s)", s, m, fieldsText(m), back, bad2)
		}
		for k, v := range m {
			if k == "" || strings.ContainsAny(k, "\n=") {
				t.Fatalf("bad name %q", k)
			}
			if back[k] != v {
				t.Fatalf("value of %q: %q → %q", k, v, back[k])
			}
		}
	})
}
