package token

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/keygate/keygate/configs"
)

// ErrWeakSecret is wrapped by the error of a missing, short, low-entropy or
// well-known HS256 secret: serve must refuse to start.
var ErrWeakSecret = errors.New("token: weak or missing signing secret")

// ErrKey is wrapped by every other key-material error (unreadable file, bad
// PEM, wrong key type for the algorithm, RSA key under 2048 bits).
var ErrKey = errors.New("token: unusable signing key")

// MinSecretLen is the shortest HS256 secret accepted (RFC 7518 §3.2: a key
// of at least the hash output size).
const MinSecretLen = 32

// MaxSecretLen is the longest HS256 secret accepted (a longer one is
// surely the wrong file).
const MaxSecretLen = 4096

// minDistinctBytes is the fewest distinct byte values a secret must have.
const minDistinctBytes = 10

// MinRSABits is the smallest RSA modulus accepted.
const MinRSABits = 2048

// PrevSuffix names the file of previous public keys next to the private
// key: <private_key_file>.prev (see package doc).
const PrevSuffix = ".prev"

// wellKnown are substrings of defaults and placeholders found in examples
// and tutorials: a secret containing one (any case) is refused. None of
// them can occur by chance in a random secret of useful length.
var wellKnown = []string{
	"secret", "changeme", "change-me", "change_me", "changeit", "keygate", "password", "passw0rd",
	"example", "default", "your-256-bit", "placeholder", "replace", "insecure", "qwerty",
}

// keyMaterial is what a Signer and a Verifier are built from.
type keyMaterial struct {
	alg  string // configs.AlgHS256 | AlgEdDSA | AlgRS256
	kid  string
	sign crypto.PrivateKey // []byte for HS256
	// verify: kid → key (current first in jwks order).
	verify map[string]any
	jwks   []byte // nil for HS256
}

// loadKeys reads the key material of cfg.
func loadKeys(cfg configs.Signing) (*keyMaterial, error) {
	switch cfg.Algorithm {
	case configs.AlgHS256:
		secret, err := loadSecret(cfg)
		if err != nil {
			return nil, err
		}
		kid := hsKID(secret)
		return &keyMaterial{alg: cfg.Algorithm, kid: kid, sign: secret, verify: map[string]any{kid: secret}}, nil
	case configs.AlgEdDSA, configs.AlgRS256:
		return loadKeyPair(cfg)
	}
	return nil, fmt.Errorf("%w: tokens.signing.algorithm %q is not one of HS256, EdDSA, RS256", ErrKey, cfg.Algorithm)
}

// loadSecret returns the HS256 secret from secret_file (one trailing
// newline trimmed) or secret (KEYGATE_TOKENS_SIGNING_SECRET), checked by
// CheckSecret.
func loadSecret(cfg configs.Signing) ([]byte, error) {
	var secret []byte
	src := "tokens.signing.secret (KEYGATE_TOKENS_SIGNING_SECRET)"
	switch {
	case cfg.SecretFile != "" && cfg.Secret != "":
		return nil, fmt.Errorf("%w: tokens.signing.secret and secret_file are mutually exclusive", ErrKey)
	case cfg.SecretFile != "":
		src = "tokens.signing.secret_file " + cfg.SecretFile
		b, err := os.ReadFile(cfg.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("%w: read %s: %w", ErrWeakSecret, src, errors.Unwrap(err))
		}
		secret = b
	default:
		secret = []byte(cfg.Secret)
	}
	secret = trimNewline(secret)
	if err := CheckSecret(secret); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	return secret, nil
}

