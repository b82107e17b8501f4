package token

import (
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/configs"
)

func TestCheckSecret(t *testing.T) {
	weak := []struct{ name, secret string }{
		{"empty", ""},
		{"short", "Zx8#kQ2!mW5$"},
		{"31 bytes", testSecret[:31]},
		{"too long", strings.Repeat(testSecret, 100)},
		{"one character", strings.Repeat("a", 64)},
		{"few distinct", "abcabcabcdddeeefffgggaaabbbcccdd"},
		{"repeated pattern", strings.Repeat("Xy7#Qp2!", 5)},
		{"repeated long pattern", strings.Repeat("0123456789ABCDEFGHIJ", 2)},
		{"run", "0123456789abcdefghijklmnopqrstuvwxyz"},
		{"reverse run", "zyxwvutsrqponmlkjihgfedcba9876543210"},
		{"secret", "my-super-secret-jwt-signing-key-123!"},
		{"changeme", "ChangeMe-ChangeMe-0123456789-xyzQWE"},
		{"keygate", "keygate-production-hs256-2026-ABCDEFG"},
		{"jwt.io default", "your-256-bit-secret-your-256-bit-x"},
		{"password", "password1234567890qwertyuiopASDFGH"},
	}
	for _, w := range weak {
		if err := CheckSecret([]byte(w.secret)); !errors.Is(err, ErrWeakSecret) {
			t.Errorf("%s: CheckSecret = %v, want ErrWeakSecret", w.name, err)
		} else if w.secret != "" && strings.Contains(err.Error(), w.secret) {
			t.Errorf("%s: the error repeats the secret: %v", w.name, err)
		}
	}
	for _, good := range []string{testSecret, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"Tr0ub4dor&3-horse-battery-staple-Q9z!"} {
		if err := CheckSecret([]byte(good)); err != nil {
			t.Errorf("CheckSecret(good %q) = %v", good, err)
		}
	}
}

func TestNewSignerRefusesWeakOrBadKeys(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	secretFile := func(content string) configs.Tokens {
		c := hsConfig("")
		c.Signing.SecretFile = writeFile(t, t.TempDir(), "secret", []byte(content))
		return c
	}
	encrypted := []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
	cases := []struct {
		name string
		cfg  configs.Tokens
		want error
	}{
		{"no secret", hsConfig(""), ErrWeakSecret},
		{"short secret", hsConfig("tooShort123!"), ErrWeakSecret},
		{"default secret", hsConfig("changeme"), ErrWeakSecret},
		{"low entropy", hsConfig(strings.Repeat("ab", 32)), ErrWeakSecret},
		{"empty secret file", secretFile("\n"), ErrWeakSecret},
		{"weak secret file", secretFile(strings.Repeat("x", 40) + "\n"), ErrWeakSecret},
		{"missing secret file", func() configs.Tokens {
			c := hsConfig("")
			c.Signing.SecretFile = filepath.Join(dir, "nope")
			return c
		}(), ErrWeakSecret},
		{"both secret and file", func() configs.Tokens {
			c := secretFile(testSecret)
			c.Signing.Secret = testSecret
			return c
		}(), ErrKey},
		{"rsa 1024", keyConfig(t, configs.AlgRS256, pkcs8PEM(t, rsaSmall)), ErrKey},
		{"ed25519 key for RS256", keyConfig(t, configs.AlgRS256, pkcs8PEM(t, edKey)), ErrKey},
		{"rsa key for EdDSA", keyConfig(t, configs.AlgEdDSA, pkcs8PEM(t, rsaKey)), ErrKey},
		{"encrypted pem", keyConfig(t, configs.AlgEdDSA, encrypted), ErrKey},
		{"no pem", keyConfig(t, configs.AlgEdDSA, []byte("not a key")), ErrKey},
		{"public key only", keyConfig(t, configs.AlgEdDSA, pkixPEM(t, edKey.Public())), ErrKey},
		{"missing key file", func() configs.Tokens {
			c := keyConfig(t, configs.AlgEdDSA, pkcs8PEM(t, edKey))
			c.Signing.PrivateKeyFile = filepath.Join(dir, "nope.pem")
			return c
		}(), ErrKey},
		{"secret with EdDSA", func() configs.Tokens {
			c := keyConfig(t, configs.AlgEdDSA, pkcs8PEM(t, edKey))
			c.Signing.Secret = testSecret
			return c
		}(), ErrKey},
		{"unknown algorithm", func() configs.Tokens { c := hsConfig(testSecret); c.Signing.Algorithm = "none"; return c }(), ErrKey},
		{"bad prev file", func() configs.Tokens {
			c := keyConfig(t, configs.AlgEdDSA, pkcs8PEM(t, edKey))
			writeFile(t, filepath.Dir(c.Signing.PrivateKeyFile), "key.pem.prev", pkixPEM(t, rsaKey.Public()))
			return c
		}(), ErrKey},
	}
	for _, tc := range cases {
		_, err := NewSigner(tc.cfg)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: NewSigner = %v, want %v", tc.name, err, tc.want)
		}
		if _, verr := NewVerifier(tc.cfg); verr == nil {
			t.Errorf("%s: NewVerifier accepted it", tc.name)
		}
		if err != nil && strings.Contains(err.Error(), testSecret) {
			t.Errorf("%s: error contains the secret", tc.name)
		}
	}
	// Accepted forms.
	for name, cfg := range map[string]configs.Tokens{
		"secret file with trailing newline": secretFile(testSecret + "\n"),
		"secret file with CRLF":             secretFile(testSecret + "\r\n"),
		"env secret":                        hsConfig(testSecret),
		"ed25519 pkcs8":                     keyConfig(t, configs.AlgEdDSA, pkcs8PEM(t, edKey)),
		"rsa pkcs8":                         keyConfig(t, configs.AlgRS256, pkcs8PEM(t, rsaKey)),
		"rsa pkcs1": keyConfig(t, configs.AlgRS256, pemBlock("RSA PRIVATE KEY",
			x509MarshalPKCS1(rsaKey))),
	} {
		if _, err := NewSigner(cfg); err != nil {
			t.Errorf("%s: NewSigner = %v", name, err)
		}
	}
}

