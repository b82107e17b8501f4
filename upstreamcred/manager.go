package upstreamcred

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/keygate/keygate/store"
)

// Options configure a Manager.
type Options struct {
	// Store keeps the records (required).
	Store store.UpstreamCredentials
	// Keys seals and opens secrets; nil: no key configured (ErrNoKey on
	// every write and every use).
	Keys *Keyring
	// HTTPClient makes token and validation requests (default: one with
	// FetchTimeout as its timeout, not following redirects to other hosts'
	// token endpoints more than net/http does).
	HTTPClient *http.Client
	// FetchTimeout bounds one token fetch, one validation request and one
	// store read (default 10s).
	FetchTimeout time.Duration
	// RetryInterval is the first wait before a failed background refresh
	// is tried again (default 1s, doubling up to 16 times that, never past the
	// current token's expiry); meanwhile requests without a usable token
	// get ErrUnavailable at once.
	RetryInterval time.Duration
	Registerer    prometheus.Registerer
	Logger        *zap.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Manager serves upstream credentials to the proxy (Header, Rejected) from
// a per-instance cache kept current by the store's invalidations, and
// carries out the admin API's writes (Create, Update, Delete).
//
// A warm Header call costs one atomic load of the resolution table, one
// map lookup by (account, name) strings the caller already holds, and one
// atomic load of the entry's token: no allocation, no I/O, no lock. The
// header value is built once per token.
type Manager struct {
	st    store.UpstreamCredentials
	keys  *Keyring
	hc    *http.Client
	log   *zap.Logger
	now   func() time.Time
	tmo   time.Duration
	retry time.Duration
	met   *metrics

	res    atomic.Pointer[map[ref]*entry] // caller (account, name) → entry; nil entry: none
	mu     sync.Mutex                     // writers of res and entries
	gen    uint64                         // bumped by every invalidation (under mu)
	loads  singleflight.Group
	closed atomic.Bool
}

type ref struct{ account, name string }

// New returns a Manager.
func New(o Options) *Manager {
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = 10 * time.Second
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: o.FetchTimeout}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Manager{st: o.Store, keys: o.Keys, hc: o.HTTPClient, log: o.Logger, now: o.Now,
		tmo: o.FetchTimeout, retry: o.RetryInterval, met: newMetrics(o.Registerer)}
	empty := map[ref]*entry{}
	m.res.Store(&empty)
	return m
}

// HasKey reports whether an encryption key is configured.
func (m *Manager) HasKey() bool { return m.keys != nil }

// Close stops every background refresh.
func (m *Manager) Close() {
	m.closed.Store(true)
	m.Flush()
}

// ---- the request path ----

// Header returns the header to send upstream for the credential name on
// behalf of a caller of account ("" for an anonymous caller): account's
// own credential of that name, else account admin's. missing reports that
// neither exists (403); err (wrapping ErrUnavailable) that no usable token
// could be had (502). key and value are owned by the Manager: read-only,
// valid for the request.
func (m *Manager) Header(name, account string, now time.Time) (key, value []byte, missing bool, err error) {
	e, ok := (*m.res.Load())[ref{account, name}]
	if !ok {
		if e, err = m.resolve(account, name); err != nil {
			return nil, nil, false, err
		}
	}
	if e == nil {
		return nil, nil, true, nil
	}
	t := e.tok.Load()
	if t != nil && (t.expiry.IsZero() || now.Before(t.expiry)) {
		if !t.refreshAt.IsZero() && !now.Before(t.refreshAt) {
			e.kick() // the timer is late (a stalled process): refresh now
		}
		return e.key, t.value, false, nil
	}
	// No usable token. While a fetch that just failed waits for its retry,
	// answer at once rather than make every request wait for a dead
	// token endpoint.
	if now.UnixNano() < e.failedUntil.Load() {
		return nil, nil, false, errTokenUnavailable
	}
	t, err = e.refresh(false)
	if err != nil {
		return nil, nil, false, err
	}
	return e.key, t.value, false, nil
}

// errTokenUnavailable: no token and the token endpoint failed just now.
var errTokenUnavailable = fmt.Errorf("no token (the token endpoint failed; retrying): %w", ErrUnavailable)

// Rejected is called when the upstream answered 401 to value: it refreshes
// the credential's token once (shared with concurrent callers) and returns
// the new header, or ok false when there is nothing new to retry with (a
// static credential, or a failed refresh).
func (m *Manager) Rejected(name, account string, value []byte) (key, newValue []byte, ok bool) {
	e := (*m.res.Load())[ref{account, name}]
	if e == nil || !e.refreshes {
		return nil, nil, false
	}
	if t := e.tok.Load(); t == nil || bytes.Equal(t.value, value) {
		if _, err := e.refresh(true); err != nil {
			return nil, nil, false
		}
	}
	t := e.tok.Load()
	if t == nil || bytes.Equal(t.value, value) {
		return nil, nil, false
	}
	return e.key, t.value, true
}

