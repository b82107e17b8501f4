package token

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/store"
)

func bearer(tok string) *authn.Credentials {
	var c authn.Credentials
	if err := authn.ParseAuthorization([]byte("Bearer "+tok), &c); err != nil {
		panic(err)
	}
	return &c
}

func TestBearerAuthenticator(t *testing.T) {
	env := newEnv(t, fastHasher())
	signer := mustSigner(t, hsConfig(testSecret), env.clock.Now)
	a := NewAuthenticator(signer.Verifier(), env.s, AuthOptions{})
	issue := func(u *store.User) string {
		tok, _, err := signer.Issue(subjectOf(u))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ctx := context.Background()

	alice := env.user(t, "alice")
	tok := issue(alice)
	id, err := a.Authenticate(ctx, bearer(tok))
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if id.Username != "alice" || id.Account != "acme" || id.Method != authn.MethodBearer ||
		id.RolesHeader != "dev,ops" || id.Generation != alice.Generation || !id.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("identity = %+v", id)
	}

	// Not a bearer JWT.
	if _, err := a.Authenticate(ctx, &authn.Credentials{Kind: authn.KindBasic}); !errors.Is(err, authn.ErrNotResponsible) {
		t.Errorf("basic credentials: %v, want ErrNotResponsible", err)
	}

	wantTokenErr := func(what, tok string, want error) {
		t.Helper()
		_, err := a.Authenticate(ctx, bearer(tok))
		var te *authn.TokenError
		if !errors.As(err, &te) || !errors.Is(err, want) {
			t.Errorf("%s: Authenticate = %v, want a TokenError wrapping %v", what, err, want)
			return
		}
		if st, _, www := authn.Status(err); st != 401 || www != "invalid_token" {
			t.Errorf("%s: Status = %d %q, want 401 invalid_token", what, st, www)
		}
	}

	// Expiry.
	env.clock.Advance(time.Hour)
	wantTokenErr("expired", tok, authn.ErrExpired)
	env.clock.Set(t0)

	// Password change bumps the generation: old tokens die, new ones work.
	pw := alice.PasswordHash
	if _, err := env.s.UpdateUser(ctx, "alice", store.UserUpdate{PasswordHash: &pw}); err != nil {
		t.Fatal(err)
	}
	wantTokenErr("after password change", tok, authn.ErrSecretVerified)
	tok = issue(env.user(t, "alice"))
	if _, err := a.Authenticate(ctx, bearer(tok)); err != nil {
		t.Errorf("token after the change: %v", err)
	}

	// Role change.
	roles := []string{"dev"}
	if _, err := env.s.UpdateUser(ctx, "alice", store.UserUpdate{Roles: &roles}); err != nil {
		t.Fatal(err)
	}
	wantTokenErr("after role change", tok, authn.ErrSecretVerified)
	tok = issue(env.user(t, "alice"))

	// Disabled account, then re-enabled.
	if _, err := env.s.SetAccountState(ctx, "acme", store.StateDisabled); err != nil {
		t.Fatal(err)
	}
	wantTokenErr("account disabled", tok, authn.ErrDisabled)
	if _, err := env.s.SetAccountState(ctx, "acme", store.StateEnabled); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, bearer(tok)); err != nil {
		t.Errorf("account re-enabled: %v", err)
	}

	// Disabled user.
	st := store.StateDisabled
	if _, err := env.s.UpdateUser(ctx, "alice", store.UserUpdate{State: &st}); err != nil {
		t.Fatal(err)
	}
	wantTokenErr("user disabled", issue(env.user(t, "alice")), authn.ErrDisabled)

	// Deleted user, then a new user of the same name (same generation 1).
	bob := env.addUser(t, "bob", "acme", alicePW)
	bobTok := issue(bob)
	if err := env.s.DeleteUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	wantTokenErr("deleted user", bobTok, authn.ErrSecretVerified)
	env.clock.Advance(time.Second)
	bob2 := env.addUser(t, "bob", "acme", alicePW)
	if bob2.Generation != bob.Generation {
		t.Fatalf("generations %d, %d: the test needs equal ones", bob.Generation, bob2.Generation)
	}
	wantTokenErr("token of a deleted user whose name was reused", bobTok, authn.ErrSecretVerified)

	// Another account's user of the same name.
	forged := bob2
	forged.Account = "other"
	wantTokenErr("account mismatch", issue(forged), authn.ErrSecretVerified)

	// Bad tokens.
	wantTokenErr("garbage", "a.b.c", authn.ErrInvalidCredentials)
	wantTokenErr("not a jwt", "abc", authn.ErrMalformedCredentials)
}

