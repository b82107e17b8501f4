package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// TestUsernameConfusables (issue 12 item 7): the admin API stores canonical
// names and refuses confusables, answers one 409 for every taken name, and
// a login by any spelling of a name reaches the upstream as the canonical
// name, through Basic and the password grant alike; all spellings share the
// user's failure budget.
func TestUsernameConfusables(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, 0)
	routes := fmt.Sprintf("  - name: api\n    path_prefix: /\n    upstreams: [\"http://%s\"]\n    auth: required\n", up.addr)
	g := startGateway(t, serveOpts{routes: routes, extra: "auth:\n  failures:\n    per_ip_per_minute: 1000\n    per_user_per_minute: 5"})
	a := newAdmClient(t, g)
	admSkipUnlessAPI(t, a)
	root := admBasic("admin", admBootstrapPassword)
	const pw = "Alice-Pa55word-long"

	a.want(201, "POST", "/v1/accounts", root, map[string]any{"name": "acme"})
	var acc struct{ Name string }
	_ = json.Unmarshal(a.want(201, "POST", "/v1/accounts", root, map[string]any{"name": "Globex"}), &acc)
	if acc.Name != "globex" {
		t.Errorf("account Globex created as %q, want globex", acc.Name)
	}
	var u struct{ Username string }
	_ = json.Unmarshal(a.want(201, "POST", "/v1/accounts/acme/users", root,
		map[string]any{"username": "Alice.Smith", "password": pw, "roles": []string{"read"}}), &u)
	if u.Username != "alice.smith" {
		t.Fatalf("created %q, want the canonical alice.smith", u.Username)
	}
	a.want(201, "POST", "/v1/accounts/globex/users", root,
		map[string]any{"username": "gadmin", "password": "Gadmin-Pa55word-long", "type": "account_admin"})
	gadmin := admBasic("gadmin", "Gadmin-Pa55word-long")

	// Confusables and separators: refused, whoever asks.
	for _, name := range []string{"\u0430dmin", "ad\u200bmin", "alice,admin", "alice;admin", "alice admin",
		"alice\u00a0admin", "admin\u202e", "\U0001d41admin", "alice\u3164", "ali\u0441e"} {
		status, _, body := a.do("POST", "/v1/accounts/globex/users", gadmin, map[string]any{"username": name, "password": pw})
		if status != 422 || errorCode(body) != "invalid" {
			t.Errorf("create %+q: %d %s, want 422 invalid", name, status, body)
		}
	}
	// Taken: one answer for every taken name, wherever it lives.
	var first []byte
	for _, name := range []string{"gadmin", "admin", "alice.smith", "ALICE.SMITH", "ａｄｍｉｎ", "Admin"} {
		status, _, body := a.do("POST", "/v1/accounts/globex/users", gadmin, map[string]any{"username": name, "password": pw})
		if status != 409 {
			t.Errorf("create taken %q: %d %s, want 409", name, status, body)
			continue
		}
		if first == nil {
			first = body
		} else if string(body) != string(first) {
			t.Errorf("409 for %q differs from the one for a name of the caller's own account: %s vs %s", name, body, first)
		}
	}

	c := newAuClient(10 * time.Second)
	defer c.close()
	for _, spelling := range []string{"alice.smith", "ALICE.SMITH", "Alice.Smith", "ａｌｉｃｅ．ｓｍｉｔｈ"} {
		r := getRetry(t, c, g.url("/x"), auBasic(spelling, pw))
		if r.status != 200 {
			t.Fatalf("login as %q: %d %s", spelling, r.status, r.body)
		}
		id := auIdentity(t, r.body)
		if got := id["x-auth-user"]; len(got) != 1 || got[0] != "alice.smith" {
			t.Errorf("login as %q: X-Auth-User upstream %v, want [alice.smith]", spelling, got)
		}
		if got := id["x-auth-account"]; len(got) != 1 || got[0] != "acme" {
			t.Errorf("login as %q: X-Auth-Account upstream %v", spelling, got)
		}
	}
	if r := getRetry(t, c, g.url("/x"), auBasic("\u0430lice.smith", pw)); r.status != 401 {
		t.Errorf("look-alike login: %d, want 401", r.status)
	}

	// The password grant finds the user by any spelling too.
	resp, err := http.PostForm(g.url("/oauth/token"), url.Values{"grant_type": {"password"},
		"username": {"ALICE.SMITH"}, "password": {pw}, "client_id": {"anonymous"}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || tok.AccessToken == "" {
		t.Fatalf("password grant as ALICE.SMITH: %d", resp.StatusCode)
	}
	r := getRetry(t, c, g.url("/x"), "Bearer "+tok.AccessToken)
	if got := auIdentity(t, r.body)["x-auth-user"]; len(got) != 1 || got[0] != "alice.smith" {
		t.Errorf("bearer: X-Auth-User upstream %v, want [alice.smith]", got)
	}

	// Spellings share one failure budget (per_user_per_minute: 5): wrong
	// passwords under ten spellings are not ten budgets.
	spellings := []string{"alice.smith", "Alice.smith", "aLice.smith", "alIce.smith", "aliCe.smith", "alicE.smith",
		"ALice.smith", "ALIce.smith", "ALICe.smith", "ALICE.smith"}
	refused, limited := 0, 0
	for _, s := range spellings {
		switch st := getRetry(t, c, g.url("/x"), auBasic(s, "wrong-"+s)).status; st {
		case 401:
			refused++
		case 429:
			limited++
		default:
			t.Errorf("wrong password as %q: %d", s, st)
		}
	}
	if refused > 5 || limited == 0 {
		t.Errorf("%d wrong passwords checked and %d limited across spellings of one user; want at most 5 checked", refused, limited)
	}
}

// getRetry is a GET that retries a 503 (no hashing slot free while the
// parallel e2e tests load the machine; a 503 checks no password) for up
// to 20 s.
func getRetry(t *testing.T, c *auClient, url, authz string) auResp {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := c.get(t, url, authz)
		if r.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return r
		}
		time.Sleep(200 * time.Millisecond)
	}
}
