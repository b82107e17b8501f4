package e2e

// Helpers of the auth_*_test.go files: users and keys written straight into
// the store the gateways use (as the admin API will), credential headers, a
// keep-alive client, delay statistics. Every name starts with "au" so it
// cannot collide with the other e2e files.

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
	"github.com/keygate/keygate/store/redisstore"
)

// auPassword is the password of every fixture user unless a test says
// otherwise.
const auPassword = "correct horse battery staple"

// auParams are cheap argon2id parameters for fixture users: the gateway
// verifies with the parameters in the PHC string, so logins stay fast.
// (Unknown users are still verified against the gateway's own fake hash,
// made with the default parameters.)
var auParams = password.Params{Memory: 1024, Iterations: 1, Parallelism: 1}

var auHasher = sync.OnceValue(func() *password.Hasher { return password.New(auParams, 4) })

// auStore writes fixtures into a store.
type auStore struct {
	t  testing.TB
	st store.Store
}

// auRedisStore opens the store of a Redis the gateways share (key prefix
// "kg:", the gateways' default). Its writes publish the same invalidations
// an instance's admin API would.
func auRedisStore(t testing.TB, addr string) auStore {
	t.Helper()
	st, err := redisstore.New(configs.Redis{Addrs: []string{addr}, KeyPrefix: "kg:", Timeout: configs.Duration(2 * time.Second)},
		redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return auStore{t: t, st: st}
}

// auBoltFixture creates a bolt file at dir/keygate.db, lets fill write into
// it, closes it (a gateway cannot open a file another process holds), and
// returns the YAML body of the gateway's store block.
func auBoltFixture(t testing.TB, dir string, fill func(s auStore)) string {
	t.Helper()
	path := filepath.Join(dir, "keygate.db")
	st, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fill(auStore{t: t, st: st})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("  driver: bolt\n  bolt:\n    path: %q", path)
}

// auRedisYAML is the store block of a gateway on Redis at addr.
func auRedisYAML(addr string, more ...string) string {
	s := fmt.Sprintf("  driver: redis\n  redis:\n    addrs: [%q]\n    timeout: 300ms", addr)
	for _, m := range more {
		s += "\n  " + m
	}
	return s
}

func (s auStore) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

func (s auStore) account(name string) {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.st.CreateAccount(ctx, &store.Account{Name: name}); err != nil {
		s.t.Fatalf("create account %s: %v", name, err)
	}
}

// user creates an enabled user with password pw ("" means auPassword).
func (s auStore) user(name, account, pw string, roles ...string) {
	s.t.Helper()
	h := auHash(s.t, pw)
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.st.CreateUser(ctx, &store.User{Username: name, Account: account, Type: store.TypeUser,
		Roles: roles, State: store.StateEnabled, PasswordHash: h}); err != nil {
		s.t.Fatalf("create user %s: %v", name, err)
	}
}

func auHash(t testing.TB, pw string) string {
	t.Helper()
	if pw == "" {
		pw = auPassword
	}
	h, err := auHasher().Hash(pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// key creates an API key for user and returns its id and value.
func (s auStore) key(user, name string, roles ...string) (id, value string) {
	s.t.Helper()
	secret, err := apikey.NewSecret()
	if err != nil {
		s.t.Fatal(err)
	}
	h, err := apikey.Hash([]byte(secret))
	if err != nil {
		s.t.Fatal(err)
	}
	k := &store.APIKey{Name: name, Username: user, Roles: roles, Hash: h}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.st.CreateAPIKey(ctx, k); err != nil {
		s.t.Fatalf("create key %s/%s: %v", user, name, err)
	}
	return k.ID, apikey.Format(k.ID, secret)
}

func (s auStore) revoke(id string) {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	if _, _, err := s.st.RevokeAPIKey(ctx, id, time.Now()); err != nil {
		s.t.Fatalf("revoke %s: %v", id, err)
	}
}

func (s auStore) updateUser(name string, upd store.UserUpdate) {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.st.UpdateUser(ctx, name, upd); err != nil {
		s.t.Fatalf("update user %s: %v", name, err)
	}
}

func (s auStore) setAccountState(name string, st store.State) {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.st.SetAccountState(ctx, name, st); err != nil {
		s.t.Fatalf("account %s → %s: %v", name, st, err)
	}
}

func (s auStore) deleteUser(name string) {
	s.t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.st.DeleteUser(ctx, name); err != nil {
		s.t.Fatalf("delete user %s: %v", name, err)
	}
}

// Authorization header values.

func auBasic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

func auAPIKey(id, value string) string {
	return "ApiKey " + base64.StdEncoding.EncodeToString([]byte(id+":"+value))
}

// auKeyForms are the three Authorization values that carry an API key.
func auKeyForms(id, value string) map[string]string {
	return map[string]string{
		"basic _api_key": auBasic("_api_key", value),
		"apikey":         auAPIKey(id, value),
		"bearer kg_":     "Bearer " + value,
	}
}

// auResp is one response.
type auResp struct {
	status int
	header http.Header
	body   []byte
}

// auClient is a keep-alive client for many requests to one gateway.
type auClient struct {
	c *http.Client
}

func newAuClient(timeout time.Duration) *auClient {
	return &auClient{c: &http.Client{Timeout: timeout, Transport: &http.Transport{
		MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second,
	}}}
}

func (c *auClient) close() { c.c.CloseIdleConnections() }

// do sends GET url with Authorization authz (none when "") and the extra
// headers ("Name", "value" pairs); err is a transport error.
func (c *auClient) do(url, authz string, hdr ...string) (auResp, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return auResp{}, err
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.c.Do(req)
	if err != nil {
		return auResp{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return auResp{}, err
	}
	return auResp{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// get is do failing the test on a transport error.
func (c *auClient) get(t testing.TB, url, authz string, hdr ...string) auResp {
	t.Helper()
	r, err := c.do(url, authz, hdr...)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return r
}

// status is the status of GET url with authz (0 on a transport error).
func (c *auClient) status(url, authz string) int {
	r, err := c.do(url, authz)
	if err != nil {
		return 0
	}
	return r.status
}

// auWant fails unless GET url with authz answers want.
func (c *auClient) want(t testing.TB, what, url, authz string, want int) auResp {
	t.Helper()
	r := c.get(t, url, authz)
	if r.status != want {
		t.Errorf("%s: status %d, want %d: %s", what, r.status, want, r.body)
	}
	return r
}

// until polls GET url with authz until it answers want or d passes; it
// returns how long that took and whether it happened.
func (c *auClient) until(url, authz string, want int, d time.Duration) (time.Duration, bool) {
	start := time.Now()
	for {
		if c.status(url, authz) == want {
			return time.Since(start), true
		}
		if time.Since(start) > d {
			return time.Since(start), false
		}
	}
}

// auIdentity returns the upstream's values of the identity headers, keyed by
// lower-case canonical name ("x-auth-user"), folding case, '_' and '.'.
func auIdentity(t *testing.T, body []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for name, v := range decodeEcho(t, body).Headers {
		n := strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(name))
		if strings.HasPrefix(n, "x-auth-") || n == "authorization" {
			out[n] = append(out[n], v...)
		}
	}
	return out
}

// auMetric returns the value of a metric line (name with labels, exactly as
// exposed) on the gateway's /metrics, or -1 when absent.
func auMetric(t testing.TB, g *gateway, series string) float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + g.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return f
		}
	}
	return -1
}

// auTrials is the number of trials of the measurements: KEYGATE_E2E_TRIALS,
// else def.
func auTrials(t testing.TB, def int) int {
	t.Helper()
	s := os.Getenv("KEYGATE_E2E_TRIALS")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("KEYGATE_E2E_TRIALS=%q: want a positive integer", s)
	}
	return n
}

// auStats summarises delays: p50, p99 and max (nearest rank).
func auStats(d []time.Duration) (p50, p99, maxD time.Duration) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return rank(0.50), rank(0.99), s[len(s)-1]
}