// TestBearerThroughChain: the chain caches the identity, and maps failures
// to 401 error="invalid_token".
func TestBearerThroughChain(t *testing.T) {
	env := newEnv(t, fastHasher())
	signer := mustSigner(t, hsConfig(testSecret), env.clock.Now)
	chain, err := authn.NewChain(authn.ChainConfig{
		Authenticators: map[authn.CredKind]authn.Authenticator{
			authn.KindBearer: NewAuthenticator(signer.Verifier(), env.s, AuthOptions{}),
		},
		Now: env.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := signer.Issue(subjectOf(env.user(t, "alice")))
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("192.0.2.1")
	id, err := chain.Authenticate(context.Background(), []byte("Bearer "+tok), ip)
	if err != nil || id.Username != "alice" || id.Method != authn.MethodBearer {
		t.Fatalf("chain: %+v, %v", id, err)
	}
	_, err = chain.Authenticate(context.Background(), []byte("Bearer "+tamperSig(tok)), ip)
	if st, _, www := authn.Status(err); st != 401 || www != "invalid_token" {
		t.Errorf("tampered token through the chain: %v → %d %q", err, st, www)
	}
}

// TestBearerLegacyNanosecondUCT: access tokens issued before uct switched to
// seconds (Unix nanoseconds, no client_id) keep working until they expire,
// and still die with a re-created user.
func TestBearerLegacyNanosecondUCT(t *testing.T) {
	env := newEnv(t, fastHasher())
	signer := mustSigner(t, hsConfig(testSecret), env.clock.Now)
	a := NewAuthenticator(signer.Verifier(), env.s, AuthOptions{})
	ctx := context.Background()
	legacy := func(u *store.User, uct int64) string {
		now := env.clock.Now()
		c := &Claims{
			RegisteredClaims: jwt.RegisteredClaims{Issuer: "keygate", Subject: u.Username, Audience: jwt.ClaimStrings{"keygate"},
				IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), ID: "legacy"},
			Account: u.Account, Roles: u.Roles, Generation: u.Generation, UserCreated: uct,
		}
		tok := jwt.NewWithClaims(signer.method, c)
		tok.Header["typ"] = TokenType
		tok.Header["kid"] = signer.km.kid
		s, err := tok.SignedString(signer.km.sign)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(s, "client_id") {
			t.Fatal("legacy token has client_id")
		}
		return s
	}
	env.clock.Advance(123456789 * time.Nanosecond)
	alice := env.addUser(t, "nina", "acme", alicePW)
	if alice.CreatedAt.Nanosecond() == 0 {
		t.Fatal("the test needs a creation time with nanoseconds")
	}
	if _, err := a.Authenticate(ctx, bearer(legacy(alice, alice.CreatedAt.UnixNano()))); err != nil {
		t.Errorf("legacy nanosecond token: %v", err)
	}
	if _, err := a.Authenticate(ctx, bearer(legacy(alice, alice.CreatedAt.Unix()))); err != nil {
		t.Errorf("seconds token without client_id: %v", err)
	}
	for name, uct := range map[string]int64{
		"nanoseconds of another instant": alice.CreatedAt.UnixNano() + 1,
		"seconds of another instant":     alice.CreatedAt.Unix() - 1,
	} {
		if _, err := a.Authenticate(ctx, bearer(legacy(alice, uct))); !errors.Is(err, authn.ErrInvalidCredentials) {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
}
