package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
)

// auRevokeBound is how fast instance B must refuse after a store write in
// the default run (SECURITY.md "revocation": within the stated bound).
const auRevokeBound = 2 * time.Second

// auRevocation is one kind of write that takes access away.
type auRevocation struct {
	name string
	// write changes the store; u is the trial's user, keyID its key.
	write func(s auStore, u, account, keyID string)
	// polled is which credential is polled on B until refused: "key" or
	// "basic"; want is the refusal status.
	polled string
	want   int
}

var auRevocations = []auRevocation{
	{"revoke key", func(s auStore, _, _, keyID string) { s.revoke(keyID) }, "key", 401},
	{"disable user", func(s auStore, u, _, _ string) {
		st := store.StateDisabled
		s.updateUser(u, store.UserUpdate{State: &st})
	}, "basic", 401},
	{"change password", func(s auStore, u, _, _ string) {
		h := auHash(s.t, "new-"+auPassword)
		s.updateUser(u, store.UserUpdate{PasswordHash: &h})
	}, "basic", 401},
	{"disable account", func(s auStore, _, a, _ string) { s.setAccountState(a, store.StateDisabled) }, "basic", 401},
	// Polled with the key: the password of a deleted user is refused only
	// after a full-cost argon2id against the fake hash (timing parity with a
	// wrong password), which would measure hashing, not invalidation.
	{"delete user", func(s auStore, u, _, _ string) { s.deleteUser(u) }, "key", 401},
	{"remove role", func(s auStore, u, _, _ string) {
		roles := []string{"read"}
		s.updateUser(u, store.UserUpdate{Roles: &roles})
	}, "key", 403},
}

// TestAuthRevocationAcrossInstances (SECURITY.md "revocation"): two
// gateways A and B share one Redis; a credential cached on both loses its
// access on B after a store write (what A's admin API does: the write
// publishes the same invalidation). For every trial it measures the delay
// from the write returning until B first refuses, polling B in a tight
// loop, and logs p50/p99/max per kind and overall. KEYGATE_E2E_TRIALS sets
// the number of trials (default 18: three per kind).
func TestAuthRevocationAcrossInstances(t *testing.T) {
	t.Parallel()
	r := testredis.Start(t)
	echoAddr := startEchoProc(t)
	a := auRedisGateway(t, r.Addr(), echoAddr, auNoLimits, nil)
	b := auRedisGateway(t, r.Addr(), echoAddr, auNoLimits, nil)
	s := auRedisStore(t, r.Addr())
	ca, cb := newAuClient(5*time.Second), newAuClient(5*time.Second)
	defer ca.close()
	defer cb.close()
	url := func(g *gateway) string { return g.url("/ops/x") }

	trials := auTrials(t, 3*len(auRevocations))
	delays := map[string][]time.Duration{}
	var all, allA []time.Duration
	for i := range trials {
		kind := auRevocations[i%len(auRevocations)]
		account, user := fmt.Sprintf("acct%d", i), fmt.Sprintf("user%d", i)
		s.account(account)
		s.user(user, account, "", "read", "ops")
		keyID, keyValue := s.key(user, "k", "ops", "read")
		creds := map[string]string{"key": "Bearer " + keyValue, "basic": auBasic(user, auPassword)}
		for _, h := range creds {
			auWarm(t, ca, a, url(a), h)
			auWarm(t, cb, b, url(b), h)
		}

		kind.write(s, user, account, keyID)
		began := time.Now()
		st := 200
		for st == 200 && time.Since(began) < 5*time.Second {
			st = cb.status(url(b), creds[kind.polled])
		}
		d := time.Since(began)
		if st != kind.want {
			t.Fatalf("trial %d (%s): B answered %d after %v, want %d", i, kind.name, st, d, kind.want)
		}
		if d > auRevokeBound {
			t.Errorf("trial %d (%s): B refused only after %v (bound %v)", i, kind.name, d, auRevokeBound)
		}
		delays[kind.name] = append(delays[kind.name], d)
		all = append(all, d)
		// A got the same invalidation: when did it refuse (measured from
		// the same write, A polled only once B had refused)?
		if _, ok := ca.until(url(a), creds[kind.polled], kind.want, auRevokeBound); ok {
			allA = append(allA, time.Since(began))
		} else {
			t.Errorf("trial %d (%s): A still accepts %v after the write", i, kind.name, time.Since(began))
		}

		// What else must hold afterwards, on both instances (A received
		// the same invalidation, maybe a moment after B: poll, bounded).
		for _, g := range []*gateway{a, b} {
			c := &auEventually{c: map[*gateway]*auClient{a: ca, b: cb}[g], bound: auRevokeBound}
			switch kind.name {
			case "revoke key":
				c.want(t, "revoked key", url(g), creds["key"], 401)
				c.want(t, "password of the revoked key's owner", url(g), creds["basic"], 200)
			case "disable user", "disable account", "delete user":
				c.want(t, kind.name+": key", url(g), creds["key"], 401)
				c.want(t, kind.name+": password", url(g), creds["basic"], 401)
			case "change password":
				c.want(t, "old password", url(g), creds["basic"], 401)
				c.want(t, "new password", url(g), auBasic(user, "new-"+auPassword), 200)
			case "remove role":
				c.want(t, "password after the role went", url(g), creds["basic"], 403)
				if r := c.want(t, "key on a route without roles", g.url("/api/x"), creds["key"], 200); r.status == 200 {
					if got := auIdentity(t, r.body)["x-auth-roles"]; len(got) != 1 || got[0] != "read" {
						t.Errorf("key roles after the owner lost ops: %q, want [read]", got)
					}
				}
			}
		}
	}

	var sb strings.Builder
	for _, k := range auRevocations {
		p50, p99, mx := auStats(delays[k.name])
		fmt.Fprintf(&sb, "\n  %-16s n=%-4d p50=%s p99=%s max=%s", k.name, len(delays[k.name]), auFmt(p50), auFmt(p99), auFmt(mx))
	}
	p50, p99, mx := auStats(all)
	a50, a99, amx := auStats(allA)
	t.Logf("store write returned → B first refuses (%d trials, tight poll of B over keep-alive HTTP):%s\n  %-16s n=%-4d p50=%s p99=%s max=%s"+
		"\n  (A, polled after B refused: p50=%s p99=%s max=%s)",
		trials, sb.String(), "all", len(all), auFmt(p50), auFmt(p99), auFmt(mx), auFmt(a50), auFmt(a99), auFmt(amx))
}
