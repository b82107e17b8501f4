package e2e

import (
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
)

// TestAuthStoreOutage (DESIGN.md §8, SECURITY.md "store down"): Redis is
// killed (SIGKILL, AOF with fsync always so the data survives) under a
// gateway with cache.ttl 1s and store.outage_grace 3s.
func TestAuthStoreOutage(t *testing.T) {
	t.Parallel()
	const ttl, grace = time.Second, 3 * time.Second
	r := testredis.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	up := startEchoProc(t)
	g := auRedisGateway(t, r.Addr(), up, "cache:\n  ttl: 1s\n  negative_ttl: 1s\n", []string{"outage_grace: 3s"})
	s := auRedisStore(t, r.Addr())
	s.account("acme")
	s.user("alice", "acme", "", "ops")
	s.user("bob", "acme", "", "ops")
	_, keyV := s.key("alice", "cached")
	_, uncachedV := s.key("bob", "uncached")
	revokedID, revokedV := s.key("alice", "revoked")
	c := newAuClient(5 * time.Second)
	defer c.close()
	url := g.url("/x")
	aliceB, keyH := auBasic("alice", auPassword), "Bearer "+keyV

	// A key revoked before the outage, while cached.
	auWarm(t, c, g, url, "Bearer "+revokedV)
	s.revoke(revokedID)
	if _, ok := c.until(url, "Bearer "+revokedV, 401, 2*time.Second); !ok {
		t.Fatal("revoked key still accepted before the outage")
	}

	cachedAt := time.Now()
	auWarm(t, c, g, url, aliceB)
	auWarm(t, c, g, url, keyH)
	r.Stop()
	stopped := time.Now()

	never200 := func(what, h string, allowed ...int) {
		t.Helper()
		resp := c.get(t, url, h)
		ok := false
		for _, a := range allowed {
			ok = ok || resp.status == a
		}
		if !ok {
			t.Errorf("outage, %s: status %d, want one of %v: %s", what, resp.status, allowed, resp.body)
		}
		if resp.status == 503 && resp.header.Get("Retry-After") == "" {
			t.Errorf("outage, %s: 503 without Retry-After", what)
		}
	}
	check := func(phase string) {
		t.Helper()
		c.want(t, phase+": cached password", url, aliceB, 200)
		c.want(t, phase+": cached key", url, keyH, 200)
		// Beyond the failure limits (10 per user, 30 per IP): being
		// unavailable is not a failure.
		for range 12 {
			never200(phase+": uncached password", auBasic("bob", auPassword), 503)
			never200(phase+": uncached key", "Bearer "+uncachedV, 503)
		}
		never200(phase+": wrong password of a cached user", auBasic("alice", "wrong"), 503, 401)
		never200(phase+": key revoked before the outage", "Bearer "+revokedV, 503, 401)
	}
	check("fresh")
	if code, body := getAdmin(t, g, "/readyz"); code != 503 {
		t.Errorf("readyz during the outage: %d %s", code, body)
	}
	// Past cache.ttl: the entries are stale and served within the grace.
	time.Sleep(time.Until(cachedAt.Add(ttl + 200*time.Millisecond)))
	check("stale")
	// Past ttl + grace from caching: nothing cached is served any more.
	time.Sleep(time.Until(cachedAt.Add(ttl + grace + 300*time.Millisecond)))
	for what, h := range map[string]string{"password": aliceB, "key": keyH} {
		never200("past the grace, cached "+what, h, 503)
	}
	t.Logf("outage of %v checked: fresh and stale entries served, then refused with 503 past ttl+grace", time.Since(stopped).Round(time.Millisecond))

	r.Restart()
	if _, ok := c.until(url, auBasic("bob", auPassword), 200, 10*time.Second); !ok {
		t.Fatal("uncached user not accepted after Redis came back")
	}
	c.want(t, "after: cached password", url, aliceB, 200)
	c.want(t, "after: cached key", url, keyH, 200)
	c.want(t, "after: uncached key", url, "Bearer "+uncachedV, 200)
	c.want(t, "after: wrong password", url, auBasic("alice", "wrong"), 401)
	for range 3 {
		c.want(t, "after: key revoked before the outage", url, "Bearer "+revokedV, 401)
		time.Sleep(100 * time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for code, _ := getAdmin(t, g, "/readyz"); code != 200; code, _ = getAdmin(t, g, "/readyz") {
		if time.Now().After(deadline) {
			t.Fatalf("readyz %d after Redis came back", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