func auFmt(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000)
}

// auNoLimits turns the failure limiters off: the revocation tests poll
// refused credentials in tight loops, which would otherwise get 429.
const auNoLimits = "auth:\n  failures:\n    per_ip_per_minute: 0\n    per_user_per_minute: 0\n"

// auOpsRoutes: /ops needs role ops, everything else any authenticated caller.
func auOpsRoutes(upstream string) string {
	up := fmt.Sprintf("[\"http://%s\"]", upstream)
	return "  - name: ops\n    path_prefix: /ops\n    upstreams: " + up + "\n    auth: required\n    roles: [ops]\n" +
		"  - name: api\n    path_prefix: /\n    upstreams: " + up + "\n    auth: required\n"
}

// auRedisGateway starts a gateway on the Redis at addr with auOpsRoutes to
// upstream, extra top-level YAML, extra lines of the store block, and env.
func auRedisGateway(t *testing.T, addr, upstream, extra string, storeMore []string, env ...string) *gateway {
	t.Helper()
	return startGateway(t, serveOpts{
		routes: auOpsRoutes(upstream),
		store:  auRedisYAML(addr, storeMore...),
		extra:  extra,
		env:    env,
	})
}

// auWarm requests url with authz on g until it answers 200 and a request
// was answered from g's cache (keygate_cache_hits_total moved), so the
// credential is cached there.
func auWarm(t testing.TB, c *auClient, g *gateway, url, authz string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if st := c.status(url, authz); st != 200 {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		before := auMetric(t, g, "keygate_cache_hits_total")
		st := c.status(url, authz)
		after := auMetric(t, g, "keygate_cache_hits_total")
		if st == 200 && after > before {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("could not warm %s on %s", url, g.public)
}

// auEventually is an auClient whose want polls until the status is right or
// bound passes.
type auEventually struct {
	c     *auClient
	bound time.Duration
}

func (e *auEventually) want(t testing.TB, what, url, authz string, want int) auResp {
	t.Helper()
	deadline := time.Now().Add(e.bound)
	for {
		r, err := e.c.do(url, authz)
		if err == nil && r.status == want {
			return r
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Errorf("%s: %v", what, err)
				return auResp{}
			}
			t.Errorf("%s: status %d after %v, want %d: %s", what, r.status, e.bound, want, r.body)
			return r
		}
		time.Sleep(time.Millisecond)
	}
}
