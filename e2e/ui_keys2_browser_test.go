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

func uiKeyPagesFlow(t *testing.T, s *uiSession, g *gateway, adm *admClient, root string, proxy *http.Client, alicePW string) {
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
		"metadata": "{\n  \"team\": \"<img src=x onerror=alert(1)>\",\n  \"tier\": \"gold\"\n}", "allowed_cidrs": "127.0.0.1/32, ::1"}))
	s.shot("edit-key")
	s.click(`main form button[type=submit]`)
	s.wantText("updated", "API key svc updated.", "tier", "127.0.0.1/32, ::1")
	if h := s.html(); strings.Contains(h, "<img src=x") || strings.Contains(h, "<b>bold</b>") {
		t.Fatal("metadata or description is not escaped in the list")
	}
	if st := uiProxyStatus(t, proxy, g, "Bearer "+value); st != http.StatusOK {
		t.Errorf("the key from an allowed address: %d, want 200", st)
	}
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
}
