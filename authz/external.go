package authz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/internal/httpx/hdr"
	"github.com/keygate/keygate/store"
)

// Plugin client settings; every timeout is explicit.
const (
	pluginIdleConn  = 4 * time.Second // below common server keep-alive timeouts
	pluginMaxConns  = 512
	maxCachedTuples = 64 // requests with more tuples bypass the cache
)

// plugin is an HTTP client of the plugin: endpoint, pool and signing.
type plugin struct {
	hc     *fasthttp.HostClient
	host   string // Host header
	base   string // path of the endpoint, no trailing '/'
	secret string
	scheme string
}

// newPlugin parses endpoint (http(s)://host[:port][/base]) and builds a pool
// whose dial, read, write and connection-wait timeouts are all timeout.
func newPlugin(endpoint, secret string, timeout time.Duration) (*plugin, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("authz: authorization.external.endpoint must be an http(s) URL with a host")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("authz: authorization.external.endpoint must not carry credentials, a query or a fragment")
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("authz: authorization.external.timeout must be positive (got %s)", timeout)
	}
	p := &plugin{
		host:   u.Host,
		base:   strings.TrimSuffix(u.EscapedPath(), "/"),
		secret: secret,
		scheme: u.Scheme,
	}
	// Authorize and lifecycle calls are safe to repeat (the plugin treats
	// them idempotently): any may be retried once on a stale connection.
	p.hc = httpx.NewHostClient(u, httpx.HostClientConfig{
		DialTimeout:         timeout,
		ReadTimeout:         timeout,
		WriteTimeout:        timeout,
		MaxConnWaitTimeout:  timeout,
		MaxIdleConnDuration: pluginIdleConn,
		MaxConns:            pluginMaxConns,
		MaxResponseBodySize: MaxPluginBody,
	})
	return p, nil
}

// prepare fills req for method base+path with body, signed when a secret is
// set. now is the signing time.
func (p *plugin) prepare(req *fasthttp.Request, method, path string, body []byte, now time.Time) {
	req.Header.SetMethod(method)
	req.SetRequestURI(path)
	req.URI().DisablePathNormalizing = true
	req.Header.SetHost(p.host)
	req.UseHostHeader = true
	if len(body) > 0 {
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(body)
	}
	if p.secret != "" {
		var tsBuf [20]byte
		ts := strconv.AppendInt(tsBuf[:0], now.Unix(), 10)
		req.Header.SetBytesV(HeaderTimestamp, ts)
		var sigBuf [3 + 64]byte
		req.Header.SetBytesV(HeaderSignature, AppendSignature(sigBuf[:0], p.secret, method, path, hdr.StringView(ts), body))
	}
}

// failure classifies a plugin call that did not yield a usable answer.
type failure struct {
	kind   string // log field: refused, timeout, transport, status, too_large, malformed, incomplete, unexpected
	status int
	err    error // ErrDenied or ErrUnavailable
}

func (f *failure) Error() string {
	if f.status != 0 {
		return fmt.Sprintf("%v: plugin %s (status %d)", f.err, f.kind, f.status)
	}
	return fmt.Sprintf("%v: plugin %s", f.err, f.kind)
}

func (f *failure) Unwrap() error { return f.err }

// classify maps a client error to a failure.
func classifyTransport(err error) *failure {
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return &failure{kind: "too_large", err: ErrDenied}
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &failure{kind: "timeout", err: ErrUnavailable}
	case errors.As(err, &oe) && oe.Op == "dial":
		return &failure{kind: "refused", err: ErrUnavailable}
	default:
		return &failure{kind: "transport", err: ErrUnavailable}
	}
}

// classifyStatus maps a non-200 answer: 5xx and 429 mean the plugin cannot
// decide now (503); any other status is not an answer keygate can trust
// (403).
func classifyStatus(code int) *failure {
	if code >= 500 || code == fasthttp.StatusTooManyRequests {
		return &failure{kind: "status", status: code, err: ErrUnavailable}
	}
	return &failure{kind: "status", status: code, err: ErrDenied}
}

// External asks the external authorization plugin and caches its answers.
// It is safe for concurrent use. Close releases it.
type External struct {
	p        *plugin
	path     string // base + PathAuthorize
	timeout  time.Duration
	cache    *decisionCache // nil: cache_ttl 0
	now      func() time.Time
	log      *zap.Logger
	m        *metrics
	lim      logLimiter
	bodyPool sync.Pool
}

// NewExternal builds the plugin client for cfg. cfg.CacheTTL 0 disables the
// decision cache.
func NewExternal(cfg configs.External, opts Options) (*External, error) {
	opts.fill()
	p, err := newPlugin(cfg.Endpoint, cfg.Secret, cfg.Timeout.D())
	if err != nil {
		return nil, err
	}
	e := &External{
		p:       p,
		path:    p.base + PathAuthorize,
		timeout: cfg.Timeout.D(),
		now:     opts.Now,
		log:     opts.Logger.With(zap.String("component", "authz")),
		m:       newMetrics(opts.Registerer, handlerExternal),
	}
	e.bodyPool.New = func() any { return &callScratch{} }
	if ttl := cfg.CacheTTL.D(); ttl > 0 {
		if e.cache, err = newDecisionCache(opts.MaxEntries, ttl); err != nil {
			return nil, fmt.Errorf("authz: decision cache: %w", err)
		}
	}
	return e, nil
}

