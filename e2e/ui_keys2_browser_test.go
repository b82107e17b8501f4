package e2e

// The web UI pages of issue 18 in the browser (part of TestWebUIBrowser,
// sharing its gateway and browser): edit a key (errors next to the field,
// metadata escaped, allowed_cidrs applied by the proxy at once), rotate with
// a grace (the new value once, the old key listed with "rotated to" and
// working for the grace), the expiry warning flag, an admin editing a
// user's key, service users (no password field; refused at login).

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// It returns the value of an active key of alice's.
func uiKeyPagesFlow(t *testing.T, s *uiSession, g *gateway, adm *admClient, root string, proxy *http.Client, alicePW string) string {
	t.Helper()
	s.login("alice", alicePW)
	if s.path() != "/ui/keys" {
		t.Fatalf("alice's login went to %s", s.path())
	}
	// A key expiring in 3 days: inside the default 168h warning window.
	soon := time.Now().UTC().AddDate(0, 0, 3).Format(time.DateOnly)
	s.nav("/ui/keys/new")
	s.submit("create svc", s.fill(map[string]string{"name": "svc", "description": "service calls", "roles": "read", "expires": soon}),
		chromedp.Click(chromedp.CSS(`main form button[type=submit]`)))
	value := s.eval(`document.getElementById("api-key").value`)
	s.nav("/ui/keys")
	if got := s.eval(`document.querySelector("tbody tr").innerText`); !strings.Contains(got, "expires soon") {
		t.Errorf("a key expiring in 3 days is not flagged: %q", got)
	}

	// Edit: a bad metadata document is shown next to its field.
	s.click(`a[aria-label="Edit svc"]`)
	editPath := s.path()
	s.submit("bad metadata", s.fill(map[string]string{"metadata": `{"team": oops}`}), chromedp.Click(chromedp.CSS(`main form button[type=submit]`)))
	if got := s.eval(`(document.getElementById("metadata-err") || {}).textContent || ""`); !strings.Contains(got, "not valid JSON") {
		t.Errorf("bad metadata: error next to the field %q; page:\n%s", got, s.text())
	}
	if s.eval(`document.getElementById("metadata").getAttribute("aria-invalid")`) != "true" {
		t.Error("the bad metadata is not marked invalid")
	}
	s.nav(editPath)
	s.do("fill the edit form", s.fill(map[string]string{"description": "service calls <b>bold</b>",
		"metadata": "{\n  \"team\": \"<img src=x onerror=alert(1)>\",\n  \"tier\": \"gold\"\n}", "allowed_cidrs": "127.0.0.1/32, ::1",
		"rate_limit": "std", "quota_requests": "1000", "quota_per": "day"}))
	s.shot("edit-key")
	s.click(`main form button[type=submit]`)
	s.wantText("updated", "API key svc updated.", "tier", "127.0.0.1/32, ::1")
	if h := s.html(); strings.Contains(h, "<img src=x") || strings.Contains(h, "<b>bold</b>") {
		t.Fatal("metadata or description is not escaped in the list")
	}
	if st := uiProxyStatus(t, proxy, g, "Bearer "+value); st != http.StatusOK {
		t.Errorf("the key from an allowed address: %d, want 200", st)
	}
	// The rate limit and quota set in the form apply to the key at once.
	_, hdr, _ := uiProxyGet(t, proxy, g.url("/orders"), "Bearer "+value)
	if pol := hdr.Get("RateLimit-Policy"); !strings.Contains(pol, `"std"`) {
		t.Errorf("RateLimit-Policy after the form set policy std: %q", pol)
	}
	s.nav(editPath)
	s.wantText("quota shown", "used", "remaining, resets")
	// An allow-list without this address: the proxy refuses at once (403).
	s.nav(editPath)
	s.submit("narrow the allow-list", s.fill(map[string]string{"allowed_cidrs": "192.0.2.0/24"}), chromedp.Click(chromedp.CSS(`main form button[type=submit]`)))
	if st := uiProxyStatus(t, proxy, g, "Bearer "+value); st != http.StatusForbidden {
		t.Errorf("the key from an address outside its allow-list: %d, want 403", st)
	}
	s.nav(editPath)
	s.submit("widen the allow-list", s.fill(map[string]string{"allowed_cidrs": "127.0.0.0/8, ::1"}), chromedp.Click(chromedp.CSS(`main form button[type=submit]`)))

	// Rotate with a grace: the new value once; both keys work.
	s.nav("/ui/keys")
	s.click(`a[aria-label="Rotate svc"]`)
	s.shot("rotate")
	s.submit("bad grace", s.fill(map[string]string{"grace": "forever"}), chromedp.Click(chromedp.CSS(`main form button[type=submit]`)))
	if got := s.eval(`(document.getElementById("grace-err") || {}).textContent || ""`); !strings.Contains(got, "grace") {
		t.Errorf("bad grace: error next to the field %q", got)
	}
	s.submit("rotate svc", s.fill(map[string]string{"grace": "1h"}), chromedp.Click(chromedp.CSS(`main form button[type=submit]`)))
	if s.path() != "/ui/keys/created" {
		t.Fatalf("after the rotation at %s", s.path())
	}
	s.wantText("rotation one-time page", "Store this API key now.", "Replaces", "1h")
	newValue := s.eval(`document.getElementById("api-key").value`)
	if !strings.HasPrefix(newValue, "kg_") || newValue == value {
		t.Fatalf("rotated value %q", newValue)
	}
	s.do("reload", chromedp.Reload())
	if h := s.html(); strings.Contains(h, newValue) {
		t.Fatal("the rotated key's value is shown again after a reload")
	}
	for what, v := range map[string]string{"old key in its grace": value, "new key": newValue} {
		if st := uiProxyStatus(t, proxy, g, "Bearer "+v); st != http.StatusOK {
			t.Errorf("%s: %d, want 200", what, st)
		}
	}
	s.nav("/ui/keys")
	s.wantText("rotated listed", "Rotated to")
	if n := s.eval(`String(document.querySelectorAll('a[aria-label="Rotate svc"]').length)`); n != "1" {
		t.Errorf("%s rotate links for svc, want 1 (the new key only)", n)
	}
	if h := s.html(); strings.Contains(h, newValue) || strings.Contains(h, value) {
		t.Fatal("a key value is in the list")
	}
	s.shot("keys-details")
	s.logout()

	// The admin edits alice's key on alice's page; creates a service user.
	s.login("admin", admBootstrapPassword)
	s.nav("/ui/accounts/acme/users/alice")
	s.click(`a[aria-label="Edit svc"]`)
	s.submit("admin edits alice's key", s.fill(map[string]string{"description": "checked by admin"}), chromedp.Click(chromedp.CSS(`main form button[type=submit]`)))
	if s.path() != "/ui/accounts/acme/users/alice" {
		t.Fatalf("after the admin's edit at %s", s.path())
	}
	s.wantText("admin edit", "API key svc updated.", "checked by admin")
	keys := adm.want(200, "GET", "/v1/accounts/acme/users/alice/api-keys", root, nil)
	if !strings.Contains(string(keys), "checked by admin") {
		t.Errorf("the JSON API does not show the admin's edit: %s", keys)
	}

	s.nav("/ui/accounts/acme")
	if got := s.eval(`var t = document.getElementById("type"); t.value = "service"; t.dispatchEvent(new Event("change")); String(document.getElementById("password-row").hidden)`); got != "true" {
		t.Errorf("the password field is shown for a service account (hidden=%s)", got)
	}
	s.submit("create a service user", s.fill(map[string]string{"username": "ci-bot", "roles": "read"}),
		chromedp.Click(chromedp.CSS(`form[action$="/users"] button`)))
	s.wantText("service user created", "User ci-bot created.", "service")
	s.logout()
	s.login("ci-bot", "any-Pa55word-at-all")
	s.wantText("service login", "Service accounts cannot log in")
	if s.path() != "/ui/login" {
		t.Fatalf("a service user's login went to %s", s.path())
	}
	return newValue
}

