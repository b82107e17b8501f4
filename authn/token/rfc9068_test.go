package token

import (
	"encoding/json"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/keygate/keygate/configs"
)

// TestAccessTokenRFC9068 checks the access tokens of the password grant with
// another JWT library (go-jose) against RFC 9068: typ at+jwt (§2.1), the
// required claims iss, exp, aud, sub, client_id, iat, jti (§2.2), and the
// validation of §4 (signature with the configured algorithm, from the JWKS
// for the asymmetric ones; iss; aud; exp).
func TestAccessTokenRFC9068(t *testing.T) {
	testKeys(t)
	cases := []struct {
		name string
		cfg  configs.Tokens
		alg  jose.SignatureAlgorithm
	}{
		{"HS256", hsConfig(testSecret), jose.HS256},
		{"EdDSA", keyConfig(t, configs.AlgEdDSA, pkcs8PEM(t, edKey)), jose.EdDSA},
		{"RS256", keyConfig(t, configs.AlgRS256, pkcs8PEM(t, rsaKey)), jose.RS256},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := newEnv(t, fastHasher())
			signer := mustSigner(t, c.cfg, env.clock.Now)
			ep, err := NewEndpoint(c.cfg, signer, EndpointOptions{Store: env.s, Refresh: env.s, Passwords: env.passwords(), Now: env.clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			f := &fixture{t: t, env: env, signer: signer, ep: ep, peer: []byte{192, 0, 2, 7}}
			form := pwForm("alice", alicePW)
			form.Set("client_id", "anonymous")
			at, _ := f.wantTokens("grant", f.post(form), true)

			tok, err := josejwt.ParseSigned(at, []jose.SignatureAlgorithm{c.alg})
			if err != nil {
				t.Fatalf("go-jose parse: %v", err)
			}
			h := tok.Headers[0]
			if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "at+jwt" && typ != "application/at+jwt" {
				t.Errorf("typ = %v, want at+jwt (RFC 9068 §2.1)", h.ExtraHeaders[jose.HeaderType])
			}
			var key any = []byte(testSecret)
			if c.alg != jose.HS256 {
				var set jose.JSONWebKeySet
				if err := json.Unmarshal(signer.Verifier().JWKS(), &set); err != nil {
					t.Fatalf("JWKS: %v", err)
				}
				keys := set.Key(h.KeyID)
				if len(keys) != 1 || !keys[0].Valid() || keys[0].Algorithm != string(c.alg) {
					t.Fatalf("JWKS has no usable key %q: %+v", h.KeyID, set)
				}
				key = keys[0].Key
			}
			var std josejwt.Claims
			var extra struct {
				ClientID string `json:"client_id"`
			}
			if err := tok.Claims(key, &std, &extra); err != nil {
				t.Fatalf("go-jose signature check: %v", err)
			}
			if err := std.ValidateWithLeeway(josejwt.Expected{Issuer: "keygate", AnyAudience: []string{"keygate"},
				Time: env.clock.Now().Add(time.Minute)}, 0); err != nil {
				t.Errorf("go-jose validation: %v", err)
			}
			if std.Issuer == "" || std.Expiry == nil || len(std.Audience) == 0 || std.Subject != "alice" ||
				extra.ClientID != "anonymous" || std.IssuedAt == nil || std.ID == "" {
				t.Errorf("RFC 9068 §2.2 claims missing: %+v client_id %q", std, extra.ClientID)
			}
			if err := std.ValidateWithLeeway(josejwt.Expected{Time: env.clock.Now().Add(2 * time.Hour)}, 0); err == nil {
				t.Error("go-jose accepted the token after exp")
			}
		})
	}
}
