package e2e

// Forward-auth mode (DESIGN.md §11, issue 15) against the real front
// proxies: nginx auth_request and Caddy forward_auth in front of keygate's
// forward-auth listener and the echo upstream, every process started here.
// Envoy is not packaged: the gRPC server is tested in package forwardauth
// with a real gRPC client, the HTTP ext_authz shape there and below.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// faTool returns the path of a front proxy binary, or skips the test
// (fails under CI=true, where .ci/run installs it).
func faTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (CI installs it: .ci/run)", name)
		}
		t.Skipf("%s is not installed: skipping the %s forward-auth test (apt-get install %s)", name, name, map[string]string{"nginx": "nginx-light", "caddy": "caddy"}[name])
	}
	return p
}

// faFixture is a keygate with forward_auth.listen and its data.
type faFixture struct {
	g      *gateway
	fwd    string // forward-auth listener host:port
	echo   string
	keyID  string // bob's key
	keyVal string
}

func newFAFixture(t *testing.T) *faFixture {
	t.Helper()
	f := &faFixture{echo: startEchoProc(t), fwd: freeAddr(t)}
	storeYAML := auBoltFixture(t, t.TempDir(), func(s auStore) {
		s.account("acme")
		s.user("alice", "acme", "", "ops")
		s.user("bob", "acme", "")
		f.keyID, f.keyVal = s.key("bob", "ci")
	})
	f.g = startGateway(t, serveOpts{
		routes: "  - name: public\n    path_prefix: /public\n    upstreams: [\"http://" + f.echo + "\"]\n    auth: none\n" + auOpsRoutes(f.echo),
		store:  storeYAML,
		extra:  fmt.Sprintf("forward_auth:\n  listen: %q\n  path_prefix: /check\n", f.fwd),
	})
	return f
}

// faProcess runs a front proxy until the test ends.
func faProcess(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...) //nolint:gosec // runs the binary or tool the test built or needs; no outside input
	cmd.Env = append(os.Environ(), env...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group: cleanup ends it and any child it forked.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), out.String())
		}
	})
}

// faWaitUp polls url until anything answers (the front proxy is up).
func faWaitUp(t *testing.T, url string) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if r, err := c.Get(url); err == nil {
			_ = r.Body.Close()
			return
		}
	}
	t.Fatalf("%s did not come up", url)
}

func startNginx(t *testing.T, f *faFixture) string {
	t.Helper()
	bin := faTool(t, "nginx")
	dir := t.TempDir()
	addr := freeAddr(t)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	// The README's snippet (section "Forward-auth mode") itself, with test
	// ports, inside a minimal nginx.conf.
	snippet := readmeSnippet(t, "**nginx** (`auth_request`", "nginx", map[string]string{
		"127.0.0.1:8082": f.fwd, "listen 80;": "listen " + addr + ";", "127.0.0.1:9000": f.echo,
	})
	conf := fmt.Sprintf(`%s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[2]s/body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
%[3]s
}
`, user, dir, snippet)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	faProcess(t, nil, bin, "-p", dir, "-c", path, "-g", "daemon off; master_process off;")
	faWaitUp(t, "http://"+addr+"/public/up")
	return "http://" + addr
}

// readmeSnippet returns the first ```lang block after the line starting
// with marker in the README, with each key of repl replaced by its value;
// every key must occur, so a README edit that drops one fails the test
// instead of testing something else.
func readmeSnippet(t *testing.T, marker, lang string, repl map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "\n"+marker)
	if i < 0 {
		t.Fatalf("README.md: no line starting with %q", marker)
	}
	open := "```" + lang + "\n"
	j := strings.Index(text[i:], open)
	if j < 0 {
		t.Fatalf("README.md: no ```%s block after %q", lang, marker)
	}
	body := text[i+j+len(open):]
	k := strings.Index(body, "```")
	if k < 0 {
		t.Fatalf("README.md: the ```%s block after %q is not closed", lang, marker)
	}
	body = body[:k]
	for from, to := range repl {
		if !strings.Contains(body, from) {
			t.Fatalf("README.md: the ```%s block after %q no longer contains %q", lang, marker, from)
		}
		body = strings.ReplaceAll(body, from, to)
	}
	return body
}

func startCaddy(t *testing.T, f *faFixture) string {
	t.Helper()
	bin := faTool(t, "caddy")
	dir := t.TempDir()
	addr := freeAddr(t)
	// The README's snippet (section "Forward-auth mode") itself, with test
	// ports, after global options that keep Caddy off the network.
	conf := "{\n\tadmin off\n\tauto_https off\n}\n" + readmeSnippet(t, "**Caddy** (`forward_auth`", "caddyfile", map[string]string{
		"example.com {": "http://" + addr + " {", "127.0.0.1:8082": f.fwd, "127.0.0.1:9000": f.echo,
	})
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	faProcess(t, []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}, bin, "run", "--config", path, "--adapter", "caddyfile")
	faWaitUp(t, "http://"+addr+"/public/up")
	return "http://" + addr
}

func TestForwardAuthNginx(t *testing.T) {
	f := newFAFixture(t)
	faFrontProxyCases(t, f, startNginx(t, f))
}

