package admin

import (
	"testing"

	"github.com/keygate/keygate/admin/adminapi"
)

// TestCreateUserCanonicalName: a new username is stored in its canonical
// form and logs in by any spelling; a taken name gets one 409 whoever holds
// it, so an account admin learns nothing about other accounts (issue 12
// item 7).
func TestCreateUserCanonicalName(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	const pw = "Carl-Pa55word-long"

	var u adminapi.User
	e.do("POST", "/v1/accounts/acme/users", asAAdmin, map[string]any{"username": "Ｃａｒｌ.Smith", "password": pw}).
		want(t, 201).decode(t, &u)
	if u.Username != "carl.smith" {
		t.Fatalf("created username %q, want the canonical carl.smith", u.Username)
	}
	for _, spelling := range []string{"carl.smith", "CARL.SMITH", "Carl.Smith", "ｃａｒｌ．ｓｍｉｔｈ"} {
		var self adminapi.Self
		e.do("GET", "/v1/user", basicAuth(spelling, pw), nil).want(t, 200).decode(t, &self)
		if self.Username != "carl.smith" {
			t.Errorf("login as %q: username %q, want carl.smith", spelling, self.Username)
		}
	}
	e.do("GET", "/v1/user", basicAuth("c\u0430rl.smith", pw), nil).want(t, 401) // Cyrillic а: another name

	// Taken in the caller's own account, in another account, by the global
	// admin, by another spelling: the same answer, byte for byte.
	var first []byte
	for _, name := range []string{"alice", "bob", "badmin", "admin", "ADMIN", "ａｄｍｉｎ", "Bob"} {
		r := e.do("POST", "/v1/accounts/acme/users", asAAdmin, map[string]any{"username": name, "password": pw}).want(t, 409)
		if first == nil {
			first = r.body
		} else if string(r.body) != string(first) {
			t.Errorf("409 for %q = %s, for alice %s: they must not differ", name, r.body, first)
		}
	}
	if want := `{"error":{"code":"conflict","message":"this username is not available: choose another"}}`; string(first) != want {
		t.Errorf("409 body %s, want %s", first, want)
	}
}

func TestCreateAccountCanonicalName(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	var a struct {
		Name string `json:"name"`
	}
	e.do("POST", "/v1/accounts", asRoot, map[string]any{"name": "Initech"}).want(t, 201).decode(t, &a)
	if a.Name != "initech" {
		t.Fatalf("created account %q, want initech", a.Name)
	}
	e.do("GET", "/v1/accounts/initech", asRoot, nil).want(t, 200)
	e.do("POST", "/v1/accounts", asRoot, map[string]any{"name": "ＩＮＩＴＥＣＨ"}).want(t, 409)
}