// Close releases the decision cache and idle connections.
func (e *External) Close() error {
	if e.cache != nil {
		e.cache.close()
	}
	e.p.hc.CloseIdleConnections()
	return nil
}

// Invalidate drops cached decisions of the user, the account (domain), or
// all of them (Flush), in O(1). Wire it to the store's Watch next to the
// identity cache.
func (e *External) Invalidate(inv store.Invalidation) {
	if e.cache != nil {
		e.cache.invalidate(inv)
	}
}

type callScratch struct {
	body    []byte
	verdict []bool
}

// Authorize implements Authorizer. Tuples found in the cache are not sent;
// the others go to the plugin in one call bounded by the configured timeout
// (or ctx's deadline, if earlier). A warm cache hit for every tuple performs
// no I/O and no allocation.
func (e *External) Authorize(ctx context.Context, req *Request) (Decision, error) {
	if req == nil || req.Identity == nil || len(req.Actions) == 0 {
		e.m.deny.Inc()
		return Decision{}, ErrDenied
	}
	if err := ctx.Err(); err != nil {
		e.m.errs.Inc()
		return Decision{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	now := req.Now
	if now.IsZero() {
		now = e.now()
	}
	var begin, missing uint64
	useCache := e.cache != nil && len(req.Actions) <= maxCachedTuples
	if useCache {
		begin = e.cache.begin()
		nowNs := now.UnixNano()
		for i := range req.Actions {
			allowed, ok := e.cache.get(req.Identity, req.Domain, &req.Actions[i], nowNs)
			switch {
			case !ok:
				missing |= 1 << i
			case !allowed:
				e.m.deny.Inc()
				return Decision{Cached: true}, ErrDenied
			}
		}
		if missing == 0 {
			e.m.allow.Inc()
			return Decision{Allowed: true, Cached: true}, nil
		}
	}
	var sel func(int) bool
	if useCache {
		sel = func(i int) bool { return missing&(1<<i) != 0 }
	}
	return e.call(ctx, req, sel, begin, now)
}

// call asks the plugin about the tuples selected by sel (nil: all).
func (e *External) call(ctx context.Context, req *Request, sel func(int) bool, begin uint64, now time.Time) (Decision, error) {
	s := e.bodyPool.Get().(*callScratch)
	defer e.bodyPool.Put(s)
	s.body = appendAuthorizeBody(s.body[:0], req, sel)

	hreq := fasthttp.AcquireRequest()
	hresp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(hreq)
	defer fasthttp.ReleaseResponse(hresp)
	start := time.Now() // wall clock: signing and deadline (e.now is the cache's clock)
	e.p.prepare(hreq, fasthttp.MethodPost, e.path, s.body, start)

	deadline := start.Add(e.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	err := e.p.hc.DoDeadline(hreq, hresp, deadline)
	took := time.Since(start)
	e.m.duration.Observe(took.Seconds())

	var f *failure
	switch {
	case err != nil:
		f = classifyTransport(err)
	case hresp.StatusCode() != fasthttp.StatusOK:
		f = classifyStatus(hresp.StatusCode())
	}
	if f == nil {
		if cap(s.verdict) < len(req.Actions) {
			s.verdict = make([]bool, len(req.Actions))
		}
		s.verdict = s.verdict[:len(req.Actions)]
		clear(s.verdict)
		if jerr := judge(hresp.Body(), req, sel, s.verdict); jerr != nil {
			kind := "malformed"
			switch {
			case errors.Is(jerr, errIncomplete):
				kind = "incomplete"
			case errors.Is(jerr, errUnexpected):
				kind = "unexpected"
			}
			f = &failure{kind: kind, err: ErrDenied}
		}
	}
	if f != nil {
		e.m.errs.Inc()
		e.logFailure(f, took)
		return Decision{}, f
	}

	allowed := true
	for i := range req.Actions {
		if sel != nil && !sel(i) {
			continue
		}
		if e.cache != nil && sel != nil {
			e.cache.set(req.Identity, req.Domain, &req.Actions[i], s.verdict[i], begin, now.UnixNano())
		}
		allowed = allowed && s.verdict[i]
	}
	if !allowed {
		e.m.deny.Inc()
		return Decision{}, ErrDenied
	}
	e.m.allow.Inc()
	return Decision{Allowed: true}, nil
}

// logFailure logs a failed plugin call: the kind, the status and the
// duration, never the request (no credentials reach the plugin anyway, but
// paths may carry personal data). At most one line per second per
// External; the count of suppressed lines is reported with the next one.
func (e *External) logFailure(f *failure, took time.Duration) {
	if suppressed, ok := e.lim.allow(time.Now()); ok {
		e.log.Warn("authorization plugin call failed",
			zap.String("kind", f.kind),
			zap.Int("status", f.status),
			zap.Bool("unavailable", errors.Is(f.err, ErrUnavailable)),
			zap.Duration("duration", took),
			zap.Uint64("suppressed", suppressed))
	}
}

// logLimiter lets one log line per second through.
type logLimiter struct {
	next       atomic.Int64
	suppressed atomic.Uint64
}

func (l *logLimiter) allow(now time.Time) (uint64, bool) {
	n := now.UnixNano()
	next := l.next.Load()
	if n < next || !l.next.CompareAndSwap(next, n+int64(time.Second)) {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}

var (
	_ Authorizer = (*External)(nil)
	_ io.Closer  = (*External)(nil)
)
