package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/store"
)

// Errors answered when a limit is reached (429 with Retry-After).
var (
	ErrRateLimited   = &httpx.Error{Status: fasthttp.StatusTooManyRequests, Code: "rate_limited", Message: "rate limit exceeded; retry later"}
	ErrQuotaExceeded = &httpx.Error{Status: fasthttp.StatusTooManyRequests, Code: "quota_exceeded", Message: "quota exceeded for this period"}
)

// Scopes, as metric labels.
const (
	scopeKey = iota
	scopeUser
	scopeAccount
	scopeRoute
	nScopes
)

var scopeNames = [nScopes]string{"key", "user", "account", "route"}

// Options configure a Limiter.
type Options struct {
	Config configs.RateLimits
	// Store holds assignments and quota counters (both drivers).
	Store store.LimitStore
	// Leaser, when set (Redis), shares rate budgets across instances;
	// nil: every bucket is in process (bolt, one instance).
	Leaser store.RateLeaser
	// Timeout bounds each store call on the request path (default 100ms).
	Timeout    time.Duration
	Registerer prometheus.Registerer
	Logger     *zap.Logger
}

// Limiter enforces the policies and quotas. It is safe for concurrent use.
type Limiter struct {
	policies  map[string]*Policy
	instances int
	ls        store.LimitStore
	lz        *leaser
	timeout   time.Duration
	log       *zap.Logger

	table    atomic.Pointer[table]
	reload   chan struct{}
	reloadMu sync.Mutex // one Reload at a time: a slower one never overwrites a newer table

	// What the next reload must read (Invalidate, Run): the assignments of
	// the keys and users named by invalidations since the last one, or
	// everything.
	pendMu  sync.Mutex
	pendAll bool
	pendIDs map[pendID]struct{}

	seed   maphash.Seed
	shards [routeShards]routeShard

	limited   [nScopes + 1]prometheus.Counter // + quota
	storeErrs prometheus.Counter
}

// table is the assignment of policies and quotas, swapped whole on reload
// (readers never lock).
type table struct {
	scopes [3]map[string]*entry // key, user, account
}

// empty reports whether no key, user or account has a policy.
func (t *table) empty() bool {
	return len(t.scopes[0]) == 0 && len(t.scopes[1]) == 0 && len(t.scopes[2]) == 0
}

type entry struct {
	rate  *bucket
	quota *quota
	q     store.Quota
}

const (
	routeShards    = 32
	routeShardKeys = 4096 // buckets per shard before idle ones are dropped
)

// pendID is one assignment a targeted reload reads again.
type pendID struct {
	scope int
	id    string
}

// maxPendIDs is where a targeted reload stops paying: past it, the next
// reload reads every assignment once.
const maxPendIDs = 1024

type routeKey struct {
	route *Route
	key   string // API key id, or
	user  string // username, or
	addr  netip.Addr
}

type routeShard struct {
	mu sync.Mutex
	m  map[routeKey]*bucket
	_  [40]byte
}

// Route is a route's default policy (routes[].rate_limit), applied to each
// caller of the route separately.
type Route struct {
	name string
	pol  *Policy
}

