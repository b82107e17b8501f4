package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/keyauth"
	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/authn/ratelimit"
	"github.com/keygate/keygate/authn/token"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/echo"
	"github.com/keygate/keygate/proxy"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
	"github.com/keygate/keygate/store/redisstore"
)

// Environment variables read by serve besides the KEYGATE_<PATH> config keys.
const (
	envConfig        = "KEYGATE_CONFIG"
	envAdminPassword = "KEYGATE_ADMIN_PASSWORD"
)

func init() {
	register(&command{name: "serve", summary: "run the gateway (public and admin listeners)", run: runServe})
}

func runServe(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "serve", "[--config FILE] [--demo]")
	configPath := fs.String("config", "", "YAML configuration file (default: $"+envConfig+", else built-in defaults)")
	demo := fs.Bool("demo", false, "start an in-process echo upstream; route /public to it openly and / behind authentication")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	path := *configPath
	if path == "" {
		path = e.getenv(envConfig)
	}

	// The demo upstream listens first: its address goes into the route
	// that the configuration is validated with.
	var demoLn net.Listener
	if *demo {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintf(e.stderr, "keygate: cannot start the demo upstream: %v\n", err)
			return exitFailure
		}
		demoLn = ln
		defer demoLn.Close() // no-op once the echo server owns and closes it
	}
	// Secrets are read once, from copies, then scrubbed from the process
	// environment: a child process, a later os.Getenv or a reader of
	// /proc/<pid>/environ finds none of them.
	rest, secrets := withoutSecrets(e.environ)
	adminPassword := (&env{environ: secrets}).getenv(envAdminPassword)
	cfg, err := loadConfig(path, append(slices.Clip(rest), secrets...), demoLn)
	e.environ = rest
	var scrubbed []string
	blockCleared := true
	if e.scrub != nil {
		scrubbed, blockCleared = e.scrub()
	}
	if err != nil {
		printConfigError(e.stderr, err)
		return exitUsage
	}
	log, err := newLogger(cfg.Log.Level, e.stderr)
	if err != nil {
		printConfigError(e.stderr, err)
		return exitUsage
	}
	defer func() { _ = log.Sync() }()
	if len(scrubbed) > 0 {
		log.Info("secret variables read and removed from the environment",
			zap.Strings("names", scrubbed), zap.Bool("proc_environ_cleared", blockCleared))
	}

	g := &gateway{cfg: cfg, log: log, e: e, demoLn: demoLn, adminPassword: adminPassword}
	return g.run(ctx)
}

// loadConfig loads path (no file when empty) with the environment on top.
// With a demo listener, the routes are replaced by the demo route to it (as
// a last KEYGATE_ROUTES, so the result is validated like any other).
func loadConfig(path string, environ []string, demoLn net.Listener) (*configs.Config, error) {
	environ = withoutServeEnv(environ, demoLn != nil)
	if demoLn != nil {
		routes, err := json.Marshal(demoRoutes(demoLn.Addr().String()))
		if err != nil {
			return nil, err
		}
		environ = append(environ, "KEYGATE_ROUTES="+string(routes))
	}
	return configs.Load(path, environ)
}

// demoRoute is the --demo route, in the shape of a YAML route.
type demoRoute struct {
	Name       string   `json:"name"`
	PathPrefix string   `json:"path_prefix"`
	Upstreams  []string `json:"upstreams"`
	Auth       string   `json:"auth"`
	Timeout    string   `json:"timeout"`
}

// demoRoutes are the --demo routes to the echo upstream: /public is open,
// everything else needs a credential (the bootstrap admin's, at first).
func demoRoutes(echoAddr string) []demoRoute {
	up := []string{"http://" + echoAddr}
	return []demoRoute{
		{Name: "demo-public", PathPrefix: "/public", Upstreams: up, Auth: configs.AuthNone, Timeout: "30s"},
		{Name: "demo", PathPrefix: "/", Upstreams: up, Auth: configs.AuthRequired, Timeout: "30s"},
	}
}