func trimNewline(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// CheckSecret refuses an HS256 secret that is missing, shorter than
// MinSecretLen bytes (or longer than MaxSecretLen), has fewer than 10
// distinct bytes, repeats a shorter pattern ("abcabc…"), is a run
// ("abcdef…", "0123…"), or contains a well-known default ("secret",
// "changeme", "keygate", …). The error wraps ErrWeakSecret and never
// contains the secret. Generate one with
//
//	openssl rand -base64 48
func CheckSecret(s []byte) error {
	switch {
	case len(s) == 0:
		return fmt.Errorf("%w: HS256 needs a shared secret of at least %d bytes: set KEYGATE_TOKENS_SIGNING_SECRET or tokens.signing.secret_file (generate one with: openssl rand -base64 48)",
			ErrWeakSecret, MinSecretLen)
	case len(s) < MinSecretLen:
		return fmt.Errorf("%w: the secret is %d bytes; at least %d are required (generate one with: openssl rand -base64 48)",
			ErrWeakSecret, len(s), MinSecretLen)
	case len(s) > MaxSecretLen:
		return fmt.Errorf("%w: the secret is %d bytes; at most %d are accepted (is it the right file?)",
			ErrWeakSecret, len(s), MaxSecretLen)
	}
	var seen [256]bool
	distinct := 0
	for _, c := range s {
		if !seen[c] {
			seen[c] = true
			distinct++
		}
	}
	if distinct < minDistinctBytes {
		return fmt.Errorf("%w: the secret has only %d distinct characters (low entropy); use a random one (openssl rand -base64 48)",
			ErrWeakSecret, distinct)
	}
	if p := period(s); p > 0 {
		return fmt.Errorf("%w: the secret repeats a %d-character pattern; use a random one (openssl rand -base64 48)", ErrWeakSecret, p)
	}
	if isRun(s) {
		return fmt.Errorf("%w: the secret is a sequence of consecutive characters; use a random one (openssl rand -base64 48)", ErrWeakSecret)
	}
	lower := strings.ToLower(string(s))
	for _, w := range wellKnown {
		if strings.Contains(lower, w) {
			return fmt.Errorf("%w: the secret contains the well-known word %q; use a random one (openssl rand -base64 48)", ErrWeakSecret, w)
		}
	}
	return nil
}

// period returns the smallest p ≤ len(s)/2 such that s repeats its first p
// bytes (a trailing partial repetition allowed), or 0.
func period(s []byte) int {
	for p := 1; p <= len(s)/2; p++ {
		ok := true
		for i := p; i < len(s); i++ {
			if s[i] != s[i-p] {
				ok = false
				break
			}
		}
		if ok {
			return p
		}
	}
	return 0
}

// isRun reports whether at least 3/4 of the steps between consecutive bytes
// are the same +1 or -1 ("0123456789abcdef…", "zyxw…") or the same step in
// general, which a random secret never has.
func isRun(s []byte) bool {
	var steps [256]int
	for i := 1; i < len(s); i++ {
		steps[s[i]-s[i-1]]++
	}
	for _, n := range steps {
		if 4*n >= 3*(len(s)-1) {
			return true
		}
	}
	return false
}

// hsKID is the kid of an HS256 secret: a truncated hash under a fixed
// label, so instances sharing the secret agree on it and the header reveals
// nothing useful about the secret.
func hsKID(secret []byte) string {
	h := sha256.New()
	h.Write([]byte("keygate hs256 kid\x00"))
	h.Write(secret)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
}

// loadKeyPair reads the private key of an asymmetric algorithm and the
// previous public keys from <file>.prev.
func loadKeyPair(cfg configs.Signing) (*keyMaterial, error) {
	if cfg.PrivateKeyFile == "" {
		return nil, fmt.Errorf("%w: tokens.signing.private_key_file is required with %s", ErrKey, cfg.Algorithm)
	}
	if cfg.Secret != "" || cfg.SecretFile != "" {
		return nil, fmt.Errorf("%w: tokens.signing.secret and secret_file are for HS256, not %s", ErrKey, cfg.Algorithm)
	}
	data, err := os.ReadFile(cfg.PrivateKeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: read tokens.signing.private_key_file: %w", ErrKey, err)
	}
	priv, err := parsePrivateKey(data, cfg.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("tokens.signing.private_key_file %s: %w", cfg.PrivateKeyFile, err)
	}
	pub := priv.(interface{ Public() crypto.PublicKey }).Public()
	km := &keyMaterial{alg: cfg.Algorithm, sign: priv, verify: map[string]any{}}
	var jwks []jwk
	add := func(pub crypto.PublicKey) error {
		k, err := toJWK(pub, cfg.Algorithm)
		if err != nil {
			return err
		}
		if _, dup := km.verify[k.Kid]; dup {
			return nil
		}
		km.verify[k.Kid] = pub
		jwks = append(jwks, k)
		return nil
	}
	if err := add(pub); err != nil {
		return nil, err
	}
	km.kid = jwks[0].Kid
	prevFile := cfg.PrivateKeyFile + PrevSuffix
	prev, err := os.ReadFile(prevFile) //nolint:gosec // the path is the operator's (config), not a client's
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("%w: read %s: %w", ErrKey, prevFile, err)
	default:
		pubs, err := parsePublicKeys(prev, cfg.Algorithm)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", prevFile, err)
		}
		for _, p := range pubs {
			if err := add(p); err != nil {
				return nil, fmt.Errorf("%s: %w", prevFile, err)
			}
		}
	}
	km.jwks, err = json.Marshal(struct {
		Keys []jwk `json:"keys"`
	}{jwks})
	if err != nil {
		return nil, err
	}
	return km, nil
}

