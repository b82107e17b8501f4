package e2e

// The web UI (admin/ui) in a real headless Chromium driven by chromedp,
// against the built binary: the user flow, the admin flow across two
// accounts, an account admin reaching for another account by URL, a
// cross-origin form post, the one-time key value, axe-core on every page
// and screenshots at 1280 and 360 px (admin/ui/testdata/screenshots, written
// there only with KEYGATE_UPDATE_SCREENSHOTS=1).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

const uiTestdata = "../admin/ui/testdata"

// uiBrowser returns the Chromium binary, or skips (fails under CI=true,
// where .ci/run installs it).
func uiBrowser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (CI installs it: .ci/run)")
	}
	t.Skip("chromium is not installed: skipping the web UI browser tests (apt-get install chromium)")
	return ""
}

// uiSession is a browser tab on a gateway's web UI.
type uiSession struct {
	t     *testing.T
	ctx   context.Context
	base  string // http://admin-listener
	shots string // screenshot directory
	axe   string // axe-core source
}

func newUISession(t *testing.T, g *gateway) *uiSession {
	t.Helper()
	bin := uiBrowser(t)
	axe, err := os.ReadFile(filepath.Join(uiTestdata, "axe.min.js"))
	if err != nil {
		t.Fatalf("the vendored axe-core (make axe-core): %v", err)
	}
	shots := t.TempDir()
	if os.Getenv("KEYGATE_UPDATE_SCREENSHOTS") == "1" {
		shots = filepath.Join(uiTestdata, "screenshots")
		if err := os.MkdirAll(shots, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("font-render-hinting", "none"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	return &uiSession{t: t, ctx: ctx, base: "http://" + g.admin, shots: shots, axe: string(axe)}
}

// do runs steps with a bound.
func (s *uiSession) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		s.t.Fatalf("%s: %v", what, err)
	}
}

// nav loads path and returns the document's response.
func (s *uiSession) nav(path string) *network.Response {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
	defer cancel()
	r, err := chromedp.Run(ctx, chromedp.NavigateResponse(s.base+path))
	if err != nil {
		s.t.Fatalf("navigate %s: %v", path, err)
	}
	return r
}

// submit runs steps that submit a form and returns the response of the
// page loaded (after redirects).
func (s *uiSession) submit(what string, steps ...chromedp.Action[chromedp.Void]) *network.Response {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
	defer cancel()
	r, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		s.t.Fatalf("%s: %v; at %s:\n%s", what, err, s.path(), s.text())
	}
	return r
}

func (s *uiSession) eval(js string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		s.t.Fatalf("evaluate %.60q: %v", js, err)
	}
	return v
}