// withoutServeEnv drops the variables serve reads itself (so the admin
// password goes nowhere but the bootstrap) and, in demo mode, any
// KEYGATE_ROUTES the demo replaces.
func withoutServeEnv(environ []string, demo bool) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if k == envConfig || k == envAdminPassword || k == "KEYGATE_ROUTES" && demo {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// printConfigError prints "invalid configuration:" and every problem.
func printConfigError(w io.Writer, err error) {
	var ve *configs.ValidationError
	if errors.As(err, &ve) && len(ve.Problems) > 0 {
		fmt.Fprintln(w, "invalid configuration:")
		for _, p := range ve.Problems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
		return
	}
	fmt.Fprintf(w, "invalid configuration: %v\n", err)
}

// newLogger returns a JSON zap logger at level writing to w. Sampling is off:
// audit events must never be dropped.
func newLogger(level string, w io.Writer) (*zap.Logger, error) {
	lvl := zapcore.InfoLevel
	if level != "" {
		l, err := zapcore.ParseLevel(level)
		if err != nil {
			return nil, fmt.Errorf("log.level: %w", err)
		}
		lvl = l
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(w)))), nil
}

// gateway is one run of `keygate serve`: it owns every component and tears
// them down in reverse order.
type gateway struct {
	cfg    *configs.Config
	log    *zap.Logger
	e      *env
	demoLn net.Listener
	// adminPassword is KEYGATE_ADMIN_PASSWORD, for the bootstrap only
	// (cleared after it).
	adminPassword string

	publicLn, adminLn net.Listener
	store             store.Store
	publicSrv         *fasthttp.Server
	adminSrv          *fasthttp.Server
	echoSrv           *fasthttp.Server
	prx               *proxy.Proxy
	chain             *authn.Chain
	authorizer        authz.Authorizer
	notifier          *authz.Notifier // external handler only
	closers           []io.Closer     // closed after the background loops stop
	pwHasher          *password.Hasher
	passwords         *password.Authenticator
	signer            *token.Signer // nil when bearer is not in auth.methods
	states            *keyauth.AccountStates
	ipLimiter         *ratelimit.Limiter
	userLimiter       *ratelimit.Limiter
	extraWatchers     []func(store.Invalidation) // see each invalidation before the cache
	bg                sync.WaitGroup
	stopBG            context.CancelFunc

	// Start-up (startup.go): started is set once the store is
	// initialised; until then requests needing it get 503. retryStore says
	// the first attempt failed and run retries until storeDeadline.
	started       atomic.Bool
	retryStore    bool
	storeDeadline time.Time
}

// run starts everything, waits for a signal or a fatal serve error, then
// shuts down. It returns the exit code.
func (g *gateway) run(ctx context.Context) int {
	defer g.closeAll()
	if code := g.start(); code != exitOK {
		return code
	}
	errc := make(chan error, 4)
	serve := func(name string, ln net.Listener, fn func(net.Listener) error) {
		g.bg.Add(1)
		go func() {
			defer g.bg.Done()
			if err := fn(ln); err != nil {
				errc <- fmt.Errorf("%s listener: %w", name, err)
			}
		}()
	}
	// The proxy's Serve enforces limits.concurrency with a JSON 503 and
	// serves TLS when tls.cert_file/key_file are set.
	serve("public", g.publicLn, g.prx.Serve)
	if g.adminSrv != nil {
		serve("admin", g.adminLn, g.adminSrv.Serve)
	}
	if g.echoSrv != nil {
		serve("demo echo", g.demoLn, g.echoSrv.Serve)
		g.demoHint()
	}
	g.logStarted()
	fatal := make(chan error, 1)
	if g.retryStore {
		g.bg.Add(1)
		go func() { defer g.bg.Done(); g.retryStoreLoop(ctx, fatal) }()
	}

	code := exitOK
	select {
	case <-ctx.Done():
		g.log.Info("shutting down", zap.Duration("timeout", g.shutdownTimeout()))
	case err := <-errc:
		g.log.Error("listener failed; shutting down", zap.Error(err))
		code = exitFailure
	case err := <-fatal:
		// The reason goes to stderr as one clear line (as at a failed
		// start), and to the log.
		fmt.Fprintf(g.e.stderr, "keygate: %v\n", err)
		g.log.Error("store not reachable; shutting down", zap.Error(err))
		code = exitFailure
	}
	if !g.shutdown() {
		code = exitFailure
	}
	return code
}

func (g *gateway) shutdownTimeout() time.Duration {
	if d := g.cfg.ShutdownTimeout.D(); d > 0 {
		return d
	}
	return 15 * time.Second
}

