package authn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/httpx/hdr"
)

// Authenticator checks one kind of credential against the system of record:
// the miss path of the Chain. An authenticator that does not handle the
// credential it is given returns ErrNotResponsible.
//
// Errors: ErrInvalidCredentials (unknown principal, wrong secret),
// ErrExpired, ErrDisabled (user or account disabled) are cached as negative
// by the Chain; ErrExpired, ErrDisabled and ErrSecretVerified (wrapped with
// ErrInvalidCredentials for a revoked or expired key or a token of a changed
// user) must be returned only after the secret verified: they are not
// guesses (see Verified); ErrUnavailable (store unreachable, context
// ended, hashing capacity exhausted) is never cached and never reported as
// invalid. Other errors are treated as ErrUnavailable.
//
// c and its slices belong to the Chain and are valid only during the call;
// an authenticator must copy what it keeps. The returned Identity is cached
// and shared: it must not be modified afterwards.
type Authenticator interface {
	Authenticate(ctx context.Context, c *Credentials) (*Identity, error)
}

// AccountStates answers whether an account is enabled, from memory where it
// can, so that the miss path of an authenticator costs no extra store round
// trip for the account. An account that does not exist is not enabled.
// Errors mean the store could not be asked.
type AccountStates interface {
	Enabled(ctx context.Context, account string) (bool, error)
}

// IdentityCache is what the Chain needs of the credential cache: package
// cache's *Cache implements it (authn is the leaf, so the key and status
// types both use live here, in cachekey.go). Get must not allocate on a
// hit. See package cache for the semantics of Begin and the sequence
// numbers.
type IdentityCache interface {
	KeyOf(kind byte, a, b []byte) CacheKey
	Get(k CacheKey, now time.Time) (*Identity, CacheStatus, error)
	Begin() uint64
	SetPositive(k CacheKey, id *Identity, seq uint64) bool
	SetNegative(k CacheKey, reason error, seq uint64) bool
}

// FailureLimiter counts authentication attempts that may be guesses, per
// key (authn/failurelimit). Reserve spends one unit of key's budget when an
// attempt starts, atomically with the check that one is left (ok false and
// retryAfter when not, spending nothing), so concurrent attempts never
// exceed the budget; Release gives the unit reserved at stamp back when the
// attempt turned out not to be a guess. Neither retains key (Reserve copies
// it if it keeps it).
type FailureLimiter interface {
	Reserve(key []byte) (stamp int64, ok bool, retryAfter time.Duration)
	Release(key []byte, stamp int64)
}

// ErrRateLimited is wrapped by every *RateLimitedError.
var ErrRateLimited = errors.New("authn: too many failed attempts")

// RateLimitedError is returned when the client IP or the username has had
// too many failures in the last minute. → 429 with Retry-After (whole
// seconds, rounded up) of RetryAfter.
type RateLimitedError struct {
	RetryAfter time.Duration
	// Scope is what is limited: "ip" or "user".
	Scope string
}

func (e *RateLimitedError) Error() string {
	return "authn: too many failed attempts (" + e.Scope + "); retry after " + e.RetryAfter.String()
}

// Unwrap returns ErrRateLimited.
func (e *RateLimitedError) Unwrap() error { return ErrRateLimited }

// TokenError marks the failure of a credential presented with the Bearer
// scheme: the 401 carries WWW-Authenticate error="invalid_token" (RFC 6750
// §3.1).
type TokenError struct{ Err error }

func (e *TokenError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *TokenError) Unwrap() error { return e.Err }

// UnavailableRetryAfter is the Retry-After suggested with a 503 from
// ErrUnavailable.
const UnavailableRetryAfter = 5 * time.Second

