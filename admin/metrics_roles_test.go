package admin

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/configs"
)

// admin.metrics_roles restricts GET /metrics to global admins and holders of
// one of the roles, authenticated by the same chain as everything else.
func TestMetricsRoles(t *testing.T) {
	e := newAPIEnv(t, apiEnvOptions{})
	cfg := configs.Default()
	cfg.Admin.MetricsRoles = []string{"write"}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "probe_total", Help: "probe"}))
	if _, err := New(ConfigOf(cfg), Options{Gatherer: reg, Store: e.st}); err == nil {
		t.Fatal("metrics_roles without an authenticator was accepted")
	}
	s, err := New(ConfigOf(cfg), Options{Gatherer: reg, Store: e.st, Auth: e.chain})
	mustOK(t, err)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	mustOK(t, err)
	srv := &fasthttp.Server{Handler: s.Handler, ReadTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = ln.Close() })

	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"anonymous", "", 401},
		{"wrong password", basicAuth("admin", "nope-nope-nope"), 401},
		{"user without the role", basicAuth("alice", pwAlice), 403},
		{"account admin holding the role", basicAuth("aadmin", pwAAdmin), 200},
		{"global admin", basicAuth("admin", pwRoot), 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/metrics", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			mustOK(t, err)
			_ = resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without a challenge")
			}
		})
	}
}
