package ui

import (
	"context"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// newKey creates a key of the logged-in user through the UI and returns
// its id and value.
func (b *browser) newKey(name string, form url.Values) (id, value string) {
	b.e.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", b.csrf("/ui/keys/new"))
	form.Set("name", name)
	if p := b.req("POST", "/ui/keys/new", form); p.status != 303 {
		b.e.t.Fatalf("create %s: %d\n%s", name, p.status, p.body)
	}
	return b.oneTime()
}

// formOf returns a builder of form posts: base with the pairs kv set.
func formOf(base url.Values) func(kv ...string) url.Values {
	return func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range base {
			v[k] = append([]string(nil), vs...)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
}

var reOneTime = regexp.MustCompile(`id="api-key"[^>]*value="(kg_([0-9A-Za-z]+)_[^"]+)"`)

// oneTime reads the one-time page: the key's id and value.
func (b *browser) oneTime() (id, value string) {
	b.e.t.Helper()
	p := b.req("GET", "/ui/keys/created", nil)
	m := reOneTime.FindStringSubmatch(p.body)
	if m == nil {
		b.e.t.Fatalf("no value on the one-time page:\n%s", p.body)
	}
	return m[2], m[1]
}

func (e *env) key(id string) *store.APIKey {
	e.t.Helper()
	k, err := e.st.GetAPIKey(context.Background(), id)
	must(e.t, err)
	return k
}

// TestEditKey: the edit form sends only what changed, through the PATCH
// handler (its rules, error codes and audit line); errors are shown next
// to their field and change nothing.
func TestEditKey(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.mustLogin("alice", pwAlice)
	id, _ := b.newKey("ci", url.Values{"expires": {"2026-12-01"}})
	edit := "/ui/keys/" + id + "/edit"
	page := b.req("GET", edit, nil)
	if page.status != 200 || !strings.Contains(page.body, `value="2026-12-01"`) || !strings.Contains(page.body, `value="read"`) {
		t.Fatalf("edit page: %d\n%s", page.status, page.body)
	}
	tok := field(t, reCSRF, page.body)
	form := formOf(url.Values{"csrf": {tok}, "description": {""}, "metadata": {""}, "roles": {"read"}, "allowed_cidrs": {""}, "expires": {"2026-12-01"}})
	tests := []struct {
		name   string
		form   url.Values
		status int
		field  string // the field the error is shown next to
		msg    string
	}{
		{"metadata not JSON", form("metadata", "{team:"), 422, "metadata", "not valid JSON"},
		{"metadata not an object", form("metadata", "[1]"), 422, "metadata", "JSON object"},
		{"metadata bad member", form("metadata", `{"a b":1}`), 422, "metadata", "a name is"},
		{"metadata too long", form("metadata", `{"a":"`+strings.Repeat("x", 5000)+`"}`), 422, "metadata", "longer than"},
		{"cidr", form("allowed_cidrs", "10.0.0.0/8, nonsense"), 422, "allowed_cidrs", "allowed_cidrs[1]"},
		{"role not held", form("roles", "read, write"), 422, "roles", "role"},
		{"expiry extended", form("expires", "2026-12-20"), 422, "expires", "never extended"},
		{"expiry removed", form("expires", ""), 422, "expires", "cannot be removed"},
		{"expiry not a date", form("expires", "soon"), 422, "expires", "YYYY-MM-DD"},
		{"nothing changed", form(), 303, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.key(id)
			p := b.req("POST", edit, tc.form)
			if p.status != tc.status {
				t.Fatalf("status %d, want %d\n%s", p.status, tc.status, p.body)
			}
			if tc.field != "" {
				re := regexp.MustCompile(`id="` + tc.field + `-err">([^<]*)<`)
				if m := re.FindStringSubmatch(p.body); m == nil || !strings.Contains(m[1], tc.msg) {
					t.Fatalf("no error %q next to %s:\n%s", tc.msg, tc.field, p.body)
				}
				if !strings.Contains(p.body, `id="`+tc.field+`" name="`+tc.field+`"`) {
					t.Errorf("the form is not shown again")
				}
			}
			after := e.key(id)
			if after.Description != before.Description || string(after.Metadata) != string(before.Metadata) ||
				!after.ExpiresAt.Equal(before.ExpiresAt) || strings.Join(after.AllowedCIDRs, ",") != strings.Join(before.AllowedCIDRs, ",") {
				t.Fatalf("the key changed: %+v", after)
			}
		})
	}

	// A change of every field; the escaped metadata is shown on the list.
	meta := `{"team":"<script>alert(1)</script>","tier":"gold"}`
	p := b.req("POST", edit, form("description", "CI runner", "metadata", meta, "allowed_cidrs", "10.0.0.0/8 2001:db8::/32",
		"expires", "2026-11-30"))
	if p.status != 303 || p.loc != "/ui/keys" {
		t.Fatalf("update: %d %s\n%s", p.status, p.loc, p.body)
	}
	k := e.key(id)
	var got map[string]string
	must(t, json.Unmarshal(k.Metadata, &got))
	if k.Description != "CI runner" || got["team"] != "<script>alert(1)</script>" || strings.Join(k.AllowedCIDRs, ",") != "10.0.0.0/8,2001:db8::/32" ||
		!k.ExpiresAt.Equal(time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("updated key: %+v", k)
	}
	list := b.req("GET", "/ui/keys", nil)
	if strings.Contains(list.body, "<script>alert(1)") || !strings.Contains(list.body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("metadata not escaped on the list:\n%s", list.body)
	}
	if !strings.Contains(list.body, "API key ci updated.") || !strings.Contains(list.body, "10.0.0.0/8, 2001:db8::/32") {
		t.Errorf("list after the update:\n%s", list.body)
	}
	if ep := b.req("GET", edit, nil); strings.Contains(ep.body, "<script>alert(1)") {
		t.Error("metadata not escaped on the edit page")
	}
	// The same audit line as PATCH, marked via ui.
	var audited bool
	for _, l := range e.audit.All() {
		m := l.ContextMap()
		if m["action"] == "updateApiKey" && m["via"] == "ui" && m["key_id"] == id {
			audited = true
		}
	}
	if !audited {
		t.Error("no updateApiKey audit line via ui")
	}
	// An empty metadata field clears it.
	if p := b.req("POST", edit, form("description", "CI runner", "metadata", "", "allowed_cidrs", "10.0.0.0/8 2001:db8::/32", "expires", "2026-11-30")); p.status != 303 {
		t.Fatalf("clear metadata: %d\n%s", p.status, p.body)
	}
	if k := e.key(id); len(k.Metadata) != 0 && string(k.Metadata) != "{}" {
		t.Errorf("metadata not cleared: %s", k.Metadata)
	}
}

// TestRotateKey: the rotation shows the new key once, the old one is
// listed with "rotated to" and cannot be rotated again.
func TestRotateKey(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.mustLogin("alice", pwAlice)
	id, old := b.newKey("deploy", url.Values{"description": {"d"}})
	rot := "/ui/keys/" + id + "/rotate"
	page := b.req("GET", rot, nil)
	if page.status != 200 || !strings.Contains(page.body, `value="24h"`) {
		t.Fatalf("rotate page: %d\n%s", page.status, page.body)
	}
	tok := field(t, reCSRF, page.body)
	for _, g := range []string{"forever", "-1h", "1000h"} {
		p := b.req("POST", rot, url.Values{"csrf": {tok}, "grace": {g}})
		if p.status != 422 || !strings.Contains(p.body, `id="grace-err"`) {
			t.Fatalf("grace %q: %d\n%s", g, p.status, p.body)
		}
	}
	if k := e.key(id); k.RotatedTo != "" {
		t.Fatal("a refused rotation rotated")
	}
	p := b.req("POST", rot, url.Values{"csrf": {tok}, "grace": {"1h"}})
	if p.status != 303 || p.loc != "/ui/keys/created" {
		t.Fatalf("rotate: %d %s\n%s", p.status, p.loc, p.body)
	}
	created := b.req("GET", "/ui/keys/created", nil)
	m := reOneTime.FindStringSubmatch(created.body)
	if m == nil || m[1] == old || !strings.Contains(created.body, "Replaces") || !strings.Contains(created.body, "1h") {
		t.Fatalf("one-time page of the rotation:\n%s", created.body)
	}
	newID, value := m[2], m[1]
	if again := b.req("GET", "/ui/keys/created", nil); strings.Contains(again.body, value) {
		t.Fatal("the rotated key's value is shown twice")
	}
	ok := e.key(id)
	if ok.RotatedTo != newID || !ok.ExpiresAt.Equal(e.now().Add(time.Hour)) {
		t.Fatalf("old key: rotated_to %q expires %s", ok.RotatedTo, ok.ExpiresAt)
	}
	list := b.req("GET", "/ui/keys", nil)
	if !strings.Contains(list.body, "Rotated to <code>"+newID+"</code>") || strings.Contains(list.body, rot+`"`) {
		t.Errorf("list after the rotation (old key with rotated to, no second rotation):\n%s", list.body)
	}
	if strings.Contains(list.body, value) {
		t.Error("the list shows the new key's value")
	}
	// The old key expires within the warning window only if one is set:
	// see TestExpiryWarning. A second rotation of the old key is refused.
	if p := b.req("POST", rot, url.Values{"csrf": {tok}, "grace": {"1h"}}); p.status != 409 {
		t.Errorf("second rotation: %d", p.status)
	}
}

// TestKeyPagesScope: edit and rotate of a user's key by admins, and by
// nobody else: another account's keys answer 404 (to an account admin) and
// change nothing; CSRF is checked on both forms.
func TestKeyPagesScope(t *testing.T) {
	e := newEnv(t)
	bob := e.browser()
	bob.mustLogin("bob", pwBob)
	bobKey, _ := bob.newKey("bobs", nil)
	al := e.browser()
	al.mustLogin("alice", pwAlice)
	aliceKey, _ := al.newKey("alices", nil)

	aa := e.browser()
	aa.mustLogin("aadmin", pwAAdm)
	tok := aa.csrf("/ui/accounts/acme")
	for _, path := range []string{
		"/ui/accounts/globex/users/bob/keys/" + bobKey + "/edit",
		"/ui/accounts/globex/users/bob/keys/" + bobKey + "/rotate",
		"/ui/accounts/acme/users/alice/keys/" + bobKey + "/edit", // bob's key under alice
		"/ui/keys/" + bobKey + "/edit",                           // bob's key as one's own
		"/ui/keys/" + bobKey + "/rotate",
	} {
		if p := aa.req("GET", path, nil); p.status != 404 {
			t.Errorf("GET %s: %d, want 404", path, p.status)
		}
		if p := aa.req("POST", path, url.Values{"csrf": {tok}, "description": {"pwned"}, "grace": {"0s"}}); p.status != 404 {
			t.Errorf("POST %s: %d, want 404", path, p.status)
		}
	}
	if k := e.key(bobKey); k.Description == "pwned" || k.RotatedTo != "" {
		t.Fatalf("bob's key changed: %+v", k)
	}
	// The account admin edits and rotates alice's key.
	base := "/ui/accounts/acme/users/alice/keys/" + aliceKey
	if p := aa.req("POST", base+"/edit", url.Values{"csrf": {"stale"}, "description": {"x"}}); p.status != 403 {
		t.Errorf("edit without a valid CSRF token: %d", p.status)
	}
	if p := aa.req("POST", base+"/rotate", url.Values{"grace": {"0s"}}); p.status != 403 {
		t.Errorf("rotate without a CSRF token: %d", p.status)
	}
	if p := aa.req("POST", base+"/rotate", url.Values{"csrf": {tok}, "grace": {"0s"}}, "Sec-Fetch-Site", "cross-site"); p.status != 403 {
		t.Errorf("cross-site rotate: %d", p.status)
	}
	if k := e.key(aliceKey); k.RotatedTo != "" || k.Description != "" {
		t.Fatalf("a refused form changed alice's key: %+v", k)
	}
	edit := aa.req("GET", base+"/edit", nil)
	if edit.status != 200 || !strings.Contains(edit.body, `action="`+base+`/edit"`) {
		t.Fatalf("admin edit page: %d\n%s", edit.status, edit.body)
	}
	p := aa.req("POST", base+"/edit", url.Values{"csrf": {tok}, "description": {"set by admin"}, "metadata": {`{"team":"a"}`}, "roles": {"read"}, "allowed_cidrs": {""}, "expires": {field(t, regexp.MustCompile(`id="expires"[^>]*value="([^"]*)"`), edit.body)}})
	if p.status != 303 || p.loc != "/ui/accounts/acme/users/alice" {
		t.Fatalf("admin edit: %d %s\n%s", p.status, p.loc, p.body)
	}
	if k := e.key(aliceKey); k.Description != "set by admin" || string(k.Metadata) != `{"team":"a"}` {
		t.Fatalf("alice's key: %+v", k)
	}
	if p := aa.req("POST", base+"/rotate", url.Values{"csrf": {tok}, "grace": {"0s"}}); p.status != 303 {
		t.Fatalf("admin rotate: %d\n%s", p.status, p.body)
	}
	newID, _ := aa.oneTime()
	if k := e.key(aliceKey); k.RotatedTo != newID || k.Status(e.now()) == store.KeyActive {
		t.Fatalf("grace 0: the old key is still active: %+v", k)
	}
	// A plain user cannot reach another user's key pages.
	if p := al.req("GET", "/ui/accounts/acme/users/aadmin/keys/"+newID+"/edit", nil); p.status != 403 && p.status != 404 {
		t.Errorf("user on another user's key: %d", p.status)
	}
}

// TestExpiryWarning: keys expiring within api_keys.expiry_warning are
// flagged in the list; others, and expired or revoked keys, are not.
func TestExpiryWarning(t *testing.T) {
	e := newEnv(t)
	e.ui.expiryWarning = 7 * 24 * time.Hour
	b := e.browser()
	b.mustLogin("alice", pwAlice)
	soon, _ := b.newKey("soon", url.Values{"expires": {e.now().AddDate(0, 0, 3).Format(time.DateOnly)}})
	later, _ := b.newKey("later", url.Values{"expires": {e.now().AddDate(0, 0, 20).Format(time.DateOnly)}})
	list := b.req("GET", "/ui/keys", nil)
	got := map[string]bool{}
	for _, row := range strings.Split(list.body, "<tr>") {
		if m := regexp.MustCompile(`data-label="Name">([^<]+)<`).FindStringSubmatch(row); m != nil {
			got[m[1]] = strings.Contains(row, "expires soon")
		}
	}
	if !got["soon"] || got["later"] {
		t.Fatalf("flags %v (want soon only); keys %s %s\n%s", got, soon, later, list.body)
	}
	// Without a warning window nothing is flagged.
	e.ui.expiryWarning = 0
	if list := b.req("GET", "/ui/keys", nil); strings.Contains(list.body, "expires soon") {
		t.Error("flagged without expiry_warning")
	}
}

// TestServiceAccounts: admins create service users without a password;
// one given is refused next to the field; a service user cannot log in and
// is told why; a service user's type cannot be changed from the page.
func TestServiceAccounts(t *testing.T) {
	e := newEnv(t)
	aa := e.browser()
	aa.mustLogin("aadmin", pwAAdm)
	page := aa.req("GET", "/ui/accounts/acme", nil)
	if !strings.Contains(page.body, `<option value="service"`) {
		t.Fatalf("no service type offered:\n%s", page.body)
	}
	tok := field(t, reCSRF, page.body)
	p := aa.req("POST", "/ui/accounts/acme/users", url.Values{"csrf": {tok}, "username": {"ci-bot"}, "type": {"service"}, "password": {"some-Pa55word-long"}, "roles": {"read"}})
	if p.status != 422 || !regexp.MustCompile(`id="password-err">[^<]*service account has no password`).MatchString(p.body) {
		t.Fatalf("service user with a password: %d\n%s", p.status, p.body)
	}
	p = aa.req("POST", "/ui/accounts/acme/users", url.Values{"csrf": {tok}, "username": {"ci-bot"}, "type": {"service"}, "password": {""}, "roles": {"read"}})
	if p.status != 303 {
		t.Fatalf("create service user: %d\n%s", p.status, p.body)
	}
	u, err := e.st.GetUser(context.Background(), "ci-bot")
	must(t, err)
	if u.Type != store.TypeService || u.PasswordHash != "" {
		t.Fatalf("ci-bot: %+v", u)
	}
	// Its page offers only its own type.
	up := aa.req("GET", "/ui/accounts/acme/users/ci-bot", nil)
	if !strings.Contains(up.body, `<option value="service" selected>`) || strings.Contains(up.body, `<option value="user"`) {
		t.Errorf("service user's page:\n%s", up.body)
	}
	// A user still needs a password.
	p = aa.req("POST", "/ui/accounts/acme/users", url.Values{"csrf": {tok}, "username": {"carol"}, "type": {"user"}, "password": {""}})
	if p.status != 422 || !strings.Contains(p.body, `id="password-err"`) {
		t.Errorf("user without a password: %d\n%s", p.status, p.body)
	}
	// Login as the service user: refused, with the reason.
	s := e.browser()
	lp := s.login("ci-bot", "anything-at-all")
	if lp.status != 401 || !strings.Contains(lp.body, "Service accounts cannot log in") {
		t.Fatalf("service login: %d\n%s", lp.status, lp.body)
	}
	if _, ok := s.cookies[sessionCookie]; ok {
		t.Fatal("a service user got a session")
	}
	// Its keys are managed by the admin.
	if p := aa.req("POST", "/ui/accounts/acme/users/ci-bot/keys/new", url.Values{"csrf": {tok}, "name": {"ci"}}); p.status != 303 {
		t.Fatalf("service user's key: %d\n%s", p.status, p.body)
	}
}
