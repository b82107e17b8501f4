// Command kgbench runs keygate's load tests against real peers (bench/README.md).
//
// It starts `keygate echo` as the upstream, keygate on the embedded store
// and on a private Redis, and the peers that are installed (nginx, Caddy,
// HAProxy), creates the users and keys, measures every scenario with wrk for
// a bounded time, and writes the results (Markdown, JSON, SVG) under
// bench/results/. All traffic stays on 127.0.0.1.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	r := &runner{}
	flag.StringVar(&r.bin, "keygate", "bin/keygate", "keygate binary")
	flag.StringVar(&r.bareBin, "bareproxy", "bin/bareproxy", "the bare fasthttp proxy (bench/cmd/bareproxy), the floor of the hits phase")
	flag.BoolVar(&r.microJWT, "micro-jwt", os.Getenv("BENCH_MICRO_JWT") != "0", "run the JWT vs Basic hit micro-benchmark for its goal (needs go and the source tree; $BENCH_MICRO_JWT=0: skip)")
	flag.StringVar(&r.out, "out", "bench/results", "results directory")
	flag.DurationVar(&r.dur, "duration", envDuration("BENCH_DURATION", 6*time.Second), "load per scenario ($BENCH_DURATION)")
	flag.IntVar(&r.conns, "connections", envInt("BENCH_CONNECTIONS", 32), "wrk connections ($BENCH_CONNECTIONS)")
	flag.IntVar(&r.threads, "threads", envInt("BENCH_THREADS", 2), "wrk threads ($BENCH_THREADS)")
	flag.StringVar(&r.phases, "phases", envStr("BENCH_PHASES", "hits,flood,ws,authz"), "phases to run, comma-separated: hits (direct, peers, every form on a cache hit), flood, ws (working sets), authz ($BENCH_PHASES)")
	flag.IntVar(&r.rounds, "rounds", envInt("BENCH_ROUNDS", 3), "interleaved rounds of the cache-hit comparisons ($BENCH_ROUNDS)")
	flag.BoolVar(&r.oneMillion, "1m", os.Getenv("BENCH_1M") == "1", "also load 1M keys into Redis ($BENCH_1M=1)")
	flag.StringVar(&r.only, "peers", envStr("BENCH_PEERS", "nginx,caddy,haproxy"), "peers to measure, comma-separated ($BENCH_PEERS)")
	flag.Parse()
	if err := r.run(); err != nil {
		fmt.Fprintf(os.Stderr, "kgbench: %v\n", err)
		r.cleanup()
		os.Exit(1)
	}
	r.cleanup()
}

func envStr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envInt(k string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(k)); err == nil && n > 0 {
		return n
	}
	return def
}

func envDuration(k string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(k)); err == nil && d > 0 {
		return d
	}
	return def
}

type runner struct {
	bin, out, only string
	bareBin        string
	microJWT       bool
	micro          *microJWT // the JWT/Basic micro-benchmark's figures (nil: not run)
	bareAddr       string
	phases         string
	dur            time.Duration
	conns, threads int
	rounds         int
	oneMillion     bool

	dir         string
	procs       []*proc
	echoAddr    string
	keyListLua  string
	floodLua    string
	results     []Result
	notes       []string
	versions    map[string]string
	start       time.Time
	seededVia   string
	adminOf     map[*proc]string // keygate process -> its admin listener
	total, done int
}

func (r *runner) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	fmt.Printf("   note: %s\n", s)
	r.notes = append(r.notes, s)
}

func (r *runner) cleanup() {
	for i := len(r.procs) - 1; i >= 0; i-- {
		r.procs[i].stop()
	}
	r.procs = nil
	if r.dir != "" && os.Getenv("BENCH_KEEP") != "1" {
		_ = os.RemoveAll(r.dir)
	}
}

func (r *runner) startProc(name string, env []string, argv ...string) (*proc, error) {
	p, err := startProc(r.dir, name, env, argv...)
	if err == nil {
		r.procs = append(r.procs, p)
	}
	return p, err
}

func (r *runner) stopProc(p *proc) {
	p.stop()
	for i, q := range r.procs {
		if q == p {
			r.procs = append(r.procs[:i], r.procs[i+1:]...)
			break
		}
	}
}