// uiUpstreamFlow: an account admin adds an upstream credential in the page
// (the secret a password field, never shown again), the proxy sends it
// upstream on the route naming it; a user of the account sees the name and
// type only; the admin updates the secret, then deletes the credential
// after a confirmation (the route then answers 403).
func uiUpstreamFlow(t *testing.T, s *uiSession, g *gateway, proxy *http.Client, aadminPW, alicePW, aliceKey string) {
	t.Helper()
	const secret, secret2 = "Upstream-UI-S3cret-4411", "Upstream-UI-S3cret-9902" //nolint:gosec // test data, not a real credential
	svc := func() (int, []string) {
		t.Helper()
		st, _, body := uiProxyGet(t, proxy, g.url("/svc/x"), "Bearer "+aliceKey)
		if st != 200 {
			return st, nil
		}
		return 200, decodeEcho(t, body).Headers["X-Api-Key"]
	}
	if st, _ := svc(); st != http.StatusForbidden {
		t.Errorf("the route before the credential exists: %d, want 403", st)
	}
	s.login("aadmin", aadminPW)
	s.click(`nav a[href="/ui/accounts/acme/upstream-credentials"]`)
	s.wantText("empty", "No upstream credentials.")
	if typ := s.eval(`document.getElementById("secret").type`); typ != "password" {
		t.Errorf("the secret field is of type %q", typ)
	}
	add := func(fields map[string]string) {
		t.Helper()
		s.submit("add svc", s.fill(fields), chromedp.Click(chromedp.CSS(`main form button[type=submit]`)))
	}
	add(map[string]string{"name": "svc", "type": "header", "fields": "name=Host", "secret": secret})
	if got := s.eval(`(document.getElementById("fields-err") || {}).textContent || ""`); !strings.Contains(got, "Host") {
		t.Errorf("a reserved header: error next to the fields %q", got)
	}
	if s.eval(`document.getElementById("secret").value`) != "" || strings.Contains(s.html(), secret) {
		t.Fatal("the secret is put back into the form after an error")
	}
	add(map[string]string{"name": "svc", "type": "header", "fields": "name=X-Api-Key", "secret": secret})
	s.wantText("added", "Upstream credential svc saved.", "svc", "header", "name=X-Api-Key", "set")
	if strings.Contains(s.html(), secret) {
		t.Fatal("the secret is in the list")
	}
	s.shot("upstream-credentials")
	if st, got := svc(); st != 200 || strings.Join(got, ",") != secret {
		t.Errorf("through the proxy: %d, X-Api-Key %q", st, got)
	}
	// Update the secret.
	s.click(`a[aria-label="Update svc"]`)
	if strings.Contains(s.html(), secret) {
		t.Fatal("the secret is on the update page")
	}
	s.shot("upstream-credential-edit")
	s.submit("new secret", s.fill(map[string]string{"secret": secret2}), chromedp.Click(chromedp.CSS(`main form button[type=submit]`)))
	s.wantText("updated", "Upstream credential svc updated.")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, got := svc(); strings.Join(got, ",") == secret2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the proxy did not pick up the new secret")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.nav("/ui/keys")
	s.logout()

	// A user of the account: names and types only.
	s.login("alice", alicePW)
	s.click(`nav a[href="/ui/accounts/acme/upstream-credentials"]`)
	s.wantText("user's view", "svc", "header")
	if txt := s.text(); strings.Contains(txt, "X-Api-Key") || strings.Contains(txt, "Add an upstream credential") {
		t.Errorf("a user sees more than names and types:\n%s", txt)
	}
	s.axeCheck("upstream-credentials (user)")
	s.logout()

	// Delete with confirmation.
	s.login("aadmin", aadminPW)
	s.nav("/ui/accounts/acme/upstream-credentials")
	s.click(`a[aria-label="Delete svc"]`)
	s.wantText("confirmation", "Deleting is irreversible.")
	s.shot("upstream-credential-delete")
	s.click(`main form button.danger`)
	s.wantText("deleted", "Upstream credential svc deleted.", "No upstream credentials.")
	if st, _ := svc(); st != http.StatusForbidden {
		t.Errorf("the route after the deletion: %d, want 403", st)
	}
	s.nav("/ui/keys")
	s.logout()
}