// resolve loads (account, name) from the store on a cache miss, one load
// per key across concurrent callers, and caches the result unless an
// invalidation arrived meanwhile.
func (m *Manager) resolve(account, name string) (*entry, error) {
	v, err, _ := m.loads.Do(account+"\x00"+name, func() (any, error) {
		if e, ok := (*m.res.Load())[ref{account, name}]; ok {
			return e, nil
		}
		m.mu.Lock()
		gen := m.gen
		m.mu.Unlock()
		e, err := m.load(account, name)
		if err != nil {
			return nil, err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.gen != gen || m.closed.Load() {
			// Changed meanwhile: serve this request, cache nothing.
			return e, nil
		}
		old := *m.res.Load()
		next := make(map[ref]*entry, len(old)+1)
		for k, v := range old {
			next[k] = v
		}
		next[ref{account, name}] = e
		m.res.Store(&next)
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*entry), nil
}

// load reads the record that serves (account, name) and builds its entry
// (nil: none).
func (m *Manager) load(account, name string) (*entry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), m.tmo)
	defer cancel()
	c, err := m.st.GetUpstreamCredential(ctx, account, name)
	if errors.Is(err, store.ErrNotFound) && account != store.AdminAccount {
		c, err = m.st.GetUpstreamCredential(ctx, store.AdminAccount, name)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("upstream credential %q: %w: %w", name, ErrUnavailable, err)
	}
	typ, ok := Lookup(c.Type)
	if !ok {
		m.log.Error("upstreamcred: stored credential of an unknown type", zap.String("account", c.Account),
			zap.String("credential", c.Name), zap.String("type", c.Type))
		return nil, fmt.Errorf("upstream credential %q: unknown type: %w", name, ErrUnavailable)
	}
	secret, err := m.keys.Open(c)
	if err != nil {
		m.log.Error("upstreamcred: cannot open a stored secret", zap.String("account", c.Account),
			zap.String("credential", c.Name), zap.Error(err))
		return nil, fmt.Errorf("upstream credential %q: %w", name, ErrUnavailable)
	}
	src, err := typ.Source(c.Fields, secret, m.hc)
	clear(secret)
	if err != nil {
		return nil, fmt.Errorf("upstream credential %q: %w: %w", name, ErrUnavailable, err)
	}
	e := &entry{m: m, ref: ref{c.Account, c.Name}, typ: c.Type, refreshes: typ.Refreshes(), src: src}
	if !e.refreshes {
		h, err := src.Fetch(ctx)
		if err != nil {
			return nil, fmt.Errorf("upstream credential %q: %w", name, ErrUnavailable)
		}
		e.key = []byte(h.Key)
		e.tok.Store(&token{value: []byte(h.Value)})
	} else {
		e.key = []byte("Authorization")
	}
	return e, nil
}

// Invalidate applies a store invalidation: a credential-only one drops
// every cached resolution of that credential's name (an account's own
// credential may shadow or stop shadowing admin's), a flush drops
// everything; others concern no upstream credential.
func (m *Manager) Invalidate(inv store.Invalidation) {
	switch {
	case inv.CredentialOnly():
		m.drop(func(r ref) bool { return r.name == inv.UpstreamCredential.Name })
	case inv.Flush:
		m.Flush()
	}
}

// Flush drops every cached credential and token.
func (m *Manager) Flush() { m.drop(func(ref) bool { return true }) }

func (m *Manager) drop(match func(ref) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	old := *m.res.Load()
	next := make(map[ref]*entry, len(old))
	for k, e := range old {
		if match(k) {
			if e != nil {
				e.stop()
			}
			continue
		}
		next[k] = e
	}
	m.res.Store(&next)
}

// Subscriber is the Manager's place in the store's invalidation fan-out
// (cmd/keygate/invalidation.go): a subscription that starts or ends drops
// everything, since a change may have been missed.
func (m *Manager) Subscriber() store.Subscriber {
	return store.Subscriber{Name: "upstream credentials", Apply: m.Invalidate, Reset: m.Flush, Credentials: true}
}

// ---- one credential's token ----

type token struct {
	value     []byte
	expiry    time.Time // zero: never
	refreshAt time.Time // zero: never
}

type entry struct {
	m         *Manager
	ref       ref
	typ       string
	refreshes bool
	src       Source
	key       []byte

	tok     atomic.Pointer[token]
	sf      singleflight.Group
	kicking atomic.Bool
	stopped atomic.Bool
	// failedUntil (Unix ns): the last fetch failed and the next attempt
	// is not due before then.
	failedUntil atomic.Int64

	mu    sync.Mutex
	timer *time.Timer
	fails int
}