func step(format string, args ...any) {
	fmt.Printf("== %s %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (r *runner) run() error {
	r.start = time.Now().UTC()
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk is not installed (bench/run.sh installs it when run as root: apt-get install -y wrk)")
	}
	var err error
	if r.dir, err = os.MkdirTemp("", "kgbench-"); err != nil {
		return err
	}
	if err := os.Chmod(r.dir, 0o755); err != nil { //nolint:gosec // bench output, read by the peers' worker processes; nginx workers read files here
		return err
	}
	if r.keyListLua, r.floodLua, err = writeScripts(r.dir); err != nil {
		return err
	}
	r.versions = map[string]string{
		"wrk":     toolVersion("wrk", "-v"),
		"keygate": toolVersion(r.bin, "version"),
		"go":      toolVersion("go", "version"),
	}
	fmt.Printf("kgbench: %s per scenario, wrk -t%d -c%d, work dir %s\n", r.dur, r.threads, r.conns, r.dir)

	// The upstream.
	step("starting keygate echo (the upstream)")
	port := mustFreePort()
	r.echoAddr = fmt.Sprintf("127.0.0.1:%d", port)
	echo, err := r.startProc("echo", nil, r.bin, "echo", "--listen", r.echoAddr)
	if err != nil {
		return err
	}
	if err := waitTCP(echo, r.echoAddr, 10*time.Second); err != nil {
		return err
	}

	// Peers (installed ones only).
	var peers []*peer
	for _, name := range strings.Split(r.only, ",") {
		name = strings.TrimSpace(name)
		var pr *peer
		var err error
		switch name {
		case "":
			continue
		case "nginx":
			pr, err = startNginx(r.dir, r.echoAddr)
		case "caddy":
			pr, err = startCaddy(r.dir, r.echoAddr)
		case "haproxy":
			pr, err = startHAProxy(r.dir, r.echoAddr)
		default:
			err = fmt.Errorf("unknown peer %q: %w", name, errSkip)
		}
		if err != nil {
			r.note("peer %s skipped: %v", name, err)
			r.results = append(r.results, Result{Target: name, Scenario: "*", Skipped: err.Error()})
			continue
		}
		r.procs = append(r.procs, pr.p)
		r.versions[pr.name] = pr.version
		step("started %s at %s (%s)", pr.name, pr.base, pr.version)
		peers = append(peers, pr)
	}

	// The bare fasthttp proxy: the floor of keygate's own proxy core.
	var bare *proc
	if r.phase("hits") {
		if bare, err = r.startBare(); err != nil {
			r.note("bare fasthttp proxy skipped: %v", err)
			r.results = append(r.results, Result{Target: "bare", Scenario: "proxy", Skipped: err.Error()})
		}
	}

	// keygate on the embedded store.
	bolt, err := r.startKeygate("keygate-bolt", kgOptions{driver: "bolt", perIP: 30, perUser: 10})
	if err != nil {
		return err
	}
	fx, err := r.seedBolt(bolt)
	if err != nil {
		return err
	}
	bolt.fx = fx
	r.seededVia = fx.via

	// keygate on Redis.
	var red *keygate
	redisAddr := ""
	if _, err := exec.LookPath("redis-server"); err != nil {
		r.note("keygate on Redis skipped: redis-server is not installed")
	} else {
		redisAddr = fmt.Sprintf("127.0.0.1:%d", mustFreePort())
		step("starting a private redis-server at %s (--save \"\" --appendonly no)", redisAddr)
		rp, err := r.startProc("redis", nil, "redis-server", "--bind", "127.0.0.1", "--port", strings.Split(redisAddr, ":")[1],
			"--save", "", "--appendonly", "no", "--dir", r.dir)
		if err != nil {
			return err
		}
		if err := waitTCP(rp, redisAddr, 10*time.Second); err != nil {
			return err
		}
		r.versions["redis"] = toolVersion("redis-server", "--version")
		if red, err = r.startKeygate("keygate-redis", kgOptions{driver: "redis", redisAddr: redisAddr, perIP: 30, perUser: 10}); err != nil {
			return err
		}
		if red.fx, err = r.seedRunning(red, func() (seeder, error) {
			st, err := openRedis(redisAddr)
			return storeSeeder{st}, err
		}); err != nil {
			return err
		}
	}

	// 1. The limit (wrk straight to the upstream), 2. the peers and 3.
	// keygate's cache hits, in interleaved rounds: every comparison the
	// goals make is between figures taken close together in time, however
	// the machine's speed drifts.
	jobs := []job{{res: Result{Target: "upstream", Scenario: "direct", Description: "wrk → keygate echo directly (the limit)"}, p: echo,
		l: load{url: "http://" + r.echoAddr + "/bench?x=1"}}}
	if bare != nil {
		jobs = append(jobs, job{res: Result{Target: "bare", Scenario: "proxy",
			Description: "bare fasthttp HostClient proxy, no checks (bench/cmd/bareproxy): the floor"}, p: bare,
			l: load{url: "http://" + r.bareAddr + "/bench?x=1"}})
	}
	for _, p := range peers {
		for _, s := range p.scenarios {
			jobs = append(jobs, job{res: Result{Target: p.name, Scenario: s.name, Description: s.desc}, p: p.p,
				l: load{url: p.base + s.path, authorization: s.authorization}})
		}
	}
	for _, kg := range []*keygate{bolt, red} {
		if kg != nil {
			jobs = append(jobs, r.hitJobs(kg)...)
		}
	}
	if r.phase("hits") && strings.Contains(r.only, "nginx") {
		jobs = append(jobs, r.authRequestJobs(bolt)...)
	}
	// Progress: the rounds, then the scenarios measured once.
	for name, n := range map[string]int{"hits": len(jobs) * max(r.rounds, 1), "flood": 2 * 3, "ws": 2, "authz": 1} {
		if r.phase(name) {
			r.total += n
		}
	}
	if r.oneMillion && r.phase("ws") {
		r.total += 2
		if r.rounds > 1 {
			r.total += 2*r.rounds - 1
		}
	}
	if r.phase("hits") {
		r.runRounds(jobs)
		r.annotateForwardAuth(bolt)
		if r.microJWT {
			r.micro = runMicroJWT()
		}
	}

	// 3. Flood of wrong passwords beside cached traffic (embedded store).
	if r.phase("flood") {
		r.flood(bolt, "")
	}

	// 4. Working sets larger than the cache (Redis).
	if red != nil && r.phase("ws") {
		if err := r.workingSets(red, redisAddr); err != nil {
			return err
		}
	}

	// 5. Variants that need a restart of the embedded-store keygate.
	r.stopProc(bolt.p)
	for _, v := range []struct {
		name, suffix string
		hashConc     int
	}{{"keygate-bolt-nolimit", "_nolimit", 2}, {"keygate-bolt-nolimit-hc1", "_nolimit_hc1", 1}} {
		if !r.phase("flood") {
			break
		}
		nl, err := r.startKeygate(v.name, kgOptions{driver: "bolt", boltPath: bolt.boltPath, hashConc: v.hashConc})
		if err != nil {
			r.note("flood without failure limits skipped: %v", err)
			continue
		}
		nl.fx = bolt.fx
		r.flood(nl, v.suffix)
		r.stopProc(nl.p)
	}
	if r.phase("authz") {
		r.externalAuthz(bolt)
	}

	return r.write()
}

