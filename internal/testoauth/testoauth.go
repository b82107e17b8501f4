// Package testoauth runs a real OAuth2 authorization server for tests: the
// OpenID provider of github.com/zitadel/oidc/v3 (package op) on a loopback
// listener, with its example in-memory storage. Tests use it as the token
// endpoint of upstream credentials, so keygate's token clients are checked
// against an independent server implementation, not against a fake written
// from the client's own expectations.
//
// Grants: client_credentials (RFC 6749 §4.4, served by op as is) and the
// JWT-bearer grant (RFC 7523) that Google service accounts use. op serves
// RFC 7523 as "JWT profile" with two rules of its own that Google does not
// have: the assertion's aud must be the issuer, and sub must equal iss.
// Google's token endpoint takes aud = its token_uri and no sub, so the
// grant is added through op's extension points (op.JWTProfile with a
// verifier of our own, op.SubjectCheck): aud is checked against the token
// endpoint's URL and an absent sub means the service account itself.
// Everything else (assertion parsing, signature check against the
// registered public key, expiry, iat, token response) is op's.
//
// Access tokens live for TokenLifetime (settable, for refresh tests);
// Valid tells an upstream in the test whether a token is one this server
// issued and still valid. Fail makes the token endpoint answer 503 (an
// outage).
package testoauth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Server is a running authorization server.
type Server struct {
	// URL is the issuer (http://127.0.0.1:port); TokenURL its token
	// endpoint.
	URL, TokenURL string

	t        testing.TB
	srv      *httptest.Server
	provider *op.Provider
	st       *storageWrap
	failing  atomic.Int64 // status to answer on the token endpoint (0: serve)
	fetches  atomic.Int64
}

// New starts a server; it stops when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t}
	s.srv = httptest.NewUnstartedServer(nil)
	s.URL = "http://" + s.srv.Listener.Addr().String()
	s.TokenURL = s.URL + "/oauth/token"
	s.st = &storageWrap{
		Storage:  storage.NewStorageWithClients(storage.NewUserStore(s.URL), map[string]*storage.Client{}),
		clients:  map[string]string{},
		keys:     map[string]map[string]*rsa.PublicKey{},
		issued:   map[string]time.Time{},
		lifetime: time.Hour,
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		t.Fatal(err)
	}
	p, err := op.NewProvider(&op.Config{CryptoKey: key}, s.st, op.StaticIssuer(s.URL), op.WithAllowInsecure())
	if err != nil {
		t.Fatalf("testoauth: %v", err)
	}
	s.provider = p
	s.srv.Config.Handler = http.HandlerFunc(s.serve)
	s.srv.Config.ReadHeaderTimeout = 5 * time.Second
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/oauth/token" {
		s.provider.ServeHTTP(w, r)
		return
	}
	s.fetches.Add(1)
	if st := s.failing.Load(); st != 0 {
		http.Error(w, `{"error":"temporarily_unavailable"}`, int(st))
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	if r.PostForm.Get("grant_type") == string(oidc.GrantTypeBearer) {
		op.JWTProfile(w, r, jwtBearer{Provider: s.provider, tokenURL: s.TokenURL})
		return
	}
	s.provider.ServeHTTP(w, r)
}

// jwtBearer is op's JWT-profile exchanger with Google's rules for the
// assertion (see the package comment).
type jwtBearer struct {
	*op.Provider
	tokenURL string
}

func (j jwtBearer) JWTProfileVerifier(context.Context) *op.JWTProfileVerifier {
	return op.NewJWTProfileVerifier(j.Storage(), j.tokenURL, time.Hour, time.Second,
		op.SubjectCheck(func(r *oidc.JWTTokenRequest) error {
			switch r.Subject {
			case "":
				r.Subject = r.Issuer
			case r.Issuer:
			default:
				return oidc.ErrSubjectInvalid
			}
			return nil
		}))
}

// SetTokenLifetime sets the lifetime of the access tokens issued from now.
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.st.mu.Lock()
	s.st.lifetime = d
	s.st.mu.Unlock()
}

// Fail makes the token endpoint answer status (e.g. 503) until Fail(0).
func (s *Server) Fail(status int) { s.failing.Store(int64(status)) }

// Fetches counts requests to the token endpoint.
func (s *Server) Fetches() int64 { return s.fetches.Load() }

// AddClient registers a client_credentials client.
func (s *Server) AddClient(id, secret string) {
	s.st.mu.Lock()
	s.st.clients[id] = secret
	s.st.mu.Unlock()
}

