package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
)

// cutProxy forwards TCP connections to a target (a gateway's Redis) until
// cut: then it closes every connection and refuses new ones until restored,
// so one gateway loses Redis (data and pub/sub) while others keep it.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() { _ = ln.Close(); p.setCut(true) })
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *cutProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *cutProxy) forward(c net.Conn) {
	defer func() { _ = c.Close() }()
	u, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		return
	}
	defer func() { _ = u.Close() }()
	if !p.track(c, u) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

// setCut cuts (closing every connection) or restores the proxy.
func (p *cutProxy) setCut(v bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = v
	if v {
		for c := range p.conns {
			_ = c.Close()
		}
		clear(p.conns)
	}
}

// revokeOnAdmin revokes key id through g's admin API, as its owner (user
// self-service), and wants 200. A 503 (no password-hashing slot free under
// the load of parallel tests; it changes nothing) is retried for up to 20s.
func revokeOnAdmin(t *testing.T, g *gateway, owner, id string) {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, _ := http.NewRequest("DELETE", "http://"+g.admin+"/v1/user/api-keys/"+id, nil)
		req.Header.Set("Authorization", auBasic(owner, auPassword))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("revoke %s on %s: %v", id, g.admin, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		switch {
		case resp.StatusCode == 200:
			return
		case resp.StatusCode == 503 && time.Now().Before(deadline):
			time.Sleep(100 * time.Millisecond)
		default:
			t.Fatalf("revoke %s on %s: %d %s", id, g.admin, resp.StatusCode, body)
		}
	}
}