// phase reports whether BENCH_PHASES includes name.
func (r *runner) phase(name string) bool {
	for _, p := range strings.Split(r.phases, ",") {
		if strings.TrimSpace(p) == name {
			return true
		}
	}
	return false
}

// keygate is one running keygate serve.
type keygate struct {
	name     string
	p        *proc
	base     string // public listener
	admin    string // admin listener
	boltPath string
	fwd      string // forward-auth listener host:port
	fx       *fixture
}

type kgOptions struct {
	driver         string
	redisAddr      string
	boltPath       string
	perIP, perUser int
	hashConc       int    // auth.max_hash_concurrency (0: the default, 2)
	external       string // authz plugin endpoint (handler: external)
	externalSecret string
}

var tokenSecret = func() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

func (r *runner) startKeygate(name string, o kgOptions) (*keygate, error) {
	pub, adm, fwd := mustFreePort(), mustFreePort(), mustFreePort()
	if o.hashConc == 0 {
		o.hashConc = 2
	}
	if o.driver == "bolt" && o.boltPath == "" {
		o.boltPath = filepath.Join(r.dir, name+".db")
	}
	authz := ""
	if o.external != "" {
		authz = fmt.Sprintf(`authorization:
  handler: external
  external: { endpoint: %q, timeout: 200ms, cache_ttl: 10s, secret: %q }
`, o.external, o.externalSecret)
	}
	conf := fmt.Sprintf(`listen: "127.0.0.1:%d"
admin: { listen: "127.0.0.1:%d", pprof: %t }
forward_auth: { listen: "127.0.0.1:%d" }
store:
  driver: %s
  bolt: { path: %q }
  redis: { addrs: [%q], key_prefix: "kg:", pool_size: 64 }
cache: { max_entries: 100000, ttl: 60s, negative_ttl: 5s }
auth:
  max_hash_concurrency: %d
  failures: { per_ip_per_minute: %d, per_user_per_minute: %d }
# rl_hit: a policy no request reaches (10^6/s per caller), so every
# request pays the limiter and none is refused.
rate_limits:
  policies: [{ name: bench, requests: 1000000000, per: 1000s }]
%sroutes:
  - { name: open, path_prefix: /open, upstreams: ["http://%s"], auth: none, timeout: 30s }
  - { name: rl, path_prefix: /rl, upstreams: ["http://%s"], auth: required, timeout: 30s, rate_limit: bench }
  - { name: api, path_prefix: /, upstreams: ["http://%s"], auth: required, timeout: 30s }
`, pub, adm, os.Getenv("BENCH_PROFILE") == "1", fwd, o.driver, o.boltPath, o.redisAddr, o.hashConc, o.perIP, o.perUser, authz, r.echoAddr, r.echoAddr, r.echoAddr)
	if o.redisAddr == "" {
		conf = strings.Replace(conf, `  redis: { addrs: [""], key_prefix: "kg:", pool_size: 64 }`+"\n", "", 1)
	}
	confPath := filepath.Join(r.dir, name+".yaml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil { //nolint:gosec // the path is built from the bench's own directory
		return nil, err
	}
	step("starting %s (store %s, config %s)", name, o.driver, confPath)
	env := []string{"KEYGATE_ADMIN_PASSWORD=" + adminPassword, "KEYGATE_TOKENS_SIGNING_SECRET=" + tokenSecret}
	p, err := r.startProc(name, env, r.bin, "serve", "--config", confPath)
	if err != nil {
		return nil, err
	}
	if r.adminOf == nil {
		r.adminOf = map[*proc]string{}
	}
	r.adminOf[p] = fmt.Sprintf("http://127.0.0.1:%d", adm)
	kg := &keygate{name: name, p: p, base: fmt.Sprintf("http://127.0.0.1:%d", pub), admin: fmt.Sprintf("http://127.0.0.1:%d", adm),
		boltPath: o.boltPath, fwd: fmt.Sprintf("127.0.0.1:%d", fwd)}
	if err := waitTCP(p, kg.base[len("http://"):], 20*time.Second); err != nil {
		return nil, err
	}
	if err := waitTCP(p, kg.admin[len("http://"):], 5*time.Second); err != nil {
		return nil, err
	}
	return kg, nil
}