// Revoke makes every token issued so far invalid (an upstream then answers
// 401 to them).
func (s *Server) Revoke() {
	s.st.mu.Lock()
	clear(s.st.issued)
	s.st.mu.Unlock()
}

// Valid reports whether token is an access token this server issued that
// has not expired or been revoked.
func (s *Server) Valid(token string) bool {
	plain, err := s.provider.Crypto().Decrypt(token)
	if err != nil {
		return false
	}
	id, _, ok := strings.Cut(plain, ":")
	if !ok {
		return false
	}
	s.st.mu.Lock()
	exp, ok := s.st.issued[id]
	s.st.mu.Unlock()
	return ok && time.Now().Before(exp)
}

// ServiceAccountKey generates an RSA key for a service account, registers
// its public key, and returns the Google JSON key file (type
// service_account) pointing at this server's token endpoint.
func (s *Server) ServiceAccountKey(email string) []byte {
	s.t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		s.t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		s.t.Fatal(err)
	}
	var kid [8]byte
	_, _ = rand.Read(kid[:])
	keyID := strings.ToLower(strings.TrimRight(jsonHex(kid[:]), "="))
	s.st.mu.Lock()
	if s.st.keys[email] == nil {
		s.st.keys[email] = map[string]*rsa.PublicKey{}
	}
	s.st.keys[email][keyID] = &k.PublicKey
	s.st.mu.Unlock()
	b, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "keygate-test",
		"private_key_id": keyID,
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   email,
		"client_id":      "1234567890",
		"auth_uri":       s.URL + "/authorize",
		"token_uri":      s.TokenURL,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

func jsonHex(b []byte) string {
	const hexd = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, hexd[c>>4], hexd[c&15])
	}
	return string(out)
}

// Addr is the listener's address.
func (s *Server) Addr() net.Addr { return s.srv.Listener.Addr() }

// storageWrap is the example storage with this server's clients, service
// account keys and token lifetime.
type storageWrap struct {
	*storage.Storage
	mu       sync.Mutex
	clients  map[string]string                    // client id → secret
	keys     map[string]map[string]*rsa.PublicKey // service account → key id → key
	issued   map[string]time.Time                 // token id → expiry
	lifetime time.Duration
}

var errBadClient = errors.New("wrong client id or secret")

func (w *storageWrap) ClientCredentials(_ context.Context, id, secret string) (op.Client, error) {
	w.mu.Lock()
	want, ok := w.clients[id]
	w.mu.Unlock()
	if !ok || want != secret {
		return nil, errBadClient
	}
	return ccClient{id: id}, nil
}

func (w *storageWrap) ClientCredentialsTokenRequest(_ context.Context, id string, scopes []string) (op.TokenRequest, error) {
	return &oidc.JWTTokenRequest{Subject: id, Audience: []string{id}, Scopes: scopes}, nil
}

func (w *storageWrap) CreateAccessToken(context.Context, op.TokenRequest) (string, time.Time, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	id := "t" + randID()
	exp := time.Now().Add(w.lifetime)
	w.issued[id] = exp
	return id, exp, nil
}

func randID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return jsonHex(b[:])
}

func (w *storageWrap) GetKeyByIDAndClientID(_ context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k, ok := w.keys[clientID][keyID]
	if !ok {
		return nil, errors.New("key not found")
	}
	return &jose.JSONWebKey{KeyID: keyID, Use: "sig", Key: k}, nil
}

func (w *storageWrap) ValidateJWTProfileScopes(_ context.Context, _ string, scopes []string) ([]string, error) {
	return scopes, nil
}

// ccClient is a confidential client allowed the client_credentials grant.
type ccClient struct{ id string }

func (c ccClient) GetID() string                     { return c.id }
func (ccClient) RedirectURIs() []string              { return nil }
func (ccClient) PostLogoutRedirectURIs() []string    { return nil }
func (ccClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (ccClient) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (ccClient) ResponseTypes() []oidc.ResponseType  { return nil }
func (ccClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeClientCredentials}
}
func (ccClient) LoginURL(string) string               { return "" }
func (ccClient) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (ccClient) IDTokenLifetime() time.Duration       { return time.Hour }
func (ccClient) DevMode() bool                        { return true }
func (ccClient) IsScopeAllowed(string) bool           { return true }
func (ccClient) IDTokenUserinfoClaimsAssertion() bool { return false }
func (ccClient) ClockSkew() time.Duration             { return 0 }
func (ccClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (ccClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