// keyed is one configured algorithm with its key material, for crafting
// tokens.
type keyed struct {
	name   string
	cfg    configs.Tokens
	method jwt.SigningMethod
	key    any    // signing key
	pubPEM []byte // public key bytes an attacker knows (nil for HS256)
	kid    string
}

func testAlgs(t *testing.T) []keyed {
	testKeys(t)
	hs := hsConfig(testSecret)
	ed := keyConfig(t, configs.AlgEdDSA, pkcs8PEM(t, edKey))
	rs := keyConfig(t, configs.AlgRS256, pkcs8PEM(t, rsaKey))
	edKid, _ := Thumbprint(edKey.Public())
	rsKid, _ := Thumbprint(rsaKey.Public())
	return []keyed{
		{"HS256", hs, jwt.SigningMethodHS256, []byte(testSecret), nil, hsKID([]byte(testSecret))},
		{"EdDSA", ed, jwt.SigningMethodEdDSA, edKey, pkixPEM(t, edKey.Public()), edKid},
		{"RS256", rs, jwt.SigningMethodRS256, rsaKey, pkixPEM(t, rsaKey.Public()), rsKid},
	}
}

func baseClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": "keygate", "aud": []string{"keygate"}, "sub": "alice", "acct": "acme",
		"gen": 1, "uct": 0, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "j1",
	}
}

// craft signs claims with method and key under header fields hdr (nil
// value: field removed).
func craft(t *testing.T, method jwt.SigningMethod, key any, hdr map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range hdr {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("craft: %v", err)
	}
	return s
}

