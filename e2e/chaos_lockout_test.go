//go:build chaos

package e2e

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// Issue 13.8 as observed in the soak: one revoked key reused once a second
// from one address, with default failure limits, for longer than a limiter
// window, while valid credentials from the same address (cached and fresh,
// API key and password) keep flowing. Before the fix 70,534 of 112,685
// valid requests got 429. Figures: valid requests by status, and how many
// refused ones got 429.
func TestChaosRevokedKeyReuseDoesNotLockOut(t *testing.T) {
	echoAddr := startEchoProc(t)
	const fresh = 400
	var revoked, cachedKey, disabledPw string
	freshKeys := make([]string, fresh)
	storeYAML := auBoltFixture(t, t.TempDir(), func(s auStore) {
		s.account("acme")
		s.user("alice", "acme", "")
		s.user("dave", "acme", "")
		s.updateUser("dave", store.UserUpdate{State: ptrTo(store.StateDisabled)})
		disabledPw = auBasic("dave", auPassword)
		id, v := s.key("alice", "old")
		s.revoke(id)
		revoked = auAPIKey(id, v)
		_, v = s.key("alice", "cached")
		cachedKey = "Bearer " + v
		for i := range fresh {
			_, v := s.key("alice", fmt.Sprintf("fresh%d", i))
			freshKeys[i] = "Bearer " + v
		}
	})
	g := startGateway(t, serveOpts{
		routes: fmt.Sprintf("  - name: api\n    path_prefix: /\n    upstreams: [\"http://%s\"]\n    auth: required\n", echoAddr),
		store:  storeYAML, // default limits: 30 per address, 10 per user per minute
	})
	c := newAuClient(10 * time.Second)
	defer c.close()
	cachedPw := auBasic("alice", auPassword)
	auWarm(t, c, g, g.url("/x"), cachedKey)
	auWarm(t, c, g, g.url("/x"), cachedPw)

	const d = 75 * time.Second // longer than the one-minute window
	stop := time.Now().Add(d)
	var refused, refused429 atomic.Int64
	var mu sync.Mutex
	valid := map[int]int{}
	var wg sync.WaitGroup
	wg.Go(func() { // the stuck client: once a second
		for time.Now().Before(stop) {
			for _, h := range []string{revoked, disabledPw} {
				refused.Add(1)
				if c.status(g.url("/x"), h) == 429 {
					refused429.Add(1)
				}
			}
			time.Sleep(time.Second)
		}
	})
	var next atomic.Int64
	for range 4 { // valid clients behind the same address
		wg.Go(func() {
			for time.Now().Before(stop) {
				h := cachedKey
				switch n := next.Add(1); {
				case n%50 == 0:
					h = freshKeys[(n/50)%fresh] // uncached key
				case n%2 == 0:
					h = cachedPw
				}
				st := c.status(g.url("/x"), h)
				mu.Lock()
				valid[st]++
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	total := 0
	for _, n := range valid {
		total += n
	}
	chaosFigure(t, "revoked-key-reuse", "duration", d, "valid_requests", total, "valid_200", valid[200],
		"valid_429", valid[429], "valid_503", valid[503], "refused_requests", refused.Load(), "refused_429", refused429.Load())
	if valid[429] > 0 || refused429.Load() > 0 {
		t.Fatalf("lock-out: %d valid requests and %d refused ones got 429 (statuses %v)", valid[429], refused429.Load(), valid)
	}
	if valid[200] < total*99/100 {
		t.Fatalf("valid requests: %v", valid)
	}
}