// Status maps an error of Chain.Authenticate (or of an authenticator) to an
// HTTP status, a snake_case error code for JSON bodies, and the error
// parameter of the Bearer WWW-Authenticate challenge ("" when none):
//
//	nil                                    200
//	ErrUnavailable                         503 unavailable         (Retry-After: see RetryAfter)
//	*RateLimitedError                      429 rate_limited        (Retry-After: see RetryAfter)
//	ErrNoCredentials                       401 unauthorized
//	ErrMalformedCredentials, ErrInvalidCredentials,
//	ErrExpired, ErrDisabled                401 invalid_credentials (bearer: error="invalid_token")
//	ErrForbidden                           403 forbidden
//	ErrAddressNotAllowed                   403 address_not_allowed
//	anything else                          500 internal
//
// Every 401 gets the Basic and Bearer challenges; the four credential
// failures share one code so a client learns nothing about why.
func Status(err error) (status int, code string, wwwAuthenticateError string) {
	if err == nil {
		return http.StatusOK, "", ""
	}
	var rl *RateLimitedError
	switch {
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable, "unavailable", ""
	case errors.As(err, &rl):
		return http.StatusTooManyRequests, "rate_limited", ""
	case errors.Is(err, ErrNoCredentials):
		return http.StatusUnauthorized, "unauthorized", ""
	case errors.Is(err, ErrMalformedCredentials), errors.Is(err, ErrInvalidCredentials),
		errors.Is(err, ErrExpired), errors.Is(err, ErrDisabled), errors.Is(err, ErrNotResponsible):
		var te *TokenError
		if errors.As(err, &te) {
			return http.StatusUnauthorized, "invalid_credentials", "invalid_token"
		}
		return http.StatusUnauthorized, "invalid_credentials", ""
	case errors.Is(err, ErrAddressNotAllowed):
		return http.StatusForbidden, "address_not_allowed", ""
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden, "forbidden", ""
	}
	return http.StatusInternalServerError, "internal", ""
}

// RetryAfter is how long a client should wait before retrying after err: the
// limiter's delay for a *RateLimitedError, UnavailableRetryAfter for
// ErrUnavailable, 0 otherwise.
func RetryAfter(err error) time.Duration {
	var rl *RateLimitedError
	switch {
	case errors.Is(err, ErrUnavailable):
		return UnavailableRetryAfter
	case errors.As(err, &rl):
		return rl.RetryAfter
	}
	return 0
}

// ChainConfig configures a Chain.
type ChainConfig struct {
	// Methods are the enabled methods (auth.methods); nil or empty enables
	// basic, api_key and bearer. "Basic _api_key", "ApiKey" and "Bearer kg_"
	// are the api_key method; "Bearer <jwt>" is bearer.
	Methods []Method
	// Cache is the credential cache; nil caches nothing (every request takes
	// the miss path).
	Cache IdentityCache
	// Authenticators by credential kind. A kind without one is refused with
	// ErrInvalidCredentials (e.g. Bearer JWTs before the token authenticator
	// exists).
	Authenticators map[CredKind]Authenticator
	// IPLimiter counts guesses per client IP (IPv6 per /64), UserLimiter
	// per Basic username (auth.failures); nil limits nothing. See
	// Chain.Authenticate for what counts as a guess.
	IPLimiter, UserLimiter FailureLimiter
	// Now is the clock given to the cache (tests). Default: the wall clock
	// derived from one monotonic clock read per request, which follows a
	// step of the system clock within 1 ms (see monoWall in clock.go).
	// Durations are always measured with the real monotonic clock.
	Now func() time.Time
	// HitSampleEvery: keygate_auth_duration_seconds{cache="hit"} observes
	// one cache hit in HitSampleEvery (default DefaultHitSampleEvery; 1
	// observes every hit). Timing a hit takes a second clock read and a
	// histogram update (about 55 ns on a kvm-clock VM, a fifth of the hit);
	// a sample shows the same distribution. Every other outcome is always
	// observed, and keygate_auth_attempts_total counts every attempt.
	HitSampleEvery int
	// Timeout bounds one miss (store round trips and waiting for a hashing
	// slot; default 5s). Each miss runs on its own context with this timeout,
	// detached from the caller's cancellation (a fasthttp RequestCtx has no
	// deadline, and concurrent callers share the miss).
	Timeout time.Duration
	// Registerer receives keygate_auth_attempts_total and
	// keygate_auth_duration_seconds; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives one audit line per failure (nil: no-op).
	Logger *zap.Logger
}

// ParseMethod returns the Method named s ("basic", "api_key", "bearer": the
// values of auth.methods and X-Auth-Method).
func ParseMethod(s string) (Method, error) {
	for m := MethodBasic; m <= MethodBearer; m++ {
		if m.String() == s {
			return m, nil
		}
	}
	return MethodNone, fmt.Errorf("authn: unknown method %q (want basic, api_key or bearer)", s)
}

// DefaultHitSampleEvery is ChainConfig.HitSampleEvery's default.
const DefaultHitSampleEvery = 64

// DefaultChainTimeout is ChainConfig.Timeout's default.
const DefaultChainTimeout = 5 * time.Second

