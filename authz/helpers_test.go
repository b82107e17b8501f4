package authz_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/plugin"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/testport"
)

const testSecret = "0123456789abcdef0123456789abcdef"

// testRules: alice (user in acme) may read and write the api route, bob may
// only read it, nobody may touch /api/admin, carol's account is not listed.
const testRules = `
rules:
  - effect: allow
    principals: [alice]
    domains: [acme]
    actions: [GET, HEAD, POST, DELETE]
    targets: ["api:/**"]
  - effect: allow
    principals: [bob]
    domains: [acme]
    actions: [GET]
    targets: ["api:/**"]
  - effect: deny
    targets: ["api:/admin/**", "api:/admin"]
  - effect: allow
    types: [admin]
    actions: ["*"]
    targets: ["admin:/v1/*"]
`

func ident(user, account string, roles ...string) *authn.Identity {
	return &authn.Identity{
		Username: user, Account: account, UserType: "user",
		Roles: roles, RolesHeader: strings.Join(roles, ","),
		Method: authn.MethodBasic, Generation: 1,
	}
}

func request(id *authn.Identity, actions ...authz.Action) *authz.Request {
	return &authz.Request{Identity: id, Domain: id.Account, Actions: actions}
}

func act(action, target string) authz.Action { return authz.Action{Action: action, Target: target} }

// startPlugin runs the reference plugin on 127.0.0.1:0 and returns it and its
// endpoint URL.
func startPlugin(t testing.TB, rules, secret string) (*plugin.Server, string) {
	t.Helper()
	r, err := plugin.ParseRules([]byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	var log *zap.Logger
	if tt, ok := t.(*testing.T); ok {
		log = zaptest.NewLogger(tt)
	}
	s := plugin.New(r, secret, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return s, servePlugin(t, s, ln)
}

func servePlugin(t testing.TB, s *plugin.Server, ln net.Listener) string {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-done
	})
	return "http://" + ln.Addr().String()
}

// startHandler runs an ad-hoc fasthttp server on 127.0.0.1:0. Handlers that
// hang must return when release is closed (closed at cleanup).
func startHandler(t testing.TB, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{
		Handler:      h,
		ReadTimeout:  5 * time.Second,
		WriteTimeout: 5 * time.Second,
		IdleTimeout:  5 * time.Second,
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

// closedEndpoint returns an endpoint nothing listens on (yet): a test may
// start the plugin there later. The port is below the ephemeral range
// (testport), so no parallel test's bind(":0") can take it meanwhile.
func closedEndpoint(t testing.TB) (string, string) {
	t.Helper()
	addr := testport.Addr(t)
	return "http://" + addr, addr
}

func externalCfg(endpoint, secret string, timeout, ttl time.Duration) configs.External {
	return configs.External{
		Endpoint: endpoint,
		Secret:   secret,
		Timeout:  configs.Duration(timeout),
		CacheTTL: configs.Duration(ttl),
	}
}

func newExternal(t testing.TB, cfg configs.External, opts authz.Options) *authz.External {
	t.Helper()
	if opts.MaxEntries == 0 {
		opts.MaxEntries = 1024 // a default-sized ristretto costs ~0.5 s under -race
	}
	e, err := authz.NewExternal(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// clock is a settable clock for the decision cache.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_800_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exposition renders what reg exposes in the Prometheus text format.
func exposition(t testing.TB, reg prometheus.Gatherer) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&sb, mf); err != nil {
			t.Fatal(err)
		}
	}
	return sb.String()
}