// New compiles the policies. Call Reload (or Run) to load assignments.
func New(opts Options) (*Limiter, error) {
	l := &Limiter{
		policies:  make(map[string]*Policy, len(opts.Config.Policies)),
		instances: max(opts.Config.Instances, 1),
		ls:        opts.Store,
		timeout:   opts.Timeout,
		log:       opts.Logger,
		reload:    make(chan struct{}, 1),
		seed:      maphash.MakeSeed(),
	}
	if l.timeout <= 0 {
		l.timeout = 100 * time.Millisecond
	}
	if l.log == nil {
		l.log = zap.NewNop()
	}
	for _, c := range opts.Config.Policies {
		l.policies[c.Name] = Compile(c, l.instances)
	}
	limited := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_rate_limited_total",
		Help: "Requests refused with 429 by a rate limit (scope key, user, account, route) or a quota (scope quota).",
	}, []string{"scope"})
	for i, s := range scopeNames {
		l.limited[i] = limited.WithLabelValues(s)
	}
	l.limited[nScopes] = limited.WithLabelValues("quota")
	l.storeErrs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keygate_rate_limit_store_errors_total",
		Help: "Rate-limit leases and quota reads that failed; the instance enforced its own share meanwhile.",
	})
	if opts.Leaser != nil {
		l.lz = &leaser{s: opts.Leaser, timeout: l.timeout, errs: l.storeErrs.Inc}
	}
	if opts.Registerer != nil {
		cs := []prometheus.Collector{limited, l.storeErrs}
		for i, s := range []store.LimitScope{store.ScopeKey, store.ScopeUser, store.ScopeAccount} {
			cs = append(cs,
				prometheus.NewGaugeFunc(prometheus.GaugeOpts{
					Name: "keygate_quotas", Help: "Quotas assigned, by scope.", ConstLabels: prometheus.Labels{"scope": string(s)},
				}, func() float64 { return float64(l.countQuotas(i, false)) }),
				prometheus.NewGaugeFunc(prometheus.GaugeOpts{
					Name: "keygate_quotas_exhausted", Help: "Quotas spent for their current period (known to this instance), by scope.", ConstLabels: prometheus.Labels{"scope": string(s)},
				}, func() float64 { return float64(l.countQuotas(i, true)) }))
		}
		for _, c := range cs {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("ratelimit: metrics: %w", err)
			}
		}
	}
	for i := range l.shards {
		l.shards[i].m = make(map[routeKey]*bucket)
	}
	l.table.Store(&table{scopes: [3]map[string]*entry{{}, {}, {}}})
	return l, nil
}

func (l *Limiter) countQuotas(scope int, exhausted bool) int {
	now := time.Now().UnixNano()
	n := 0
	for _, e := range l.table.Load().scopes[scope] {
		if e.quota != nil && (!exhausted || e.quota.exhausted(now)) {
			n++
		}
	}
	return n
}

// Policy returns the policy called name, or nil.
func (l *Limiter) Policy(name string) *Policy {
	if l == nil {
		return nil
	}
	return l.policies[name]
}

// Route returns the handle of a route whose default policy is name ("" or
// unknown: nil, no route limit).
func (l *Limiter) Route(routeName, policy string) *Route {
	p := l.Policy(policy)
	if p == nil {
		return nil
	}
	return &Route{name: routeName, pol: p}
}

// Invalidate schedules a reload of the assignments (a store.Subscriber).
// An invalidation that names API keys or users only (a key created,
// changed, rotated or revoked, a user changed or deleted, an assignment of
// theirs set) makes the next reload read those assignments alone, one
// GetLimits each; anything wider (an account, a flush, a missed
// invalidation) makes it read them all. One concerning an upstream
// credential alone is not about limits.
func (l *Limiter) Invalidate(inv store.Invalidation) {
	if inv.CredentialOnly() {
		return
	}
	l.pendMu.Lock()
	switch {
	case inv.Flush, inv.Revalidate, inv.Account != "", inv.KeyID == "" && inv.Username == "":
		l.pendAll = true
	default:
		if l.pendIDs == nil {
			l.pendIDs = make(map[pendID]struct{})
		}
		if inv.KeyID != "" {
			l.pendIDs[pendID{scopeKey, inv.KeyID}] = struct{}{}
		}
		if inv.Username != "" {
			l.pendIDs[pendID{scopeUser, inv.Username}] = struct{}{}
		}
		if len(l.pendIDs) > maxPendIDs {
			l.pendAll = true
		}
	}
	l.pendMu.Unlock()
	select {
	case l.reload <- struct{}{}:
	default:
	}
}

// Subscriber is the Limiter's place in the invalidation fan-out.
func (l *Limiter) Subscriber() store.Subscriber {
	return store.Subscriber{Name: "rate-limit assignments", Apply: l.Invalidate, Reset: func() { l.Invalidate(store.Invalidation{}) }}
}

// reloadPending runs the reload the invalidations since the last one call
// for: every assignment, or those of the named keys and users. On failure
// what it took is put back, so the next attempt reads it again.
func (l *Limiter) reloadPending(ctx context.Context) error {
	l.pendMu.Lock()
	all, ids := l.pendAll, l.pendIDs
	l.pendAll, l.pendIDs = false, nil
	l.pendMu.Unlock()
	var err error
	switch {
	case all:
		err = l.Reload(ctx)
	case len(ids) > 0:
		err = l.reloadIDs(ctx, ids)
	}
	if err != nil {
		l.pendMu.Lock()
		if all {
			l.pendAll = true
		}
		if l.pendIDs == nil {
			l.pendIDs = ids
		} else {
			maps.Copy(l.pendIDs, ids)
		}
		l.pendMu.Unlock()
	}
	return err
}