// Chain authenticates requests: parse, cache, limiter, singleflight,
// authenticator (DESIGN.md §1). It is safe for concurrent use. Build one per
// process and share it between the listeners: it registers its metrics once
// and its singleflight must see every miss.
type Chain struct {
	enabled [4]bool // by Method
	cache   IdentityCache
	auth    [4]Authenticator // by CredKind
	ipLim   FailureLimiter
	userLim FailureLimiter
	now     func() time.Time
	timeout time.Duration
	sample  uint32 // HitSampleEvery
	log     *zap.Logger
	flights flightGroup
	rlAudit *rateLimitedAudit
	known   *knownPairs
	m       chainMetrics
}

// Metric label values.
var (
	methodLabels = [4]string{"none", "basic", "api_key", "bearer"} // by Method
	cacheLabels  = [5]string{"miss", "hit", "negative", "stale", "none"}
)

// Results (keygate_auth_attempts_total{result}).
type result uint8

const (
	resSuccess     result = iota // authenticated (cache hit or store)
	resStale                     // served from a stale entry while the store was unavailable
	resInvalid                   // ErrInvalidCredentials (incl. bad checksum, unknown method)
	resMalformed                 // ErrMalformedCredentials
	resExpired                   // ErrExpired
	resDisabled                  // ErrDisabled
	resRateLimited               // *RateLimitedError
	resUnavailable               // ErrUnavailable
	resForbidden                 // ErrForbidden
	nResults
)

var resultLabels = [nResults]string{"success", "stale", "invalid", "malformed", "expired", "disabled",
	"rate_limited", "unavailable", "forbidden"}

// cacheNone labels durations of requests refused before the cache.
const cacheNone = 4

type chainMetrics struct {
	attempts [4][nResults]prometheus.Counter
	duration [4][5]prometheus.Observer
}

func newChainMetrics(reg prometheus.Registerer, hitSample uint32) (chainMetrics, error) {
	var m chainMetrics
	attempts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_auth_attempts_total",
		Help: "Authentication attempts by method and result.",
	}, []string{"method", "result"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "keygate_auth_duration_seconds",
		Help: "Time to authenticate a request, by method and cache outcome (hit, negative, miss, stale, none: refused before the cache). " +
			hitSampleHelp(hitSample),
		Buckets: []float64{.00001, .00005, .0001, .0005, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"method", "cache"})
	if reg != nil {
		for _, c := range []prometheus.Collector{attempts, duration} {
			if err := reg.Register(c); err != nil {
				return m, fmt.Errorf("authn: metrics: %w", err)
			}
		}
	}
	for mi, ml := range methodLabels {
		for r, rl := range resultLabels {
			m.attempts[mi][r] = attempts.WithLabelValues(ml, rl)
		}
		for ci, cl := range cacheLabels {
			m.duration[mi][ci] = duration.WithLabelValues(ml, cl)
		}
	}
	return m, nil
}

func hitSampleHelp(n uint32) string {
	if n == 1 {
		return "Every request is observed."
	}
	return fmt.Sprintf("Hits are sampled: one hit in %d is observed (the hit series' _count is about 1/%d of hits; keygate_auth_attempts_total counts them all); every other outcome is always observed.", n, n)
}