// settle waits for the document to finish loading.
func (s *uiSession) settle() {
	s.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); s.eval(`document.readyState`) != "complete"; {
		if time.Now().After(deadline) {
			s.t.Fatal("the page did not finish loading")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *uiSession) html() string { return s.eval(`document.documentElement.outerHTML`) }

func (s *uiSession) path() string { return s.eval(`location.pathname`) }

// text is the visible text of the page's main element.
func (s *uiSession) text() string {
	return s.eval(`(document.querySelector("main") || document.body).innerText`)
}

func (s *uiSession) wantText(what string, subs ...string) {
	s.t.Helper()
	txt := s.text()
	for _, sub := range subs {
		if !strings.Contains(txt, sub) {
			s.t.Fatalf("%s: page %s lacks %q; text:\n%s", what, s.path(), sub, txt)
		}
	}
}

// fill sets form fields by id.
func (s *uiSession) fill(fields map[string]string) chromedp.Action[chromedp.Void] {
	var steps []chromedp.Action[chromedp.Void]
	for id, v := range fields {
		steps = append(steps, chromedp.SetValue(chromedp.ID(id), v))
	}
	return chromedp.Steps(steps...)
}

// axeCheck runs axe-core on the page: no serious or critical violation.
func (s *uiSession) axeCheck(page string) {
	s.t.Helper()
	if s.eval(`typeof axe`) != "object" {
		s.eval(s.axe + `;"ok"`)
	}
	ctx, cancel := context.WithTimeout(s.ctx, 20*time.Second)
	defer cancel()
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](`axe.run(document, {resultTypes: ["violations"]}).then(r => JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(" "))}))))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		s.t.Fatalf("axe on %s: %v", page, err)
	}
	var vs []struct {
		ID, Impact, Help string
		Nodes            []string
	}
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		s.t.Fatalf("axe result: %v", err)
	}
	for _, v := range vs {
		if v.Impact == "serious" || v.Impact == "critical" {
			s.t.Errorf("axe on %s: %s violation %s (%s) at %v", page, v.Impact, v.ID, v.Help, v.Nodes)
		} else {
			s.t.Logf("axe on %s: %s %s at %v", page, v.Impact, v.ID, v.Nodes)
		}
	}
}

// shot saves the page at 1280 and 360 px wide (full height) as
// NAME-1280.png and NAME-360.png, after axe and a check that no horizontal
// scrolling is needed at 360 px.
func (s *uiSession) shot(name string) {
	s.t.Helper()
	s.axeCheck(name)
	for _, w := range []int64{1280, 360} {
		s.do("viewport", chromedp.EmulateViewport(w, 800))
		if w == 360 {
			if over := s.eval(`String(document.documentElement.scrollWidth - document.documentElement.clientWidth)`); over != "0" {
				s.t.Errorf("%s at 360 px: %s px of horizontal overflow", name, over)
			}
		}
		ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err != nil {
			s.t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(s.shots, fmt.Sprintf("%s-%d.png", name, w)), png, 0o644); err != nil { //nolint:gosec // a screenshot, not a secret
			s.t.Fatal(err)
		}
	}
	s.do("viewport", chromedp.EmulateViewport(1280, 900))
}

func (s *uiSession) login(user, pw string) *network.Response {
	s.t.Helper()
	s.nav("/ui/login")
	return s.submit("log in as "+user, s.fill(map[string]string{"username": user, "password": pw}),
		chromedp.Click(chromedp.CSS(`form[action="/ui/login"] button[type=submit]`)))
}

func (s *uiSession) logout() {
	s.t.Helper()
	s.submit("log out", chromedp.Click(chromedp.CSS(`form.logout button`)))
	if p := s.path(); p != "/ui/login" {
		s.t.Fatalf("after logout at %s", p)
	}
}

// click submits the form of the button or follows the link matched by css.
func (s *uiSession) click(css string) *network.Response {
	s.t.Helper()
	return s.submit("click "+css, chromedp.Click(chromedp.CSS(css)))
}

func TestWebUIBrowser(t *testing.T) {
	uiBrowser(t)
	start := time.Now()
	echoAddr := startEchoProc(t)
	g := startGateway(t, serveOpts{
		routes: fmt.Sprintf(ucRouteYAML, echoAddr) +
			fmt.Sprintf("  - name: api\n    path_prefix: /\n    upstreams: [\"http://%s\"]\n    auth: required\n", echoAddr),
		extra: "api_keys:\n  max_lifetime: 720h\nrate_limits:\n  policies:\n    - {name: std, requests: 100, per: 1s}\n",
		env:   []string{ucKeyEnv},
	})
	adm := newAdmClient(t, g)
	root := admBasic("admin", admBootstrapPassword)
	s := newUISession(t, g)
	proxy := &http.Client{Timeout: 10 * time.Second}

	// Login page; an API key cannot log in.
	s.nav("/ui/keys")
	if p := s.path(); p != "/ui/login" {
		t.Fatalf("a page without a session went to %s, want the login page", p)
	}
	s.shot("login")
	s.login("admin", "wrong-password-here")
	s.wantText("wrong password", "Wrong username or password.")

	// Admin flow: two accounts, users in each, a key for a user of the
	// second, a bulk revocation by name.
	// Keyboard only: the username has focus, Tab reaches the password,
	// Enter submits; the focused field shows a visible outline.
	s.nav("/ui/login")
	s.settle()
	// autofocus is applied once the document has loaded (its deferred
	// scripts too): wait for it, briefly.
	for deadline := time.Now().Add(2 * time.Second); s.eval(`document.activeElement.id`) != "username" && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if id := s.eval(`document.activeElement.id`); id != "username" {
		t.Errorf("the login page starts with focus on %q, want username", id)
	}
	s.do("type the username", chromedp.KeyEvent("admin"), chromedp.KeyEvent("\t"))
	if id := s.eval(`document.activeElement.id`); id != "password" {
		t.Errorf("Tab from the username went to %q, want password", id)
	}
	if o := s.eval(`getComputedStyle(document.activeElement).outlineStyle`); o == "none" {
		t.Error("the keyboard focus has no visible outline")
	}
	s.submit("log in by keyboard", chromedp.KeyEvent(admBootstrapPassword), chromedp.KeyEvent("\r"))
	if p := s.path(); p != "/ui/keys" {
		t.Fatalf("keyboard login went to %s", p)
	}
	s.nav("/ui/accounts")
	for _, name := range []string{"acme", "globex"} {
		s.submit("create account "+name, s.fill(map[string]string{"name": name}),
			chromedp.Click(chromedp.CSS(`form[action="/ui/accounts"] button`)))
		s.wantText("account created", "Account "+name+" created.")
	}
	s.submit("duplicate account", s.fill(map[string]string{"name": "acme"}), chromedp.Click(chromedp.CSS(`form[action="/ui/accounts"] button`)))
	s.wantText("duplicate account", "already exists")
	if s.eval(`document.getElementById("name").getAttribute("aria-invalid")`) != "true" {
		t.Error("the duplicate account name is not marked invalid")
	}
	s.nav("/ui/accounts")
	s.shot("accounts")
	createUser := func(account, name, pw, typ, roles string) {
		t.Helper()
		s.nav("/ui/accounts/" + account)
		s.submit("create user "+name, s.fill(map[string]string{"username": name, "password": pw, "type": typ, "roles": roles}),
			chromedp.Click(chromedp.CSS(`form[action$="/users"] button`)))
		s.wantText("user created", "User "+name+" created.")
	}
	const (
		alicePW  = "alice-Pa55word-long"
		aadminPW = "aadmin-Pa55word-long"
		bobPW    = "bob-Pa55word-long"
	)
	createUser("acme", "alice", alicePW, "user", "read, write")
	createUser("acme", "aadmin", aadminPW, "account_admin", "read")
	createUser("globex", "bob", bobPW, "user", "read")
	s.nav("/ui/accounts/acme")
	s.submit("weak password", s.fill(map[string]string{"username": "carol", "password": "short"}),
		chromedp.Click(chromedp.CSS(`form[action$="/users"] button`)))
	if s.eval(`document.getElementById("password").getAttribute("aria-invalid")`) != "true" {
		t.Errorf("a weak password is not shown next to its field: %s", s.text())
	}
	s.nav("/ui/accounts/acme")
	s.shot("users")

	// A key for bob (globex), made by the admin on bob's page.
	s.nav("/ui/accounts/globex/users/bob")
	s.click(`a.button[href$="/keys/new"]`)
	s.submit("create bob's key", s.fill(map[string]string{"name": "deploy", "description": "deploys <script>alert(1)</script>"}),
		chromedp.Click(chromedp.CSS(`main form button[type=submit]`)))
	bobKey := s.eval(`document.getElementById("api-key").value`)
	if !strings.HasPrefix(bobKey, "kg_") {
		t.Fatalf("no key value on the one-time page: %q", bobKey)
	}
	s.click(`a.button`) // Done: back to bob's page
	if s.path() != "/ui/accounts/globex/users/bob" {
		t.Fatalf("Done went to %s", s.path())
	}
	if strings.Contains(s.html(), "<script>alert(1)") {
		t.Fatal("a key description is not escaped")
	}
	s.wantText("bob's key listed", "deploy", "<script>alert(1)</script>")
	s.shot("user")
	// Change bob's roles from the user form.
	s.submit("change bob's roles", s.fill(map[string]string{"roles": "read, ops"}), chromedp.Click(chromedp.CSS(`form.grid button`)))
	s.wantText("bob updated", "User bob updated.")

	s.nav("/ui/bulk-revoke")
	s.submit("bulk revoke", s.fill(map[string]string{"name": "deploy", "account": "globex"}), chromedp.Click(chromedp.CSS(`main form button`)))
	s.wantText("bulk result", "Revoked now: 1.")
	s.shot("bulk-revoke")
	if st := uiProxyStatus(t, proxy, g, "Bearer "+bobKey); st != http.StatusUnauthorized {
		t.Errorf("bob's bulk-revoked key: proxy answered %d, want 401", st)
	}
	// Disable and enable globex from the accounts list.
	s.nav("/ui/accounts")
	s.click(`button[aria-label="Disable account globex"]`)
	s.wantText("disabled", "Account globex is now disabled.")
	s.click(`button[aria-label="Enable account globex"]`)
	s.wantText("enabled", "Account globex is now enabled.")
	s.logout()

	// User flow: alice creates a key, uses it, revokes it.
	s.login("alice", alicePW)
	if s.path() != "/ui/keys" {
		t.Fatalf("after login at %s", s.path())
	}
	s.wantText("empty list", "No active API keys.")
	s.click(`a.button[href="/ui/keys/new"]`)
	s.shot("create-key")
	tryCreate := func(fields map[string]string, field, msg string) {
		t.Helper()
		s.nav("/ui/keys/new")
		s.submit("create key", s.fill(fields), chromedp.Click(chromedp.CSS(`main form button[type=submit]`)))
		if got := s.eval(`(document.getElementById("` + field + `-err") || {}).textContent || ""`); !strings.Contains(got, msg) {
			t.Errorf("create with %v: error next to %s is %q, want %q; page:\n%s", fields, field, got, msg, s.text())
		}
	}
	today := time.Now().UTC()
	tryCreate(map[string]string{"name": "ci", "expires": today.AddDate(0, 0, -1).Format(time.DateOnly)}, "expires", "in the past")
	tryCreate(map[string]string{"name": "ci", "expires": today.AddDate(0, 0, 60).Format(time.DateOnly)}, "expires", "max_lifetime")
	tryCreate(map[string]string{"name": "ci", "roles": "admin"}, "roles", "not one of the key owner's roles")

	s.nav("/ui/keys/new")
	created := s.submit("create ci", s.fill(map[string]string{"name": "ci", "description": "CI pipeline", "roles": "read",
		"expires": today.AddDate(0, 0, 20).Format(time.DateOnly)}), chromedp.Click(chromedp.CSS(`main form button[type=submit]`)))
	if s.path() != "/ui/keys/created" {
		t.Fatalf("after create at %s", s.path())
	}
	if cc, _ := created.Headers["Cache-Control"].(string); cc != "no-store" {
		t.Errorf("the one-time page has Cache-Control %q, want no-store", cc)
	}
	value := s.eval(`document.getElementById("api-key").value`)
	encoded := s.eval(`document.getElementById("encoded").value`)
	if !strings.HasPrefix(value, "kg_") || encoded == "" {
		t.Fatalf("key value %q, encoded %q", value, encoded)
	}
	s.wantText("warning", "Store this API key now.", "shown only once")
	if s.eval(`String(!document.querySelector("button[data-copy]").hidden)`) != "true" {
		t.Error("the copy buttons stay hidden with JavaScript on")
	}
	// The key works through the proxy: 200 and alice's identity upstream.
	st, _, body := uiProxyGet(t, proxy, g.url("/orders"), "Bearer "+value)
	if st != 200 {
		t.Fatalf("the new key through the proxy: %d %s", st, body)
	}
	hdr := decodeEcho(t, body).Headers
	if strings.Join(hdr["X-Auth-User"], ",") != "alice" || strings.Join(hdr["X-Auth-Method"], ",") != "api_key" ||
		strings.Join(hdr["X-Auth-Key-Name"], ",") != "ci" || strings.Join(hdr["X-Auth-Account"], ",") != "acme" {
		t.Errorf("identity headers upstream: %v", hdr)
	}
	// Screenshot the one-time page with a placeholder instead of the value.
	s.eval(`document.getElementById("api-key").value = "kg_EXAMPLE_not-a-real-key"; document.getElementById("encoded").value = "RVhBTVBMRTprZ19FWEFNUExF"; "ok"`)
	s.shot("key-created")
	// Reload, back, and every later page: the value never again.
	s.do("reload", chromedp.Reload())
	s.wantText("reload", "already shown")
	for what, h := range map[string]string{"reload": s.html()} {
		if strings.Contains(h, value) || strings.Contains(h, encoded) {
			t.Fatalf("the key value is in the page after %s", what)
		}
	}
	s.nav("/ui/keys")
	s.eval(`history.back(); "ok"`)
	for deadline := time.Now().Add(10 * time.Second); s.path() != "/ui/keys/created"; {
		if time.Now().After(deadline) {
			t.Fatalf("back went to %s", s.path())
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.settle()
	s.wantText("back", "already shown")
	if h := s.html(); strings.Contains(h, value) || strings.Contains(h, encoded) {
		t.Fatal("the key value is in the page after going back")
	}
	s.nav("/ui/keys")
	if h := s.html(); strings.Contains(h, value) || strings.Contains(h, encoded) {
		t.Fatal("the key value is in the key list")
	}
	s.wantText("list", "ci", "CI pipeline", "active")
	s.shot("keys")

	// The same name again: refused next to the name.
	tryCreate(map[string]string{"name": "ci"}, "name", "already has an active key with this name")

	// Revoke with confirmation.
	s.nav("/ui/keys")
	s.click(`a[aria-label="Revoke ci"]`)
	s.wantText("confirmation", "Revocation is irreversible.")
	s.shot("revoke")
	s.click(`main form button.danger`)
	s.wantText("revoked", "API key ci revoked.", "No active API keys.")
	if st := uiProxyStatus(t, proxy, g, "Bearer "+value); st != http.StatusUnauthorized {
		t.Errorf("the revoked key: proxy answered %d, want 401", st)
	}
	// Toggle off: the revoked key is listed, as revoked.
	s.do("toggle off", chromedp.Click(chromedp.ID("active")))
	s.click(`form.toggle button`)
	s.wantText("all keys", "ci", "revoked")
	if !strings.Contains(s.eval(`location.search`), "f=1") {
		t.Error("the toggle is not in the URL")
	}
	s.shot("keys-all")

	// Change password: the session ends (generation), the new one logs in.
	s.nav("/ui/password")
	s.shot("password")
	s.submit("mismatch", s.fill(map[string]string{"current": alicePW, "new": "alice-N3w-Pa55word", "confirm": "other"}),
		chromedp.Click(chromedp.CSS(`main form button`)))
	s.wantText("mismatch", "The two new passwords differ.")
	s.nav("/ui/password")
	s.submit("change", s.fill(map[string]string{"current": alicePW, "new": "alice-N3w-Pa55word", "confirm": "alice-N3w-Pa55word"}),
		chromedp.Click(chromedp.CSS(`main form button`)))
	if s.path() != "/ui/login" {
		t.Fatalf("after a password change at %s, want the login page", s.path())
	}
	s.login("alice", "alice-N3w-Pa55word")
	if s.path() != "/ui/keys" {
		t.Fatalf("the new password: at %s", s.path())
	}
	// An admin disabling alice on the JSON API ends her session at once.
	adm.want(200, "PATCH", "/v1/accounts/acme/users/alice", root, map[string]any{"state": "disabled"})
	s.nav("/ui/keys")
	if s.path() != "/ui/login" {
		t.Fatalf("a disabled user's session still reaches %s", s.path())
	}
	adm.want(200, "PATCH", "/v1/accounts/acme/users/alice", root, map[string]any{"state": "enabled"})

	// An account admin: only their account; another's by URL is 404 and
	// changes nothing.
	s.login("aadmin", aadminPW)
	s.nav("/ui/accounts")
	if s.path() != "/ui/accounts/acme" {
		t.Fatalf("an account admin's Accounts went to %s", s.path())
	}
	before := adm.want(200, "GET", "/v1/accounts/globex/users/bob/api-keys?status=all", root, nil)
	for _, p := range []string{"/ui/accounts/globex", "/ui/accounts/globex/users/bob", "/ui/accounts/globex/users/bob/keys/new",
		"/ui/accounts/admin/users/admin"} {
		if r := s.nav(p); r.Status != 404 {
			t.Errorf("account admin GET %s: %d, want 404", p, r.Status)
		}
	}
	// A form of their own account re-aimed at another account's user.
	s.nav("/ui/accounts/acme/users/alice/keys/new")
	s.eval(`document.querySelector("main form").action = "/ui/accounts/globex/users/bob/keys/new"; "ok"`)
	if r := s.submit("cross-account post", s.fill(map[string]string{"name": "sneaky"}), chromedp.Click(chromedp.CSS(`main form button[type=submit]`))); r.Status != 404 {
		t.Errorf("account admin posting to globex: %d, want 404", r.Status)
	}
	after := adm.want(200, "GET", "/v1/accounts/globex/users/bob/api-keys?status=all", root, nil)
	if string(before) != string(after) {
		t.Errorf("globex's keys changed: %s → %s", before, after)
	}

	// CSRF: a page on another origin posts a form to the UI with the
	// browser's session: refused, nothing created.
	evil := uiEvilSite(t, s.base+"/ui/keys/new")
	s.nav("/ui/keys")                                    // a live session
	s.do("open the other site", chromedp.Navigate(evil)) // it posts its form to the UI on load
	deadline := time.Now().Add(10 * time.Second)
	for s.eval(`location.href`) != s.base+"/ui/keys/new" {
		if time.Now().After(deadline) {
			t.Fatalf("the cross-site form did not post; at %s", s.eval(`location.href`))
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.settle()
	s.wantText("cross-site post", "sent from another site and was refused")
	keys := adm.want(200, "GET", "/v1/accounts/acme/users/aadmin/api-keys?status=all", root, nil)
	if strings.Contains(string(keys), "evil") {
		t.Fatalf("a cross-site post created a key: %s", keys)
	}
	s.nav("/ui/keys")
	s.logout()
	newKey := uiKeyPagesFlow(t, s, g, adm, root, proxy, "alice-N3w-Pa55word")
	uiUpstreamFlow(t, s, g, proxy, aadminPW, "alice-N3w-Pa55word", newKey)
	t.Logf("browser flows took %v", time.Since(start).Round(time.Millisecond))
}

// uiProxyStatus is the proxy's status for GET /orders with authz.
func uiProxyStatus(t *testing.T, c *http.Client, g *gateway, authz string) int {
	t.Helper()
	st, _, _ := uiProxyGet(t, c, g.url("/orders"), authz)
	return st
}

// uiProxyGet sends GET url through the proxy with authz as Authorization
// and returns the answer's status, headers and body.
func uiProxyGet(t *testing.T, c *http.Client, url, authz string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", authz)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	return res.StatusCode, res.Header, readAll(t, res)
}

func readAll(t *testing.T, res *http.Response) []byte {
	t.Helper()
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// uiEvilSite serves, on another origin (localhost on its own port), a page
// whose form posts to target on load.
func uiEvilSite(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	page := `<!doctype html><html><body><form id="f" method="post" action="` + target + `">
<input name="name" value="evil"><input name="csrf" value="guess"></form>
<script>document.getElementById("f").submit()</script></body></html>`
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(page))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}