// seedRunning creates the fixture through the admin API when it answers,
// else with the store seeder direct() returns.
func (r *runner) seedRunning(kg *keygate, direct func() (seeder, error)) (*fixture, error) {
	keyName := "bench-" + time.Now().UTC().Format("150405.000")
	var s seeder
	if adminAPIAnswers(kg.admin) {
		s = adminSeeder{base: kg.admin}
	} else {
		d, err := direct()
		if err != nil {
			return nil, err
		}
		s = d
	}
	fx, err := s.seed(context.Background(), keyName)
	if err != nil {
		return nil, fmt.Errorf("%s: seeding: %w", kg.name, err)
	}
	step("%s: user %q and an API key created via the %s", kg.name, benchUser, fx.via)
	return fx, nil
}

// seedBolt seeds the embedded store: through the admin API if it answers,
// else keygate is stopped (bbolt is locked while it runs), the file seeded
// directly and keygate started again.
func (r *runner) seedBolt(kg *keygate) (*fixture, error) {
	keyName := "bench-" + time.Now().UTC().Format("150405.000")
	if adminAPIAnswers(kg.admin) {
		return r.seedRunning(kg, nil)
	}
	step("%s: the admin API does not answer GET /v1/user with 200: seeding the bolt file directly (keygate restarted)", kg.name)
	r.stopProc(kg.p)
	fx, err := seedBolt(kg.boltPath, keyName)
	if err != nil {
		return nil, err
	}
	nkg, err := r.startKeygate(kg.name, kgOptions{driver: "bolt", boltPath: kg.boltPath, perIP: 30, perUser: 10})
	if err != nil {
		return nil, err
	}
	*kg = *nkg
	step("%s: user %q and an API key created via the %s", kg.name, benchUser, fx.via)
	return fx, nil
}

