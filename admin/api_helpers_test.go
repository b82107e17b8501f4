package admin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/failurelimit"
	"github.com/keygate/keygate/authn/keyauth"
	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/authn/principal"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
	"github.com/keygate/keygate/upstreamcred"
)

// testClock is a settable clock shared by the store, cache, chain and API.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// Cheap argon2id for tests.
var apiTestHasher = password.New(password.Params{Memory: 1024, Iterations: 1, Parallelism: 1}, 8)

// Passwords of the fixture users (all pass the policy).
const (
	pwRoot   = "root-Pa55word-long"
	pwAAdmin = "acme-admin-Pa55word"
	pwBAdmin = "globex-admin-Pa55word" //nolint:gosec // test data, not a real credential
	pwAlice  = "alice-Pa55word-long"
	pwBob    = "bob-Pa55word-long"
)

// apiEnv is a real admin API: boltstore, cache with invalidation, chain
// with the key and password authenticators, served on 127.0.0.1:0.
type apiEnv struct {
	t       *testing.T
	clk     *testClock
	st      *boltstore.Store
	base    string
	routes  []string // "METHOD /pattern" as registered
	audit   *observer.ObservedLogs
	cache   *cache.Cache
	maxLife time.Duration
	http    *http.Client
	chain   *authn.Chain
	ops     *API // the same API, for in-process operations (ops.go)
	ucred   *upstreamcred.Manager
}

type apiEnvOptions struct {
	maxLifetime time.Duration // default 8760h; negative: 0 (never expires)
	store       func(store.Store) store.Store
	perIP       int // failures per IP per minute (0: unlimited)
	authorizer  authz.Authorizer
	notifier    Notifier
	pprof       bool // admin.pprof
	verifyRoles []string
	// ucred serves the upstream credentials API (with ucredKey, or no
	// key when nil).
	ucred      bool
	ucredKey   []byte
	rateLimits configs.RateLimits
}

// routeRecorder records the routes registered through it.
type routeRecorder struct {
	r      *Router
	routes []string
}

func (rr *routeRecorder) Handle(method, pattern string, h HandlerFunc) {
	rr.routes = append(rr.routes, method+" "+pattern)
	rr.r.Handle(method, pattern, h)
}

func newAPIEnv(t *testing.T, o apiEnvOptions) *apiEnv {
	t.Helper()
	clk := newTestClock()
	raw, err := boltstore.Open(filepath.Join(fastTempDir(t), "kg.db"), boltstore.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	var st store.Store = raw
	if o.store != nil {
		st = o.store(raw)
	}
	ctx := context.Background()
	if _, err := store.Bootstrap(ctx, raw, apiTestHasher.Hash, pwRoot, io.Discard); err != nil {
		t.Fatal(err)
	}
	e := &apiEnv{t: t, clk: clk, st: raw}
	for _, a := range []string{"acme", "globex"} {
		mustOK(t, raw.CreateAccount(ctx, &store.Account{Name: a}))
	}
	e.addUser("aadmin", "acme", store.TypeAccountAdmin, pwAAdmin, "read", "write")
	e.addUser("badmin", "globex", store.TypeAccountAdmin, pwBAdmin, "read")
	e.addUser("alice", "acme", store.TypeUser, pwAlice, "read")
	e.addUser("bob", "globex", store.TypeUser, pwBob, "read")

	c, err := cache.New(cache.Config{MaxEntries: 10000, TTL: time.Minute, NegativeTTL: 5 * time.Second,
		OutageGrace: 5 * time.Minute, Now: clk.Now}, nil)
	mustOK(t, err)
	e.cache = c
	states := principal.NewAccountStates(raw, time.Hour, clk.Now)
	lctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Listen(lctx, states.WatchFirst(raw), nil) }()
	t.Cleanup(func() { cancel(); <-done; c.Close() })

	chain, err := authn.NewChain(authn.ChainConfig{
		Cache: c,
		Authenticators: map[authn.CredKind]authn.Authenticator{
			authn.KindAPIKey: keyauth.NewAuthenticator(raw, keyauth.AuthOptions{Now: clk.Now, Accounts: states}),
			authn.KindBasic:  password.NewAuthenticator(raw, apiTestHasher, password.AuthOptions{Accounts: states}),
		},
		IPLimiter: failurelimit.New(o.perIP, 1000, clk.Now),
		Now:       clk.Now,
	})
	mustOK(t, err)
	e.chain = chain

	core, logs := observer.New(zapcore.InfoLevel)
	e.audit = logs
	maxLife := 8760 * time.Hour
	switch {
	case o.maxLifetime > 0:
		maxLife = o.maxLifetime
	case o.maxLifetime < 0:
		maxLife = 0
	}
	e.maxLife = maxLife
	if o.ucred {
		var ring *upstreamcred.Keyring
		if o.ucredKey != nil {
			ring, err = upstreamcred.NewKeyring(o.ucredKey, nil)
			mustOK(t, err)
		}
		e.ucred = upstreamcred.New(upstreamcred.Options{Store: raw, Keys: ring, Logger: zap.New(core)})
		t.Cleanup(e.ucred.Close)
	}
	rr := &routeRecorder{r: &Router{}}
	x, err := NewAPI(APIDeps{UpstreamCredentials: e.ucred,
		Store: st, Auth: chain, Hasher: apiTestHasher, Logger: zap.New(core),
		APIKeys: configs.APIKeys{MaxLifetime: configs.Duration(maxLife)}, Realm: "keygate", Now: clk.Now,
		Authorizer: o.authorizer, Notifier: o.notifier, Pprof: o.pprof, VerifyRoles: o.verifyRoles,
		RateLimits: o.rateLimits,
	})
	mustOK(t, err)
	x.Register(rr)
	e.ops = x
	e.routes = rr.routes

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	mustOK(t, err)
	srv := &fasthttp.Server{Handler: rr.r.Serve, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		IdleTimeout: 10 * time.Second, MaxRequestBodySize: 1 << 20, NoDefaultContentType: true}
	sdone := make(chan struct{})
	go func() { defer close(sdone); _ = srv.Serve(ln) }()
	// Closing the listener ends Serve at once (Shutdown polls every
	// 100 ms); the per-env client's connections are closed with it.
	e.http = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(func() {
		e.http.CloseIdleConnections()
		_ = ln.Close()
		<-sdone
	})
	e.base = "http://" + ln.Addr().String()
	return e
}