func TestVerifyAttacks(t *testing.T) {
	now := t0
	clock := func() time.Time { return now }
	for _, k := range testAlgs(t) {
		t.Run(k.name, func(t *testing.T) {
			v, err := NewVerifier(k.cfg, WithClock(clock))
			if err != nil {
				t.Fatal(err)
			}
			hdr := func(extra ...any) map[string]any {
				h := map[string]any{"typ": "at+jwt", "kid": k.kid}
				for i := 0; i < len(extra); i += 2 {
					h[extra[i].(string)] = extra[i+1]
				}
				return h
			}
			with := func(mod func(jwt.MapClaims)) jwt.MapClaims {
				c := baseClaims(now)
				mod(c)
				return c
			}
			sign := func(h map[string]any, c jwt.MapClaims) string { return craft(t, k.method, k.key, h, c) }
			valid := sign(hdr(), baseClaims(now))

			type tc struct {
				name   string
				token  string
				accept bool
			}
			cases := []tc{
				{"valid", valid, true},
				{"typ application/at+jwt", sign(hdr("typ", "application/AT+JWT"), baseClaims(now)), true},
				{"alg none", craft(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, hdr(), baseClaims(now)), false},
				{"alg none, empty signature kept", strings.Join(strings.Split(
					craft(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, hdr(), baseClaims(now)), ".")[:2], ".") + ".", false},
				{"embedded jwk", sign(hdr("jwk", map[string]any{"kty": "oct", "k": "AAAA"}), baseClaims(now)), false},
				{"jku", sign(hdr("jku", "https://evil.example/jwks.json"), baseClaims(now)), false},
				{"x5u", sign(hdr("x5u", "https://evil.example/cert.pem"), baseClaims(now)), false},
				{"x5c", sign(hdr("x5c", []string{"MIIB"}), baseClaims(now)), false},
				{"crit", sign(hdr("crit", []string{"exp"}), baseClaims(now)), false},
				{"kid path traversal", sign(hdr("kid", "../../etc/passwd"), baseClaims(now)), false},
				{"kid with space", sign(hdr("kid", "a b"), baseClaims(now)), false},
				{"kid empty", sign(hdr("kid", ""), baseClaims(now)), false},
				{"kid too long", sign(hdr("kid", strings.Repeat("a", 65)), baseClaims(now)), false},
				{"kid number", sign(hdr("kid", 7), baseClaims(now)), false},
				{"kid sql", sign(hdr("kid", "x' OR '1'='1"), baseClaims(now)), false},
				{"kid unknown", sign(hdr("kid", "AAAAAAAAAAAAAAAA"), baseClaims(now)), false},
				{"no kid", sign(hdr("kid", nil), baseClaims(now)), false},
				{"no typ", sign(hdr("typ", nil), baseClaims(now)), false},
				{"typ JWT", sign(hdr("typ", "JWT"), baseClaims(now)), false},
				{"missing exp", sign(hdr(), with(func(c jwt.MapClaims) { delete(c, "exp") })), false},
				{"missing iat", sign(hdr(), with(func(c jwt.MapClaims) { delete(c, "iat") })), false},
				{"missing iss", sign(hdr(), with(func(c jwt.MapClaims) { delete(c, "iss") })), false},
				{"missing aud", sign(hdr(), with(func(c jwt.MapClaims) { delete(c, "aud") })), false},
				{"missing sub", sign(hdr(), with(func(c jwt.MapClaims) { delete(c, "sub") })), false},
				{"missing gen", sign(hdr(), with(func(c jwt.MapClaims) { delete(c, "gen") })), false},
				{"wrong iss", sign(hdr(), with(func(c jwt.MapClaims) { c["iss"] = "evil" })), false},
				{"wrong aud", sign(hdr(), with(func(c jwt.MapClaims) { c["aud"] = []string{"other"} })), false},
				{"aud as string", sign(hdr(), with(func(c jwt.MapClaims) { c["aud"] = "keygate" })), true},
				{"exp now-1s", sign(hdr(), with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Second).Unix() })), false},
				{"exp now", sign(hdr(), with(func(c jwt.MapClaims) { c["exp"] = now.Unix() })), false},
				{"exp now+1s", sign(hdr(), with(func(c jwt.MapClaims) { c["exp"] = now.Add(time.Second).Unix() })), true},
				{"nbf future", sign(hdr(), with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })), false},
				{"nbf past", sign(hdr(), with(func(c jwt.MapClaims) { c["nbf"] = now.Add(-time.Minute).Unix() })), true},
				{"iat future", sign(hdr(), with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() })), false},
				{"signature tampered", tamperSig(valid), false},
				{"payload tampered", tamperPayload(t, valid), false},
				{"signature removed", valid[:strings.LastIndexByte(valid, '.')+1], false},
				{"garbage segments", "a.b.c", false},
				{"empty segments", "..", false},
				{"two segments", "eyJhbGciOiJIUzI1NiJ9.e30", false},
				{"four segments", valid + ".x", false},
				{"empty", "", false},
				{"header not json", b64("not json") + "." + b64("{}") + ".sig", false},
				{"padded base64", padded(valid), false},
			}
			// Algorithm confusion and other algorithms than configured.
			switch k.name {
			case "HS256":
				cases = append(cases,
					tc{"HS384 same secret", craft(t, jwt.SigningMethodHS384, k.key, hdr(), baseClaims(now)), false},
					tc{"HS512 same secret", craft(t, jwt.SigningMethodHS512, k.key, hdr(), baseClaims(now)), false},
					tc{"EdDSA token", craft(t, jwt.SigningMethodEdDSA, edKey, hdr(), baseClaims(now)), false},
				)
			default:
				cases = append(cases,
					tc{"HS256 signed with the public key PEM", craft(t, jwt.SigningMethodHS256, k.pubPEM, hdr(), baseClaims(now)), false},
					tc{"HS256 signed with the public key PEM, no kid", craft(t, jwt.SigningMethodHS256, k.pubPEM, hdr("kid", nil), baseClaims(now)), false},
					tc{"HS256 with the shared test secret", craft(t, jwt.SigningMethodHS256, []byte(testSecret), hdr(), baseClaims(now)), false},
				)
				if k.name == "EdDSA" {
					cases = append(cases,
						tc{"HS256 signed with the raw public key", craft(t, jwt.SigningMethodHS256, []byte(edKey.Public().(ed25519.PublicKey)), hdr(), baseClaims(now)), false},
						tc{"RS256 token", craft(t, jwt.SigningMethodRS256, rsaKey, hdr(), baseClaims(now)), false},
						tc{"other Ed25519 key, same kid", craft(t, jwt.SigningMethodEdDSA, edKey2, hdr(), baseClaims(now)), false},
					)
				} else {
					cases = append(cases,
						tc{"PS256 same key", craft(t, jwt.SigningMethodPS256, rsaKey, hdr(), baseClaims(now)), false},
						tc{"RS512 same key", craft(t, jwt.SigningMethodRS512, rsaKey, hdr(), baseClaims(now)), false},
						tc{"EdDSA token", craft(t, jwt.SigningMethodEdDSA, edKey, hdr(), baseClaims(now)), false},
					)
				}
			}
			for _, c := range cases {
				got, err := v.Verify(c.token)
				switch {
				case c.accept && err != nil:
					t.Errorf("%s: Verify = %v, want accepted", c.name, err)
				case c.accept && (got.Subject != "alice" || got.Generation != 1 || got.Account != "acme"):
					t.Errorf("%s: claims = %+v", c.name, got)
				case !c.accept && err == nil:
					t.Errorf("%s: accepted", c.name)
				case !c.accept && !isCredentialError(err):
					t.Errorf("%s: error %v is not a credential error", c.name, err)
				}
			}
		})
	}
}

