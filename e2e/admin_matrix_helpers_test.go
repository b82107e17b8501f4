package e2e

// Helpers of admin_matrix_test.go: a fixture of accounts, users and keys
// built through the admin API of a running gateway, read-backs as the
// bootstrap global admin, and a CLI runner that feeds stdin.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// mxExtra turns the failure limiters off (refused credentials are
// polled) and sets a key lifetime cap the expiry rules can test.
const mxExtra = "auth:\n  failures:\n    per_ip_per_minute: 0\n    per_user_per_minute: 0\n" +
	"api_keys:\n  max_lifetime: 720h\n"

// mxMaxLifetime is api_keys.max_lifetime of mxExtra.
const mxMaxLifetime = 720 * time.Hour

// mxRoutes: everything under / needs an authenticated caller.
func mxRoutes(upstream string) string {
	return fmt.Sprintf("  - name: api\n    path_prefix: /\n    upstreams: [\"http://%s\"]\n    auth: required\n", upstream)
}

// mxRedisStore is the store block of a gateway on the Redis at addr.
func mxRedisStore(addr string) string {
	return fmt.Sprintf("  driver: redis\n  redis:\n    addrs: [%q]\n    key_prefix: \"kg:\"", addr)
}

// mxKey is an API key of the fixture.
type mxKey struct {
	id, value, encoded string
}

// mxUser is a user of the fixture.
type mxUser struct {
	account, typ string
	roles        []string
}

// mxFix is the world a matrix runs in: gateway A (written to), the
// gateway read-backs go through (A with bolt, B with Redis: the same store
// seen from another instance), and the fixture's users and keys.
type mxFix struct {
	g, rbG *gateway
	hc     *http.Client
	// root is the bootstrap global admin's credential: it builds the
	// fixture and reads back; it is never a caller of the table.
	root  string
	pw    map[string]string // current password by username
	users map[string]mxUser
	keys  map[string]mxKey  // the "seed" key by owner
	pool  map[string]string // see mxCell.poolUser
	seq   int
}

// client returns an admin client of g bound to t.
func (f *mxFix) client(t *testing.T, g *gateway) *admClient {
	return &admClient{t: t, base: "http://" + g.admin, c: f.hc}
}

// next returns a fresh number for unique names.
func (f *mxFix) next() int { f.seq++; return f.seq }

// mxFixturePasswords are the initial passwords of the fixture's users.
var mxFixturePasswords = map[string]string{
	"root":   "Root-Pa55word-matrix",
	"aadmin": "AAdmin-Pa55word-matrix",
	"badmin": "BAdmin-Pa55word-matrix",
	"alice":  "Alice-Pa55word-matrix",
	"bob":    "Bob-Pa55word-matrix",
	"pat":    "Pat-Pa55word-matrix",
	"olga":   "Olga-Pa55word-matrix",
}

// newMxFix builds accounts acme (A) and globex (B); users root (a second
// global admin, the table's global-admin caller), aadmin (account admin of
// A, roles read and write), badmin (account admin of B, read), alice (user
// of A, read), bob (user of B, read), pat (user of B, for pagination),
// olga (user of A with role ops, which aadmin lacks);
// a "seed" key of root, aadmin, badmin, alice and bob; and warms every caller's
// password on g (argon2 is then paid once per credential).
func newMxFix(t *testing.T, g, rbG *gateway) *mxFix {
	t.Helper()
	f := &mxFix{
		g: g, rbG: rbG,
		hc:    &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}},
		root:  admBasic("admin", admBootstrapPassword),
		pw:    map[string]string{},
		users: map[string]mxUser{},
		keys:  map[string]mxKey{},
		pool:  map[string]string{},
	}
	f.users["admin"] = mxUser{account: "admin", typ: "admin"}
	t.Cleanup(f.hc.CloseIdleConnections)
	a := f.client(t, g)
	admSkipUnlessAPI(t, a)
	a.want(200, "GET", "/v1/user", f.root, nil)
	if rbG != g {
		f.client(t, rbG).want(200, "GET", "/v1/user", f.root, nil)
	}
	for _, acc := range []string{"acme", "globex"} {
		a.want(201, "POST", "/v1/accounts", f.root, map[string]any{"name": acc})
	}
	for _, u := range []struct {
		name, account, typ string
		roles              []string
	}{
		{"root", "admin", "admin", []string{}},
		{"aadmin", "acme", "account_admin", []string{"read", "write"}},
		{"badmin", "globex", "account_admin", []string{"read"}},
		{"alice", "acme", "user", []string{"read"}},
		{"bob", "globex", "user", []string{"read"}},
		{"pat", "globex", "user", []string{"read"}},
		{"olga", "acme", "user", []string{"ops"}},
	} {
		a.want(201, "POST", "/v1/accounts/"+u.account+"/users", f.root, map[string]any{
			"username": u.name, "password": mxFixturePasswords[u.name], "type": u.typ, "roles": u.roles})
		f.pw[u.name] = mxFixturePasswords[u.name]
		f.users[u.name] = mxUser{account: u.account, typ: u.typ, roles: u.roles}
	}
	for _, owner := range []string{"root", "aadmin", "badmin", "alice", "bob"} {
		f.keys[owner] = f.createKey(t, owner, "seed", nil)
	}
	for _, u := range []string{"root", "aadmin", "badmin", "alice"} {
		a.want(200, "GET", "/v1/user", admBasic(u, f.pw[u]), nil)
	}
	return f
}

