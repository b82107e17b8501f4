package token

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/authn/failurelimit"
	"github.com/keygate/keygate/authn/keyauth"
	"github.com/keygate/keygate/store"
)

// ccFixture is a token endpoint with client_credentials: the chain checks
// API keys (no cache, so every request sees the store), failures per IP are
// limited to perIP.
type ccFixture struct {
	*fixture
	svc, alice *store.APIKey
	svcValue   string
	aliceValue string
}

func newCCFixture(t *testing.T, perIP int) *ccFixture {
	t.Helper()
	env := newEnv(t, fastHasher())
	lim := failurelimit.New(perIP, 100, env.clock.Now)
	chain, err := authn.NewChain(authn.ChainConfig{
		Authenticators: map[authn.CredKind]authn.Authenticator{
			authn.KindAPIKey: keyauth.NewAuthenticator(env.s, keyauth.AuthOptions{Now: env.clock.Now}),
		},
		IPLimiter: lim,
		Now:       env.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &ccFixture{fixture: newFixtureEnv(t, env, func(o *EndpointOptions) { o.Keys = chain })}
	if err := env.s.CreateUser(env.ctx, &store.User{Username: "svc", Account: "acme", Type: store.TypeService, Roles: []string{"deploy", "ops"}}); err != nil {
		t.Fatal(err)
	}
	f.svc, f.svcValue = f.key(t, "svc", "ci", []string{"deploy"}, time.Time{})
	f.alice, f.aliceValue = f.key(t, "alice", "ci", []string{"dev"}, time.Time{})
	return f
}

func (f *ccFixture) key(t *testing.T, user, name string, roles []string, exp time.Time) (*store.APIKey, string) {
	t.Helper()
	secret, err := apikey.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	h, err := apikey.Hash([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	k := &store.APIKey{Username: user, Name: name, Roles: roles, Hash: h, ExpiresAt: exp}
	if err := f.env.s.CreateAPIKey(f.env.ctx, k); err != nil {
		t.Fatal(err)
	}
	return k, apikey.Format(k.ID, secret)
}

func ccForm(id, secret string) url.Values {
	v := url.Values{"grant_type": {GrantClientCredentials}}
	if id != "" {
		v.Set("client_id", id)
	}
	if secret != "" {
		v.Set("client_secret", secret)
	}
	return v
}

func basicHeader(id, secret string) func(*fasthttp.Request) {
	return func(r *fasthttp.Request) {
		r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret))))
	}
}

