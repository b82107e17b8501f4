// The serve lifecycle: start (bind, open, build, in that order), run until a
// signal or a fatal error, shutdown and closeAll. Start-up with an
// unreachable store is in startup.go; the gateway and its components are
// built in build.go.

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/echo"
	"github.com/keygate/keygate/proxy"
	"github.com/keygate/keygate/store"
)

// run starts everything, waits for a signal or a fatal serve error, then
// shuts down. It returns the exit code.
func (g *gateway) run(ctx context.Context) int {
	defer g.closeAll()
	if code := g.start(); code != exitOK {
		return code
	}
	errc := make(chan error, 8)
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
	g.serveForwardAuth(serve)
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

func (g *gateway) shutdownTimeout() time.Duration { return g.cfg.ShutdownTimeout.D() }

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
	if err := g.bindForwardAuth(); err != nil {
		return fail("%v", err)
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
	remover.FirstDelay = time.Minute + mrand.N(time.Minute) //nolint:gosec // jitter, not a secret
	g.bg.Add(1)
	go func() { defer g.bg.Done(); _ = remover.Run(bgCtx) }()
	// Bolt sweeps expired refresh tokens; Redis expires them itself.
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		purgeRefreshTokens(bgCtx, g.store, store.DefaultPurgeInterval, g.log.Named("remover"))
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if w := cfg.APIKeys.ExpiryWarning.D(); w > 0 {
		// keygate_api_keys_expiring (issue 18): recounted every 5 minutes.
		exp := admin.NewExpiringKeys(g.store, w, 5*time.Minute, time.Now, g.log.Named("remover"))
		reg.MustRegister(exp)
		g.bg.Add(1)
		go func() { defer g.bg.Done(); exp.Run(bgCtx) }()
	}
	if err := g.buildAuthz(bgCtx, reg); err != nil {
		return fail("%v", err)
	}
	if err := g.buildUpstreamCredentials(reg); err != nil {
		return fail("%v", err)
	}
	if err := g.buildLimiter(bgCtx, reg); err != nil {
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
	if g.prx, err = proxy.New(proxy.ConfigOf(cfg), proxy.Options{
		Logger:        g.log.Named("proxy"),
		Registerer:    reg,
		Authenticator: startGate{g: g, next: proxy.NewChainAuthenticator(chain, cfg.Auth.Realm)},
		Native:        g.native,
		Authorizer:    g.authorizer,
		Extra:         extra,

		UpstreamCredentials: g.ucred,
		RateLimiter:         g.limiter,
	}); err != nil {
		return fail("%v", err)
	}
	g.publicSrv = g.prx.Server()
	if err := g.buildForwardAuth(reg); err != nil {
		return fail("%v", err)
	}

	if g.adminLn != nil {
		a, err := admin.New(admin.ConfigOf(cfg), admin.Options{Logger: g.log.Named("admin"), Gatherer: reg, Store: g.store, Auth: chain,
			ReadyChecks: g.readyChecks()})
		if err != nil {
			return fail("%v", err)
		}
		api, err := admin.NewAPI(admin.APIDeps{
			Store:       g.store,
			Auth:        chain,
			Hasher:      g.hasher(),
			Logger:      g.log.Named("audit"),
			APIKeys:     cfg.APIKeys,
			Realm:       cfg.Auth.Realm,
			Authorizer:  g.authorizer,
			Notifier:    g.adminNotifier(),
			Pprof:       cfg.Admin.Pprof,
			VerifyRoles: cfg.ForwardAuth.VerifyRoles,

			UpstreamCredentials: g.ucred,
			RateLimits:          cfg.RateLimits,
			LimitsChanged: func(ctx context.Context, scope store.LimitScope, id string) {
				if err := g.limiter.ReloadAssignment(ctx, scope, id); err != nil {
					g.log.Warn("ratelimit: reload after an admin write failed; the invalidation will retry", zap.Error(err))
				}
			},
		})
		if err != nil {
			return fail("%v", err)
		}
		api.Register(a)
		if cfg.Admin.UI {
			if err := g.mountUI(a, api, chain); err != nil {
				return fail("%v", err)
			}
		}
		g.adminSrv = a.Server()
		g.adminSrv.Handler = g.gateAdmin(g.adminSrv.Handler)
	}
	if g.demoLn != nil {
		g.echoSrv = echo.NewServer()
	}
	return exitOK
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
	fields = append(fields, g.forwardAuthFields()...)
	if g.demoLn != nil {
		fields = append(fields, zap.String("demo_upstream", g.demoLn.Addr().String()))
	}
	g.log.Info("keygate started", fields...)
	if g.adminLn != nil && g.cfg.Admin.Pprof {
		g.log.Info("admin pprof enabled on http://"+g.adminLn.Addr().String()+"/debug/pprof",
			zap.String("access", "global admins"), zap.Int("max_seconds", admin.MaxPprofSeconds))
	}
}

func storeDriver(cfg *configs.Config) string { return cfg.Store.Driver }

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
	if g.adminLn != nil && g.cfg.Admin.UI {
		// The admin listener serves plain HTTP (keep it private).
		fmt.Fprintf(g.e.stderr, "  web UI:       http://%s/ui/ (user admin)\n", dialable(g.adminLn.Addr()))
	}
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
	if !g.shutdownForwardAuth(ctx) {
		ok = false
	}
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
	g.closeForwardAuth()
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