// createKey creates a key for owner as the bootstrap admin on gateway A.
func (f *mxFix) createKey(t *testing.T, owner, name string, extra map[string]any) mxKey {
	t.Helper()
	body := map[string]any{"name": name}
	for k, v := range extra {
		body[k] = v
	}
	var k struct {
		ID      string `json:"id"`
		APIKey  string `json:"api_key"`
		Encoded string `json:"encoded"`
	}
	b := f.client(t, f.g).want(201, "POST", f.userPath(owner)+"/api-keys", f.root, body)
	if err := json.Unmarshal(b, &k); err != nil || k.ID == "" || k.APIKey == "" {
		t.Fatalf("create key %s/%s: %v %s", owner, name, err, b)
	}
	return mxKey{id: k.ID, value: k.APIKey, encoded: k.Encoded}
}

// createUser creates a user (as the bootstrap admin on A) and records it.
func (f *mxFix) createUser(t *testing.T, name, account, typ string, roles []string) {
	t.Helper()
	pw := "Tmp-Pa55word-" + name
	f.client(t, f.g).want(201, "POST", "/v1/accounts/"+account+"/users", f.root, map[string]any{
		"username": name, "password": pw, "type": typ, "roles": roles})
	f.pw[name] = pw
	f.users[name] = mxUser{account: account, typ: typ, roles: roles}
}

// userPath is /v1/accounts/{account}/users/{name} of a known user.
func (f *mxFix) userPath(name string) string {
	u, ok := f.users[name]
	if !ok {
		panic("mx: unknown user " + name)
	}
	return "/v1/accounts/" + u.account + "/users/" + name
}

// Read-backs, as the bootstrap admin through the read-back gateway.

// rbGet GETs path and decodes a 200 into v; it returns the status.
func (f *mxFix) rbGet(t *testing.T, path string, v any) int {
	t.Helper()
	status, _, b := f.client(t, f.rbG).do("GET", path, f.root, nil)
	switch status {
	case 200:
		if v != nil {
			if err := json.Unmarshal(b, v); err != nil {
				t.Fatalf("read-back %s: %v: %s", path, err, b)
			}
		}
	case 404:
	default:
		t.Fatalf("read-back GET %s: status %d %s", path, status, b)
	}
	return status
}

func (f *mxFix) exists(t *testing.T, path string) bool { return f.rbGet(t, path, nil) == 200 }

// accountState is the state of an account, or "gone".
func (f *mxFix) accountState(t *testing.T, name string) string {
	t.Helper()
	var a struct {
		State string `json:"state"`
	}
	if f.rbGet(t, "/v1/accounts/"+name, &a) == 404 {
		return "gone"
	}
	return a.State
}

// mxUserJSON is a user as the API shows it.
type mxUserJSON struct {
	Username string   `json:"username"`
	Account  string   `json:"account"`
	Type     string   `json:"type"`
	Roles    []string `json:"roles"`
	State    string   `json:"state"`
}

// user reads a user back under its account; nil when gone.
func (f *mxFix) user(t *testing.T, account, name string) *mxUserJSON {
	t.Helper()
	var u mxUserJSON
	if f.rbGet(t, "/v1/accounts/"+account+"/users/"+name, &u) == 404 {
		return nil
	}
	return &u
}

