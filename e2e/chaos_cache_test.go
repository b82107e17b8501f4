//go:build chaos

package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
)

// TestChaosCacheRedisRestart (issue 13 items 5 and 7), the heavy variant of
// TestAuthRedisRestartKeepsCache: gateway B holds many warm credentials (API
// keys and passwords of several users) polled by several clients while
//
//  1. Redis is killed and restarted three times (AOF keeps the data), and
//  2. B alone is cut off from Redis while A revokes a third of the keys,
//     then reconnected.
//
// Figures: statuses of the warm credentials per phase (the target is 200
// only: no 503 in the restart seconds), how long after B's reconnection
// every revoked key was refused, and that none of them was served after.
func TestChaosCacheRedisRestart(t *testing.T) {
	const users, keysPer, clients = 10, 6, 4
	// Each restart loads the data for about 3s (LOADING), see
	// TestAuthRedisRestartKeepsCache.
	r := testredis.Start(t, "--appendonly", "yes", "--appendfsync", "always",
		"--key-load-delay", "10000", "--loading-process-events-interval-bytes", "1024")
	px := startCutProxy(t, r.Addr())
	up := startEchoProc(t)
	extra := auNoLimits + "cache:\n  ttl: 2s\n  negative_ttl: 1s\n"
	a := auRedisGateway(t, r.Addr(), up, extra, []string{"outage_grace: 120s"})
	b := auRedisGateway(t, px.addr(), up, extra, []string{"outage_grace: 120s"})
	s := auRedisStore(t, r.Addr())
	s.account("acme")
	var warm, doomed []string
	var doomedIDs, doomedOwners []string
	for u := range users {
		name := fmt.Sprintf("user%d", u)
		s.user(name, "acme", "", "ops")
		warm = append(warm, auBasic(name, auPassword))
		for k := range keysPer {
			id, v := s.key(name, fmt.Sprintf("k%d", k))
			if k%3 == 0 {
				doomed, doomedIDs, doomedOwners = append(doomed, "Bearer "+v), append(doomedIDs, id), append(doomedOwners, name)
			} else {
				warm = append(warm, "Bearer "+v)
			}
		}
	}
	c := newAuClient(5 * time.Second)
	defer c.close()
	url := b.url("/x")
	for _, h := range append(append([]string{}, warm...), doomed...) {
		auWarm(t, c, b, url, h)
	}
	var pollers []*auPoller
	for i := range clients {
		part := warm[i*len(warm)/clients : (i+1)*len(warm)/clients]
		pc := newAuClient(5 * time.Second)
		defer pc.close()
		pollers = append(pollers, startAuPoller(pc, url, part))
	}
	take := func(stop bool) (map[int]int, time.Duration) {
		all, slow := map[int]int{}, time.Duration(0)
		for _, p := range pollers {
			var m map[int]int
			var d time.Duration
			if stop {
				m, d = p.close()
			} else {
				m, d = p.take()
			}
			for st, n := range m {
				all[st] += n
			}
			slow = max(slow, d)
		}
		return all, slow
	}
	check := func(phase string, counts map[int]int, slow time.Duration) {
		t.Helper()
		errs := 0
		for st, n := range counts {
			if st != 200 {
				errs += n
				t.Errorf("%s: %d requests with warm credentials got %d", phase, n, st)
			}
		}
		chaosFigure(t, "cache_restart", "phase", phase, "ok", counts[200], "s503", counts[503], "s401", counts[401],
			"other_errors", errs-counts[503]-counts[401], "slowest", auFmt(slow))
	}

	for round := range 3 {
		auRewriteAOF(t, r.Addr(), 200)
		r.Stop()
		time.Sleep(2500 * time.Millisecond) // past cache.ttl: stale entries served
		m, d := take(false)
		check(fmt.Sprintf("redis_down_%d", round), m, d)
		restarted := time.Now()
		r.Restart()
		deadline := time.Now().Add(20 * time.Second)
		for code, _ := getAdmin(t, b, "/readyz"); code != 200; code, _ = getAdmin(t, b, "/readyz") {
			if time.Now().After(deadline) {
				t.Fatal("B not ready 20s after Redis came back")
			}
			time.Sleep(20 * time.Millisecond)
		}
		ready := time.Since(restarted)
		time.Sleep(3 * time.Second)
		m, d = take(false)
		check(fmt.Sprintf("redis_restarted_%d", round), m, d)
		chaosFigure(t, "cache_restart", "phase", fmt.Sprintf("redis_restarted_%d", round), "restart_with_loading", auFmt(ready))
	}

	// B cut off; A revokes a third of the keys meanwhile.
	px.setCut(true)
	time.Sleep(300 * time.Millisecond)
	for i, id := range doomedIDs {
		revokeOnAdmin(t, a, doomedOwners[i], id)
	}
	time.Sleep(time.Second)
	m, d := take(false)
	check("b_cut_off", m, d)
	px.setCut(false)
	reconnected := time.Now()
	for i, h := range doomed {
		if _, ok := c.until(url, h, 401, 15*time.Second); !ok {
			t.Fatalf("revoked key %d still accepted by B 15s after it was reconnected", i)
		}
	}
	allRefused := time.Since(reconnected)
	served := 0
	for range 3 {
		for _, h := range doomed {
			if c.status(url, h) == 200 {
				served++
			}
		}
	}
	if served > 0 {
		t.Errorf("revoked keys served %d times after being refused", served)
	}
	time.Sleep(2 * time.Second)
	m, d = take(true)
	check("b_reconnected", m, d)
	chaosFigure(t, "cache_restart", "phase", "b_reconnected", "revoked_keys", len(doomed),
		"all_refused_after", auFmt(allRefused), "revoked_served_after", served)
}
