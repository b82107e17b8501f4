// The gateway and the construction of serve's components: the store, the
// password hasher, the
// authentication chain and its cache, the token endpoint and signer, the
// authorizer and its notifier.

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/failurelimit"
	"github.com/keygate/keygate/authn/keyauth"
	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/authn/principal"
	"github.com/keygate/keygate/authn/token"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/proxy"
	"github.com/keygate/keygate/ratelimit"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
	"github.com/keygate/keygate/store/redisstore"
	"github.com/keygate/keygate/upstreamcred"
)

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
	store             store.Driver // every capability checked at open (store.AsDriver)
	publicSrv         *fasthttp.Server
	adminSrv          *fasthttp.Server
	echoSrv           *fasthttp.Server
	prx               *proxy.Proxy
	chain             *authn.Chain
	native            *authz.Native    // native handler only: counts the route-role decisions
	authorizer        authz.Authorizer // external handler only
	notifier          *authz.Notifier  // external handler only
	closers           []io.Closer      // closed after the background loops stop
	pwHasher          *password.Hasher
	passwords         *password.Authenticator
	signer            *token.Signer // nil when bearer is not in auth.methods
	states            *principal.AccountStates
	ipLimiter         *failurelimit.Limiter
	userLimiter       *failurelimit.Limiter
	external          *authz.External // external handler only (its decision cache is invalidated)
	limiter           *ratelimit.Limiter
	bg                sync.WaitGroup
	stopBG            context.CancelFunc
	fwd               fwdState // forward-auth listeners (forwardauth.go)
	ucred             *upstreamcred.Manager

	// Start-up (startup.go): started is set once the store is
	// initialised; until then requests needing it get 503. retryStore says
	// the first attempt failed and run retries until storeDeadline.
	started       atomic.Bool
	retryStore    bool
	storeDeadline time.Time
}

// openStore opens the configured store and checks it has every capability
// serve wires (store.Driver): a missing one is a start-up error, never a
// feature silently left out.
func openStore(cfg *configs.Config, log *zap.Logger) (store.Driver, error) {
	var s store.Store
	var err error
	switch cfg.Store.Driver {
	case configs.DriverRedis:
		s, err = redisstore.New(cfg.Store.Redis, redisstore.Options{Logger: log.Named("store")})
	case configs.DriverBolt, "":
		path := cfg.Store.Bolt.Path
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		s, err = boltstore.Open(path, boltstore.Options{})
	default:
		return nil, fmt.Errorf("unknown store.driver %q", cfg.Store.Driver)
	}
	if err != nil {
		return nil, err
	}
	return requireDriver(s)
}

// requireDriver returns s as a store.Driver, or closes it and returns the
// capabilities it lacks.
func requireDriver(s store.Store) (store.Driver, error) {
	d, err := store.AsDriver(s)
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	return d, nil
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
// front of the store, invalidated by the store's Watch after everything
// invalidationSubscribers lists), the API key and password authenticators, the
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
	states := principal.NewAccountStates(g.store, cfg.Cache.TTL.D(), nil)
	touch := store.NewTouchBatcher(g.store, store.DefaultTouchInterval, g.log.Named("last_used"))
	g.states = states
	g.ipLimiter = failurelimit.New(cfg.Auth.Failures.PerIPPerMinute, failureLimiterKeys, nil)
	g.userLimiter = failurelimit.New(cfg.Auth.Failures.PerUserPerMinute, failureLimiterKeys, nil)
	watched := store.WatchThrough(g.store, g.invalidationSubscribers()...)
	g.bg.Add(2)
	go func() { defer g.bg.Done(); c.Listen(ctx, watched, g.log.Named("cache")) }()
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
		Cache:          c,
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
type foldedLimiter struct{ l *failurelimit.Limiter }

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
	ep, err := token.NewEndpoint(g.cfg.Tokens, g.signer, token.EndpointOptions{
		Store:       g.store,
		Refresh:     g.store,
		Passwords:   g.passwords,
		Accounts:    g.states,
		IPLimiter:   g.ipLimiter,
		UserLimiter: foldedLimiter{g.userLimiter},
		ClientIP:    func(ctx *fasthttp.RequestCtx) netip.Addr { return g.prx.ClientAddr(ctx) },
		Realm:       g.cfg.Auth.Realm,
		Logger:      g.log.Named("audit"),
		Registerer:  reg,
		Keys:        g.chain,
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

// buildAuthz builds what authorization.handler adds to the route roles the
// proxy always enforces: with native, the Native that counts those
// decisions; with external, the External authorizer, which also gets the
// store's invalidations (its decision cache) and a notifier that delivers
// principal/domain lifecycle events from a durable outbox in the store
// (with Redis, one queue shared by every instance).
func (g *gateway) buildAuthz(ctx context.Context, reg prometheus.Registerer) error {
	opts := authz.Options{Logger: g.log.Named("authz"), Registerer: reg}
	if g.cfg.Authorization.Handler != configs.HandlerExternal { // validated: native
		g.native = authz.NewNative(opts)
		return nil
	}
	ext, err := authz.NewExternal(g.cfg.Authorization.External, opts)
	if err != nil {
		return err
	}
	g.authorizer = ext
	g.closers = append(g.closers, ext)
	g.external = ext
	out := authz.NewStoreOutbox(g.store)
	if g.notifier, err = authz.NewNotifier(g.cfg.Authorization.External, out, authz.NotifierOptions{Logger: g.log.Named("authz_notifier"), Registerer: reg}); err != nil {
		return err
	}
	g.bg.Add(1)
	go func() { defer g.bg.Done(); _ = g.notifier.Run(ctx) }()
	return nil
}

// adminNotifier is the admin API's lifecycle notifier: the external
// plugin's, or none.
func (g *gateway) adminNotifier() admin.Notifier {
	if g.notifier == nil {
		return nil
	}
	return g.notifier
}
