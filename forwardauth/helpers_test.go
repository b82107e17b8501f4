package forwardauth

import (
	"context"
	"encoding/base64"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/authn/failurelimit"
	"github.com/keygate/keygate/authn/keyauth"
	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/authn/principal"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/proxy"
	"github.com/keygate/keygate/ratelimit"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
)

const testPassword = "correct horse battery staple"

var hasherOnce = sync.OnceValue(func() *password.Hasher {
	return password.New(password.Params{Memory: 1024, Iterations: 1, Parallelism: 1}, 4)
})

// env is a real decision stack: a bolt store, the cache, the chain with the
// password and API key authenticators, the proxy's decision and the
// forward-auth server on top.
type env struct {
	t     testing.TB
	st    store.Store
	cfg   *configs.Config
	prx   *proxy.Proxy
	f     *Server
	reg   *prometheus.Registry
	key   string // alice's API key value
	keyID string
}

func newEnv(t testing.TB, edit func(*configs.Config)) *env {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "kg.db"), boltstore.Options{})
	must(t, err)
	t.Cleanup(func() { _ = st.Close() })
	ctx := context.Background()
	must(t, st.CreateAccount(ctx, &store.Account{Name: "acme"}))
	h, err := hasherOnce().Hash(testPassword)
	must(t, err)
	must(t, st.CreateUser(ctx, &store.User{Username: "alice", Account: "acme", Roles: []string{"dev", "ops"}, PasswordHash: h}))
	must(t, st.CreateUser(ctx, &store.User{Username: "bob", Account: "acme", Roles: []string{"dev"}, PasswordHash: h}))
	secret, err := apikey.NewSecret()
	must(t, err)
	kh, err := apikey.Hash([]byte(secret))
	must(t, err)
	k := &store.APIKey{Name: "ci", Username: "alice", Roles: []string{"dev"}, Hash: kh}
	must(t, st.CreateAPIKey(ctx, k))

	cfg := configs.Default()
	up := "http://127.0.0.1:9"
	cfg.Routes = []configs.Route{
		{Name: "api", PathPrefix: "/api", Upstreams: []string{up}, Auth: configs.AuthRequired},
		{Name: "ops", PathPrefix: "/ops", Upstreams: []string{up}, Auth: configs.AuthRequired, Roles: []string{"ops"}},
		{Name: "public", PathPrefix: "/public", Upstreams: []string{up}, Auth: configs.AuthNone},
		{Name: "opt", PathPrefix: "/opt", Upstreams: []string{up}, Auth: configs.AuthOptional},
		{Name: "fwd", PathPrefix: "/fwd", Upstreams: []string{up}, Auth: configs.AuthRequired, ForwardAuthorization: true},
		{Name: "ro", PathPrefix: "/ro", Upstreams: []string{up}, Auth: configs.AuthRequired, Methods: []string{"GET"}},
	}
	cfg.ForwardAuth.PathPrefix = "/check"
	if edit != nil {
		edit(cfg)
	}
	cfg.Normalize()
	must(t, cfg.Validate())

	reg := prometheus.NewRegistry()
	c, err := cache.New(cache.Config{MaxEntries: 1000, TTL: time.Minute, NegativeTTL: 5 * time.Second, OutageGrace: time.Minute}, reg)
	must(t, err)
	t.Cleanup(c.Close)
	states := principal.NewAccountStates(st, time.Minute, nil)
	chain, err := authn.NewChain(authn.ChainConfig{
		Cache: c,
		Authenticators: map[authn.CredKind]authn.Authenticator{
			authn.KindBasic:  password.NewAuthenticator(st, hasherOnce(), password.AuthOptions{Accounts: states}),
			authn.KindAPIKey: keyauth.NewAuthenticator(st, keyauth.AuthOptions{Accounts: states}),
		},
		IPLimiter:   failurelimit.New(cfg.Auth.Failures.PerIPPerMinute, 1000, nil),
		UserLimiter: failurelimit.New(cfg.Auth.Failures.PerUserPerMinute, 1000, nil),
		Registerer:  reg,
	})
	must(t, err)
	// Rate limits when the config has policies: assignments are read from
	// the store when the env is built.
	var rl *ratelimit.Limiter
	if len(cfg.RateLimits.Policies) > 0 {
		rl, err = ratelimit.New(ratelimit.Options{Config: cfg.RateLimits, Store: st, Registerer: reg})
		must(t, err)
		must(t, st.SetLimits(ctx, &store.Limits{Scope: store.ScopeKey, ID: k.ID, RateLimit: cfg.RateLimits.Policies[0].Name}))
		must(t, st.SetLimits(ctx, &store.Limits{Scope: store.ScopeUser, ID: "alice", RateLimit: cfg.RateLimits.Policies[0].Name}))
		must(t, st.SetLimits(ctx, &store.Limits{Scope: store.ScopeAccount, ID: "acme", RateLimit: cfg.RateLimits.Policies[0].Name}))
		must(t, rl.Reload(ctx))
	}
	prx, err := proxy.New(proxy.ConfigOf(cfg), proxy.Options{Registerer: reg, Authenticator: proxy.NewChainAuthenticator(chain, cfg.Auth.Realm), RateLimiter: rl})
	must(t, err)
	f, err := New(cfg, prx, Options{Registerer: reg})
	must(t, err)
	return &env{t: t, st: st, cfg: cfg, prx: prx, f: f, reg: reg, key: apikey.Format(k.ID, secret), keyID: k.ID}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func basic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

var (
	loopback  = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	untrusted = &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 40000}
)

// check sends one check request (method, request URI, header pairs) from
// peer to the HTTP handler and returns the response.
func (e *env) check(peer net.Addr, method, uri string, hdr ...string) *fasthttp.Response {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.Header.SetRequestURI(uri)
	req.Header.SetHost("keygate.internal")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Header.SetHost(hdr[i+1])
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, peer, nil)
	e.f.Handler(&ctx)
	out := new(fasthttp.Response)
	ctx.Response.CopyTo(out)
	return out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// metricsText is the exposition text of e's registry.
func metricsText(t testing.TB, e *env) string {
	t.Helper()
	mfs, err := e.reg.Gather()
	must(t, err)
	var b strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}