func TestForwardAuthCaddy(t *testing.T) {
	f := newFAFixture(t)
	faFrontProxyCases(t, f, startCaddy(t, f))
}

// faFrontProxyCases are the cases of issue 15 through a front proxy at
// base: no credential, each credential form, spoofed identity headers,
// ambiguous paths, route roles and revocation through the admin API.
func faFrontProxyCases(t *testing.T, f *faFixture, base string) {
	c := newAuClient(5 * time.Second)
	defer c.close()
	alice := auBasic("alice", auPassword)

	t.Run("no credential is 401 with challenges", func(t *testing.T) {
		r := c.get(t, base+"/api/x", "")
		if r.status != 401 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		ch := strings.Join(r.header.Values("WWW-Authenticate"), " | ")
		if !strings.Contains(ch, `Basic realm="keygate"`) {
			t.Fatalf("challenges %q", ch)
		}
	})
	forms := map[string]struct{ authz, user, method, keyID string }{
		"basic password": {alice, "alice", "basic", ""},
	}
	for name, v := range auKeyForms(f.keyID, f.keyVal) {
		forms[name] = struct{ authz, user, method, keyID string }{v, "bob", "api_key", f.keyID}
	}
	for name, form := range forms {
		t.Run("allowed "+name, func(t *testing.T) {
			r := c.get(t, base+"/api/x?q=1", form.authz, "X-Auth-User", "mallory", "X-Auth-Roles", "admin")
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			id := auIdentity(t, r.body)
			want := map[string]string{"x-auth-user": form.user, "x-auth-account": "acme", "x-auth-method": form.method}
			if form.keyID != "" {
				want["x-auth-key-id"], want["x-auth-key-name"] = form.keyID, "ci"
			}
			for k, v := range want {
				if strings.Join(id[k], ",") != v {
					t.Fatalf("upstream saw %s=%q, want %q (all: %v)", k, id[k], v, id)
				}
			}
			if len(id["authorization"]) != 0 {
				t.Fatal("Authorization reached the upstream")
			}
			if e := decodeEcho(t, r.body); e.Path != "/api/x" || e.Query != "q=1" {
				t.Fatalf("upstream path %q query %q", e.Path, e.Query)
			}
		})
	}
	t.Run("spoofed identity never reaches the upstream", func(t *testing.T) {
		r := c.get(t, base+"/public/x", "", "X-Auth-User", "root", "X-Auth-Roles", "admin")
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		id := auIdentity(t, r.body)
		for _, k := range []string{"x-auth-user", "x-auth-roles"} {
			for _, v := range id[k] {
				if v != "" {
					t.Fatalf("upstream saw %s=%q: %v", k, v, id)
				}
			}
		}
	})
	t.Run("ambiguous paths refused", func(t *testing.T) {
		for _, p := range []string{"/public/%2e%2e/ops/x", "/public/..%2fops", "/public%2f..%2fops/x", "/public/.%2e/ops"} {
			r, err := c.do(base+p, auBasic("bob", auPassword))
			if err != nil {
				t.Fatal(err)
			}
			// keygate's 403 (bad_path), passed on by the front proxy.
			if r.status != 403 {
				t.Fatalf("%s: status %d: %s", p, r.status, r.body)
			}
			t.Logf("%s: %d %s", p, r.status, strings.TrimSpace(string(r.body[:min(len(r.body), 120)])))
		}
	})
	t.Run("route roles enforced", func(t *testing.T) {
		if r := c.get(t, base+"/ops/x", auBasic("bob", auPassword)); r.status != 403 {
			t.Fatalf("bob on /ops: %d", r.status)
		}
		r := c.get(t, base+"/ops/x", alice)
		if r.status != 200 || strings.Join(auIdentity(t, r.body)["x-auth-roles"], ",") != "ops" {
			t.Fatalf("alice on /ops: %d %s", r.status, r.body)
		}
	})
	t.Run("revocation through the admin API refuses", func(t *testing.T) {
		bearer := "Bearer " + f.keyVal
		if r := c.get(t, base+"/api/x", bearer); r.status != 200 {
			t.Fatalf("before: %d", r.status)
		}
		req, _ := http.NewRequest("DELETE", "http://"+f.g.admin+"/v1/accounts/acme/users/bob/api-keys/"+f.keyID, nil)
		req.SetBasicAuth("admin", "correct-horse-battery-staple")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var k struct{ Status string }
		_ = json.NewDecoder(res.Body).Decode(&k)
		_ = res.Body.Close()
		if res.StatusCode != 200 || k.Status != "revoked" {
			t.Fatalf("revoke: %d %+v", res.StatusCode, k)
		}
		d, ok := c.until(base+"/api/x", bearer, 401, auRevokeBound)
		if !ok {
			t.Fatalf("still allowed %v after revocation (bound %v)", d, auRevokeBound)
		}
		t.Logf("refused %v after the revocation answered", d)
	})
	t.Run("metrics", func(t *testing.T) {
		if n := auMetric(t, f.g, `keygate_forward_auth_checks_total{mode="original",result="allowed"}`) +
			auMetric(t, f.g, `keygate_forward_auth_checks_total{mode="forwarded",result="allowed"}`); n < 4 {
			t.Fatalf("allowed checks counted: %v", n)
		}
	})
}

