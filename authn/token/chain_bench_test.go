package token_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/authn/token"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
)

// jwtChain is a Chain with the Bearer JWT authenticator over a bolt store
// and a credential cache, the way cmd/keygate wires it, and the
// Authorization headers of a valid HS256 token for alice and of her
// password (Basic). The token has been
// verified once: it is cached until its exp (one hour), so authenticating
// it again is a cache hit with no signature check.
func jwtChain(tb testing.TB) (chain *authn.Chain, jwt, basic []byte) {
	tb.Helper()
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(tb.TempDir(), "kg.db"), boltstore.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	if err := st.CreateAccount(ctx, &store.Account{Name: "acme"}); err != nil {
		tb.Fatal(err)
	}
	hasher := password.New(password.Params{Memory: 1024, Iterations: 1, Parallelism: 1}, 4)
	pwHash, err := hasher.Hash(benchPassword)
	if err != nil {
		tb.Fatal(err)
	}
	if err := st.CreateUser(ctx, &store.User{Username: "alice", Account: "acme", Roles: []string{"dev", "ops"}, PasswordHash: pwHash}); err != nil {
		tb.Fatal(err)
	}
	u, err := st.GetUser(ctx, "alice")
	if err != nil {
		tb.Fatal(err)
	}

	secret := make([]byte, 32) // 256 bits, as `openssl rand -base64 32`
	if _, err := rand.Read(secret); err != nil {
		tb.Fatal(err)
	}
	signer, err := token.NewSigner(configs.Tokens{
		Issuer:          "keygate",
		Audience:        "keygate",
		Lifetime:        configs.Duration(time.Hour),
		RefreshLifetime: configs.Duration(24 * time.Hour),
		Path:            "/oauth/token",
		Signing:         configs.Signing{Algorithm: configs.AlgHS256, Secret: base64.StdEncoding.EncodeToString(secret)},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tok, _, err := signer.Issue(token.Subject{Username: u.Username, Account: u.Account, Roles: u.Roles,
		Generation: u.Generation, UserCreated: u.CreatedAt})
	if err != nil {
		tb.Fatal(err)
	}

	c, err := cache.New(cache.Config{MaxEntries: 1000, TTL: 10 * time.Minute, NegativeTTL: 5 * time.Second,
		OutageGrace: 5 * time.Minute}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	chain, err = authn.NewChain(authn.ChainConfig{
		Cache: c,
		Authenticators: map[authn.CredKind]authn.Authenticator{
			authn.KindBearer: token.NewAuthenticator(signer.Verifier(), st, token.AuthOptions{}),
			authn.KindBasic:  password.NewAuthenticator(st, hasher, password.AuthOptions{}),
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	h := []byte("Bearer " + tok)
	id, err := chain.Authenticate(ctx, h, benchIP)
	if err != nil || id.Method != authn.MethodBearer || id.Username != "alice" {
		tb.Fatalf("first authentication: %+v, %v", id, err)
	}
	basic = []byte("Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+benchPassword)))
	if _, err := chain.Authenticate(ctx, basic, benchIP); err != nil {
		tb.Fatalf("first Basic authentication: %v", err)
	}
	c.Wait() // the entries are admitted
	return chain, h, basic
}

const benchPassword = "correct horse battery staple"

var benchIP = netip.MustParseAddr("192.0.2.10")

// BenchmarkChainHitJWT: a Bearer JWT on a cache hit (parse, MAC, cache hit,
// metrics; no signature check), one goroutine (serial) and from every P
// (parallel). The authn package's BenchmarkChainHit* cover the other forms.
func BenchmarkChainHitJWT(b *testing.B) {
	chain, h, basic := jwtChain(b)
	ctx := context.Background()
	// Issue 14's goal: a JWT hit costs at most 1.2× a Basic hit (same
	// chain, same cache), 0 allocations.
	b.Run("basic_serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := chain.Authenticate(ctx, basic, benchIP); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := chain.Authenticate(ctx, h, benchIP); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := chain.Authenticate(ctx, h, benchIP); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
