package upstreamcred

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"
)

// google_service_account: a Google service-account JSON key exchanged for
// access tokens by the JWT-bearer grant (RFC 7523) at the key's token_uri,
// through golang.org/x/oauth2/jwt, configured exactly as
// golang.org/x/oauth2/google.JWTConfigFromJSON configures it (that package
// is not used itself: it pulls in the GCE metadata client, which keygate
// does not need). Fields scopes (space or comma separated), audience
// (optional); the secret is the whole JSON key.
type googleServiceAccountType struct{}

func (googleServiceAccountType) Name() string    { return "google_service_account" }
func (googleServiceAccountType) Refreshes() bool { return true }

// serviceAccountKey is the part of the JSON key that is used.
type serviceAccountKey struct {
	Type         string `json:"type"`
	ClientEmail  string `json:"client_email"`
	PrivateKey   string `json:"private_key"`
	PrivateKeyID string `json:"private_key_id"`
	TokenURI     string `json:"token_uri"`
}

func parseServiceAccountKey(secret []byte) (*serviceAccountKey, error) {
	var k serviceAccountKey
	// The JSON error may quote the key's content: it is not passed on.
	if err := json.Unmarshal(secret, &k); err != nil {
		return nil, fmt.Errorf("google_service_account: the secret is not a JSON key: %w", ErrBadRequest)
	}
	switch {
	case k.Type != "service_account":
		return nil, fmt.Errorf("google_service_account: key type is not service_account: %w", ErrBadRequest)
	case k.ClientEmail == "" || k.PrivateKey == "":
		return nil, fmt.Errorf("google_service_account: key lacks client_email or private_key: %w", ErrBadRequest)
	case k.TokenURI == "":
		return nil, fmt.Errorf("google_service_account: key lacks token_uri: %w", ErrBadRequest)
	}
	if err := checkHTTPURL("google_service_account", "token_uri", k.TokenURI); err != nil {
		return nil, err
	}
	return &k, nil
}

func (t googleServiceAccountType) Check(fields map[string]string, secret []byte) error {
	if err := allowFields(t.Name(), fields, nil, "scopes", "audience"); err != nil {
		return err
	}
	if fields["scopes"] == "" && fields["audience"] == "" {
		return fmt.Errorf("%s: scopes or audience is required: %w", t.Name(), ErrBadRequest)
	}
	_, err := parseServiceAccountKey(secret)
	return err
}

func (googleServiceAccountType) Source(fields map[string]string, secret []byte, hc *http.Client) (Source, error) {
	k, err := parseServiceAccountKey(secret)
	if err != nil {
		return nil, err
	}
	cfg := &jwt.Config{
		Email:        k.ClientEmail,
		PrivateKey:   []byte(k.PrivateKey),
		PrivateKeyID: k.PrivateKeyID,
		Scopes:       scopes(fields["scopes"]),
		TokenURL:     k.TokenURI,
		Audience:     fields["audience"],
	}
	return tokenSource{hc: hc, fetch: func(ctx context.Context) (*oauth2.Token, error) { return cfg.TokenSource(ctx).Token() }}, nil
}

func init() { register(googleServiceAccountType{}) }

var _ Type = googleServiceAccountType{}
