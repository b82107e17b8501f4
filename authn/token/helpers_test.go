package token

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
	"github.com/keygate/keygate/store/storetest"
)

// testSecret is a random-looking 44-byte secret (openssl rand -base64 32).
const testSecret = "q8Vd0p3Jx1Rm7Lz2Nc5Hw9Tb4Ky6Fg0Ua8Se3Oi1Pr5=" //nolint:gosec // test data, not a real credential

// t0 is the tests' clock start.
var t0 = time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)

func hsConfig(secret string) configs.Tokens {
	return configs.Tokens{
		Issuer:          "keygate",
		Audience:        "keygate",
		Lifetime:        configs.Duration(time.Hour),
		RefreshLifetime: configs.Duration(24 * time.Hour),
		Leeway:          0,
		Path:            "/oauth/token",
		Signing:         configs.Signing{Algorithm: configs.AlgHS256, Secret: secret},
	}
}

// Test keys, generated once (RSA generation is slow under -race).
var (
	keysOnce      sync.Once
	edKey, edKey2 ed25519.PrivateKey
	rsaKey        *rsa.PrivateKey
	rsaSmall      *rsa.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		_, edKey, _ = ed25519.GenerateKey(rand.Reader)
		_, edKey2, _ = ed25519.GenerateKey(rand.Reader)
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaSmall, err = rsa.GenerateKey(rand.Reader, 1024); err != nil { //nolint:gosec // a test key: small on purpose, for speed
			panic(err)
		}
	})
}

func pkcs8PEM(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func pkixPEM(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// keyConfig returns a config for alg with the PEM private key written to a
// fresh directory.
func keyConfig(t testing.TB, alg string, keyPEM []byte) configs.Tokens {
	t.Helper()
	cfg := hsConfig("")
	cfg.Signing = configs.Signing{Algorithm: alg, PrivateKeyFile: writeFile(t, t.TempDir(), "key.pem", keyPEM)}
	return cfg
}

func mustSigner(t testing.TB, cfg configs.Tokens, clock func() time.Time) *Signer {
	t.Helper()
	s, err := NewSigner(cfg, WithClock(clock))
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	return s
}

// fastHasher keeps argon2id cheap in unit tests.
func fastHasher() *password.Hasher {
	return password.New(password.Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}, 4)
}

const alicePW = "correct horse battery staple"

// testEnv is a bolt store with account acme, user alice (roles dev, ops)
// and a clock.
type testEnv struct {
	s     *boltstore.Store
	h     *password.Hasher
	clock *storetest.Clock
	ctx   context.Context
}

func newEnv(t testing.TB, h *password.Hasher) *testEnv {
	t.Helper()
	clock := storetest.NewClock(t0)
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "kg.db"), boltstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	e := &testEnv{s: s, h: h, clock: clock, ctx: context.Background()}
	if err := s.CreateAccount(e.ctx, &store.Account{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	e.addUser(t, "alice", "acme", alicePW, "ops", "dev")
	return e
}

func (e *testEnv) addUser(t testing.TB, name, account, pw string, roles ...string) *store.User {
	t.Helper()
	phc, err := e.h.Hash(pw)
	if err != nil {
		t.Fatal(err)
	}
	u := &store.User{Username: name, Account: account, PasswordHash: phc, Roles: roles}
	if err := e.s.CreateUser(e.ctx, u); err != nil {
		t.Fatal(err)
	}
	got, err := e.s.GetUser(e.ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func (e *testEnv) user(t testing.TB, name string) *store.User {
	t.Helper()
	u, err := e.s.GetUser(e.ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func subjectOf(u *store.User) Subject {
	return Subject{Username: u.Username, Account: u.Account, Roles: u.Roles, Generation: u.Generation, UserCreated: u.CreatedAt}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func x509MarshalPKCS1(k *rsa.PrivateKey) []byte { return x509.MarshalPKCS1PrivateKey(k) }

// passwords is the Basic authenticator of the env's store and hasher, which
// the endpoint shares for the password grant.
func (e *testEnv) passwords() *password.Authenticator {
	return password.NewAuthenticator(e.s, e.h, password.AuthOptions{})
}