// parsePrivateKey reads the one PEM private key in data: PKCS#8 ("PRIVATE
// KEY", Ed25519 or RSA) or PKCS#1 ("RSA PRIVATE KEY").
func parsePrivateKey(data []byte, alg string) (crypto.Signer, error) {
	var found crypto.Signer
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if len(b.Headers) > 0 {
			return nil, fmt.Errorf("%w: encrypted PEM keys are not supported", ErrKey)
		}
		var k any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("%w: encrypted PEM keys are not supported", ErrKey)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: parse %s: %w", ErrKey, b.Type, err)
		}
		if found != nil {
			return nil, fmt.Errorf("%w: more than one private key in the file", ErrKey)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: unsupported private key type %T", ErrKey, k)
		}
		if err := checkKeyType(s.Public(), alg); err != nil {
			return nil, err
		}
		found = s
	}
	if found == nil {
		return nil, fmt.Errorf("%w: no PEM private key (PRIVATE KEY or RSA PRIVATE KEY) found", ErrKey)
	}
	return found, nil
}

// parsePublicKeys reads every PEM key in data: public keys ("PUBLIC KEY",
// "RSA PUBLIC KEY") or private keys, whose public halves are taken.
func parsePublicKeys(data []byte, alg string) ([]crypto.PublicKey, error) {
	var out []crypto.PublicKey
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		var k any
		var err error
		switch b.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(b.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(b.Bytes)
		case "PRIVATE KEY", "RSA PRIVATE KEY":
			var s crypto.Signer
			if s, err = parsePrivateKey(pem.EncodeToMemory(b), alg); err == nil {
				k = s.Public()
			}
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: parse %s: %w", ErrKey, b.Type, err)
		}
		if err := checkKeyType(k, alg); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no PEM public key found", ErrKey)
	}
	return out, nil
}

// checkKeyType checks a public key suits alg.
func checkKeyType(pub any, alg string) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if alg != configs.AlgEdDSA {
			return fmt.Errorf("%w: an Ed25519 key cannot be used with %s", ErrKey, alg)
		}
	case *rsa.PublicKey:
		if alg != configs.AlgRS256 {
			return fmt.Errorf("%w: an RSA key cannot be used with %s", ErrKey, alg)
		}
		if k.N.BitLen() < MinRSABits {
			return fmt.Errorf("%w: RSA key of %d bits; at least %d are required", ErrKey, k.N.BitLen(), MinRSABits)
		}
	default:
		return fmt.Errorf("%w: unsupported key type %T for %s", ErrKey, pub, alg)
	}
	return nil
}

// jwk is a public JSON Web Key (RFC 7517) as served in the JWKS.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

var b64u = base64.RawURLEncoding

// toJWK converts a public key; Kid is its RFC 7638 thumbprint.
func toJWK(pub crypto.PublicKey, alg string) (jwk, error) {
	if err := checkKeyType(pub, alg); err != nil {
		return jwk{}, err
	}
	var k jwk
	var canon string
	switch p := pub.(type) {
	case ed25519.PublicKey:
		k = jwk{Kty: "OKP", Crv: "Ed25519", X: b64u.EncodeToString(p)}
		canon = `{"crv":"Ed25519","kty":"OKP","x":"` + k.X + `"}`
	case *rsa.PublicKey:
		e := bigEndian(uint64(p.E)) //nolint:gosec // an RSA public exponent is positive and small
		k = jwk{Kty: "RSA", N: b64u.EncodeToString(p.N.Bytes()), E: b64u.EncodeToString(e)}
		canon = `{"e":"` + k.E + `","kty":"RSA","n":"` + k.N + `"}`
	}
	sum := sha256.Sum256([]byte(canon))
	k.Kid, k.Alg, k.Use = b64u.EncodeToString(sum[:]), alg, "sig"
	return k, nil
}

// bigEndian is v in big-endian without leading zero bytes.
func bigEndian(v uint64) []byte {
	var b []byte
	for v > 0 {
		b = append([]byte{byte(v)}, b...)
		v >>= 8
	}
	return b
}

// Thumbprint returns the RFC 7638 JWK thumbprint (base64url SHA-256) of an
// Ed25519 or RSA public key: the kid keygate gives it.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	alg := configs.AlgEdDSA
	if _, ok := pub.(*rsa.PublicKey); ok {
		alg = configs.AlgRS256
	}
	k, err := toJWK(pub, alg)
	return k.Kid, err
}