// NewChain builds a Chain.
func NewChain(cfg ChainConfig) (*Chain, error) {
	c := &Chain{
		cache:   cfg.Cache,
		ipLim:   cfg.IPLimiter,
		userLim: cfg.UserLimiter,
		now:     cfg.Now,
		timeout: cfg.Timeout,
		log:     cfg.Logger,
		rlAudit: &rateLimitedAudit{seed: maphash.MakeSeed()},
		known:   newKnownPairs(),
	}
	if c.cache == nil {
		c.cache = noCache{maphash.MakeSeed(), maphash.MakeSeed()}
	}
	if c.timeout <= 0 {
		c.timeout = DefaultChainTimeout
	}
	switch {
	case cfg.HitSampleEvery <= 0:
		c.sample = DefaultHitSampleEvery
	case cfg.HitSampleEvery > 1<<20:
		return nil, fmt.Errorf("authn: hit sampling 1 in %d is too sparse (at most 1 in %d)", cfg.HitSampleEvery, 1<<20)
	default:
		c.sample = uint32(cfg.HitSampleEvery)
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	if len(cfg.Methods) == 0 {
		c.enabled = [4]bool{false, true, true, true}
	}
	for _, m := range cfg.Methods {
		if m == MethodNone || int(m) >= len(c.enabled) {
			return nil, fmt.Errorf("authn: unknown method %d", m)
		}
		c.enabled[m] = true
	}
	for k, a := range cfg.Authenticators {
		if k == KindNone || int(k) >= len(c.auth) {
			return nil, fmt.Errorf("authn: authenticator for unknown credential kind %d", k)
		}
		c.auth[k] = a
	}
	m, err := newChainMetrics(cfg.Registerer, c.sample)
	if err != nil {
		return nil, err
	}
	c.m = m
	return c, nil
}

// Fixed failure errors (no allocation, nothing from the request).
var (
	errMethodDisabled  = fmt.Errorf("%w: authentication method not enabled", ErrInvalidCredentials)
	errNoAuthenticator = fmt.Errorf("%w: credential form not accepted", ErrInvalidCredentials)
	errNilIdentity     = fmt.Errorf("%w: authenticator returned no identity", ErrInvalidCredentials)
)

// reqState is the per-request scratch space, pooled: the parsed credential
// and the limiter key of the client address.
type reqState struct {
	cr    Credentials
	ipKey [16]byte
	hasIP bool
	// ipStamp and userStamp are the failure-limiter reservations of this
	// attempt (0: none).
	ipStamp, userStamp int64
	// hits counts the cache hits served with this state since the last one
	// timed (Chain.sample). sync.Pool keeps a state per P, so this is a
	// per-CPU sampler without shared writes.
	hits uint32
}

var reqPool = sync.Pool{New: func() any { return new(reqState) }}

// Authenticate authenticates the Authorization header value of a request
// from clientIP (the peer, or the client as told by a trusted proxy).
//
// authorization is only read during the call (it may be a fasthttp buffer).
// On a cache hit it does no I/O and no allocation. The Identity returned is
// shared and read-only.
//
// Errors (map them with Status and RetryAfter): ErrNoCredentials (empty
// header: anonymous), ErrMalformedCredentials, ErrInvalidCredentials,
// ErrExpired, ErrDisabled, *RateLimitedError, ErrUnavailable (store or
// hashing unavailable and nothing servable cached: 503, never cached as a
// failure). Failures of a credential sent with the Bearer scheme are wrapped
// in *TokenError. ctx's cancellation ends the wait for a miss (reported as
// ErrUnavailable), not the miss itself.
func (c *Chain) Authenticate(ctx context.Context, authorization []byte, clientIP netip.Addr) (*Identity, error) {
	rs := reqPool.Get().(*reqState)
	id, err := c.authenticate(ctx, authorization, clientIP, rs)
	if err == nil && id != nil && !id.AllowsAddr(clientIP) {
		// The credential is good (cached or verified) but not from here:
		// refused without a store access and without counting a failure.
		id, err = nil, c.refuse(rs, authorization, clientIP, methodOf(rs.cr.Kind), cacheNone, processClock.mono(), ErrAddressNotAllowed)
	}
	rs.cr.release()
	reqPool.Put(rs)
	return id, err
}

func (c *Chain) authenticate(ctx context.Context, authorization []byte, clientIP netip.Addr, rs *reqState) (*Identity, error) {
	cr := &rs.cr
	rs.hasIP = false
	rs.ipStamp, rs.userStamp = 0, 0
	start := processClock.mono()
	// A Bearer token's characters are checked below, unless it is a cache
	// hit (a hit is a token that passed every check: see bearerKey).
	if err := parseAuthorization(authorization, cr, true); err != nil {
		return nil, c.malformed(rs, authorization, clientIP, start, err)
	}
	m := methodOf(cr.Kind)
	if !c.enabled[m] {
		return nil, c.refuse(rs, authorization, clientIP, m, cacheNone, start, errMethodDisabled)
	}

	var key CacheKey
	switch cr.Kind {
	case KindBasic:
		key = c.cache.KeyOf(CacheKindBasic, cr.Username, cr.Password)
	case KindAPIKey:
		key = c.cache.KeyOf(CacheKindAPIKey, nil, cr.APIKey) // the id is in the value: not hashed twice
	default:
		key = c.bearerKey(cr.Token)
	}
	var now time.Time
	if c.now != nil {
		now = c.now()
	} else {
		now = time.Unix(0, processClock.wallAt(start))
	}
	id, st, reason := c.cache.Get(key, now)
	if st == CacheRefresh {
		c.refreshAhead(cr, key)
		if cr.Kind == KindBasic && rs.setIPKey(clientIP) {
			// Once per entry lifetime: keeps a busy user's address known
			// (verifyOverIPBudget) although its logins are all hits.
			c.known.add(rs.ipKey[:], cr.Username, now)
		}
		st = CacheHit
	}
	if st == CacheHit {
		c.m.attempts[m][resSuccess].Inc()
		if rs.hits++; rs.hits >= c.sample {
			rs.hits = 0
			c.m.duration[m][CacheHit].Observe(c.since(start))
		}
		return id, nil
	}
	if cr.Kind == KindBearer {
		if err := checkToken(cr.Token); err != nil {
			return nil, c.malformed(rs, authorization, clientIP, start, err)
		}
	}

	// Not known good. A cached identity (hit, or stale: verified before and
	// untouched by any invalidation) is not a guess: it is served or
	// revalidated whatever the client's failure budget, so brute force
	// against a user or from a shared address does not lock out clients
	// already authenticated. Everything else may be a guess and reserves
	// its unit of the budgets before any check (see limit).
	if st == CacheStale {
		return c.revalidate(ctx, rs, authorization, clientIP, m, key, id, start)
	}
	if st == CacheNegative {
		if Verified(reason) {
			// Revoked, expired or disabled: the secret verified when the
			// entry was made; not a guess, no budget spent.
			return nil, c.refuse(rs, authorization, clientIP, m, st, start, reason)
		}
		// A known wrong credential: no check is made, but repeating it is
		// still guessing.
		if err := c.limit(rs, clientIP, false, now); err != nil {
			return nil, c.rateLimited(rs, authorization, clientIP, m, st, start, err)
		}
		return nil, c.refuse(rs, authorization, clientIP, m, st, start, reason)
	}
	var overIP *RateLimitedError
	if err := c.limit(rs, clientIP, true, now); err != nil {
		if !errors.As(err, &overIP) || overIP.Scope != "ip" || !c.verifyOverIPBudget(rs, now) {
			return nil, c.rateLimited(rs, authorization, clientIP, m, st, start, err)
		}
		// Verified despite the address's budget (see verifyOverIPBudget);
		// a wrong secret is still answered 429.
	}
	id, err := c.miss(ctx, cr, key)
	switch {
	case err == nil:
		c.giveBack(rs)
		if cr.Kind == KindBasic && rs.hasIP {
			c.known.add(rs.ipKey[:], cr.Username, now)
		}
		c.m.attempts[m][resSuccess].Inc()
	case errors.Is(err, errAbandoned):
		// The caller stopped waiting; the check runs on and its outcome
		// is not known here: the reservation stays spent.
		return nil, c.refuse(rs, authorization, clientIP, m, st, start, err)
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrForbidden), Verified(err):
		// Nothing verified (store or hashing unavailable), or the secret
		// verified and the credential is refused for its state: not a
		// guess.
		c.giveBack(rs)
		return nil, c.refuse(rs, authorization, clientIP, m, st, start, err)
	case overIP != nil && negativeCacheable(err):
		c.audit(cr, authorization, clientIP, m, st, err)
		return nil, c.rateLimited(rs, authorization, clientIP, m, st, start, overIP)
	default:
		// A failed guess: its reservations are the failure count.
		return nil, c.refuse(rs, authorization, clientIP, m, st, start, err)
	}
	c.m.duration[m][st].Observe(c.since(start))
	return id, nil
}

