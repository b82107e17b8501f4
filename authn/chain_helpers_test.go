package authn_test

import (
	"context"
	"encoding/base64"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/authn/failurelimit"
	"github.com/keygate/keygate/authn/keyauth"
	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/authn/principal"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
)

// clock is a settable clock shared by store, cache and chain.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// countingStore counts the calls of the miss path and can fail or block
// them.
type countingStore struct {
	store.Store
	lookups, users, accounts atomic.Int64
	down                     atomic.Bool
	gate                     atomic.Pointer[chan struct{}] // LookupAPIKey and GetUser wait on it when set
}

func (s *countingStore) wait(ctx context.Context) error {
	if g := s.gate.Load(); g != nil {
		select {
		case <-*g:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.down.Load() {
		return store.ErrUnavailable
	}
	return nil
}

func (s *countingStore) LookupAPIKey(ctx context.Context, id string) (*store.APIKey, *store.User, error) {
	s.lookups.Add(1)
	if err := s.wait(ctx); err != nil {
		return nil, nil, err
	}
	return s.Store.LookupAPIKey(ctx, id)
}

func (s *countingStore) GetUser(ctx context.Context, name string) (*store.User, error) {
	s.users.Add(1)
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.Store.GetUser(ctx, name)
}

func (s *countingStore) GetAccount(ctx context.Context, name string) (*store.Account, error) {
	s.accounts.Add(1)
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.Store.GetAccount(ctx, name)
}

func (s *countingStore) calls() int64 { return s.lookups.Load() + s.users.Load() }

// Test tuning.
const (
	testTTL      = time.Minute
	testNegTTL   = 5 * time.Second
	testGrace    = 5 * time.Minute
	testPassword = "correct horse battery staple"
)

// Cheap argon2id for tests: 1 MiB, 1 pass.
var testParams = password.Params{Memory: 1024, Iterations: 1, Parallelism: 1}

var hasherOnce = sync.OnceValue(func() *password.Hasher { return password.New(testParams, 4) })

type envOptions struct {
	methods []authn.Method
	perIP   int
	perUser int
	logger  *zap.Logger
	reg     prometheus.Registerer
	// hitSample is ChainConfig.HitSampleEvery (0: the default).
	hitSample int
}

// env is a chain over a real store with one account, users and keys.
type env struct {
	t      testing.TB
	clk    *clock
	raw    store.Store
	st     *countingStore
	cache  *cache.Cache
	states *principal.AccountStates
	chain  *authn.Chain
	ipLim  *failurelimit.Limiter

	key   *store.APIKey // alice's key "ci"
	value string        // its value
}

func newBoltStore(t testing.TB, clk *clock) store.Store {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "kg.db"), boltstore.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	clk := newClock()
	return newEnvOn(t, clk, newBoltStore(t, clk), o)
}

func newEnvOn(t testing.TB, clk *clock, raw store.Store, o envOptions) *env {
	t.Helper()
	e := &env{t: t, clk: clk, raw: raw, st: &countingStore{Store: raw}}
	ctx := context.Background()
	must(t, raw.CreateAccount(ctx, &store.Account{Name: "acme"}))
	must(t, raw.CreateAccount(ctx, &store.Account{Name: "other"}))
	e.user("alice", "acme", []string{"write", "read", "ops", "read"})
	e.user("bob", "acme", []string{"read"})
	e.user("carol", "other", []string{"read"})
	e.key, e.value = e.newKey("alice", "ci", []string{"read", "write", "ghost"}, time.Time{})

	c, err := cache.New(cache.Config{MaxEntries: 1000, TTL: testTTL, NegativeTTL: testNegTTL,
		OutageGrace: testGrace, Now: clk.Now}, nil)
	must(t, err)
	t.Cleanup(c.Close)
	e.cache = c
	e.states = principal.NewAccountStates(e.st, time.Hour, clk.Now)
	auths := map[authn.CredKind]authn.Authenticator{
		authn.KindAPIKey: keyauth.NewAuthenticator(e.st, keyauth.AuthOptions{Now: clk.Now, Accounts: e.states}),
		authn.KindBasic:  password.NewAuthenticator(e.st, hasherOnce(), password.AuthOptions{Accounts: e.states}),
	}
	e.ipLim = failurelimit.New(o.perIP, 1000, clk.Now)
	cfg := authn.ChainConfig{
		Methods:        o.methods,
		Cache:          c,
		Authenticators: auths,
		IPLimiter:      e.ipLim,
		UserLimiter:    failurelimit.New(o.perUser, 1000, clk.Now),
		Now:            clk.Now,
		Registerer:     o.reg,
		Logger:         o.logger,
		HitSampleEvery: o.hitSample,
	}
	e.chain, err = authn.NewChain(cfg)
	must(t, err)
	return e
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) user(name, account string, roles []string) {
	e.t.Helper()
	h, err := hasherOnce().Hash(testPassword)
	must(e.t, err)
	must(e.t, e.raw.CreateUser(context.Background(), &store.User{
		Username: name, Account: account, Roles: dedup(roles), PasswordHash: h,
	}))
}

func dedup(r []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range r {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// newKey creates a key for user and returns its record and value.
func (e *env) newKey(user, name string, roles []string, expires time.Time) (*store.APIKey, string) {
	e.t.Helper()
	secret, err := apikey.NewSecret()
	must(e.t, err)
	h, err := apikey.Hash([]byte(secret))
	must(e.t, err)
	k := &store.APIKey{Name: name, Username: user, Roles: roles, Hash: h, ExpiresAt: expires}
	must(e.t, e.raw.CreateAPIKey(context.Background(), k))
	return k, apikey.Format(k.ID, secret)
}

var ip1 = netip.MustParseAddr("192.0.2.10")

func (e *env) auth(h string) (*authn.Identity, error) {
	return e.chain.Authenticate(context.Background(), []byte(h), ip1)
}

// ok authenticates h, wants success, and waits for the cache to hold it.
func (e *env) ok(h string) *authn.Identity {
	e.t.Helper()
	id, err := e.auth(h)
	if err != nil {
		e.t.Fatalf("Authenticate(%.20q…): %v", h, err)
	}
	e.cache.Wait()
	return id
}

func basic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

func apiKeyHeader(id, value string) string {
	return "ApiKey " + base64.StdEncoding.EncodeToString([]byte(id+":"+value))
}

// keyForms are the three headers carrying an API key value.
func keyForms(id, value string) map[string]string {
	return map[string]string{
		"basic_api_key": basic("_api_key", value),
		"apikey":        apiKeyHeader(id, value),
		"bearer_kg":     "Bearer " + value,
	}
}
