package authn_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"testing"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/store"
)

// cidrKey makes a key of alice with an allow-list and metadata.
func (e *env) cidrKey(name string, cidrs ...string) (*store.APIKey, string) {
	e.t.Helper()
	k, v := e.newKey("alice", name, []string{"read"}, e.clk.Now().Add(24*60*60*1e9))
	c := cidrs
	m := json.RawMessage(`{"team":"core"}`)
	if _, err := e.raw.UpdateAPIKey(context.Background(), k.ID, store.KeyUpdate{AllowedCIDRs: &c, Metadata: &m}); err != nil {
		e.t.Fatal(err)
	}
	return k, v
}

// cidrKeyHeader is the ApiKey header of a new cidrKey.
func (e *env) cidrKeyHeader(name string, cidrs ...string) string {
	k, v := e.cidrKey(name, cidrs...)
	return apiKeyHeader(k.ID, v)
}

// TestChainAllowedCIDRs: a key with allowed_cidrs authenticates only from a
// client address inside them (IPv4, IPv6, IPv4-mapped), on the miss and on
// the hit; outside it is 403 address_not_allowed, with no store access on a
// hit and no failure counted (the owner's budget and the address's stay
// whole).
func TestChainAllowedCIDRs(t *testing.T) {
	e := newEnv(t, envOptions{perIP: 2, perUser: 2})
	k, v := e.cidrKey("cidr", "192.0.2.0/24", "2001:db8::/32")
	h := []byte(apiKeyHeader(k.ID, v))
	ctx := context.Background()
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"192.0.2.10", true},
		{"::ffff:192.0.2.77", true},
		{"2001:db8::5", true},
		{"198.51.100.1", false},
		{"2001:db9::1", false},
		{"::1", false},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			// Twice: the first may be a miss, the second is a hit.
			for range 2 {
				before := e.st.lookups.Load()
				id, err := e.chain.Authenticate(ctx, h, netip.MustParseAddr(tc.addr))
				e.cache.Wait()
				if tc.ok {
					if err != nil || id == nil || id.KeyID != k.ID {
						t.Fatalf("from %s: %v, %v; want the key's identity", tc.addr, id, err)
					}
					if v, ok := id.MetaValue("team"); !ok || v != "core" {
						t.Errorf("metadata team = %q, %v", v, ok)
					}
					continue
				}
				if !errors.Is(err, authn.ErrAddressNotAllowed) || id != nil {
					t.Fatalf("from %s: %v, %v; want ErrAddressNotAllowed", tc.addr, id, err)
				}
				if st, code, _ := authn.Status(err); st != http.StatusForbidden || code != "address_not_allowed" {
					t.Errorf("Status = %d %s", st, code)
				}
				if n := e.st.lookups.Load() - before; n > 1 {
					t.Errorf("%d store lookups for one refusal", n)
				}
			}
		})
	}
	// Refusals spent no failure budget: many of them, then the key still
	// works from an allowed address and the address is not rate-limited.
	for range 10 {
		if _, err := e.chain.Authenticate(ctx, h, netip.MustParseAddr("198.51.100.1")); !errors.Is(err, authn.ErrAddressNotAllowed) {
			t.Fatalf("repeated refusal: %v", err)
		}
	}
	if _, err := e.chain.Authenticate(ctx, []byte(apiKeyHeader(e.key.ID, e.value)), netip.MustParseAddr("198.51.100.1")); err != nil {
		t.Fatalf("another key from the refused address: %v", err)
	}
	// Clearing the allow-list (an update invalidates the key) lets it in.
	none := []string{}
	if _, err := e.raw.UpdateAPIKey(ctx, k.ID, store.KeyUpdate{AllowedCIDRs: &none}); err != nil {
		t.Fatal(err)
	}
	e.cache.Invalidate(store.Invalidation{KeyID: k.ID, Username: "alice"})
	if _, err := e.chain.Authenticate(ctx, h, netip.MustParseAddr("198.51.100.1")); err != nil {
		t.Fatalf("after clearing the allow-list: %v", err)
	}
}