// malformed refuses an Authorization header that does not parse (err from
// parseAuthorization or checkToken). Includes an API key with a bad
// checksum: refused before any lookup. It spends a unit of the address's
// budget when one is left (a failure either way: 401).
func (c *Chain) malformed(rs *reqState, authorization []byte, clientIP netip.Addr, start int64, err error) error {
	if errors.Is(err, ErrNoCredentials) {
		return err
	}
	m := MethodNone
	if errors.Is(err, ErrInvalidCredentials) { // API key checksum
		m = MethodAPIKey
	}
	if c.ipLim != nil && rs.setIPKey(clientIP) {
		c.ipLim.Reserve(rs.ipKey[:])
	}
	return c.refuse(rs, authorization, clientIP, m, cacheNone, start, err)
}

// revalidate checks a stale credential again (verified before, untouched by
// any invalidation, within store.outage_grace): not a guess, no budget.
// While the store is unavailable the stale identity is served (DESIGN.md
// §8).
func (c *Chain) revalidate(ctx context.Context, rs *reqState, authorization []byte, clientIP netip.Addr, m Method,
	key CacheKey, stale *Identity, start int64) (*Identity, error) {
	id, err := c.miss(ctx, &rs.cr, key)
	switch {
	case err == nil:
		c.m.attempts[m][resSuccess].Inc()
	case errors.Is(err, ErrUnavailable) && stale != nil:
		c.m.attempts[m][resStale].Inc()
		id = stale
	default:
		return nil, c.refuse(rs, authorization, clientIP, m, CacheStale, start, err)
	}
	c.m.duration[m][CacheStale].Observe(c.since(start))
	return id, nil
}