// start builds and binds everything. On failure it has printed the reason
// and returns the exit code; closeAll releases what was opened.
func (g *gateway) start() int {
	cfg := g.cfg
	fail := func(format string, args ...any) int {
		fmt.Fprintf(g.e.stderr, "keygate: "+format+"\n", args...)
		return exitFailure
	}

	// Signing material is configuration: a missing or weak secret is a
	// configuration error (exit 2), found before anything is bound.
	if err := g.buildSigner(); err != nil {
		fmt.Fprintf(g.e.stderr, "invalid configuration:\n  - %v\n", err)
		return exitUsage
	}

	// Bind first: a busy port fails fast, before any state is touched.
	var err error
	if g.publicLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return fail("cannot listen on %s (listen): %v", cfg.Listen, err)
	}
	if cfg.Admin.Listen != "" {
		if g.adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			return fail("cannot listen on %s (admin.listen): %v", cfg.Admin.Listen, err)
		}
	}
	if cfg.TLS.Enabled() {
		// ServeTLS loads the pair too; loading here gives a clear error at start.
		if _, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return fail("cannot load the TLS certificate or key (tls.cert_file, tls.key_file): %v", err)
		}
	}

	if g.store, err = openStore(cfg, g.log); err != nil {
		return fail("cannot open the %s store: %v", cfg.Store.Driver, err)
	}
	if code := g.initStoreFirst(); code != exitOK {
		return code
	}

	bgCtx, cancel := context.WithCancel(context.Background())
	g.stopBG = cancel
	remover := store.NewRemover(g.store, cfg.APIKeys.Retention.D(), store.DefaultPurgeInterval, time.Now, g.log.Named("remover"))
	// The first purge (a walk over every key) waits 1-2 minutes: not on
	// top of the start-up, not at once across a fleet restarted together.
	remover.FirstDelay = time.Minute + mrand.N(time.Minute)
	g.bg.Add(1)
	go func() { defer g.bg.Done(); _ = remover.Run(bgCtx) }()
	if rp, ok := g.store.(store.RefreshPurger); ok {
		// Redis expires refresh tokens itself; bolt needs a sweep.
		g.bg.Add(1)
		go func() {
			defer g.bg.Done()
			purgeRefreshTokens(bgCtx, rp, store.DefaultPurgeInterval, g.log.Named("remover"))
		}()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if err := g.buildAuthz(bgCtx, reg); err != nil {
		return fail("%v", err)
	}
	chain, err := g.buildChain(bgCtx, reg)
	if err != nil {
		return fail("%v", err)
	}
	g.chain = chain
	extra, err := g.tokenHandlers(reg)
	if err != nil {
		return fail("%v", err)
	}
	if g.prx, err = proxy.New(cfg, proxy.Options{
		Logger:        g.log.Named("proxy"),
		Registerer:    reg,
		Authenticator: startGate{g: g, next: proxy.NewChainAuthenticator(chain, cfg.Auth.Realm)},
		Authorizer:    g.authorizer,
		Extra:         extra,
	}); err != nil {
		return fail("%v", err)
	}
	g.publicSrv = g.prx.Server()

	if g.adminLn != nil {
		a, err := admin.New(cfg, admin.Options{Logger: g.log.Named("admin"), Gatherer: reg, Store: g.store, Auth: chain,
			ReadyChecks: g.readyChecks()})
		if err != nil {
			return fail("%v", err)
		}
		if err := admin.RegisterAPI(a, admin.APIDeps{
			Store:      g.store,
			Auth:       chain,
			Hasher:     g.hasher(),
			Logger:     g.log.Named("audit"),
			APIKeys:    cfg.APIKeys,
			Realm:      cfg.Auth.Realm,
			Authorizer: g.authorizer,
			Notifier:   g.adminNotifier(),
			Pprof:      cfg.Admin.Pprof,
		}); err != nil {
			return fail("%v", err)
		}
		g.adminSrv = a.Server()
		g.adminSrv.Handler = g.gateAdmin(g.adminSrv.Handler)
	}
	if g.demoLn != nil {
		g.echoSrv = echo.NewServer()
	}
	return exitOK
}

// openStore opens the configured store.
func openStore(cfg *configs.Config, log *zap.Logger) (store.Store, error) {
	switch cfg.Store.Driver {
	case configs.DriverRedis:
		return redisstore.New(cfg.Store.Redis, redisstore.Options{Logger: log.Named("store")})
	case configs.DriverBolt, "":
		path := cfg.Store.Bolt.Path
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		return boltstore.Open(path, boltstore.Options{})
	default:
		return nil, fmt.Errorf("unknown store.driver %q", cfg.Store.Driver)
	}
}