// wsRounds measures a working set larger than the cache in rounds, each
// beside its all-hit reference on the same keygate: ws_1k_ref, the 1,000
// keys of ws_1k (same wrk script, a random key per request) walked again
// right before, so that all are hits whatever the large set evicted.
func (r *runner) wsRounds(kg *keygate, name, desc string, l load, file1k string) error {
	ref := Result{Target: kg.name, Scenario: "ws_1k_ref",
		Description: "all-hit reference of " + name + ": the 1k keys of ws_1k, walked right before, measured in the same rounds"}
	big := Result{Target: kg.name, Scenario: name, Description: desc}
	lref := load{url: kg.base + "/bench?x=1", script: r.keyListLua, scriptArgs: []string{file1k}}
	warm := r.defaults(l)
	warm.duration = 3 * time.Second
	if _, err := runWrk(warm); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	var refs, bigs []Result
	var refHits, refAll, bigHits, bigAll float64
	for round := 1; round <= r.rounds; round++ {
		step("%s: round %d of %d of %s beside ws_1k_ref", kg.name, round, r.rounds, name)
		if err := walk(lref.url, file1k, r.conns); err != nil {
			return fmt.Errorf("walking the 1k keys: %w", err)
		}
		h0, m0 := cacheCounters(kg.admin)
		res := r.measureOnce(ref, kg.p, lref)
		h1, m1 := cacheCounters(kg.admin)
		if res.Skipped != "" {
			return errors.New(res.Skipped)
		}
		refs, refHits, refAll = append(refs, res), refHits+h1-h0, refAll+h1+m1-h0-m0
		res = r.measureOnce(big, kg.p, l)
		h2, m2 := cacheCounters(kg.admin)
		if res.Skipped != "" {
			return errors.New(res.Skipped)
		}
		bigs, bigHits, bigAll = append(bigs, res), bigHits+h2-h1, bigAll+h2+m2-h1-m1
	}
	for _, x := range []struct {
		rs        []Result
		hits, all float64
		l         load
	}{{refs, refHits, refAll, lref}, {bigs, bigHits, bigAll, l}} {
		res := medianResult(x.rs)
		if x.all > 0 {
			res.Notes += fmt.Sprintf("; cache hit ratio %.1f%%, %.0f entries after", 100*x.hits/x.all, metricSum(kg.admin, "keygate_cache_entries"))
		}
		r.recordRounds(res, x.rs, kg.p, x.l)
	}
	return nil
}

// hitJobs: auth none, then every credential form on a cache hit.
func (r *runner) hitJobs(kg *keygate) []job {
	jobs := []job{{res: Result{Target: kg.name, Scenario: "none", Description: "route with auth: none"}, p: kg.p,
		l: load{url: kg.base + "/open/bench?x=1"}}}
	forms := kg.fx.forms()
	if tok, why := fetchJWT(kg.base); tok != "" {
		forms = append(forms, [2]string{"bearer_jwt", "Bearer " + tok})
	} else {
		r.skip(Result{Target: kg.name, Scenario: "bearer_jwt", Description: "Bearer JWT from POST /oauth/token"},
			"token endpoint not available: "+why)
	}
	for _, f := range forms {
		jobs = append(jobs, job{res: Result{Target: kg.name, Scenario: f[0], Description: "cache hit: " + f[0]}, p: kg.p,
			l: load{url: kg.base + "/bench?x=1", authorization: f[1]}})
		if f[0] == "bearer_kg" {
			// Issue 19: the same hit on a route with a rate limit (every
			// request admitted by the limiter; on Redis from a lease).
			jobs = append(jobs, job{res: Result{Target: kg.name, Scenario: "rl_hit", Description: "rate-limited hit: bearer_kg on a route with rate_limit"}, p: kg.p,
				l: load{url: kg.base + "/rl/bench?x=1", authorization: f[1]}})
		}
	}
	return jobs
}

// job is one scenario of the interleaved rounds.
type job struct {
	res Result
	p   *proc
	l   load
}

// runRounds measures every job once per round, round after round, and
// records per job the median of its rounds (each round's figures kept in
// Result.Rounds, from which the goals take per-round ratios). A job whose
// first request is not a 200 is skipped.
func (r *runner) runRounds(jobs []job) {
	rounds := max(r.rounds, 1)
	samples := make([][]Result, len(jobs))
	skipped := make([]string, len(jobs))
	for i, j := range jobs {
		if err := expect200(j.l.url, j.l.authorization); err != nil {
			skipped[i] = err.Error()
		}
	}
	for round := 1; round <= rounds; round++ {
		if rounds > 1 {
			step("round %d of %d of the comparisons", round, rounds)
		}
		for i, j := range jobs {
			if skipped[i] != "" {
				continue
			}
			// One request first: a credential idle since the previous
			// round (longer than cache.ttl) is a miss, and a Basic miss
			// hashes for a tenth of a second on one of the 2 CPUs - that
			// is the flood scenarios' subject, not a cache hit's.
			if err := expect200(j.l.url, j.l.authorization); err != nil {
				skipped[i] = err.Error()
				continue
			}
			res := r.measureOnce(j.res, j.p, j.l)
			if res.Skipped != "" {
				skipped[i] = res.Skipped
				continue
			}
			samples[i] = append(samples[i], res)
		}
	}
	for i, j := range jobs {
		if skipped[i] != "" {
			r.skip(j.res, skipped[i])
			continue
		}
		r.recordRounds(medianResult(samples[i]), samples[i], j.p, j.l)
	}
}

