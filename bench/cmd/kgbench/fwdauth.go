package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Forward-auth (issue 15): nginx auth_request → keygate's forward-auth
// listener, then nginx proxy_pass to the echo upstream, measured in the
// same interleaved rounds as nginx proxy_pass alone, nginx auth_basic apr1
// and keygate as the proxy. The measured process is keygate (its CPU per
// check against its CPU per proxied cache hit: goal ≤ 0.6×); req/s is the
// pair's (goal ≥ 2× nginx auth_basic apr1).

// startNginxAuthRequest starts an nginx whose every request is checked by
// keygate at fwd (the README's configuration).
func startNginxAuthRequest(dir, echoAddr, fwd string) (*peer, error) {
	if _, err := exec.LookPath("nginx"); err != nil {
		return nil, fmt.Errorf("nginx is not installed: %w", errSkip)
	}
	d := filepath.Join(dir, "nginx-authreq")
	if err := os.MkdirAll(filepath.Join(d, "tmp"), 0o755); err != nil { //nolint:gosec // bench output, read by the peers' worker processes and by people
		return nil, err
	}
	port := mustFreePort()
	conf := nginxHTTPPrelude(d, echoAddr) + fmt.Sprintf(`  upstream keygate_check { server %[1]s; keepalive 128; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:%[2]d;
    location / {
      auth_request /_keygate;
      auth_request_set $kg_user    $upstream_http_x_auth_user;
      auth_request_set $kg_account $upstream_http_x_auth_account;
      auth_request_set $kg_roles   $upstream_http_x_auth_roles;
      auth_request_set $kg_method  $upstream_http_x_auth_method;
      auth_request_set $kg_key_id  $upstream_http_x_auth_key_id;
      auth_request_set $kg_key_nm  $upstream_http_x_auth_key_name;
      proxy_set_header X-Auth-User     $kg_user;
      proxy_set_header X-Auth-Account  $kg_account;
      proxy_set_header X-Auth-Roles    $kg_roles;
      proxy_set_header X-Auth-Method   $kg_method;
      proxy_set_header X-Auth-Key-Id   $kg_key_id;
      proxy_set_header X-Auth-Key-Name $kg_key_nm;
      proxy_set_header Authorization   "";
      proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
    }
    location = /_keygate {
      internal;
      proxy_pass http://keygate_check;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Host $host;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Forwarded-Uri "";
      proxy_set_header X-Forwarded-For $remote_addr;
    }
  }
}
`, fwd, port)
	p, addr, err := runNginx(dir, "nginx-authreq", d, conf, port)
	if err != nil {
		return nil, err
	}
	return &peer{name: "nginx+keygate", version: toolVersion("nginx", "-v"), p: p, base: "http://" + addr}, nil
}

// authRequestJobs are the check scenarios on kg's forward-auth listener:
// behind nginx (auth_request_*), and straight from wrk with the headers
// Traefik and Caddy send (check_direct_*: the same check with keygate as
// busy as in its proxied scenarios, which nginx's pace never makes it):
// bearer_kg and basic on a cache hit. The measured process is kg (CPU per
// check).
func (r *runner) authRequestJobs(kg *keygate) []job {
	if kg.fwd == "" || kg.fx == nil {
		return nil
	}
	pr, err := startNginxAuthRequest(r.dir, r.echoAddr, kg.fwd)
	if err != nil {
		r.note("nginx auth_request → keygate skipped: %v", err)
		r.results = append(r.results, Result{Target: "nginx+keygate", Scenario: "*", Skipped: err.Error()})
		return nil
	}
	r.procs = append(r.procs, pr.p)
	step("started nginx auth_request → keygate at %s", pr.base)
	var jobs []job
	for _, f := range kg.fx.forms() {
		if f[0] != "bearer_kg" && f[0] != "basic" {
			continue
		}
		jobs = append(jobs, job{res: Result{Target: "nginx+keygate", Scenario: "auth_request_" + f[0],
			Description: "nginx auth_request → keygate forward-auth (cache hit: " + f[0] + "), CPU of keygate"}, p: kg.p,
			l: load{url: pr.base + "/bench?x=1", authorization: f[1]}},
			job{res: Result{Target: kg.name, Scenario: "check_direct_" + f[0],
				Description: "wrk → keygate forward-auth listener, X-Forwarded-Method/-Host/-Uri as Traefik and Caddy send them (cache hit: " + f[0] + ")"}, p: kg.p,
				l: load{url: "http://" + kg.fwd + "/", authorization: f[1], headers: []string{
					"X-Forwarded-Method: GET", "X-Forwarded-Host: 127.0.0.1", "X-Forwarded-Uri: /bench?x=1"}}})
	}
	return jobs
}

// annotateForwardAuth sets the issue 15 ratios on the check results.
func (r *runner) annotateForwardAuth(kg *keygate) {
	find := func(target, scenario string) *Result {
		for i := range r.results {
			if x := &r.results[i]; x.Target == target && x.Scenario == scenario && x.Skipped == "" {
				return x
			}
		}
		return nil
	}
	apr1 := find("nginx", "basic_apr1")
	for _, form := range []string{"bearer_kg", "basic"} {
		check, proxied := find("nginx+keygate", "auth_request_"+form), find(kg.name, form)
		if check == nil {
			continue
		}
		if proxied != nil && proxied.CPUusPerReq > 0 {
			r.annotate(check.Scenario, check.Target, fmt.Sprintf("keygate CPU per check %.2f× its CPU per proxied hit (%s; goal ≤ 0.6×)",
				check.CPUusPerReq/proxied.CPUusPerReq, form), 0)
		}
		if apr1 != nil && apr1.RPS > 0 {
			r.annotate(check.Scenario, check.Target, fmt.Sprintf("%.2f× the req/s of nginx auth_basic apr1 (goal ≥ 2×)", check.RPS/apr1.RPS), 0)
		}
	}
}