// ReloadAssignment reads the assignment of (scope, id) again at once (after
// this instance wrote it; the other instances follow the invalidation).
func (l *Limiter) ReloadAssignment(ctx context.Context, scope store.LimitScope, id string) error {
	si := scopeIndex(scope)
	if l == nil || si < 0 {
		return nil
	}
	return l.reloadIDs(ctx, map[pendID]struct{}{{si, id}: {}})
}

// reloadIDs reads the assignments of ids again and swaps in a table where
// only their entries changed (added, replaced, dropped). The maps are
// copied, not the store read: a key created or revoked costs one GetLimits,
// not a read of every assignment.
func (l *Limiter) reloadIDs(ctx context.Context, ids map[pendID]struct{}) error {
	if l.ls == nil {
		return nil
	}
	l.reloadMu.Lock()
	defer l.reloadMu.Unlock()
	got := make(map[pendID]*store.Limits, len(ids))
	for k := range ids {
		a, err := l.ls.GetLimits(ctx, scopeName(k.scope), k.id)
		if err != nil {
			return fmt.Errorf("ratelimit: load the assignment of %s %q: %w", scopeName(k.scope), k.id, err)
		}
		got[k] = a
	}
	old := l.table.Load()
	nt := &table{scopes: old.scopes} // the maps are shared until one is changed
	copied := [3]bool{}
	for k, a := range got {
		if !copied[k.scope] {
			nt.scopes[k.scope] = maps.Clone(old.scopes[k.scope])
			copied[k.scope] = true
		}
		a.Scope, a.ID = scopeName(k.scope), k.id
		if e := l.entryFor(a, old.scopes[k.scope][k.id]); e != nil {
			nt.scopes[k.scope][k.id] = e
		} else {
			delete(nt.scopes[k.scope], k.id)
		}
	}
	l.table.Store(nt)
	return nil
}

// Reload reads every assignment from the store and swaps the table. Buckets
// and quotas whose assignment is unchanged keep their state.
func (l *Limiter) Reload(ctx context.Context) error {
	if l.ls == nil {
		return nil
	}
	l.reloadMu.Lock()
	defer l.reloadMu.Unlock()
	list, err := l.ls.ListLimits(ctx)
	if err != nil {
		return fmt.Errorf("ratelimit: load assignments: %w", err)
	}
	old := l.table.Load()
	nt := &table{scopes: [3]map[string]*entry{{}, {}, {}}}
	for i := range list {
		a := &list[i]
		si := scopeIndex(a.Scope)
		if si < 0 {
			continue
		}
		if e := l.entryFor(a, old.scopes[si][a.ID]); e != nil {
			nt.scopes[si][a.ID] = e
		}
	}
	l.table.Store(nt)
	return nil
}

// entryFor is the table entry of assignment a (nil: nothing applies),
// keeping the bucket and quota of prev, the entry it replaces, where their
// policy and quota did not change.
func (l *Limiter) entryFor(a *store.Limits, prev *entry) *entry {
	e := &entry{}
	if p := l.policies[a.RateLimit]; p != nil {
		if prev != nil && prev.rate != nil && prev.rate.pol == p {
			e.rate = prev.rate
		} else {
			e.rate = &bucket{pol: p, id: p.Name + ":" + string(a.Scope) + ":" + a.ID}
		}
	} else if a.RateLimit != "" {
		l.log.Warn("ratelimit: assignment names an unknown policy; ignored",
			zap.String("scope", string(a.Scope)), zap.String("id", a.ID), zap.String("policy", a.RateLimit))
	}
	if a.Quota != nil {
		e.q = *a.Quota
		if prev != nil && prev.quota != nil && prev.q == e.q {
			e.quota = prev.quota
		} else {
			e.quota = newQuota(a.Scope, a.ID, e.q, l.instances)
		}
	}
	if e.rate == nil && e.quota == nil {
		return nil
	}
	return e
}

func scopeName(si int) store.LimitScope {
	switch si {
	case scopeKey:
		return store.ScopeKey
	case scopeUser:
		return store.ScopeUser
	}
	return store.ScopeAccount
}