// flood: cached Basic traffic (wrk -t threads -c conns) while a second wrk
// (1 thread, 8 connections) sends wrong passwords for the same user, each
// one new; and a control run where the second wrk sends the cached
// credential, so the extra client's own load is separated from the cost of
// the failures.
func (r *runner) flood(kg *keygate, suffix string) {
	url := kg.base + "/bench?x=1"
	good := basicAuth(benchUser, benchPassword)
	if err := expect200(url, good); err != nil {
		r.skip(Result{Target: kg.name, Scenario: "flood" + suffix}, err.Error())
		return
	}
	second := func(floodIt bool) load {
		l := load{url: url, threads: 1, conns: 8, duration: r.dur}
		if floodIt {
			l.script, l.scriptArgs = r.floodLua, []string{benchUser}
		} else {
			l.authorization = good
		}
		return l
	}
	limits := "failure limits on (30/min per IP, 10/min per user: most of the flood is answered 429)"
	switch suffix {
	case "_nolimit":
		limits = "failure limits off: every wrong password pays argon2id (max_hash_concurrency 2)"
	case "_nolimit_hc1":
		limits = "failure limits off, max_hash_concurrency 1"
	}
	for _, c := range []struct {
		name  string
		flood bool
		desc  string
	}{
		{"flood_control" + suffix, false, "cached Basic beside a 2nd client sending the same cached credential (control)"},
		{"flood_cached" + suffix, true, "cached Basic beside a flood of new wrong passwords; " + limits},
	} {
		var side *wrkResult
		var sideErr error
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			side, sideErr = runWrk(second(c.flood))
		}()
		time.Sleep(100 * time.Millisecond) // the second client first
		res := r.measure(Result{Target: kg.name, Scenario: c.name, Description: c.desc}, kg.p, load{url: url, authorization: good})
		wg.Wait()
		if sideErr != nil {
			r.note("%s: second client: %v", c.name, sideErr)
			continue
		}
		r.annotate(c.name, kg.name, fmt.Sprintf("second client: %.0f req/s, %d non-2xx %s", side.RPS, side.Non2xx, side.Statuses), side.RPS)
		_ = res
	}
}

// workingSets: uniformly random API keys out of 1k, 100k (and 1M) distinct
// keys, with a cache of 100k entries.
func (r *runner) workingSets(kg *keygate, redisAddr string) error {
	st, err := openRedis(redisAddr)
	if err != nil {
		return err
	}
	all := filepath.Join(r.dir, "keys-all.txt")
	sizes := []int{1000, 100_000}
	if r.oneMillion {
		sizes = append(sizes, 1_000_000)
	} else {
		r.note("the 1M-key working set is off by default (loading takes long on a shared 2-core machine): BENCH_1M=1 make bench")
	}
	loaded := 0
	type wsRun struct {
		n     int
		fresh bool // on a restarted keygate (empty cache)
	}
	var runs []wsRun
	for _, n := range sizes {
		runs = append(runs, wsRun{n: n})
		if n > cacheEntries {
			runs = append(runs, wsRun{n: n, fresh: true})
		}
	}
	for _, run := range runs {
		n := run.n
		if n > loaded {
			step("%s: loading keys %d..%d into Redis (straight into the store, 64 writers)", kg.name, loaded, n)
			t0 := time.Now()
			if err := loadKeys(st, all, loaded, n, func(done int) {
				fmt.Printf("   … %d keys (%.0f/s)\n", done, float64(done-loaded)/time.Since(t0).Seconds())
			}); err != nil {
				return err
			}
			step("%s: %d keys loaded in %s", kg.name, n-loaded, time.Since(t0).Round(time.Millisecond))
			loaded = n
		}
		file := filepath.Join(r.dir, fmt.Sprintf("keys-%d.txt", n))
		if err := firstLines(all, file, n); err != nil {
			return err
		}
		name := "ws_" + human(n)
		desc := fmt.Sprintf("Bearer kg_ keys, uniform random over %d distinct keys, cache 100k", n)
		if run.fresh {
			name += "_fresh"
			desc += ", keygate restarted first (empty cache)"
			r.stopProc(kg.p)
			nkg, err := r.startKeygate(kg.name, kgOptions{driver: "redis", redisAddr: redisAddr, perIP: 30, perUser: 10})
			if err != nil {
				return err
			}
			nkg.fx = kg.fx
			*kg = *nkg
		} else if n > cacheEntries {
			desc += ", right after the smaller working sets on the same keygate"
		}
		l := load{url: kg.base + "/bench?x=1", script: r.keyListLua, scriptArgs: []string{file}}
		if n > cacheEntries && !run.fresh && r.rounds > 1 {
			if err := r.wsRounds(kg, name, desc, l, filepath.Join(r.dir, "keys-1000.txt")); err != nil {
				r.skip(Result{Target: kg.name, Scenario: name, Description: desc}, err.Error())
			}
			continue
		}
		// Warm up: the steady state is what is measured. A working set that
		// fits in the cache is walked once (every key asked for once); a
		// larger one gets a short random warm-up (its steady-state hit ratio
		// is at most cache/working set whatever the warm-up).
		t0 := time.Now()
		if n <= cacheEntries {
			if err := walk(kg.base+"/bench?x=1", file, r.conns); err != nil {
				r.skip(Result{Target: kg.name, Scenario: name}, "warm-up: "+err.Error())
				continue
			}
		} else {
			warm := l
			warm.duration = 3 * time.Second
			warm.threads, warm.conns = r.threads, r.conns
			if _, err := runWrk(warm); err != nil {
				r.skip(Result{Target: kg.name, Scenario: name}, err.Error())
				continue
			}
		}
		step("%s: warm-up of %s done in %s (%.0f cache entries)", kg.name, name, time.Since(t0).Round(time.Millisecond),
			metricSum(kg.admin, "keygate_cache_entries"))
		h0, m0 := cacheCounters(kg.admin)
		r.measure(Result{Target: kg.name, Scenario: name, Description: desc}, kg.p, l)
		h1, m1 := cacheCounters(kg.admin)
		if h1+m1-h0-m0 > 0 {
			r.annotate(name, kg.name, fmt.Sprintf("cache hit ratio %.1f%%, %.0f entries after", 100*(h1-h0)/(h1+m1-h0-m0),
				metricSum(kg.admin, "keygate_cache_entries")), 0)
		}
	}
	return nil
}