// rateLimited counts, audits and returns a *RateLimitedError.
func (c *Chain) rateLimited(rs *reqState, authorization []byte, clientIP netip.Addr, m Method, st CacheStatus,
	start int64, err error) error {
	c.m.attempts[m][resRateLimited].Inc()
	c.m.duration[m][st].Observe(c.since(start))
	c.audit(&rs.cr, authorization, clientIP, m, st, err)
	return err
}

// since returns the seconds elapsed since start (a processClock.mono()).
func (c *Chain) since(start int64) float64 {
	return time.Duration(processClock.mono() - start).Seconds()
}

// miss authenticates cr with its authenticator, once for all concurrent
// callers presenting the same credential, and caches the outcome.
func (c *Chain) miss(ctx context.Context, cr *Credentials, key CacheKey) (*Identity, error) {
	a := c.auth[cr.Kind]
	if a == nil {
		return nil, errNoAuthenticator
	}
	f := c.flight(ctx, a, cr, key)
	select {
	case <-f.done:
		if f.err != nil {
			return nil, f.err
		}
		return f.id, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", errAbandoned, ctx.Err())
	}
}

// errAbandoned: the caller's context ended before its miss did (503; the
// miss goes on for whoever shares it).
var errAbandoned = fmt.Errorf("%w: gave up waiting for the credential check", ErrUnavailable)

// refreshAhead revalidates a cached credential in the background (the
// cache returned CacheRefresh to this one caller): one flight, as a miss
// would run, whose outcome replaces the entry (or, if the credential is no
// longer good, makes it negative); nobody waits for it. A failed refresh is
// not a failure of this caller's: it spends no failure budget and writes no
// audit line; the next request meets its outcome.
func (c *Chain) refreshAhead(cr *Credentials, key CacheKey) {
	a := c.auth[cr.Kind]
	if a == nil {
		return
	}
	c.flight(context.Background(), a, cr, key)
}

// flight returns the flight authenticating key's credential with a,
// starting it unless one is running. cr aliases the request (and the pooled
// Credentials, recycled when the caller returns): the flight gets its own
// copy, since it may outlive the caller, wiped once used. ctx's values (not
// its cancellation) are kept.
func (c *Chain) flight(ctx context.Context, a Authenticator, cr *Credentials, key CacheKey) *flight {
	f, leader := c.flights.join(key)
	if !leader {
		return f
	}
	cp := cloneCredentials(cr)
	c.flights.start(key, f, func() (*Identity, error) {
		seq := c.cache.Begin() // before the lookup: see package cache
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		id, err := a.Authenticate(fctx, cp)
		cancel()
		cp.wipe()
		err = normalise(id, err)
		switch {
		case err == nil:
			c.cache.SetPositive(key, id, seq)
		case negativeCacheable(err):
			c.cache.SetNegative(key, err, seq)
		default:
			id = nil
		}
		return id, err
	})
	return f
}

