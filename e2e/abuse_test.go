package e2e

import (
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDuplicateAuthorization: two Authorization headers are never "first
// wins", on public and protected routes alike.
func TestDuplicateAuthorization(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, 0)
	routes := echoRoute("public", "/public", up.addr) +
		"  - name: private\n    path_prefix: /\n    upstreams: [\"http://" + up.addr + "\"]\n    auth: required\n"
	g := startGateway(t, serveOpts{routes: routes})
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:correct-horse-battery-staple"))
	shapes := []struct{ name, headers string }{
		{"two equal", "Authorization: " + basic + "\r\nAuthorization: " + basic + "\r\n"},
		{"empty then valid", "Authorization: \r\nAuthorization: " + basic + "\r\n"},
		{"valid then empty", "Authorization: " + basic + "\r\nAuthorization:\r\n"},
		{"different case names", "authorization: " + basic + "\r\nAUTHORIZATION: Bearer x\r\n"},
		{"basic and bearer", "Authorization: " + basic + "\r\nAuthorization: Bearer kg_x\r\n"},
	}
	for _, path := range []string{"/public/x", "/private"} {
		for _, sh := range shapes {
			t.Run(path+" "+sh.name, func(t *testing.T) {
				r := rawDo(t, g.public, "GET "+path+" HTTP/1.1\r\nHost: h\r\n"+sh.headers+"Connection: close\r\n\r\n")
				if r.status != 400 {
					t.Errorf("status %d, want 400: %s", r.status, r.body)
				}
				if strings.Contains(string(r.body), "correct-horse") {
					t.Error("response echoes the credential")
				}
			})
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := up.count.Load(); n != 0 {
		t.Errorf("upstream received %d requests", n)
	}
	if strings.Contains(g.stderr.String(), "correct-horse") || strings.Contains(g.stderr.String(), basic[6:]) {
		t.Error("the credential appears in keygate's output")
	}
}

func TestForwardedHeadersFromTrustedProxy(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, 0)
	g := startGateway(t, serveOpts{routes: echoRoute("api", "/", up.addr), extra: "trusted_proxies: [\"127.0.0.1/32\"]\n"})
	r := rawDo(t, g.public, "GET /f HTTP/1.1\r\nHost: gw.internal\r\nX-Forwarded-For: 203.0.113.7\r\n"+
		"X-Forwarded-Proto: https\r\nX-Forwarded-Host: api.example\r\nConnection: close\r\n\r\n")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	h := map[string][]string{}
	for name, v := range decodeEcho(t, r.body).Headers {
		h[strings.ToLower(name)] = append(h[strings.ToLower(name)], v...)
	}
	want := map[string]string{
		"x-forwarded-for":   "203.0.113.7, 127.0.0.1",
		"x-forwarded-proto": "https",
		"x-forwarded-host":  "api.example",
	}
	for name, w := range want {
		if got := h[name]; len(got) != 1 || got[0] != w {
			t.Errorf("%s = %q, want [%q]", name, got, w)
		}
	}
}

// TestSlowloris: connections that trickle a request are closed at the read
// timeout while other clients are served.
func TestSlowloris(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, 0)
	g := startGateway(t, serveOpts{
		routes: echoRoute("api", "/", up.addr),
		env:    []string{"KEYGATE_LIMITS_READ_TIMEOUT=1s", "KEYGATE_LIMITS_IDLE_TIMEOUT=1s"},
	})
	const n = 100
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", g.public, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
	}
	// Others are served meanwhile.
	for range 5 {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(g.url("/ok"))
		if err != nil {
			t.Fatalf("normal client not served: %v", err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("normal client: %d", resp.StatusCode)
		}
	}
	// Every slow connection is closed by the server within the read timeout
	// (plus slack), whatever it answers first.
	began := time.Now()
	for i, c := range conns {
		_ = c.SetReadDeadline(began.Add(4 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("slow connection %d still open after %v", i, time.Since(began))
		}
	}
	if n := up.count.Load(); n != 5 {
		t.Errorf("upstream saw %d requests, want 5", n)
	}
}