func isCredentialError(err error) bool {
	return errors.Is(err, authn.ErrInvalidCredentials) || errors.Is(err, authn.ErrExpired) ||
		errors.Is(err, authn.ErrMalformedCredentials)
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// tamperSig changes one character in the middle of the signature.
func tamperSig(tok string) string {
	i := strings.LastIndexByte(tok, '.') + 5
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

// tamperPayload replaces sub with "admin" keeping the signature.
func tamperPayload(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["sub"] = "admin"
	b, _ := json.Marshal(m)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// padded adds base64 padding to the payload segment (strict decoding
// refuses it).
func padded(tok string) string {
	parts := strings.Split(tok, ".")
	for len(parts[1])%4 != 0 {
		parts[1] += "="
	}
	return strings.Join(parts, ".")
}

// TestHugeTokenRefusedBeforeParsing: a 1 MB bearer token is refused by the
// Authorization parser, and by Verify, before any base64, JSON or crypto.
func TestHugeTokenRefusedBeforeParsing(t *testing.T) {
	v, err := NewVerifier(hsConfig(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("A", 1<<20/2) + "." + strings.Repeat("B", 1<<20/2) + ".C"
	var c authn.Credentials
	if err := authn.ParseAuthorization([]byte("Bearer "+huge), &c); !errors.Is(err, authn.ErrMalformedCredentials) {
		t.Errorf("ParseAuthorization(1 MB bearer) = %v, want ErrMalformedCredentials", err)
	}
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := v.Verify(huge); !errors.Is(err, errTooLong) {
			t.Fatalf("Verify(1 MB) = %v, want errTooLong", err)
		}
	})
	if allocs != 0 {
		t.Errorf("Verify(1 MB) allocated %v times: it parsed something", allocs)
	}
}

func TestSharedSecretAcrossInstances(t *testing.T) {
	clock := func() time.Time { return t0 }
	a := mustSigner(t, hsConfig(testSecret), clock)
	b := mustSigner(t, hsConfig(testSecret), clock)
	tokA, _, err := a.Issue(Subject{Username: "alice", Account: "acme", Generation: 2})
	if err != nil {
		t.Fatal(err)
	}
	tokB, _, err := b.Issue(Subject{Username: "bob", Account: "acme", Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verifier().Verify(tokA); err != nil {
		t.Errorf("instance B refuses A's token: %v", err)
	}
	if _, err := a.Verifier().Verify(tokB); err != nil {
		t.Errorf("instance A refuses B's token: %v", err)
	}
	other := mustSigner(t, hsConfig("Zr4kL9pQ2wX7mN1vB8cT5yH3jF6gD0sA"), clock)
	if _, err := other.Verifier().Verify(tokA); err == nil {
		t.Error("an instance with another secret accepted the token")
	}
}

func TestIssueClaims(t *testing.T) {
	clock := func() time.Time { return t0.Add(500 * time.Millisecond) }
	s := mustSigner(t, hsConfig(testSecret), clock)
	created := t0.Add(-time.Hour)
	tok, exp, err := s.Issue(Subject{Username: "alice", Account: "acme", Roles: []string{"dev"}, Generation: 7, UserCreated: created})
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(t0.Add(time.Hour)) {
		t.Errorf("exp = %v, want iat (whole second) + lifetime", exp)
	}
	parts := strings.Split(tok, ".")
	var hdr map[string]any
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	_ = json.Unmarshal(hb, &hdr)
	if hdr["alg"] != "HS256" || hdr["typ"] != "at+jwt" || hdr["kid"] == "" || len(hdr) != 3 {
		t.Errorf("header = %v", hdr)
	}
	c, err := s.Verifier().Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "keygate" || c.Subject != "alice" || c.Account != "acme" || c.Generation != 7 ||
		c.UserCreated != created.Unix() || c.ClientID != AnonymousClient || c.ID == "" || len(c.Roles) != 1 {
		t.Errorf("claims = %+v", c)
	}
	// The payload as a JavaScript verifier reads it: client_id (RFC 9068),
	// uct in seconds, and every number exact in a float64 (below 2^53).
	var payload map[string]json.RawMessage
	pb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(pb, &payload); err != nil {
		t.Fatal(err)
	}
	if string(payload["client_id"]) != `"anonymous"` || string(payload["uct"]) != strconv.FormatInt(created.Unix(), 10) {
		t.Errorf("payload %s", pb)
	}
	for k, raw := range payload {
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
			continue // not a number
		}
		if v, err := n.Int64(); err != nil || v < 0 || v >= 1<<53 {
			t.Errorf("claim %s = %s: not an integer below 2^53", k, raw)
		}
	}
	if cl, _, _ := s.Issue(Subject{ClientID: "cli", Username: "alice", Generation: 7}); mustVerify(t, s, cl).ClientID != "cli" {
		t.Error("Subject.ClientID not in the token")
	}
	tok2, _, _ := s.Issue(Subject{Username: "alice", Account: "acme", Generation: 7})
	c2, _ := s.Verifier().Verify(tok2)
	if c2.ID == c.ID {
		t.Error("jti repeats")
	}
	if _, _, err := s.Issue(Subject{Username: "alice"}); err == nil {
		t.Error("Issue without a generation succeeded")
	}
}

// TestRotation: a token signed with the previous key verifies while that key
// is in <private_key_file>.prev, and the JWKS lists both keys.
func TestRotation(t *testing.T) {
	testKeys(t)
	clock := func() time.Time { return t0 }
	oldCfg := keyConfig(t, configs.AlgEdDSA, pkcs8PEM(t, edKey))
	oldTok, _, err := mustSigner(t, oldCfg, clock).Issue(Subject{Username: "alice", Account: "acme", Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	newCfg := keyConfig(t, configs.AlgEdDSA, pkcs8PEM(t, edKey2))
	if _, err := mustSigner(t, newCfg, clock).Verifier().Verify(oldTok); err == nil {
		t.Fatal("old token accepted without the previous key")
	}
	writeFile(t, filepath.Dir(newCfg.Signing.PrivateKeyFile), "key.pem.prev", pkixPEM(t, edKey.Public()))
	s := mustSigner(t, newCfg, clock)
	if _, err := s.Verifier().Verify(oldTok); err != nil {
		t.Errorf("old token refused with the previous key in .prev: %v", err)
	}
	newTok, _, _ := s.Issue(Subject{Username: "alice", Account: "acme", Generation: 1})
	if _, err := s.Verifier().Verify(newTok); err != nil {
		t.Errorf("new token: %v", err)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(s.Verifier().JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	newKid, _ := Thumbprint(edKey2.Public())
	oldKid, _ := Thumbprint(edKey.Public())
	if len(set.Keys) != 2 || set.Keys[0]["kid"] != newKid || set.Keys[1]["kid"] != oldKid {
		t.Fatalf("JWKS = %s", s.Verifier().JWKS())
	}
	k := set.Keys[0]
	if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["alg"] != "EdDSA" || k["use"] != "sig" || k["d"] != "" {
		t.Errorf("JWKS key = %v", k)
	}
	x, _ := base64.RawURLEncoding.DecodeString(k["x"])
	if !ed25519.PublicKey(x).Equal(edKey2.Public()) {
		t.Error("JWKS x is not the public key")
	}
	// An old instance does not accept the new key's tokens.
	if _, err := mustSigner(t, oldCfg, clock).Verifier().Verify(newTok); err == nil {
		t.Error("old instance accepted a token of the new key")
	}
}

// TestThumbprintRFC7638 checks the kid against the example of RFC 7638 §3.1.
func TestThumbprintRFC7638(t *testing.T) {
	n := "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	nb, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil {
		t.Fatal(err)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: 65537}
	got, err := Thumbprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Errorf("Thumbprint = %s, want %s", got, want)
	}
}

func TestRSAPKCS1AndJWKS(t *testing.T) {
	testKeys(t)
	cfg := keyConfig(t, configs.AlgRS256, pemBlock("RSA PRIVATE KEY", x509MarshalPKCS1(rsaKey)))
	s := mustSigner(t, cfg, func() time.Time { return t0 })
	tok, _, err := s.Issue(Subject{Username: "alice", Account: "acme", Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verifier().Verify(tok); err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(s.Verifier().JWKS(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS = %s, %v", s.Verifier().JWKS(), err)
	}
	k := set.Keys[0]
	if k["kty"] != "RSA" || k["e"] != "AQAB" || k["alg"] != "RS256" || k["d"] != "" || k["p"] != "" {
		t.Errorf("JWKS key = %v", k)
	}
	if _, err := os.Stat(cfg.Signing.PrivateKeyFile + PrevSuffix); err == nil {
		t.Fatal("unexpected prev file")
	}
	hs := mustSigner(t, hsConfig(testSecret), nil)
	if hs.Verifier().JWKS() != nil {
		t.Error("HS256 has a JWKS")
	}
}

func mustVerify(t *testing.T, s *Signer, tok string) *Claims {
	t.Helper()
	c, err := s.Verifier().Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestUserCreatedMatches: uct is Unix seconds now; tokens issued before
// carry Unix nanoseconds and keep matching (exactly) until they expire.
func TestUserCreatedMatches(t *testing.T) {
	created := time.Date(2026, 3, 4, 5, 6, 7, 891234567, time.UTC)
	cases := []struct {
		name    string
		created time.Time
		uct     int64
		want    bool
	}{
		{"seconds", created, created.Unix(), true},
		{"seconds, next second", created, created.Unix() + 1, false},
		{"seconds, previous second", created, created.Unix() - 1, false},
		{"legacy nanoseconds", created, created.UnixNano(), true},
		{"legacy nanoseconds, 1 ns off", created, created.UnixNano() + 1, false},
		{"legacy nanoseconds of the same second", created, created.Truncate(time.Second).UnixNano(), false},
		{"milliseconds are neither", created, created.UnixMilli(), false},
		{"unknown creation time", time.Time{}, 0, true},
		{"unknown creation time, uct set", time.Time{}, created.Unix(), false},
		{"unknown creation time, legacy uct set", time.Time{}, created.UnixNano(), false},
		{"creation time set, uct 0", created, 0, false},
		{"the unit boundary", time.Unix(0, uctNanoFloor), uctNanoFloor, true},
	}
	for _, c := range cases {
		if got := userCreatedMatches(c.created, c.uct); got != c.want {
			t.Errorf("%s: userCreatedMatches(%v, %d) = %v, want %v", c.name, c.created, c.uct, got, c.want)
		}
	}
}