// normalise maps an authenticator's outcome to the chain's error classes.
func normalise(id *Identity, err error) error {
	switch {
	case err == nil && id == nil:
		return errNilIdentity
	case err == nil:
		return nil
	case errors.Is(err, ErrNotResponsible):
		return errNoAuthenticator
	case errors.Is(err, ErrUnavailable):
		return err
	case negativeCacheable(err), errors.Is(err, ErrForbidden):
		return err
	}
	// Unknown failure (store error, context): never "invalid".
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// negativeCacheable reports whether err says the credential itself is bad.
func negativeCacheable(err error) bool {
	if errors.Is(err, ErrUnavailable) {
		return false
	}
	return errors.Is(err, ErrInvalidCredentials) || Verified(err) || errors.Is(err, ErrMalformedCredentials)
}

// limit reserves this attempt's unit of the client address's budget and,
// for Basic, of the username's (rs.ipStamp, rs.userStamp), before anything
// is checked: N concurrent guesses never start more checks than the budget
// (DESIGN.md §13, SECURITY.md "limiter races"). A reservation is kept when
// the attempt fails as a guess and given back (giveBack) otherwise. Over
// the address's budget it still reserves the username's when fresh (see
// verifyOverIPBudget) and returns the ip *RateLimitedError; over the
// username's it holds nothing.
func (c *Chain) limit(rs *reqState, clientIP netip.Addr, fresh bool, now time.Time) error {
	cr := &rs.cr
	var ipErr error
	if c.ipLim != nil && rs.setIPKey(clientIP) {
		stamp, ok, ra := c.ipLim.Reserve(rs.ipKey[:])
		if !ok {
			ipErr = &RateLimitedError{RetryAfter: ra, Scope: "ip"}
			if !fresh || cr.Kind != KindBasic || !c.known.has(rs.ipKey[:], cr.Username, now) {
				return ipErr
			}
		}
		rs.ipStamp = stamp
	}
	if c.userLim != nil && cr.Kind == KindBasic {
		stamp, ok, ra := c.userLim.Reserve(cr.Username)
		if !ok {
			c.giveBack(rs)
			return &RateLimitedError{RetryAfter: ra, Scope: "user"}
		}
		rs.userStamp = stamp
	}
	return ipErr
}

// verifyOverIPBudget says whether a fresh credential is checked although
// its address is over its failure budget (limit returned the ip error), so
// that a valid client is not refused for others' failures from its address
// without re-opening guessing:
//
//   - API keys (a 256-bit secret behind a salted SHA-256) and bearer tokens
//     (a signature): verifying one is cheap and guessing one hopeless, so
//     they are verified; a wrong one is answered 429 like before.
//   - a password only for a username that logged in from this address
//     before (knownPairs) and only within the username's own budget (limit
//     reserved it): a password spray from the address gets nothing, a
//     colleague behind the same NAT whose cached entry expired logs in.
func (c *Chain) verifyOverIPBudget(rs *reqState, now time.Time) bool {
	switch rs.cr.Kind {
	case KindAPIKey, KindBearer:
		return true
	case KindBasic:
		// limit has reserved the username's budget for a known pair.
		return c.known.has(rs.ipKey[:], rs.cr.Username, now)
	default:
		return false
	}
}

// giveBack releases this attempt's reservations: it was not a guess.
func (c *Chain) giveBack(rs *reqState) {
	if rs.ipStamp != 0 {
		c.ipLim.Release(rs.ipKey[:], rs.ipStamp)
		rs.ipStamp = 0
	}
	if rs.userStamp != 0 {
		c.userLim.Release(rs.cr.Username, rs.userStamp)
		rs.userStamp = 0
	}
}

// refuse counts, logs and returns a failure (its reservations, if any, stay
// spent unless the caller gave them back).
func (c *Chain) refuse(rs *reqState, authorization []byte, clientIP netip.Addr, m Method, st CacheStatus,
	start int64, err error) error {
	cr := &rs.cr
	c.m.attempts[m][resultOf(err)].Inc()
	c.m.duration[m][st].Observe(c.since(start))
	c.audit(cr, authorization, clientIP, m, st, err)
	if negativeCacheable(err) && hasSchemeBearer(authorization) {
		return &TokenError{Err: err}
	}
	return err
}

// audit writes one line per failure: who (username or key id, never a
// password, secret, token or key value), from where, why.
func (c *Chain) audit(cr *Credentials, authorization []byte, clientIP netip.Addr, m Method, st CacheStatus, err error) {
	ce := c.log.Check(zap.InfoLevel, "authentication failed")
	if ce == nil {
		return
	}
	leftOut := -1
	var rl *RateLimitedError
	if errors.As(err, &rl) {
		var subject []byte
		if rl.Scope == "user" {
			subject = cr.Username
		}
		now := time.Now()
		if c.now != nil {
			now = c.now()
		}
		write, n := c.rlAudit.note(rl.Scope, subject, clientIP, now)
		if !write {
			return
		}
		leftOut = n
	}
	fields := make([]zap.Field, 0, 8)
	fields = append(fields,
		zap.String("event", "auth_failure"),
		zap.String("method", m.String()),
	)
	switch cr.Kind {
	case KindBasic:
		fields = append(fields, zap.String("username", string(cr.Username)))
	case KindAPIKey:
		fields = append(fields, zap.String("key_id", string(cr.KeyID)))
	default: // a bearer token or none: no name of its own to log
	}
	if clientIP.IsValid() {
		fields = append(fields, zap.String("client_ip", clientIP.String()))
	}
	cache := "none"
	if st != cacheNone {
		cache = cacheLabels[st]
	}
	fields = append(fields, zap.String("cache", cache), zap.String("reason", err.Error()))
	if leftOut >= 0 {
		// Rate-limited refusals of this client (or user) not logged
		// since its previous line (see rateLimitedAudit).
		fields = append(fields, zap.Int("rate_limited_not_logged", leftOut))
	}
	ce.Write(fields...)
}

func resultOf(err error) result {
	switch {
	case errors.Is(err, ErrUnavailable):
		return resUnavailable
	case errors.Is(err, ErrRateLimited):
		return resRateLimited
	case errors.Is(err, ErrMalformedCredentials):
		return resMalformed
	case errors.Is(err, ErrExpired):
		return resExpired
	case errors.Is(err, ErrDisabled):
		return resDisabled
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrAddressNotAllowed):
		return resForbidden
	}
	return resInvalid
}

