package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// peer is a running reverse proxy the bench compares keygate with.
type peer struct {
	name    string // nginx, caddy, haproxy
	version string
	p       *proc
	base    string // http://127.0.0.1:PORT
	// paths: scenario name → path on base (and the Authorization it needs).
	scenarios []peerScenario
}

type peerScenario struct {
	name, desc, path, authorization string
}

func toolVersion(argv ...string) string {
	out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput() //nolint:gosec // runs the tool this harness is configured with; no client input
	if len(out) == 0 {
		return "?"
	}
	s := strings.TrimSpace(string(out))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// htpasswd writes an htpasswd file for benchUser with flag -m (apr1) or
// -B (bcrypt, htpasswd's default cost).
func htpasswd(dir, name, flag string) (string, error) {
	path := filepath.Join(dir, name)
	out, err := exec.Command("htpasswd", "-c", "-b", flag, path, benchUser, benchPassword).CombinedOutput() //nolint:gosec // runs the tool this harness is configured with; no client input
	if err != nil {
		return "", fmt.Errorf("htpasswd %s: %w: %s", flag, err, out)
	}
	return path, os.Chmod(path, 0o644) //nolint:gosec // bench output, read by the peers' worker processes
}

// startNginx: one server, three locations — plain proxy_pass, auth_basic
// with an apr1 file, auth_basic with a bcrypt file — all to the upstream
// over kept-alive connections (as keygate's pool does).
func startNginx(dir, echoAddr string) (*peer, error) {
	if _, err := exec.LookPath("nginx"); err != nil {
		return nil, fmt.Errorf("nginx is not installed: %w", errSkip)
	}
	if _, err := exec.LookPath("htpasswd"); err != nil {
		return nil, fmt.Errorf("htpasswd (apache2-utils) is not installed: %w", errSkip)
	}
	d := filepath.Join(dir, "nginx")
	for _, sub := range []string{"", "tmp"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil { //nolint:gosec // bench output, read by the peers' worker processes and by people
			return nil, err
		}
	}
	apr1, err := htpasswd(d, "htpasswd-apr1", "-m")
	if err != nil {
		return nil, err
	}
	bcrypt, err := htpasswd(d, "htpasswd-bcrypt", "-B")
	if err != nil {
		return nil, err
	}
	port := mustFreePort()
	proxy := `proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";`
	conf := nginxHTTPPrelude(d, echoAddr) + fmt.Sprintf(`  server {
    listen 127.0.0.1:%[1]d;
    location / { %[2]s }
    location /apr1/ { auth_basic "bench"; auth_basic_user_file %[3]s; %[2]s }
    location /bcrypt/ { auth_basic "bench"; auth_basic_user_file %[4]s; %[2]s }
  }
}
`, port, proxy, apr1, bcrypt)
	p, addr, err := runNginx(dir, "nginx", d, conf, port)
	if err != nil {
		return nil, err
	}
	auth := basicAuth(benchUser, benchPassword)
	return &peer{name: "nginx", version: toolVersion("nginx", "-v"), p: p, base: "http://" + addr, scenarios: []peerScenario{
		{"proxy", "nginx proxy_pass, no auth", "/bench?x=1", ""},
		{"basic_apr1", "nginx auth_basic, apr1 htpasswd", "/apr1/bench?x=1", auth},
		{"basic_bcrypt", "nginx auth_basic, bcrypt htpasswd (cost 5)", "/bcrypt/bench?x=1", auth},
	}}, nil
}

// startCaddy: reverse_proxy, and reverse_proxy behind basicauth (bcrypt,
// `caddy hash-password` default cost; Caddy caches verified hashes).
func startCaddy(dir, echoAddr string) (*peer, error) {
	if _, err := exec.LookPath("caddy"); err != nil {
		return nil, fmt.Errorf("caddy is not installed: %w", errSkip)
	}
	d := filepath.Join(dir, "caddy")
	if err := os.MkdirAll(d, 0o755); err != nil { //nolint:gosec // bench output, read by the peers' worker processes and by people
		return nil, err
	}
	out, err := exec.Command("caddy", "hash-password", "--plaintext", benchPassword).Output()
	if err != nil {
		return nil, fmt.Errorf("caddy hash-password: %w", err)
	}
	hash := strings.TrimSpace(string(out))
	port := mustFreePort()
	// basicauth is the directive's name up to Caddy 2.7 (basic_auth after).
	conf := fmt.Sprintf(`{
	admin off
	auto_https off
}
http://127.0.0.1:%[1]d {
	handle /auth/* {
		basicauth {
			%[2]s %[3]s
		}
		reverse_proxy %[4]s
	}
	handle {
		reverse_proxy %[4]s
	}
}
`, port, benchUser, hash, echoAddr)
	confPath := filepath.Join(d, "Caddyfile")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil { //nolint:gosec // bench output, read by the peers' worker processes and by people
		return nil, err
	}
	env := []string{"XDG_CONFIG_HOME=" + d, "XDG_DATA_HOME=" + d, "HOME=" + d}
	p, err := startProc(dir, "caddy", env, "caddy", "run", "--config", confPath, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitTCP(p, addr, 15*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return &peer{name: "caddy", version: toolVersion("caddy", "version"), p: p, base: "http://" + addr, scenarios: []peerScenario{
		{"proxy", "Caddy reverse_proxy, no auth", "/bench?x=1", ""},
		{"basic_auth", "Caddy basicauth (bcrypt, cached) + reverse_proxy", "/auth/bench?x=1", basicAuth(benchUser, benchPassword)},
	}}, nil
}

// startHAProxy: a plain HTTP proxy with connection reuse to the upstream.
func startHAProxy(dir, echoAddr string) (*peer, error) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		return nil, fmt.Errorf("haproxy is not installed: %w", errSkip)
	}
	d := filepath.Join(dir, "haproxy")
	if err := os.MkdirAll(d, 0o755); err != nil { //nolint:gosec // bench output, read by the peers' worker processes and by people
		return nil, err
	}
	port := mustFreePort()
	conf := fmt.Sprintf(`global
  nbthread 2
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend bench
  bind 127.0.0.1:%d
  default_backend up
backend up
  http-reuse always
  server echo %s
`, port, echoAddr)
	confPath := filepath.Join(d, "haproxy.cfg")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil { //nolint:gosec // bench output, read by the peers' worker processes and by people
		return nil, err
	}
	p, err := startProc(dir, "haproxy", nil, "haproxy", "-db", "-f", confPath)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitTCP(p, addr, 10*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return &peer{name: "haproxy", version: toolVersion("haproxy", "-v"), p: p, base: "http://" + addr, scenarios: []peerScenario{
		{"proxy", "HAProxy plain proxy, no auth", "/bench?x=1", ""},
	}}, nil
}

// nginxHTTPPrelude is the start of an nginx.conf for a bench peer in dir d:
// one foreground master with 2 workers, every temp path under d, no access
// log, keep-alive everywhere, and the upstream "up" (the echo server at
// echoAddr). The caller appends the rest of the http block.
func nginxHTTPPrelude(d, echoAddr string) string {
	return fmt.Sprintf(`worker_processes 2;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp/body;
  proxy_temp_path %[1]s/tmp/proxy;
  fastcgi_temp_path %[1]s/tmp/fastcgi;
  uwsgi_temp_path %[1]s/tmp/uwsgi;
  scgi_temp_path %[1]s/tmp/scgi;
  keepalive_requests 1000000;
  upstream up { server %[2]s; keepalive 128; keepalive_requests 1000000; }
`, d, echoAddr)
}

// runNginx writes conf to d/nginx.conf, starts nginx on it under the
// process name name, and waits until it listens on 127.0.0.1:port.
func runNginx(dir, name, d, conf string, port int) (*proc, string, error) {
	confPath := filepath.Join(d, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil { //nolint:gosec // bench output, read by the peers' worker processes and by people
		return nil, "", err
	}
	p, err := startProc(dir, name, nil, "nginx", "-p", d+"/", "-c", confPath, "-e", filepath.Join(d, "error.log"))
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitTCP(p, addr, 10*time.Second); err != nil {
		p.stop()
		return nil, "", err
	}
	return p, addr, nil
}
