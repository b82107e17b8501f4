package upstreamcred

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// oauth2_client_credentials: RFC 6749 §4.4, through golang.org/x/oauth2's
// clientcredentials (the reference implementation; its wire behaviour is
// what token servers are tested against). Fields token_url, client_id,
// scopes (space or comma separated), audience (sent as the audience
// parameter), auth_style (header: HTTP Basic, the default; params: in the
// form body); the secret is the client secret.
type clientCredentialsType struct{}

func (clientCredentialsType) Name() string    { return "oauth2_client_credentials" }
func (clientCredentialsType) Refreshes() bool { return true }

func (t clientCredentialsType) Check(fields map[string]string, secret []byte) error {
	if err := allowFields(t.Name(), fields, []string{"token_url", "client_id"}, "scopes", "audience", "auth_style"); err != nil {
		return err
	}
	if err := checkHTTPURL(t.Name(), "token_url", fields["token_url"]); err != nil {
		return err
	}
	switch fields["auth_style"] {
	case "", "header", "params":
	default:
		return fmt.Errorf("%s: auth_style must be header or params: %w", t.Name(), ErrBadRequest)
	}
	if len(secret) == 0 {
		return fmt.Errorf("%s: client secret is empty: %w", t.Name(), ErrBadRequest)
	}
	return nil
}

func (clientCredentialsType) Source(fields map[string]string, secret []byte, hc *http.Client) (Source, error) {
	cfg := &clientcredentials.Config{
		ClientID:     fields["client_id"],
		ClientSecret: string(secret),
		TokenURL:     fields["token_url"],
		Scopes:       scopes(fields["scopes"]),
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	if fields["auth_style"] == "params" {
		cfg.AuthStyle = oauth2.AuthStyleInParams
	}
	if a := fields["audience"]; a != "" {
		cfg.EndpointParams = url.Values{"audience": {a}}
	}
	return tokenSource{hc: hc, fetch: cfg.Token}, nil
}

// tokenSource fetches an OAuth2 token with an x/oauth2 config's Token
// method, through hc.
type tokenSource struct {
	hc    *http.Client
	fetch func(context.Context) (*oauth2.Token, error)
}

func (s tokenSource) Fetch(ctx context.Context) (Header, error) {
	tok, err := s.fetch(context.WithValue(ctx, oauth2.HTTPClient, s.hc))
	if err != nil {
		return Header{}, err
	}
	if tok.AccessToken == "" {
		return Header{}, fmt.Errorf("token endpoint answered without an access_token")
	}
	return Header{Key: "Authorization", Value: tok.Type() + " " + tok.AccessToken, Expiry: tok.Expiry}, nil
}

func init() { register(clientCredentialsType{}) }

var _ Type = clientCredentialsType{}