// TestClientCredentialsGrant: a service account's key (form or Basic)
// obtains a token for the service account with the key's roles, bound to
// the key; every failure is 401 invalid_client with one body; the keys of
// other users still cannot; RFC 6749 §5.2 shape and no-store throughout.
func TestClientCredentialsGrant(t *testing.T) {
	f := newCCFixture(t, 1000)
	for _, tc := range []struct {
		name string
		form url.Values
		mods []func(*fasthttp.Request)
	}{
		{"form", ccForm(f.svc.ID, f.svcValue), nil},
		{"basic", ccForm("", ""), []func(*fasthttp.Request){basicHeader(f.svc.ID, f.svcValue)}},
		{"basic and the same client_id", ccForm(f.svc.ID, ""), []func(*fasthttp.Request){basicHeader(f.svc.ID, f.svcValue)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do("POST", formCT, tc.form.Encode(), tc.mods...)
			if r.status != 200 || r.str("token_type") != "Bearer" || r.str("refresh_token") != "" {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			id, err := f.auth.Authenticate(context.Background(), bearer(r.str("access_token")))
			if err != nil {
				t.Fatal(err)
			}
			if id.Username != "svc" || id.Account != "acme" || id.Method != authn.MethodBearer || id.KeyID != f.svc.ID ||
				!slices.Equal(id.Roles, []string{"deploy"}) {
				t.Errorf("identity = %+v", id)
			}
			claims := jwt.MapClaims{}
			if _, _, err := jwt.NewParser().ParseUnverified(r.str("access_token"), claims); err != nil || claims["key_id"] != f.svc.ID ||
				claims["sub"] != "svc" || claims["client_id"] != f.svc.ID {
				t.Errorf("claims = %v, %v", claims, err)
			}
		})
	}
	wrong := f.svcValue[:len(f.svcValue)-8] + "AAAAAAAA"
	other, _ := f.key(t, "svc", "other", nil, time.Time{})
	var bodies []string
	for _, tc := range []struct {
		name string
		form url.Values
		mods []func(*fasthttp.Request)
	}{
		{"no credentials", ccForm("", ""), nil},
		{"id only", ccForm(f.svc.ID, ""), nil},
		{"wrong key (bad checksum)", ccForm(f.svc.ID, wrong), nil},
		{"unknown id", ccForm("0000000000000000000Z", f.svcValue), nil},
		{"another key's id", ccForm(other.ID, f.svcValue), nil},
		{"a user's key", ccForm(f.alice.ID, f.aliceValue), nil},
		{"anonymous client", ccForm("anonymous", ""), nil},
		{"a password", ccForm("svc", "password"), nil},
		{"basic and a form secret", ccForm("", f.svcValue), []func(*fasthttp.Request){basicHeader(f.svc.ID, f.svcValue)}},
		{"basic and another client_id", ccForm(f.alice.ID, ""), []func(*fasthttp.Request){basicHeader(f.svc.ID, f.svcValue)}},
		{"bearer header", ccForm("", ""), []func(*fasthttp.Request){func(r *fasthttp.Request) { r.Header.Set("Authorization", "Bearer "+f.svcValue) }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do("POST", formCT, tc.form.Encode(), tc.mods...)
			f.wantError(tc.name, r, 401, "invalid_client")
			if !strings.HasPrefix(string(r.header.Peek("WWW-Authenticate")), "Basic ") {
				t.Errorf("WWW-Authenticate = %q", r.header.Peek("WWW-Authenticate"))
			}
			if strings.Contains(r.raw, f.svcValue) || strings.Contains(r.raw, f.svc.ID) {
				t.Errorf("body echoes the credentials: %s", r.raw)
			}
			bodies = append(bodies, r.raw)
		})
	}
	for _, b := range bodies[1:] {
		if b != bodies[0] {
			t.Errorf("bodies differ: %s vs %s", b, bodies[0])
		}
	}
	// Credentials in the query string are refused.
	r := f.do("POST", formCT, "grant_type=client_credentials", func(r *fasthttp.Request) {
		r.SetRequestURI("http://gw.example/oauth/token?client_secret=" + f.svcValue)
	})
	f.wantError("secret in the query", r, 400, "invalid_request")
}

// TestClientCredentialsTokenDiesWithKey: the token works while the key
// does; revoking the key, its expiry, a rotation with grace 0, disabling or
// changing the service account end it; the token never outlives the key.
func TestClientCredentialsTokenDiesWithKey(t *testing.T) {
	ctx := context.Background()
	issue := func(f *ccFixture, k *store.APIKey, v string) string {
		t.Helper()
		r := f.post(ccForm(k.ID, v))
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		return r.str("access_token")
	}
	for _, tc := range []struct {
		name string
		kill func(f *ccFixture, k *store.APIKey)
	}{
		{"revoke", func(f *ccFixture, k *store.APIKey) { _, _, _ = f.env.s.RevokeAPIKey(ctx, k.ID, time.Time{}) }},
		{"rotate grace 0", func(f *ccFixture, k *store.APIKey) {
			_, _, _ = f.env.s.RotateAPIKey(ctx, k.ID, store.KeyRotation{Hash: []byte("h")})
		}},
		{"key expiry", func(f *ccFixture, k *store.APIKey) {
			at := f.env.clock.Now().Add(time.Minute)
			_, _ = f.env.s.UpdateAPIKey(ctx, k.ID, store.KeyUpdate{ExpiresAt: &at})
			f.env.clock.Advance(2 * time.Minute)
		}},
		{"disable the service account", func(f *ccFixture, _ *store.APIKey) {
			st := store.StateDisabled
			_, _ = f.env.s.UpdateUser(ctx, "svc", store.UserUpdate{State: &st})
		}},
		{"change its roles", func(f *ccFixture, _ *store.APIKey) {
			roles := []string{"deploy"}
			_, _ = f.env.s.UpdateUser(ctx, "svc", store.UserUpdate{Roles: &roles})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newCCFixture(t, 1000)
			tok := issue(f, f.svc, f.svcValue)
			if err := f.bearerErr(tok); err != nil {
				t.Fatal(err)
			}
			tc.kill(f, f.svc)
			err := f.bearerErr(tok)
			var te *authn.TokenError
			if err == nil || !errors.As(err, &te) {
				t.Fatalf("after %s: %v, want a token error", tc.name, err)
			}
		})
	}
	t.Run("expires_in capped by the key", func(t *testing.T) {
		f := newCCFixture(t, 1000)
		k, v := f.key(t, "svc", "short", []string{"deploy"}, f.env.clock.Now().Add(10*time.Minute))
		r := f.post(ccForm(k.ID, v))
		if exp, _ := r.body["expires_in"].(float64); r.status != 200 || exp != 600 {
			t.Fatalf("%d %s, want expires_in 600", r.status, r.raw)
		}
	})
}

// TestClientCredentialsLimits: wrong keys count against the address's
// failure budget (a guess past it is 429 with Retry-After; the right key is
// still served, as by the chain everywhere); an allow-list refuses
// other addresses with 403 without spending it.
func TestClientCredentialsLimits(t *testing.T) {
	f := newCCFixture(t, 3)
	k, v := f.key(t, "svc", "cidr", []string{"deploy"}, time.Time{})
	cidrs := []string{"198.51.100.0/24"}
	if _, err := f.env.s.UpdateAPIKey(context.Background(), k.ID, store.KeyUpdate{AllowedCIDRs: &cidrs}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		f.wantError("outside the allow-list", f.post(ccForm(k.ID, v)), 403, "invalid_client")
	}
	f.peer = net.ParseIP("198.51.100.20")
	if r := f.post(ccForm(k.ID, v)); r.status != 200 {
		t.Fatalf("inside the allow-list: %d %s", r.status, r.raw)
	}
	f.peer = net.ParseIP("192.0.2.99")
	// A wrong secret with a valid checksum reaches the store: a guess.
	guess := apikey.Format(f.svc.ID, strings.Repeat("A", 43))
	for i := range 3 {
		f.wantError("guess "+string(rune('1'+i)), f.post(ccForm(f.svc.ID, guess)), 401, "invalid_client")
	}
	r := f.post(ccForm(f.svc.ID, guess))
	f.wantError("a guess over the budget", r, 429, "invalid_request")
	if string(r.header.Peek("Retry-After")) == "" {
		t.Error("no Retry-After")
	}
	// The valid key is still verified (the chain's rule: others' failures
	// from an address do not lock out a client whose key is right).
	if r := f.post(ccForm(f.svc.ID, f.svcValue)); r.status != 200 {
		t.Errorf("valid key over the address's budget: %d %s", r.status, r.raw)
	}
}

// TestClientCredentialsUnsupportedWithoutKeys: without EndpointOptions.Keys
// the grant is unsupported, and the metadata does not offer it.
func TestClientCredentialsUnsupportedWithoutKeys(t *testing.T) {
	f := newFixture(t, nil)
	f.wantError("no keys", f.post(ccForm("", "")), 400, "unsupported_grant_type")
	if slices.Contains(f.ep.meta.doc.GrantTypesSupported, GrantClientCredentials) {
		t.Error("metadata offers client_credentials")
	}
	cf := newCCFixture(t, 10)
	if !slices.Contains(cf.ep.meta.doc.GrantTypesSupported, GrantClientCredentials) {
		t.Error("metadata does not offer client_credentials")
	}
}