func methodOf(k CredKind) Method {
	switch k {
	case KindBasic:
		return MethodBasic
	case KindAPIKey:
		return MethodAPIKey
	case KindBearer:
		return MethodBearer
	default:
		return MethodNone
	}
}

// hasSchemeBearer reports whether the Authorization value uses the Bearer
// scheme (any case, after optional whitespace).
func hasSchemeBearer(h []byte) bool {
	h = hdr.TrimOWS(h)
	return len(h) >= 6 && hdr.EqualFold(h[:6], "bearer") && (len(h) == 6 || h[6] == ' ' || h[6] == '\t')
}

// setIPKey sets rs.ipKey to the failure-limiter key of a client address
// (LimiterKey), once per request. It reports false for an invalid address,
// which is not limited.
func (rs *reqState) setIPKey(a netip.Addr) bool {
	if !rs.hasIP {
		rs.ipKey, rs.hasIP = LimiterKey(a)
	}
	return rs.hasIP
}

// LimiterKey is the failure limiters' key of a client address: the 16-byte
// form of an IPv4 address, the /64 of an IPv6 one (a client usually
// controls a whole /64). ok is false for an invalid address, which is not
// limited. Every caller of a FailureLimiter keyed by address uses it.
func LimiterKey(a netip.Addr) (key [16]byte, ok bool) {
	if !a.IsValid() {
		return key, false
	}
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			a = p.Addr()
		}
	}
	return a.As16(), true
}

// cloneCredentials copies the credential parts of c into one new buffer.
func cloneCredentials(c *Credentials) *Credentials {
	n := len(c.Username) + len(c.Password) + len(c.KeyID) + len(c.Secret) + len(c.APIKey) + len(c.Token)
	buf := make([]byte, 0, n)
	part := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	return &Credentials{
		Kind:     c.Kind,
		Username: part(c.Username),
		Password: part(c.Password),
		KeyID:    part(c.KeyID),
		Secret:   part(c.Secret),
		APIKey:   part(c.APIKey),
		Token:    part(c.Token),
	}
}

// release wipes the decoded bytes (passwords) and drops the references to
// the request before c goes back to the pool. Cheaper than Reset, which
// zeroes the whole buffer: the next ParseAuthorization resets anyway.
func (c *Credentials) release() {
	clear(c.buf[:c.used])
	c.used = 0
	c.Kind = KindNone
	c.Username, c.Password, c.KeyID, c.Secret, c.APIKey, c.Token = nil, nil, nil, nil, nil, nil
}

// wipe zeroes the parts of a cloned Credentials (passwords, secrets).
func (c *Credentials) wipe() {
	for _, b := range [][]byte{c.Username, c.Password, c.KeyID, c.Secret, c.APIKey, c.Token} {
		clear(b)
	}
}

// noCache is the IdentityCache of a Chain built without one. Its keys only
// name singleflight calls.
type noCache struct{ s0, s1 maphash.Seed }

func (n noCache) KeyOf(kind byte, a, b []byte) CacheKey {
	sum := func(seed maphash.Seed) uint64 {
		var h maphash.Hash
		h.SetSeed(seed)
		var hdr [17]byte
		hdr[0] = kind
		binary.LittleEndian.PutUint64(hdr[1:], uint64(len(a)))
		binary.LittleEndian.PutUint64(hdr[9:], uint64(len(b)))
		h.Write(hdr[:])
		h.Write(a)
		h.Write(b)
		return h.Sum64()
	}
	return CacheKey{Hi: sum(n.s0), Lo: sum(n.s1)}
}

func (noCache) Get(CacheKey, time.Time) (*Identity, CacheStatus, error) { return nil, CacheMiss, nil }
func (noCache) Begin() uint64                                           { return 0 }
func (noCache) SetPositive(CacheKey, *Identity, uint64) bool            { return false }
func (noCache) SetNegative(CacheKey, error, uint64) bool                { return false }