// mxKeyJSON is a key as listings show it.
type mxKeyJSON struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Account   string     `json:"account"`
	Username  string     `json:"username"`
	Roles     []string   `json:"roles"`
	Status    string     `json:"status"`
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

type mxKeyPage struct {
	APIKeys    []mxKeyJSON `json:"api_keys"`
	NextCursor string      `json:"next_cursor"`
}

// keyStatus is the status of key id of owner: active, expired, revoked or
// "gone".
func (f *mxFix) keyStatus(t *testing.T, owner, id string) string {
	t.Helper()
	var k mxKeyJSON
	if f.rbGet(t, f.userPath(owner)+"/api-keys/"+id, &k) == 404 {
		return "gone"
	}
	return k.Status
}

// keysNamed lists the keys (any status) of username named name.
func (f *mxFix) keysNamed(t *testing.T, username, name string) []mxKeyJSON {
	t.Helper()
	var p mxKeyPage
	f.rbGet(t, "/v1/api-keys?status=all&username="+username+"&name="+name, &p)
	return p.APIKeys
}

// authOK reports whether Basic user:pw authenticates on gateway A
// (GET /v1/user: 200 yes, 401 no).
func (f *mxFix) authOK(t *testing.T, user, pw string) bool {
	t.Helper()
	status, _, b := f.client(t, f.g).do("GET", "/v1/user", admBasic(user, pw), nil)
	switch status {
	case 200:
		return true
	case 401:
		return false
	}
	t.Fatalf("GET /v1/user as %s: %d %s", user, status, b)
	return false
}

// mxAuditLines counts the audit lines in s of writes by anyone but the
// bootstrap admin (who builds the fixture and the cells' targets, and whose
// lines may reach the buffer late).
func mxAuditLines(s string) int {
	n := 0
	for line := range strings.Lines(s) {
		if strings.Contains(line, `"msg":"admin audit"`) && !strings.Contains(line, `"actor":"admin",`) {
			n++
		}
	}
	return n
}

// mxLogs is what the gateway has logged.
func mxLogs(g *gateway) string { return g.stderr.String() + g.stdout.String() }

// mxProxy sends GET path to g's public listener with auth and returns the
// status (0 on a transport error).
func mxProxy(hc *http.Client, g *gateway, path, auth string) int {
	req, err := http.NewRequest("GET", g.url(path), nil)
	if err != nil {
		return 0
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res.StatusCode
}

// mxUntil polls the proxy of g with auth until it answers want, for at most
// d; it returns how long that took and whether it happened.
func mxUntil(hc *http.Client, g *gateway, auth string, want int, d time.Duration) (time.Duration, int, bool) {
	began := time.Now()
	last := 0
	for {
		last = mxProxy(hc, g, "/mx/probe", auth)
		if last == want {
			return time.Since(began), last, true
		}
		if time.Since(began) > d {
			return time.Since(began), last, false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// mxSend is a goroutine-safe admin request (no t.Fatal): a 503 is retried
// for up to 20 s.
func mxSend(hc *http.Client, base, method, path, auth string, body any) (int, []byte, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		var rd io.Reader
		if body != nil {
			b, err := json.Marshal(body)
			if err != nil {
				return 0, nil, err
			}
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, base+path, rd)
		if err != nil {
			return 0, nil, err
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		b, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if res.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return res.StatusCode, b, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mxRun runs the binary with env and stdin (bounded) and returns exit code,
// stdout and stderr.
func mxRun(t *testing.T, env []string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...) //nolint:gosec // runs the binary or tool the test built or needs; no outside input
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("keygate %v did not finish in time\n%s%s", args, stdout.String(), stderr.String())
	}
	code := 0
	if err != nil {
		var ee *exec.ExitError
		ok := errors.As(err, &ee)
		if !ok {
			t.Fatalf("keygate %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return code, stdout.String(), stderr.String()
}

// mxRunRetry is mxRun, repeated while the server answers 503 (exit 1
// naming 503: hashing capacity under load), at most 10 times.
func mxRunRetry(t *testing.T, env []string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	for i := 0; ; i++ {
		code, stdout, stderr := mxRun(t, env, stdin, args...)
		if code != 1 || !strings.Contains(stderr, "HTTP 503") || i == 9 {
			return code, stdout, stderr
		}
		time.Sleep(300 * time.Millisecond)
	}
}
