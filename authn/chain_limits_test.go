package authn_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/store"
)

// Many concurrent guesses never start more credential checks than the
// budget: each attempt reserves its unit before the check. The store gate
// holds every started check in flight at once, so a check-then-act limiter
// would let all of them through. Checks are counted at the store (one
// GetUser per password check). API keys and tokens are verified even over
// the budget (TestChainOverIPBudget): guessing them is hopeless.
func TestChainConcurrentGuessesNeverExceedLimit(t *testing.T) {
	cases := []struct {
		name           string
		perIP, perUser int
		n              int
		header         func(i int) string
		client         func(i int) netip.Addr
		checks         func(e *env) int64
		limit          int
	}{
		{"passwords from one address", 30, 1000, 120,
			func(i int) string { return basic(fmt.Sprintf("u%d", i), "guess") },
			func(int) netip.Addr { return ip1 },
			func(e *env) int64 { return e.st.users.Load() }, 30},
		{"passwords for one user from many addresses", 1000, 10, 120,
			func(i int) string { return basic("alice", fmt.Sprintf("guess%d", i)) },
			func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}) }, //nolint:gosec // bounded by the test's own values
			func(e *env) int64 { return e.st.users.Load() }, 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{perIP: tc.perIP, perUser: tc.perUser})
			gate := make(chan struct{})
			e.st.gate.Store(&gate)
			var limited, failed atomic.Int64
			var wg sync.WaitGroup
			for i := range tc.n {
				wg.Go(func() {
					_, err := e.chain.Authenticate(context.Background(), []byte(tc.header(i)), tc.client(i))
					switch {
					case errors.Is(err, authn.ErrRateLimited):
						limited.Add(1)
					case errors.Is(err, authn.ErrInvalidCredentials):
						failed.Add(1)
					default:
						t.Errorf("attempt %d: %v", i, err)
					}
				})
			}
			// Every attempt is either refused or waiting in its check.
			deadline := time.Now().Add(10 * time.Second)
			for limited.Load()+tc.checks(e) < int64(tc.n) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			close(gate)
			wg.Wait()
			if got := tc.checks(e); got > int64(tc.limit) {
				t.Fatalf("%d checks performed, limit %d", got, tc.limit)
			}
			if int(failed.Load()) != tc.limit || int(limited.Load()) != tc.n-tc.limit {
				t.Fatalf("%d failed, %d limited; want %d and %d", failed.Load(), limited.Load(), tc.limit, tc.n-tc.limit)
			}
		})
	}
}

// mutateKey returns a well-formed API key value (valid checksum) that no
// store holds.
func mutateKey(i int) string {
	s, err := apikey.NewSecret()
	if err != nil {
		panic(err)
	}
	return apikey.Format(fmt.Sprintf("AAAAAAAAAAAAAAAA%04d", i), s)
}

// Refusals that are not guesses spend no budget (DESIGN.md §13, issue 13.8):
// a revoked, expired or disabled credential whose secret verifies, reused
// again and again from one address, never gets 429 and never makes the
// valid credentials from that address (cached or not, key or password) get
// 429. Unavailability and successes give their reservations back too.
func TestChainVerifiedRefusalsAreNotGuesses(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		setup func(e *env) string // returns the refused credential
	}{
		{"revoked key", func(e *env) string {
			k, v := e.newKey("bob", "old", nil, time.Time{})
			_, _, err := e.raw.RevokeAPIKey(ctx, k.ID, e.clk.Now())
			must(t, err)
			return "Bearer " + v
		}},
		{"expired key", func(e *env) string {
			_, v := e.newKey("bob", "short", nil, e.clk.Now().Add(time.Second))
			e.clk.Advance(2 * time.Second)
			return apiKeyHeaderOf(v)
		}},
		{"disabled user's password", func(e *env) string {
			e.user("dave", "acme", nil)
			_, err := e.raw.UpdateUser(ctx, "dave", store.UserUpdate{State: ptr(store.StateDisabled)})
			must(t, err)
			return basic("dave", testPassword)
		}},
		{"disabled user's key", func(e *env) string {
			e.user("erin", "acme", nil)
			_, v := e.newKey("erin", "k", nil, time.Time{})
			_, err := e.raw.UpdateUser(ctx, "erin", store.UserUpdate{State: ptr(store.StateDisabled)})
			must(t, err)
			return basic("_api_key", v)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{perIP: 3, perUser: 3})
			cachedKey := "Bearer " + e.value
			e.ok(cachedKey)
			e.ok(basic("alice", testPassword))
			refused := tc.setup(e)
			fresh := 0
			for i := range 40 { // far more than both budgets
				if _, err := e.auth(refused); err == nil || errors.Is(err, authn.ErrRateLimited) {
					t.Fatalf("reuse %d: %v, want 401", i, err)
				} else if st, _, _ := authn.Status(err); st != 401 {
					t.Fatalf("reuse %d: status %d", i, st)
				}
				e.cache.Wait()
				if i%8 == 0 {
					// Valid credentials from the same address: cached and
					// fresh, key and password.
					_, v := e.newKey("alice", fmt.Sprintf("fresh%d", i), nil, time.Time{})
					e.user(fmt.Sprintf("new%d", i), "acme", nil)
					for _, h := range []string{cachedKey, basic("alice", testPassword), "Bearer " + v,
						basic(fmt.Sprintf("new%d", i), testPassword)} {
						if _, err := e.auth(h); err != nil {
							t.Fatalf("valid credential after %d reuses: %v", i, err)
						}
					}
					fresh += 2
				}
			}
			// The budget is untouched: three wrong guesses are still 401,
			// the fourth 429.
			for i := range 3 {
				if _, err := e.auth(basic("mallory", fmt.Sprintf("g%d", i))); !errors.Is(err, authn.ErrInvalidCredentials) {
					t.Fatalf("guess %d after %d successes: %v", i, fresh, err)
				}
			}
			if _, err := e.auth(basic("mallory", "g3")); !errors.Is(err, authn.ErrRateLimited) {
				t.Fatalf("4th guess: %v", err)
			}
		})
	}
}