// cacheEntries is the keygate cache size in every bench config.
const cacheEntries = 100_000

// walk asks for every Authorization value of file once, conns at a time,
// and wants 200 for each.
func walk(url, file string, conns int) error {
	b, err := os.ReadFile(file) //nolint:gosec // the bench's own key list file
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	tr := &http.Transport{MaxIdleConnsPerHost: conns}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var next atomic.Int64
	var bad atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(lines) {
					return
				}
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Authorization", lines[i])
				resp, err := c.Do(req)
				if err != nil {
					bad.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		return fmt.Errorf("%d of %d requests failed", n, len(lines))
	}
	return nil
}

func human(n int) string {
	switch {
	case n >= 1_000_000:
		return strconv.Itoa(n/1_000_000) + "m"
	case n >= 1000:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// cacheCounters reads keygate_cache_hits_total and _misses_total from the
// admin /metrics.
func cacheCounters(admin string) (hits, misses float64) {
	req, _ := http.NewRequest(http.MethodGet, admin+"/metrics", nil)
	req.Header.Set("Authorization", basicAuth(adminUser, adminPassword))
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, 0
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		switch {
		case strings.HasPrefix(line, "keygate_cache_hits_total"):
			hits += v
		case strings.HasPrefix(line, "keygate_cache_misses_total"):
			misses += v
		}
	}
	return hits, misses
}

// externalAuthz: the API key hit with authorization.handler: external and
// the reference plugin (keygate authz-plugin-example) allowing everything, warm decision cache. Guarded:
// skipped unless keygate asks the plugin (keygate_authz_decisions_total
// {handler="external"} moves).
func (r *runner) externalAuthz(bolt *keygate) {
	res := Result{Target: "keygate-bolt-extauthz", Scenario: "bearer_kg", Description: "cache hit: bearer_kg, authorization.handler external (decision cache warm)"}
	rules := filepath.Join(r.dir, "authz-rules.yaml")
	if err := os.WriteFile(rules, []byte("rules:\n  - effect: allow\n"), 0o644); err != nil { //nolint:gosec // bench output, read by the peers' worker processes and by people
		r.skip(res, err.Error())
		return
	}
	addr := fmt.Sprintf("127.0.0.1:%d", mustFreePort())
	pp, err := r.startProc("authz-plugin", nil, r.bin, "authz-plugin-example", "--listen", addr, "--rules", rules)
	if err != nil {
		r.skip(res, err.Error())
		return
	}
	defer r.stopProc(pp)
	if err := waitTCP(pp, addr, 10*time.Second); err != nil {
		r.skip(res, err.Error())
		return
	}
	kg, err := r.startKeygate("keygate-bolt-extauthz", kgOptions{driver: "bolt", boltPath: bolt.boltPath, perIP: 30, perUser: 10, external: "http://" + addr})
	if err != nil {
		r.skip(res, "keygate does not start with authorization.handler: external: "+firstLine(err.Error()))
		return
	}
	defer r.stopProc(kg.p)
	auth := "Bearer " + bolt.fx.keyValue
	if err := expect200(kg.base+"/bench?x=1", auth); err != nil {
		r.skip(res, "with handler external: "+err.Error())
		return
	}
	if n := metricSum(kg.admin, `keygate_authz_decisions_total{handler="external"`); n == 0 {
		r.skip(res, "keygate did not ask the plugin (no keygate_authz_decisions_total{handler=\"external\"}): external authz is not wired into serve yet")
		return
	}
	r.measure(res, kg.p, load{url: kg.base + "/bench?x=1", authorization: auth})
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// metricSum sums the samples of /metrics lines starting with prefix.
func metricSum(admin, prefix string) float64 {
	req, _ := http.NewRequest(http.MethodGet, admin+"/metrics", nil)
	req.Header.Set("Authorization", basicAuth(adminUser, adminPassword))
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0
	}
	defer func() { _ = resp.Body.Close() }()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// defaults fills in the run's threads, connections and duration where l
// leaves them unset.
func (r *runner) defaults(l load) load {
	if l.threads == 0 {
		l.threads = r.threads
	}
	if l.conns == 0 {
		l.conns = r.conns
	}
	if l.duration == 0 {
		l.duration = r.dur
	}
	return l
}

// measure runs l against target and records the figures.
func (r *runner) measure(res Result, target *proc, l load) Result {
	l = r.defaults(l)
	res = r.measureOnce(res, target, l)
	r.results = append(r.results, res)
	if res.Skipped == "" {
		r.profile(res, target, l)
	}
	return res
}

// recordRounds records the median of a scenario's rounds (res, from
// medianResult(rs)), prints it beside their range, and profiles the
// scenario if it is one of perfScenarios.
func (r *runner) recordRounds(res Result, rs []Result, target *proc, l load) {
	r.results = append(r.results, res)
	if len(rs) > 1 {
		fmt.Printf("   median of %d: %-22s %-16s %8.0f req/s (%.0f–%.0f)  p99 %6.2f ms  %6.1f µs CPU/req\n", len(rs),
			res.Target, res.Scenario, res.RPS, minRPS(rs), maxRPS(rs), res.P99ms, res.CPUusPerReq)
	}
	r.profile(res, target, r.defaults(l))
}

// measureOnce runs l against target and returns the figures (Skipped set
// when wrk failed) without recording them.
func (r *runner) measureOnce(res Result, target *proc, l load) Result {
	l = r.defaults(l)
	r.done++
	fmt.Printf("[%2d/%d] %-22s %-16s wrk -t%d -c%d %s … ", r.done, r.total, res.Target, res.Scenario, l.threads, l.conns, l.duration)
	before := treeStat(target.pid())
	w, err := runWrk(l)
	after := treeStat(target.pid())
	if err != nil {
		fmt.Println("failed")
		res.Skipped = firstLine(err.Error())
		fmt.Printf("   skip %s %s: %s\n", res.Target, res.Scenario, res.Skipped)
		return res
	}
	res.RPS, res.P50ms, res.P99ms = w.RPS, w.P50ms, w.P99ms
	res.Requests, res.Non2xx, res.Errors = w.Requests, w.Non2xx, w.Errors
	res.Connections, res.Seconds = l.conns, w.Seconds
	if w.Requests > 0 {
		res.CPUusPerReq = float64(after.ticks-before.ticks) * (1e6 / clkTck) / float64(w.Requests)
	}
	res.PeakRSSMB = float64(after.hwmKB) / 1024
	res.Process = target.name
	fmt.Printf("%8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  %6.1f µs CPU/req  RSS %5.1f MB", res.RPS, res.P50ms, res.P99ms, res.CPUusPerReq, res.PeakRSSMB)
	if res.Non2xx > 0 || res.Errors > 0 {
		fmt.Printf("  (%d non-2xx, %d socket errors)", res.Non2xx, res.Errors)
	}
	fmt.Println()
	return res
}

func (r *runner) skip(res Result, why string) {
	fmt.Printf("   skip %s %s: %s\n", res.Target, res.Scenario, why)
	res.Skipped = why
	r.results = append(r.results, res)
}

func (r *runner) annotate(scenario, target, note string, sideRPS float64) {
	for i := len(r.results) - 1; i >= 0; i-- {
		if res := &r.results[i]; res.Scenario == scenario && res.Target == target {
			if res.Notes != "" {
				res.Notes += "; "
			}
			res.Notes += note
			if sideRPS > 0 {
				res.SideRPS = sideRPS
			}
			fmt.Printf("   %s %s: %s\n", target, scenario, note)
			return
		}
	}
}