func (g *gateway) logStarted() {
	fields := []zap.Field{
		zap.String("version", version),
		zap.String("listen", g.publicLn.Addr().String()),
		zap.Bool("tls", g.cfg.TLS.Enabled()),
		zap.String("store", storeDriver(g.cfg)),
		zap.Int("routes", len(g.cfg.Routes)),
	}
	if g.adminLn != nil {
		fields = append(fields, zap.String("admin_listen", g.adminLn.Addr().String()))
	}
	if g.demoLn != nil {
		fields = append(fields, zap.String("demo_upstream", g.demoLn.Addr().String()))
	}
	g.log.Info("keygate started", fields...)
	if g.adminLn != nil && g.cfg.Admin.Pprof {
		g.log.Info("admin pprof enabled on http://"+g.adminLn.Addr().String()+"/debug/pprof",
			zap.String("access", "global admins"), zap.Int("max_seconds", admin.MaxPprofSeconds))
	}
}

func storeDriver(cfg *configs.Config) string {
	if cfg.Store.Driver == "" {
		return configs.DriverBolt
	}
	return cfg.Store.Driver
}

// demoHint tells a human how to try the demo.
func (g *gateway) demoHint() {
	scheme := "http"
	if g.cfg.TLS.Enabled() {
		scheme = "https"
	}
	base := scheme + "://" + dialable(g.publicLn.Addr())
	fmt.Fprintf(g.e.stderr, "keygate demo: requests are forwarded to the echo upstream at %s, which answers with what it received\n"+
		"  open route:   curl -i %s/public/hello?x=1\n"+
		"  login needed: curl -i -u admin:<password> %s/hello?x=1\n",
		g.demoLn.Addr(), base, base)
}

// dialable turns a listen address into one a client on this host can use.
func dialable(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(tcp.Port))
}