// fastTempDir is a temporary directory on tmpfs when there is one (bolt
// fsyncs every write; the many small stores of these tests need not).
func fastTempDir(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "kg-admin-test-"); err == nil {
			t.Cleanup(func() { _ = os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

func mustOK(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (e *apiEnv) addUser(name, account string, typ store.UserType, pw string, roles ...string) {
	e.t.Helper()
	h, err := apiTestHasher.Hash(pw)
	mustOK(e.t, err)
	mustOK(e.t, e.st.CreateUser(context.Background(), &store.User{Username: name, Account: account, Type: typ,
		Roles: roles, PasswordHash: h}))
}

func basicAuth(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

// Callers of the fixture.
var (
	asRoot   = basicAuth(store.AdminUsername, pwRoot)
	asAAdmin = basicAuth("aadmin", pwAAdmin)
	asBAdmin = basicAuth("badmin", pwBAdmin)
	asAlice  = basicAuth("alice", pwAlice)
	asBob    = basicAuth("bob", pwBob)
)

// resp is an API response.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) code() string {
	var e adminapi.ErrorBody
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}

func (r resp) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

// do sends a request; body is JSON-encoded unless it is a string or nil.
func (e *apiEnv) do(method, path, auth string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		mustOK(e.t, err)
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	mustOK(e.t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := e.http.Do(req)
	mustOK(e.t, err)
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	mustOK(e.t, err)
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// want fails unless r has status.
func (r resp) want(t testing.TB, status int) resp {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	return r
}

// createdKey is a key creation response, with the credentials it makes.
type createdKey struct{ adminapi.CreatedKey }

func (k createdKey) bearer() string { return "Bearer " + k.APIKey }
func (k createdKey) apiKey() string { return "ApiKey " + k.Encoded }

// newKey creates a key through the API.
func (e *apiEnv) newKey(auth, path string, body map[string]any) createdKey {
	e.t.Helper()
	var k createdKey
	e.do("POST", path, auth, body).want(e.t, 201).decode(e.t, &k)
	return k
}

// storeKey reads a key from the store.
func (e *apiEnv) storeKey(id string) *store.APIKey {
	e.t.Helper()
	k, err := e.st.GetAPIKey(context.Background(), id)
	mustOK(e.t, err)
	return k
}

// eventually polls cond for up to 3 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