// A client that talks to the forward-auth listener directly from an
// address outside forward_auth.trusted_proxies gets 403 whatever it
// claims; from a trusted address the Envoy HTTP ext_authz shape (method and
// path appended to path_prefix, allowed headers only) is decided.
func TestForwardAuthDirect(t *testing.T) {
	echo := startEchoProc(t)
	fwd := freeAddr(t)
	storeYAML := auBoltFixture(t, t.TempDir(), func(s auStore) {
		s.account("acme")
		s.user("alice", "acme", "", "ops")
	})
	g := startGateway(t, serveOpts{
		routes: auOpsRoutes(echo),
		store:  storeYAML,
		// Only 10.0.0.0/8 may send checks: this test's loopback client is
		// an untrusted one.
		extra: fmt.Sprintf("forward_auth:\n  listen: %q\n  trusted_proxies: [\"10.0.0.0/8\"]\n", fwd),
	})
	c := newAuClient(5 * time.Second)
	defer c.close()
	for _, hdr := range [][]string{
		{"X-Forwarded-Uri", "/ops/x", "X-Forwarded-Method", "GET"},
		{"X-Original-URI", "/ops/x"},
		{},
	} {
		r := c.get(t, "http://"+fwd+"/ops/x", auBasic("alice", auPassword), hdr...)
		if r.status != 403 || errorCode(r.body) != "untrusted_peer" || r.header.Get("X-Auth-User") != "" {
			t.Fatalf("%v: %d %s", hdr, r.status, r.body)
		}
	}
	if n := auMetric(t, g, `keygate_forward_auth_checks_total{mode="forwarded",result="forbidden"}`); n != 1 {
		t.Fatalf("forbidden forwarded checks %v", n)
	}

	// Trusted (default loopback): Envoy's HTTP service request.
	fwd2 := freeAddr(t)
	startGateway(t, serveOpts{
		routes: auOpsRoutes(echo),
		store:  auBoltFixture(t, t.TempDir(), func(s auStore) { s.account("acme"); s.user("alice", "acme", "", "ops") }),
		extra:  fmt.Sprintf("forward_auth:\n  listen: %q\n  path_prefix: /ext_authz\n", fwd2),
	})
	r := c.get(t, "http://"+fwd2+"/ext_authz/ops/x?y=1", auBasic("alice", auPassword))
	if r.status != 200 || r.header.Get("X-Auth-User") != "alice" || r.header.Get("X-Auth-Roles") != "ops" ||
		r.header.Get("X-Envoy-Auth-Headers-To-Remove") != "authorization" || len(r.body) != 0 {
		t.Fatalf("envoy http: %d %v %s", r.status, r.header, r.body)
	}
	if r := c.get(t, "http://"+fwd2+"/ext_authz/ops/x", ""); r.status != 401 || len(r.header.Values("WWW-Authenticate")) != 2 {
		t.Fatalf("envoy http anonymous: %d %v", r.status, r.header)
	}
}

// The binary's Envoy ext_authz gRPC listener: a real gRPC client (the
// go-control-plane protos) gets OK with the identity to set, a denial with
// status and challenges, and the health service answers.
func TestForwardAuthGRPCBinary(t *testing.T) {
	echo := startEchoProc(t)
	grpcAddr := freeAddr(t)
	storeYAML := auBoltFixture(t, t.TempDir(), func(s auStore) {
		s.account("acme")
		s.user("alice", "acme", "", "ops")
	})
	startGateway(t, serveOpts{
		routes: auOpsRoutes(echo),
		store:  storeYAML,
		extra:  fmt.Sprintf("forward_auth:\n  grpc_listen: %q\n", grpcAddr),
	})
	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cc.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
	check := func(path, authz string) *authv3.CheckResponse {
		hdr := map[string]string{":method": "GET", ":path": path, "x-auth-user": "mallory"}
		if authz != "" {
			hdr["authorization"] = authz
		}
		r, err := authv3.NewAuthorizationClient(cc).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Host: "svc.example", Path: path, Headers: hdr,
			}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ok := check("/ops/x", auBasic("alice", auPassword)).GetOkResponse()
	got := map[string]string{}
	for _, h := range ok.GetHeaders() {
		got[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if got["x-auth-user"] != "alice" || got["x-auth-roles"] != "ops" || got["x-auth-method"] != "basic" ||
		!slices.Contains(ok.GetHeadersToRemove(), "authorization") {
		t.Fatalf("ok response %v", ok)
	}
	d := check("/ops/x", "").GetDeniedResponse()
	if d.GetStatus().GetCode() != 401 || errorCode([]byte(d.GetBody())) != "unauthorized" {
		t.Fatalf("denied %v", d)
	}
	if d := check("/ops/%2e%2e/x", auBasic("alice", auPassword)).GetDeniedResponse(); d.GetStatus().GetCode() != 403 {
		t.Fatalf("ambiguous %v", d)
	}
}