func scopeIndex(s store.LimitScope) int {
	switch s {
	case store.ScopeKey:
		return scopeKey
	case store.ScopeUser:
		return scopeUser
	case store.ScopeAccount:
		return scopeAccount
	}
	return -1
}

// Run reloads the assignments when told (Invalidate) and every 30 s, and
// gives back leased units that sat unused, until ctx ends; then it gives
// back every leased unit.
func (l *Limiter) Run(ctx context.Context) {
	reload := time.NewTicker(30 * time.Second)
	sweep := time.NewTicker(leaseTTL)
	defer reload.Stop()
	defer sweep.Stop()
	do := func(reload func(context.Context) error) {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := reload(rctx); err != nil && !errors.Is(err, context.Canceled) {
			l.log.Warn("ratelimit: reload failed; keeping the last assignments", zap.Error(err))
		}
	}
	do(l.Reload)
	for {
		select {
		case <-ctx.Done():
			l.Close()
			return
		case <-l.reload:
			do(l.reloadPending)
		case <-reload.C:
			do(l.Reload)
		case <-sweep.C:
			l.sweep(time.Now().UnixNano())
		}
	}
}

func (l *Limiter) sweep(now int64) {
	t := l.table.Load()
	for _, m := range t.scopes {
		for _, e := range m {
			if e.rate != nil {
				e.rate.sweep(l.lz, now)
			}
			if e.quota != nil {
				e.quota.sweep(l.ls, l.timeout, now)
			}
		}
	}
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, b := range sh.m {
			if b.sweep(l.lz, now) {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

// Close gives back every leased unit (shutdown). The Limiter stays usable.
func (l *Limiter) Close() {
	t := l.table.Load()
	for _, m := range t.scopes {
		for _, e := range m {
			if e.rate != nil {
				e.rate.returnAll(l.lz)
			}
			if e.quota != nil {
				e.quota.mu.Lock()
				e.quota.giveBack(l.ls, l.timeout)
				e.quota.mu.Unlock()
			}
		}
	}
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for _, b := range sh.m {
			b.returnAll(l.lz)
		}
		sh.mu.Unlock()
	}
}

// routeBucket returns the bucket of one caller on route rt.
func (l *Limiter) routeBucket(rt *Route, id *authn.Identity, addr netip.Addr) *bucket {
	k := routeKey{route: rt}
	var h uint64
	switch {
	case id != nil && id.KeyID != "":
		k.key = id.KeyID
		h = maphash.String(l.seed, k.key)
	case id != nil && id.Username != "":
		k.user = id.Username
		h = maphash.String(l.seed, k.user)
	default:
		k.addr = addr
		h = maphash.Comparable(l.seed, addr)
	}
	sh := &l.shards[h%routeShards]
	sh.mu.Lock()
	b := sh.m[k]
	if b == nil {
		if len(sh.m) >= routeShardKeys {
			now := time.Now().UnixNano()
			for kk, bb := range sh.m {
				if bb.sweep(nil, now) || len(sh.m) >= routeShardKeys {
					delete(sh.m, kk)
				}
				if len(sh.m) < routeShardKeys*3/4 {
					break
				}
			}
		}
		b = &bucket{pol: rt.pol, id: rt.pol.Name + ":route:" + rt.name + ":" + subject(k)}
		sh.m[k] = b
	}
	sh.mu.Unlock()
	return b
}

func subject(k routeKey) string {
	switch {
	case k.key != "":
		return "key:" + k.key
	case k.user != "":
		return "user:" + k.user
	}
	return "addr:" + k.addr.String()
}

// taken is one admitted unit, kept until every scope has decided.
type taken struct {
	b *bucket
	q *quota
	r result
}

// Header names in fasthttp's normalised form, set with SetCanonical (no
// normalisation per request; names are case-insensitive on the wire).
var (
	hdrPolicy    = []byte(HeaderPolicy)
	hdrRateLimit = []byte(HeaderRateLimit)
)

// The names of the headers Decision.Set writes, as fasthttp normalises
// them: what a caller copying them elsewhere (the gRPC ext_authz answer)
// peeks.
const (
	HeaderPolicy    = "Ratelimit-Policy"
	HeaderRateLimit = "Ratelimit"
)

// Limit admits or refuses one request of id (nil: anonymous, from addr) on
// route rt (nil: no route policy) at now, which the request has already
// read. Every policy and quota that applies is enforced; all must admit, and
// when one refuses, the units the others took go back, so a refused request
// spends nothing. The RateLimit-Policy and RateLimit headers describe the
// tightest of them (the fewest remaining); a refusal returns ErrRateLimited
// or ErrQuotaExceeded with Retry-After and both headers set on h. An
// admitted request gets a Decision whose Set writes the headers on the
// final response (after the upstream answered); nothing applies: a zero
// Decision. An admitted request allocates nothing.
func (l *Limiter) Limit(h *fasthttp.ResponseHeader, rt *Route, id *authn.Identity, addr netip.Addr, now time.Time) (Decision, error) {
	if l == nil {
		return Decision{}, nil
	}
	t := l.table.Load()
	if rt == nil && (id == nil || t.empty()) {
		return Decision{}, nil // no policy can apply: the common case, kept cheap
	}
	var (
		got   [7]taken
		n     int
		ns    = now.UnixNano()
		best  = -1
		refus = -1
		fail  result
		scope int
	)
	try := func(b *bucket, q *quota, sc int) bool {
		var r result
		if b != nil {
			r = b.take(l.lz, ns)
		} else {
			r = q.take(l.ls, l.timeout, ns)
		}
		if !r.ok {
			fail, scope = r, sc
			if q != nil {
				scope = nScopes
			}
			refus = n
			got[n] = taken{b: b, q: q, r: r}
			return false
		}
		got[n] = taken{b: b, q: q, r: r}
		if best < 0 || r.remaining < got[best].r.remaining {
			best = n
		}
		n++
		return true
	}
	ok := true
	if rt != nil {
		ok = try(l.routeBucket(rt, id, addr), nil, scopeRoute)
	}
	if id != nil {
		ids := [3]string{id.KeyID, id.Username, id.Account}
		// Rates first (cheap, local), then quotas (counted in the store).
		for si := 0; ok && si < 3; si++ {
			if ids[si] == "" {
				continue
			}
			if e := t.scopes[si][ids[si]]; e != nil && e.rate != nil {
				ok = try(e.rate, nil, si)
			}
		}
		for si := 0; ok && si < 3; si++ {
			if ids[si] == "" {
				continue
			}
			if e := t.scopes[si][ids[si]]; e != nil && e.quota != nil {
				ok = try(nil, e.quota, si)
			}
		}
	}
	if !ok {
		for i := range n {
			if got[i].b != nil {
				got[i].b.give(l.lz, got[i].r)
			} else {
				got[i].q.give(got[i].r)
			}
		}
		l.limited[scope].Inc()
		d := decision(got[refus], 0, fail.reset)
		d.Set(h)
		httpx.SetRetryAfter(h, time.Duration(fail.retry))
		if got[refus].q != nil {
			return Decision{}, ErrQuotaExceeded
		}
		return Decision{}, ErrRateLimited
	}
	if best < 0 {
		return Decision{}, nil
	}
	return decision(got[best], got[best].r.remaining, got[best].r.reset), nil
}

// Decision is what the response headers say of an admitted request: the
// tightest policy that applied. The zero Decision sets nothing.
type Decision struct {
	head, item       []byte // owned by the policy: read-only
	remaining, reset int64  // units; ns
}

func decision(t taken, remaining, reset int64) Decision {
	head, item := t.q.headerItems(t.b)
	return Decision{head: head, item: item, remaining: remaining, reset: reset}
}

// Set writes RateLimit-Policy and RateLimit: "name";q=Q;w=W and
// "name";r=R;t=T (draft-ietf-httpapi-ratelimit-headers). It does not
// allocate.
func (d *Decision) Set(h *fasthttp.ResponseHeader) {
	if d.head == nil {
		return
	}
	h.SetCanonical(hdrPolicy, d.head)
	var buf [128]byte
	v := append(buf[:0], d.item...)
	v = strconv.AppendInt(v, max(d.remaining, 0), 10)
	v = append(v, ";t="...)
	v = strconv.AppendInt(v, (max(d.reset, 0)+int64(time.Second)-1)/int64(time.Second), 10)
	h.SetCanonical(hdrRateLimit, v)
}

func (q *quota) headerItems(b *bucket) (head, item []byte) {
	if b != nil {
		return b.pol.header, b.pol.item
	}
	return q.header, q.item
}