// refreshLead is how long before expiry a token is refreshed: a third of
// its lifetime, at most 5 minutes, at least 1 second (or the lifetime).
func refreshLead(lifetime time.Duration) time.Duration {
	return min(max(lifetime/3, time.Second), 5*time.Minute, lifetime)
}

// refresh fetches a new token, once across concurrent callers. Unless
// force, a token still fresh when the caller's turn comes is kept.
func (e *entry) refresh(force bool) (*token, error) {
	v, err, _ := e.sf.Do("", func() (any, error) {
		now := e.m.now()
		if t := e.tok.Load(); !force && t != nil && (t.expiry.IsZero() || now.Before(t.refreshAt)) {
			return t, nil
		}
		return e.fetch(now)
	})
	if err != nil {
		return nil, err
	}
	return v.(*token), nil
}

// fetch gets a token now and schedules the next refresh. On failure the
// current token, if any, stays in use until it expires.
func (e *entry) fetch(now time.Time) (*token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), e.m.tmo)
	defer cancel()
	planned := time.Time{}
	if t := e.tok.Load(); t != nil {
		planned = t.refreshAt
	}
	h, err := e.src.Fetch(ctx)
	e.m.met.fetches.WithLabelValues(e.typ).Inc()
	if err != nil {
		e.m.met.failures.WithLabelValues(e.typ).Inc()
		vf := FetchFailure(err)
		e.m.log.Warn("upstreamcred: token fetch failed", zap.String("account", e.ref.account),
			zap.String("credential", e.ref.name), zap.String("type", e.typ), zap.String("error", vf.Error()))
		e.scheduleRetry()
		if t := e.tok.Load(); t != nil && e.m.now().Before(t.expiry) {
			return t, nil
		}
		return nil, fmt.Errorf("upstream credential %q: %w", e.ref.name, ErrUnavailable)
	}
	done := e.m.now()
	if !planned.IsZero() {
		e.m.met.lag.WithLabelValues(e.typ).Observe(max(done.Sub(planned), 0).Seconds())
	}
	t := &token{value: []byte(h.Value), expiry: h.Expiry}
	if !h.Expiry.IsZero() {
		t.refreshAt = h.Expiry.Add(-refreshLead(h.Expiry.Sub(now)))
	}
	e.tok.Store(t)
	e.failedUntil.Store(0)
	e.mu.Lock()
	e.fails = 0
	e.mu.Unlock()
	if !t.refreshAt.IsZero() {
		e.schedule(t.refreshAt.Sub(done))
	}
	return t, nil
}

// kick starts a background refresh unless one is running.
func (e *entry) kick() {
	if e.stopped.Load() || !e.kicking.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer e.kicking.Store(false)
		_, _ = e.refresh(false) //nolint:errcheck // logged and counted in fetch
	}()
}

func (e *entry) schedule(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped.Load() {
		return
	}
	if e.timer != nil {
		e.timer.Stop()
	}
	e.timer = time.AfterFunc(max(d, 0), func() {
		if !e.stopped.Load() {
			_, _ = e.refresh(false) //nolint:errcheck // logged and counted in fetch
		}
	})
}

// scheduleRetry plans the next attempt after a failure: doubling from the
// retry interval up to 16 times it (16 s by default), and not later than the current token's
// expiry while it is still valid.
func (e *entry) scheduleRetry() {
	e.mu.Lock()
	e.fails++
	d := e.m.retry << min(e.fails-1, 4)
	e.mu.Unlock()
	now := e.m.now()
	if t := e.tok.Load(); t != nil && !t.expiry.IsZero() {
		if left := t.expiry.Sub(now); left > 0 {
			d = min(d, left)
		}
	}
	e.failedUntil.Store(now.Add(d).UnixNano())
	e.schedule(d)
}

func (e *entry) stop() {
	e.stopped.Store(true)
	e.mu.Lock()
	if e.timer != nil {
		e.timer.Stop()
	}
	e.mu.Unlock()
}

// ---- metrics ----

type metrics struct {
	fetches, failures *prometheus.CounterVec
	lag               *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keygate_upstream_credential_token_fetches_total",
			Help: "Token fetches for upstream credentials, by credential type."}, []string{"type"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keygate_upstream_credential_token_fetch_failures_total",
			Help: "Failed token fetches for upstream credentials, by credential type."}, []string{"type"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "keygate_upstream_credential_refresh_lag_seconds",
			Help:    "How long after its planned refresh time a token was refreshed, by credential type.",
			Buckets: []float64{.01, .05, .1, .5, 1, 5, 10, 30, 60, 300}}, []string{"type"}),
	}
	if reg != nil {
		reg.MustRegister(m.fetches, m.failures, m.lag)
	}
	return m
}
