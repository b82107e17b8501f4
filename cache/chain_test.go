package cache

import (
	"testing"

	"github.com/keygate/keygate/authn"
)

// The chain view converts Status to authn.CacheStatus by value: the two
// enumerations must agree.
func TestStatusMatchesChain(t *testing.T) {
	for _, tc := range []struct {
		st   Status
		want authn.CacheStatus
	}{{Miss, authn.CacheMiss}, {Hit, authn.CacheHit}, {Negative, authn.CacheNegative}, {Stale, authn.CacheStale}, {Refresh, authn.CacheRefresh}} {
		if authn.CacheStatus(tc.st) != tc.want {
			t.Errorf("cache.%v = %d, authn wants %d", tc.st, tc.st, tc.want)
		}
	}
}

func TestForChainRoundTrip(t *testing.T) {
	c, err := New(Config{MaxEntries: 100, TTL: 60e9, NegativeTTL: 5e9}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v := c.ForChain()
	k := v.KeyOf(KindBasic, []byte("alice"), []byte("pw"))
	if k != authn.CacheKey(c.KeyOf(KindBasic, []byte("alice"), []byte("pw"))) {
		t.Fatal("ForChain().KeyOf differs from KeyOf")
	}
	id := &authn.Identity{Username: "alice", Account: "a"}
	if !v.SetPositive(k, id, v.Begin()) {
		t.Fatal("SetPositive refused a fresh entry")
	}
	c.Wait()
	got, st, _ := v.Get(k, c.cfg.Now())
	if st != authn.CacheHit || got != id {
		t.Fatalf("Get = %v, %v; want the identity, hit", got, st)
	}
}