// shutdown stops accepting, lets in-flight requests finish within the
// shutdown timeout and reports whether it finished in time.
func (g *gateway) shutdown() bool {
	ctx, cancel := context.WithTimeout(context.Background(), g.shutdownTimeout())
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := true
	for _, s := range []struct {
		name string
		srv  *fasthttp.Server
	}{{"public", g.publicSrv}, {"admin", g.adminSrv}} {
		if s.srv == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.srv.ShutdownWithContext(ctx); err != nil {
				g.log.Error("shutdown did not finish in time", zap.String("listener", s.name), zap.Error(err))
				mu.Lock()
				ok = false
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// The demo upstream goes last: proxied requests in flight needed it.
	if g.echoSrv != nil {
		if err := g.echoSrv.ShutdownWithContext(ctx); err != nil {
			ok = false
		}
	}
	if ok {
		g.log.Info("stopped")
	}
	return ok
}

// closeAll releases everything start opened, in reverse order. Safe after
// a partial start.
func (g *gateway) closeAll() {
	if g.prx != nil {
		g.prx.Close()
	}
	if g.stopBG != nil {
		g.stopBG()
	}
	// Servers that never started still own their listeners.
	for _, ln := range []net.Listener{g.publicLn, g.adminLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	g.bg.Wait()
	for _, c := range g.closers {
		_ = c.Close()
	}
	if g.store != nil {
		if err := g.store.Close(); err != nil {
			g.log.Error("closing the store", zap.Error(err))
		}
	}
}

// hasher is the process's one argon2id hasher: its semaphore bounds hashing
// CPU (auth.max_hash_concurrency) across the listeners and the bootstrap.
//
// The concurrency is auth.max_hash_concurrency, capped at one less than the
// CPUs Go may use (at least 1): argon2id keeps a core busy for the whole
// hash, so as many hashes as cores would starve cached and API-key traffic
// during a wrong-password flood (measured on 2 cores: cached throughput fell
// to 0.04x with 2 hashes at once, stayed at ~1.0x with 1).
func (g *gateway) hasher() *password.Hasher {
	if g.pwHasher == nil {
		n := effectiveHashConcurrency(g.cfg.Auth.MaxHashConcurrency, runtime.GOMAXPROCS(0))
		if n != g.cfg.Auth.MaxHashConcurrency {
			g.log.Info("auth.max_hash_concurrency capped to leave a CPU for request traffic",
				zap.Int("configured", g.cfg.Auth.MaxHashConcurrency), zap.Int("effective", n), zap.Int("cpus", runtime.GOMAXPROCS(0)))
		}
		g.pwHasher = password.New(password.DefaultParams, n)
	}
	return g.pwHasher
}

// effectiveHashConcurrency caps configured at max(1, cpus-1).
func effectiveHashConcurrency(configured, cpus int) int {
	return max(1, min(configured, cpus-1))
}

// failureLimiterKeys bounds the memory of each failure limiter (per IP, per
// username) under a flood of distinct keys.
const failureLimiterKeys = 100_000

// buildChain wires authentication (DESIGN.md §1): the identity cache in
// front of the store, invalidated by the store's Watch (account states see
// each invalidation first), the API key and password authenticators, the
// failure limiters, and last-used batching. Background loops stop with ctx.
func (g *gateway) buildChain(ctx context.Context, reg prometheus.Registerer) (*authn.Chain, error) {
	cfg := g.cfg
	methods := make([]authn.Method, 0, len(cfg.Auth.Methods))
	for _, name := range cfg.Auth.Methods {
		m, err := authn.ParseMethod(name)
		if err != nil {
			return nil, fmt.Errorf("auth.methods: %w", err)
		}
		methods = append(methods, m)
	}
	c, err := cache.New(cache.Config{
		MaxEntries:  cfg.Cache.MaxEntries,
		TTL:         cfg.Cache.TTL.D(),
		NegativeTTL: cfg.Cache.NegativeTTL.D(),
		OutageGrace: cfg.Store.OutageGrace.D(),
	}, reg)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	states := keyauth.NewAccountStates(g.store, cfg.Cache.TTL.D(), nil)
	touch := store.NewTouchBatcher(g.store, store.DefaultTouchInterval, g.log.Named("last_used"))
	g.states = states
	g.ipLimiter = ratelimit.New(cfg.Auth.Failures.PerIPPerMinute, failureLimiterKeys, nil)
	g.userLimiter = ratelimit.New(cfg.Auth.Failures.PerUserPerMinute, failureLimiterKeys, nil)
	g.bg.Add(2)
	go func() {
		defer g.bg.Done()
		c.Listen(ctx, withWatchers(states.WatchFirst(g.store), g.extraWatchers...), g.log.Named("cache"))
	}()
	go func() { defer g.bg.Done(); _ = touch.Run(ctx) }()

	g.passwords = password.NewAuthenticator(g.store, g.hasher(), password.AuthOptions{Accounts: states, Logger: g.log.Named("password")})
	auths := map[authn.CredKind]authn.Authenticator{
		authn.KindBasic:  g.passwords,
		authn.KindAPIKey: keyauth.NewAuthenticator(g.store, keyauth.AuthOptions{Touch: touch, Accounts: states}),
	}
	if g.signer != nil {
		auths[authn.KindBearer] = token.NewAuthenticator(g.signer.Verifier(), g.store, token.AuthOptions{Accounts: states})
	}
	return authn.NewChain(authn.ChainConfig{
		Methods:        methods,
		Cache:          c.ForChain(),
		Authenticators: auths,
		IPLimiter:      g.ipLimiter,
		UserLimiter:    foldedLimiter{g.userLimiter},
		Registerer:     reg,
		Logger:         g.log.Named("audit"),
	})
}

// foldedLimiter counts the guesses of a presented username under its
// canonical form (store.FoldUsername): logins find a user by any spelling
// ("admin", "ADMIN", "ａｄｍｉｎ"), so the spellings share one budget. It
// does not embed the limiter: a method added to authn.FailureLimiter must
// be folded here too, or the build fails (the guard below).
type foldedLimiter struct{ l *ratelimit.Limiter }

func (f foldedLimiter) Reserve(key []byte) (int64, bool, time.Duration) {
	return f.l.Reserve(store.FoldUsername(key))
}

func (f foldedLimiter) Release(key []byte, stamp int64) { f.l.Release(store.FoldUsername(key), stamp) }

var _ authn.FailureLimiter = foldedLimiter{}

// tokenHandlers are the public listener's own endpoints: the OAuth2 token
// endpoint (tokens.path and /v1/oauth/token), the JWKS and the RFC 8414
// metadata. They share the
// chain's hasher, limiters and account states.
func (g *gateway) tokenHandlers(reg prometheus.Registerer) (map[string]fasthttp.RequestHandler, error) {
	if g.signer == nil {
		return nil, nil
	}
	rs, _ := g.store.(store.RefreshStore)
	ep, err := token.NewEndpoint(g.cfg.Tokens, g.signer, token.EndpointOptions{
		Store:       g.store,
		Refresh:     rs,
		Passwords:   g.passwords,
		Accounts:    g.states,
		IPLimiter:   g.ipLimiter,
		UserLimiter: foldedLimiter{g.userLimiter},
		ClientIP:    func(ctx *fasthttp.RequestCtx) netip.Addr { return g.prx.ClientAddr(ctx) },
		Realm:       g.cfg.Auth.Realm,
		Logger:      g.log.Named("audit"),
		Registerer:  reg,
	})
	if err != nil {
		return nil, fmt.Errorf("token endpoint: %w", err)
	}
	extra := map[string]fasthttp.RequestHandler{token.JWKSPath: g.signer.Verifier().JWKSHandler}
	for _, p := range ep.Paths() {
		extra[p] = g.gateHandler(ep.Handler, startingTokenBody)
	}
	for _, p := range ep.MetadataPaths() {
		extra[p] = ep.MetadataHandler
	}
	return extra, nil
}

// buildSigner loads the token signing key when bearer tokens are enabled:
// a missing, weak or default secret refuses to start. In --demo without a
// configured secret, an ephemeral random one is used (tokens die with the
// process).
func (g *gateway) buildSigner() error {
	if !slices.Contains(g.cfg.Auth.Methods, configs.MethodBearer) {
		return nil
	}
	tc := g.cfg.Tokens
	if g.demoLn != nil && tc.Signing.Algorithm == configs.AlgHS256 && tc.Signing.Secret == "" && tc.Signing.SecretFile == "" {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		tc.Signing.Secret = hex.EncodeToString(b)
		fmt.Fprintln(g.e.stderr, "keygate demo: bearer tokens are signed with an ephemeral secret (set KEYGATE_TOKENS_SIGNING_SECRET to keep them valid across restarts)")
	}
	s, err := token.NewSigner(tc)
	if err != nil {
		return fmt.Errorf("tokens.signing: %w (set KEYGATE_TOKENS_SIGNING_SECRET to at least 32 random bytes, or remove bearer from auth.methods)", err)
	}
	g.signer = s
	return nil
}

// buildAuthz builds the authorizer of authorization.handler. The external
// one also gets the store's invalidations (its decision cache) and a
// notifier that delivers principal/domain lifecycle events from a durable
// outbox in the store (with Redis, one queue shared by every instance).
func (g *gateway) buildAuthz(ctx context.Context, reg prometheus.Registerer) error {
	a, err := authz.New(g.cfg, authz.Options{Logger: g.log.Named("authz"), Registerer: reg})
	if err != nil {
		return err
	}
	g.authorizer = a
	ext, ok := a.(*authz.External)
	if !ok {
		return nil
	}
	g.closers = append(g.closers, ext)
	g.extraWatchers = append(g.extraWatchers, ext.Invalidate)
	so, ok := g.store.(store.Outbox)
	if !ok {
		return fmt.Errorf("authorization: the %s store keeps no notification outbox", g.cfg.Store.Driver)
	}
	out := authz.NewStoreOutbox(so)
	if g.notifier, err = authz.NewNotifier(g.cfg.Authorization.External, out, authz.NotifierOptions{Logger: g.log.Named("authz_notifier"), Registerer: reg}); err != nil {
		return err
	}
	g.bg.Add(1)
	go func() { defer g.bg.Done(); _ = g.notifier.Run(ctx) }()
	return nil
}

// withWatchers returns s whose Watch also hands every invalidation to fns
// (before the caller's function).
func withWatchers(s store.Store, fns ...func(store.Invalidation)) store.Store {
	if len(fns) == 0 {
		return s
	}
	return teeStore{Store: s, fns: fns}
}

type teeStore struct {
	store.Store
	fns []func(store.Invalidation)
}

func (t teeStore) Watch(ctx context.Context, fn func(store.Invalidation)) error {
	return t.Store.Watch(ctx, func(inv store.Invalidation) {
		for _, f := range t.fns {
			f(inv)
		}
		fn(inv)
	})
}

// purgeRefreshTokens deletes expired refresh tokens every interval until ctx
// ends.
func purgeRefreshTokens(ctx context.Context, rp store.RefreshPurger, interval time.Duration, log *zap.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := rp.PurgeRefreshTokens(ctx, time.Now()); err != nil {
				log.Warn("purging refresh tokens", zap.Error(err))
			} else if n > 0 {
				log.Info("purged refresh tokens", zap.Int("count", n))
			}
		}
	}
}

// adminNotifier is the admin API's lifecycle notifier: the external
// plugin's, or none.
func (g *gateway) adminNotifier() admin.Notifier {
	if g.notifier == nil {
		return nil
	}
	return g.notifier
}
