package e2e

// Upstream credentials (issue 17, DESIGN.md §12) against the built binary:
// two instances on one Redis (a change on A is used by B at once), the
// caller's account's credential else admin's, isolation between accounts,
// the secret absent from the Redis dump, the bolt file and the logs, and
// a route naming a credential without a key refused at start.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testoauth"
	"github.com/keygate/keygate/internal/testredis"
)

const (
	ucKeyEnv     = "KEYGATE_UPSTREAM_CREDENTIALS_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	ucAdminPW    = "correct-horse-battery-staple" // startGateway's KEYGATE_ADMIN_PASSWORD
	ucUserPW     = "Upcred-User-Pa55word"         //nolint:gosec // test data
	ucRouteYAML  = "  - name: svc\n    path_prefix: /svc\n    upstreams: [\"http://%s\"]\n    auth: required\n    upstream_credential: svc\n"
	ucSecretAcme = "Acme-Upstream-Secret-Alpha1"     //nolint:gosec // test data
	ucSecretNew  = "Acme-Upstream-Secret-Bravo2"     //nolint:gosec // test data
	ucSecretGlob = "Global-Upstream-Secret-Charlie3" //nolint:gosec // test data
)

// ucAPI calls the admin API of g as user:pw and returns status and body.
func ucAPI(t *testing.T, g *gateway, user, pw, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+g.admin+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, pw)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func ucMust(t *testing.T, want int, status int, body []byte) {
	t.Helper()
	if status != want {
		t.Fatalf("status %d, want %d: %s", status, want, body)
	}
}

// ucUpstreamAuth requests /svc/x on g as user and returns the status and
// the Authorization the echo upstream received.
func ucUpstreamAuth(t *testing.T, c *http.Client, g *gateway, user string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", g.url("/svc/x"), nil)
	req.SetBasicAuth(user, ucUserPW)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.StatusCode, errorCode(b)
	}
	h := decodeEcho(t, b).Headers["Authorization"]
	return 200, strings.Join(h, ",")
}