// Over its address's budget, a fresh credential that cannot be guessed (API
// key, token) is still verified; a wrong one is still 429. A password is
// checked only for a username that logged in from that address before, and
// only within the username's own budget; a spray of other usernames gets
// 429 without a check.
func TestChainOverIPBudget(t *testing.T) {
	e := newEnv(t, envOptions{perIP: 2, perUser: 2})
	e.user("dave", "acme", nil)
	e.ok(basic("dave", testPassword)) // dave logged in from ip1 before
	// dave's cached entry is gone (past TTL and outage grace).
	e.clk.Advance(testTTL + testGrace + time.Second)
	for _, h := range []string{basic("x1", "p"), basic("x2", "p")} {
		if _, err := e.auth(h); !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := e.auth(basic("x3", "p")); !errors.Is(err, authn.ErrRateLimited) {
			t.Fatalf("sprayed guess: %v", err)
		}
	}
	// Keep the address over its budget for the rest of the test.
	for range 4 {
		_, _ = e.chain.Authenticate(context.Background(), []byte(basic("x4", "p")), ip1)
	}
	k, v := e.newKey("bob", "fresh", nil, time.Time{})
	wrongSecret, err := apikey.NewSecret()
	must(t, err)
	cases := []struct {
		name      string
		h         string
		wantErr   error // nil: success
		wantCheck bool
	}{
		{"fresh api key", "Bearer " + v, nil, true},
		{"wrong api key", "Bearer " + apikey.Format(k.ID, wrongSecret), authn.ErrRateLimited, true},
		{"unknown api key", "Bearer " + mutateKey(1), authn.ErrRateLimited, true},
		{"password, never logged in from here", basic("bob", testPassword), authn.ErrRateLimited, false},
		{"password, logged in from here before", basic("dave", testPassword), nil, true},
		{"wrong password, logged in from here before", basic("dave", "guess1"), authn.ErrRateLimited, true},
		{"again", basic("dave", "guess2"), authn.ErrRateLimited, true},
		{"user budget spent", basic("dave", "guess3"), authn.ErrRateLimited, false},
	}
	for _, tc := range cases {
		before := e.st.users.Load() + e.st.lookups.Load()
		_, err := e.auth(tc.h)
		e.cache.Wait()
		if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
			t.Fatalf("%s: %v, want %v", tc.name, err, tc.wantErr)
		}
		checked := e.st.users.Load()+e.st.lookups.Load() > before
		if checked != tc.wantCheck {
			t.Fatalf("%s: checked=%v, want %v", tc.name, checked, tc.wantCheck)
		}
	}
	// dave's budget is what protected his password: spent now, from
	// anywhere (his cached login still works: not a guess).
	var rl *authn.RateLimitedError
	if _, err := e.chain.Authenticate(context.Background(), []byte(basic("dave", "guess4")),
		netip.MustParseAddr("198.51.100.1")); !errors.As(err, &rl) || rl.Scope != "user" {
		t.Fatalf("dave after 2 failures: %v", err)
	}
}

func apiKeyHeaderOf(value string) string {
	id, _, err := apikey.Parse([]byte(value))
	if err != nil {
		panic(err)
	}
	return apiKeyHeader(string(id), value)
}