// TestAuthKeyRevocationPerCredential (issue 13 item 7; DESIGN.md §8, §13):
// two gateways on one Redis. K1 is revoked on A: B refuses K1 at once, in
// every form. Then Redis stops: B still serves the same owner's cached K2
// and password within store.outage_grace (before the fix, K1's revocation
// evicted every credential of its owner, so they got 503), and never K1.
func TestAuthKeyRevocationPerCredential(t *testing.T) {
	t.Parallel()
	r := testredis.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	up := startEchoProc(t)
	extra := auNoLimits + "cache:\n  ttl: 60s\n  negative_ttl: 1s\n"
	a := auRedisGateway(t, r.Addr(), up, extra, []string{"outage_grace: 60s"})
	b := auRedisGateway(t, r.Addr(), up, extra, []string{"outage_grace: 60s"})
	s := auRedisStore(t, r.Addr())
	s.account("acme")
	s.user("alice", "acme", "", "ops")
	k1, v1 := s.key("alice", "k1")
	k2, v2 := s.key("alice", "k2")
	c := newAuClient(5 * time.Second)
	defer c.close()
	url := b.url("/x")
	k1Forms, k2Forms := auKeyForms(k1, v1), auKeyForms(k2, v2)
	warm := map[string]string{"password": auBasic("alice", auPassword)}
	for form, h := range k2Forms {
		warm["K2 "+form] = h
	}
	for _, h := range warm {
		auWarm(t, c, b, url, h)
	}
	for _, h := range k1Forms {
		auWarm(t, c, b, url, h)
	}

	revokeOnAdmin(t, a, "alice", k1)
	began := time.Now()
	for form, h := range k1Forms {
		if d, ok := c.until(url, h, 401, auRevokeBound); !ok {
			t.Fatalf("B still accepts K1 (%s) %v after its revocation on A", form, time.Since(began))
		} else if form == "bearer kg_" {
			t.Logf("B refused K1 %s after the revocation on A returned", auFmt(d))
		}
	}

	// Every instance: A refuses it too.
	ca := newAuClient(5 * time.Second)
	defer ca.close()
	if _, ok := ca.until(a.url("/x"), "Bearer "+v1, 401, auRevokeBound); !ok {
		t.Fatal("A still accepts K1 after revoking it")
	}

	// Redis stops before anything else reaches B: what B serves now comes
	// from what K1's invalidation left in its cache.
	r.Stop()
	for range 3 {
		for what, h := range warm {
			c.want(t, "Redis stopped after K1's revocation: cached "+what, url, h, 200)
		}
		for form, h := range k1Forms {
			if st := c.status(url, h); st == 200 {
				t.Errorf("Redis stopped: revoked K1 (%s) served", form)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// auRewriteAOF writes fillers filler keys of 100 bytes (outside the
// gateways' prefix), rewrites Redis' AOF (the data moves into its RDB base,
// which key-load-delay slows down on the next start) and waits until that is
// done.
func auRewriteAOF(t *testing.T, addr string, fillers int) {
	t.Helper()
	rc := auRedisAdmin(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := rc.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range fillers {
			p.Set(ctx, fmt.Sprint("filler:", i), strings.Repeat("f", 100), 0)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	auRedisDo(t, rc, "BGREWRITEAOF")
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, _ := auRedisDo(t, rc, "INFO", "persistence").(string)
		if strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("AOF rewrite not done within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// auPoller requests warm credentials on a gateway in a loop and counts the
// statuses, until stopped.
type auPoller struct {
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	counts map[int]int
	slow   time.Duration // the slowest request since the last take
	n      atomic.Int64
}

func startAuPoller(c *auClient, url string, creds []string) *auPoller {
	p := &auPoller{stop: make(chan struct{}), done: make(chan struct{}), counts: map[int]int{}}
	go func() {
		defer close(p.done)
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			default:
			}
			start := time.Now()
			st := c.status(url, creds[i%len(creds)])
			d := time.Since(start)
			p.mu.Lock()
			p.counts[st]++
			p.slow = max(p.slow, d)
			p.mu.Unlock()
			p.n.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return p
}

// take returns the counts so far and the slowest request, and starts anew.
func (p *auPoller) take() (map[int]int, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, slow := p.counts, p.slow
	p.counts, p.slow = map[int]int{}, 0
	return c, slow
}

func (p *auPoller) close() (map[int]int, time.Duration) {
	close(p.stop)
	<-p.done
	return p.take()
}

// TestAuthRedisRestartKeepsCache (issue 13 item 5): gateway B, with warm
// credentials polled throughout, sees Redis restart (data kept in the AOF):
// no 503 for them during the restart nor after it, when B's subscription
// comes back and its entries are marked for revalidation instead of being
// flushed. Then B alone is cut off from Redis, a key is revoked on A
// meanwhile, and B is reconnected: B refuses the key after re-subscribing
// (the revocation is replayed from the invalidation log) while the warm
// credentials still never got a 503.
func TestAuthRedisRestartKeepsCache(t *testing.T) {
	t.Parallel()
	// A restarted Redis with a real dataset answers PING and SUBSCRIBE
	// while it loads, and LOADING to everything else: the window in which a
	// flush on resubscription turned cached credentials into 503s.
	// key-load-delay (µs per key of the AOF's RDB base) with filler keys
	// makes loading last about 2s; events are processed every KiB loaded.
	r := testredis.Start(t, "--appendonly", "yes", "--appendfsync", "always",
		"--key-load-delay", "10000", "--loading-process-events-interval-bytes", "1024")
	px := startCutProxy(t, r.Addr())
	up := startEchoProc(t)
	// cache.ttl 1s: the warm entries are past it during the outage, so they
	// are served stale (revalidation failing) as well as fresh.
	extra := auNoLimits + "cache:\n  ttl: 1s\n  negative_ttl: 1s\n"
	a := auRedisGateway(t, r.Addr(), up, extra, []string{"outage_grace: 60s"})
	b := auRedisGateway(t, px.addr(), up, extra, []string{"outage_grace: 60s"})
	s := auRedisStore(t, r.Addr())
	s.account("acme")
	s.user("alice", "acme", "", "ops")
	s.user("bob", "acme", "", "ops")
	k1, v1 := s.key("alice", "k1")
	_, v2 := s.key("alice", "k2")
	_, v3 := s.key("bob", "k3")
	c, cp := newAuClient(5*time.Second), newAuClient(5*time.Second)
	defer c.close()
	defer cp.close()
	url := b.url("/x")
	warm := []string{auBasic("alice", auPassword), "Bearer " + v2, "Bearer " + v3, auBasic("bob", auPassword)}
	for _, h := range append(warm, "Bearer "+v1) {
		auWarm(t, c, b, url, h)
	}
	// A talks to Redis directly (its dials fail while Redis is down, which
	// trips go-redis' dial breaker), B through the proxy.
	for _, h := range warm {
		auWarm(t, c, a, a.url("/x"), h)
	}
	ca := newAuClient(5 * time.Second)
	defer ca.close()
	pa := startAuPoller(ca, a.url("/x"), warm)
	p := startAuPoller(cp, url, warm)
	phases := map[string]map[int]int{}
	slowest := map[string]time.Duration{}

	// 1. Redis restarts (kill -9; AOF keeps the data, loaded slowly).
	auRewriteAOF(t, r.Addr(), 200)
	r.Stop()
	time.Sleep(1500 * time.Millisecond)
	phases["redis down"], slowest["redis down"] = p.take()
	restarting := time.Now()
	r.Restart() // returns once loading is over (PING answers PONG)
	t.Logf("Redis restarted and loaded its data in %s", auFmt(time.Since(restarting)))
	deadline := time.Now().Add(15 * time.Second)
	for code, _ := getAdmin(t, b, "/readyz"); code != 200; code, _ = getAdmin(t, b, "/readyz") {
		if time.Now().After(deadline) {
			t.Fatal("B not ready 15s after Redis came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // resubscription, replay, revalidation
	phases["redis restarted"], slowest["redis restarted"] = p.take()
	phases["A: redis down and restarted"], slowest["A: redis down and restarted"] = pa.close()

	// 2. B alone loses Redis; K1 is revoked on A meanwhile.
	px.setCut(true)
	time.Sleep(300 * time.Millisecond)
	revokeOnAdmin(t, a, "alice", k1)
	time.Sleep(500 * time.Millisecond)
	phases["B cut off"], slowest["B cut off"] = p.take()
	px.setCut(false)
	d, ok := c.until(url, "Bearer "+v1, 401, 10*time.Second)
	if !ok {
		t.Fatal("B still accepts K1 10s after being reconnected; it was revoked on A while B was cut off")
	}
	t.Logf("B refused K1 %s after being reconnected", auFmt(d))
	for range 5 {
		if st := c.status(url, "Bearer "+v1); st != 401 {
			t.Fatalf("K1 on B after its refusal: %d, want 401", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	phases["B reconnected"], slowest["B reconnected"] = p.close()

	for _, ph := range []string{"redis down", "redis restarted", "A: redis down and restarted", "B cut off", "B reconnected"} {
		counts := phases[ph]
		t.Logf("warm credentials, %s: statuses %v, slowest %s", ph, counts, auFmt(slowest[ph]))
		if counts[200] == 0 {
			t.Errorf("%s: no request served", ph)
		}
		for st, n := range counts {
			if st != 200 {
				t.Errorf("%s: %d requests with warm credentials got %d, want 200 only", ph, n, st)
			}
		}
	}
}