func TestUpstreamCredentialsTwoInstancesOnRedis(t *testing.T) {
	t.Parallel()
	r := testredis.Start(t)
	up := startEchoProc(t)
	routes := fmt.Sprintf(ucRouteYAML, up)
	env := []string{ucKeyEnv, "KEYGATE_LOG_ACCESS=true"}
	a := startGateway(t, serveOpts{routes: routes, store: auRedisYAML(r.Addr()), env: env})
	b := startGateway(t, serveOpts{routes: routes, store: auRedisYAML(r.Addr()), env: env})

	for _, acct := range []string{"acme", "beta"} {
		st, body := ucAPI(t, a, "admin", ucAdminPW, "POST", "/v1/accounts", map[string]any{"name": acct})
		ucMust(t, 201, st, body)
	}
	for _, u := range [][2]string{{"alice", "acme"}, {"bob", "beta"}} {
		st, body := ucAPI(t, a, "admin", ucAdminPW, "POST", "/v1/accounts/"+u[1]+"/users",
			map[string]any{"username": u[0], "password": ucUserPW, "roles": []string{"read"}})
		ucMust(t, 201, st, body)
	}
	create := func(acct, secret string) {
		st, body := ucAPI(t, a, "admin", ucAdminPW, "POST", "/v1/accounts/"+acct+"/upstream-credentials?validate=false",
			map[string]any{"name": "svc", "type": "bearer", "secret": secret})
		ucMust(t, 201, st, body)
		if bytes.Contains(body, []byte(secret)) {
			t.Fatal("the API returned the secret")
		}
	}
	create("acme", ucSecretAcme)
	create("admin", ucSecretGlob)

	c := &http.Client{Timeout: 10 * time.Second}
	eventuallyAuth := func(g *gateway, user, want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			st, got := ucUpstreamAuth(t, c, g, user)
			if st == 200 && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s on %s: %d %q, want %q", user, g.public, st, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The first requests (users just created: allow the caches to settle).
	eventuallyAuth(b, "alice", "Bearer "+ucSecretAcme)
	eventuallyAuth(b, "bob", "Bearer "+ucSecretGlob) // beta has none: admin's, never acme's
	eventuallyAuth(a, "alice", "Bearer "+ucSecretAcme)

	// within: B uses what A wrote as soon as the invalidation arrives
	// (published before A answers; delivered over pub/sub concurrently
	// with the next request, so allow its delivery, bounded), and never
	// the old value again.
	within := func(what, user, want string) {
		t.Helper()
		start := time.Now()
		old := 0
		for {
			st, got := ucUpstreamAuth(t, c, b, user)
			if st == 200 && got == want {
				break
			}
			old++
			if time.Since(start) > 250*time.Millisecond {
				t.Fatalf("%s: still %d %q after %v", what, st, got, time.Since(start))
			}
		}
		t.Logf("%s: new value after %v (%d requests before it)", what, time.Since(start), old)
		for range 5 {
			if st, got := ucUpstreamAuth(t, c, b, user); st != 200 || got != want {
				t.Fatalf("%s: went back to %d %q", what, st, got)
			}
		}
	}
	// An update on A reaches B.
	st, body := ucAPI(t, a, "admin", ucAdminPW, "PATCH", "/v1/accounts/acme/upstream-credentials/svc?validate=false",
		map[string]any{"secret": ucSecretNew})
	ucMust(t, 200, st, body)
	within("B after the update on A", "alice", "Bearer "+ucSecretNew)
	if st, got := ucUpstreamAuth(t, c, b, "bob"); got != "Bearer "+ucSecretGlob {
		t.Fatalf("bob after acme's update: %d %q", st, got)
	}
	// A deletion on A: B falls back to admin's, then refuses.
	st, body = ucAPI(t, a, "admin", ucAdminPW, "DELETE", "/v1/accounts/acme/upstream-credentials/svc", nil)
	ucMust(t, 204, st, body)
	within("B after the delete on A", "alice", "Bearer "+ucSecretGlob)
	st, body = ucAPI(t, a, "admin", ucAdminPW, "DELETE", "/v1/accounts/admin/upstream-credentials/svc", nil)
	ucMust(t, 204, st, body)
	eventuallyAuth2 := func() bool {
		st, code := ucUpstreamAuth(t, c, b, "alice")
		return st == 403 && code == "upstream_credential_missing"
	}
	deadline := time.Now().Add(250 * time.Millisecond)
	for !eventuallyAuth2() {
		if time.Now().After(deadline) {
			t.Fatal("B still forwards with a deleted credential")
		}
	}
	create("beta", ucSecretAcme+"-beta")

	// The Redis dump holds no secret in clear.
	rc := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer func() { _ = rc.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var dir, file string
	if v, err := rc.ConfigGet(ctx, "dir").Result(); err == nil {
		dir = v["dir"]
	}
	if v, err := rc.ConfigGet(ctx, "dbfilename").Result(); err == nil {
		file = v["dbfilename"]
	}
	if err := rc.Save(ctx).Err(); err != nil {
		t.Fatalf("SAVE: %v", err)
	}
	dump, err := os.ReadFile(filepath.Join(dir, file)) //nolint:gosec // the test Redis's own dump file
	if err != nil {
		t.Fatalf("reading the dump: %v", err)
	}
	if !bytes.Contains(dump, []byte("uc:beta")) {
		t.Fatal("sanity: the dump lacks the credential key")
	}
	// And every stored value, read raw.
	keys, _ := rc.Keys(ctx, "*").Result()
	var raw bytes.Buffer
	for _, k := range keys {
		if v, err := rc.Dump(ctx, k).Result(); err == nil {
			raw.WriteString(v)
		}
	}
	for _, s := range []string{ucSecretAcme, ucSecretNew, ucSecretGlob} {
		if bytes.Contains(dump, []byte(s)) || bytes.Contains(raw.Bytes(), []byte(s)) {
			t.Errorf("the Redis dump has %s in clear", s)
		}
	}
	// Nor do the logs (audit and access lines of both instances).
	logs := a.stdout.String() + a.stderr.String() + b.stdout.String() + b.stderr.String()
	if !strings.Contains(logs, "createUpstreamCredential") || !strings.Contains(logs, `"access"`) {
		t.Fatalf("sanity: no audit or access lines in the logs:\n%.2000s", logs)
	}
	for _, s := range []string{ucSecretAcme, ucSecretNew, ucSecretGlob} {
		if strings.Contains(logs, s) {
			t.Errorf("a log has %s", s)
		}
	}
}

func TestUpstreamCredentialsBoltTokenAndKeyCheck(t *testing.T) {
	t.Parallel()
	up := startEchoProc(t)
	srv := testoauth.New(t)
	const clientSecret = "E2E-Client-Secret-5150" //nolint:gosec // test data
	srv.AddClient("e2e-client", clientSecret)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "kg.db")
	g := startGateway(t, serveOpts{routes: fmt.Sprintf(ucRouteYAML, up), env: []string{ucKeyEnv},
		store: fmt.Sprintf("  driver: bolt\n  bolt:\n    path: %q", dbPath)})
	st, body := ucAPI(t, g, "admin", ucAdminPW, "POST", "/v1/accounts/admin/users",
		map[string]any{"username": "alice", "password": ucUserPW, "roles": []string{"read"}})
	ucMust(t, 201, st, body)
	// A wrong client secret: 422 credential_invalid, nothing stored.
	st, body = ucAPI(t, g, "admin", ucAdminPW, "POST", "/v1/accounts/admin/upstream-credentials",
		map[string]any{"name": "svc", "type": "oauth2_client_credentials", "secret": "Wrong-" + clientSecret,
			"fields": map[string]string{"token_url": srv.TokenURL, "client_id": "e2e-client"}})
	if st != 422 || errorCode(body) != "credential_invalid" || bytes.Contains(body, []byte(clientSecret)) {
		t.Fatalf("wrong secret: %d %s", st, body)
	}
	st, body = ucAPI(t, g, "admin", ucAdminPW, "POST", "/v1/accounts/admin/upstream-credentials",
		map[string]any{"name": "svc", "type": "oauth2_client_credentials", "secret": clientSecret,
			"fields": map[string]string{"token_url": srv.TokenURL, "client_id": "e2e-client", "scopes": "read"}})
	ucMust(t, 201, st, body)
	c := &http.Client{Timeout: 10 * time.Second}
	st, got := ucUpstreamAuth(t, c, g, "alice")
	if st != 200 || !strings.HasPrefix(got, "Bearer ") || !srv.Valid(got[7:]) {
		t.Fatalf("upstream got %d %q, want a token of the server", st, got)
	}
	// A client Authorization is never forwarded on the route.
	if strings.Contains(got, ucUserPW) {
		t.Fatal("the client's credential reached the upstream")
	}
	// Metrics: fetches (the validation's and the request's) and the
	// refused one, per type; never a secret. (The refresh lag is observed
	// on refreshes: upstreamcred's TestRefreshBeforeExpiry.)
	mresp, err := c.Get("http://" + g.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	_ = mresp.Body.Close()
	for _, w := range []string{
		`keygate_upstream_credential_token_fetches_total{type="oauth2_client_credentials"} 3`,
		`keygate_upstream_credential_token_fetch_failures_total{type="oauth2_client_credentials"} 1`,
	} {
		if !bytes.Contains(metrics, []byte(w)) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	if bytes.Contains(metrics, []byte(clientSecret)) {
		t.Error("/metrics has the secret")
	}
	// The bolt file holds no secret in clear once the gateway is stopped.
	_ = g.cmd.Process.Signal(os.Interrupt)
	g.wait(15 * time.Second)
	db, err := os.ReadFile(dbPath) //nolint:gosec // the test gateway's own bolt file
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(db, []byte("e2e-client")) {
		t.Fatal("sanity: the bolt file lacks the credential")
	}
	if bytes.Contains(db, []byte(clientSecret)) {
		t.Error("the bolt file has the client secret in clear")
	}
	if logs := g.stdout.String() + g.stderr.String(); strings.Contains(logs, clientSecret) {
		t.Error("a log has the client secret")
	}

	// A route naming a credential without a key: the config is refused.
	cfg := filepath.Join(dir, "nokey.yaml")
	yaml := fmt.Sprintf("listen: %q\nadmin: {listen: %q}\nstore: {driver: bolt, bolt: {path: %q}}\nroutes:\n%s",
		freeAddr(t), freeAddr(t), filepath.Join(dir, "other.db"), fmt.Sprintf(ucRouteYAML, up))
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, []string{"KEYGATE_ADMIN_PASSWORD=" + ucAdminPW, "KEYGATE_TOKENS_SIGNING_SECRET=" + testSigningSecret},
		"serve", "--config", cfg)
	if code == 0 || !strings.Contains(stderr, "upstream_credential") || !strings.Contains(stderr, "no upstream_credentials key") {
		t.Errorf("serve without a key: exit %d\n%s", code, stderr)
	}
}
