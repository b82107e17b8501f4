package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/store"
)

// The token endpoint as real OAuth2 clients use it with their default
// settings (issue 12 items 9 and 10): golang.org/x/oauth2 in each AuthStyle,
// the exact requests of requests-oauthlib and simple-oauth2, the RFC 8414
// metadata, and the access token checked against RFC 9068 by go-jose.

const adminPW = "correct-horse-battery-staple"

// tokenGateway is a gateway with one protected route to an echo upstream.
func tokenGateway(t *testing.T) *gateway {
	t.Helper()
	echoAddr := startEchoProc(t)
	return startGateway(t, serveOpts{
		routes: fmt.Sprintf("  - name: api\n    path_prefix: /\n    upstreams: [\"http://%s\"]\n    auth: required\n", echoAddr),
	})
}

// recorder is an http.RoundTripper that keeps the Authorization header of
// each request it sends.
type recorder struct {
	mu   sync.Mutex
	sent []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.sent = append(r.sent, req.Header.Get("Authorization"))
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

// bearerStatus is the status of GET /hello with the access token.
func bearerStatus(t *testing.T, g *gateway, tok string) int {
	t.Helper()
	c := newAuClient(5 * time.Second)
	defer c.close()
	return c.get(t, g.url("/hello"), "Bearer "+tok).status
}

// TestTokenClientGoOAuth2: golang.org/x/oauth2's PasswordCredentialsToken
// with client "anonymous" and no secret gets a token in every AuthStyle, on
// the first request (AutoDetect tries the header first and must not need
// its fallback); a wrong secret or another client is invalid_client.
func TestTokenClientGoOAuth2(t *testing.T) {
	t.Parallel()
	g := tokenGateway(t)
	cases := []struct {
		name       string
		style      oauth2.AuthStyle
		id, secret string
		wantHeader bool   // the (first) request carries Authorization
		wantErr    string // RFC 6749 error code; "" success
	}{
		{"AuthStyleInHeader", oauth2.AuthStyleInHeader, "anonymous", "", true, ""},
		{"AuthStyleInParams", oauth2.AuthStyleInParams, "anonymous", "", false, ""},
		{"AuthStyleAutoDetect", oauth2.AuthStyleAutoDetect, "anonymous", "", true, ""},
		{"header, wrong secret", oauth2.AuthStyleInHeader, "anonymous", "s3cret", true, "invalid_client"},
		{"params, wrong secret", oauth2.AuthStyleInParams, "anonymous", "s3cret", false, "invalid_client"},
		{"header, unknown client", oauth2.AuthStyleInHeader, "webapp", "", true, "invalid_client"},
		{"params, unknown client", oauth2.AuthStyleInParams, "webapp", "", false, "invalid_client"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: rec, Timeout: 10 * time.Second})
			conf := &oauth2.Config{ClientID: c.id, ClientSecret: c.secret,
				Endpoint: oauth2.Endpoint{TokenURL: g.url("/oauth/token"), AuthStyle: c.style}}
			tok, err := conf.PasswordCredentialsToken(ctx, "admin", adminPW)
			if len(rec.sent) == 0 || (rec.sent[0] != "") != c.wantHeader {
				t.Fatalf("requests sent %+v, want Authorization on the first: %v", rec.sent, c.wantHeader)
			}
			if c.wantErr != "" {
				var re *oauth2.RetrieveError
				if !errors.As(err, &re) || re.ErrorCode != c.wantErr || re.Response.StatusCode != 401 {
					t.Fatalf("err = %v, want %s", err, c.wantErr)
				}
				if strings.Contains(string(re.Body), "s3cret") {
					t.Errorf("the error body echoes the secret: %s", re.Body)
				}
				return
			}
			if err != nil {
				t.Fatalf("PasswordCredentialsToken: %v", err)
			}
			if c.style == oauth2.AuthStyleAutoDetect && len(rec.sent) != 1 {
				t.Errorf("AutoDetect sent %d requests: the header style was refused", len(rec.sent))
			}
			if tok.TokenType != "Bearer" || tok.RefreshToken == "" || tok.Expiry.IsZero() {
				t.Errorf("token %+v", tok)
			}
			if st := bearerStatus(t, g, tok.AccessToken); st != 200 {
				t.Errorf("access token on a protected route: %d", st)
			}
			// The refresh grant through the client's TokenSource, same style.
			old := *tok
			old.Expiry = time.Now().Add(-time.Minute)
			fresh, err := conf.TokenSource(ctx, &old).Token()
			if err != nil || fresh.AccessToken == tok.AccessToken || fresh.RefreshToken == tok.RefreshToken {
				t.Fatalf("refresh through x/oauth2: %v (%+v)", err, fresh)
			}
			checkRFC9068(t, fresh.AccessToken)
		})
	}
}

// checkRFC9068 validates an access token of the e2e gateways (HS256 with
// testSigningSecret, issuer and audience "keygate") with go-jose: typ
// at+jwt and the required claims of RFC 9068 §2.
func checkRFC9068(t *testing.T, at string) {
	t.Helper()
	tok, err := josejwt.ParseSigned(at, []jose.SignatureAlgorithm{jose.HS256})
	if err != nil {
		t.Fatalf("go-jose: %v", err)
	}
	if typ, _ := tok.Headers[0].ExtraHeaders[jose.HeaderType].(string); typ != "at+jwt" {
		t.Errorf("typ %q, want at+jwt", typ)
	}
	var std josejwt.Claims
	var extra struct {
		ClientID string `json:"client_id"`
		UCT      int64  `json:"uct"`
	}
	if err := tok.Claims([]byte(testSigningSecret), &std, &extra); err != nil {
		t.Fatalf("go-jose signature: %v", err)
	}
	if err := std.Validate(josejwt.Expected{Issuer: "keygate", AnyAudience: []string{"keygate"}, Time: time.Now()}); err != nil {
		t.Errorf("go-jose validation: %v", err)
	}
	if std.Subject != "admin" || extra.ClientID != "anonymous" || std.IssuedAt == nil || std.ID == "" || std.Expiry == nil {
		t.Errorf("claims %+v client_id %q", std, extra.ClientID)
	}
	if extra.UCT <= 0 || extra.UCT > time.Now().Unix() {
		t.Errorf("uct %d is not a Unix time in seconds", extra.UCT)
	}
}

// Raw requests as requests-oauthlib and simple-oauth2 send them (read from
// their sources: requests_oauthlib/oauth2_session.py fetch_token with
// oauthlib's LegacyApplicationClient and prepare_token_request;
// simple-oauth2 lib/client/request-options.js and credentials-encoding.js).
func TestTokenClientRawShapes(t *testing.T) {
	t.Parallel()
	g := tokenGateway(t)
	anonBasic := "Basic " + base64.StdEncoding.EncodeToString([]byte("anonymous:"))
	pyHeaders := "User-Agent: python-requests/2.32.3\r\nAccept-Encoding: gzip, deflate\r\nAccept: application/json\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\n"
	jsHeaders := "Accept: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n"
	jsonHeaders := "Accept: application/json\r\nContent-Type: application/json\r\nConnection: close\r\n"
	cases := []struct {
		name      string
		headers   string // without Host and Content-Length
		body      string
		wantCode  int
		wantError string
	}{
		// OAuth2Session(client=LegacyApplicationClient("anonymous")).fetch_token(url, username=, password=):
		// no auth given, so HTTPBasicAuth(client_id, client_secret or ""), and include_client_id
		// stays None: no client_id in the body.
		{"requests-oauthlib default fetch_token", pyHeaders + "Authorization: " + anonBasic + "\r\n",
			"grant_type=password&username=admin&password=" + adminPW, 200, ""},
		// fetch_token(..., client_secret=""): the same request.
		{"requests-oauthlib client_secret=\"\"", pyHeaders + "Authorization: " + anonBasic + "\r\n",
			"grant_type=password&username=admin&password=" + adminPW, 200, ""},
		// fetch_token(..., include_client_id=True): no header, client_id in the body.
		{"requests-oauthlib include_client_id=True", pyHeaders,
			"grant_type=password&client_id=anonymous&username=admin&password=" + adminPW, 200, ""},
		// fetch_token(..., include_client_id=True, client_secret=""): an empty client_secret too.
		{"requests-oauthlib include_client_id=True client_secret=\"\"", pyHeaders,
			"grant_type=password&client_id=anonymous&client_secret=&username=admin&password=" + adminPW, 200, ""},
		// fetch_token(..., auth=HTTPBasicAuth("anonymous", ""), include_client_id=True): both.
		{"requests-oauthlib auth and include_client_id", pyHeaders + "Authorization: " + anonBasic + "\r\n",
			"grant_type=password&client_id=anonymous&username=admin&password=" + adminPW, 200, ""},
		// new ResourceOwnerPassword({client: {id: "anonymous", secret: ""}, auth: {tokenHost}}).getToken({username, password}):
		// authorizationMethod "header" with credentialsEncodingMode "strict" (the defaults):
		// Basic base64(formURLEncode(id) + ":" + formURLEncode(secret)).
		{"simple-oauth2 header strict (default)", jsHeaders + "Authorization: " + anonBasic + "\r\n",
			"grant_type=password&username=admin&password=" + adminPW, 200, ""},
		// credentialsEncodingMode "loose": the same bytes for "anonymous".
		{"simple-oauth2 header loose", jsHeaders + "Authorization: " + anonBasic + "\r\n",
			"grant_type=password&username=admin&password=" + adminPW, 200, ""},
		// authorizationMethod "body": client_id and client_secret after the grant parameters.
		{"simple-oauth2 body", jsHeaders,
			"grant_type=password&username=admin&password=" + adminPW + "&client_id=anonymous&client_secret=", 200, ""},
		// bodyFormat "json" (header or body authorization): JSON.stringify of the same parameters.
		{"simple-oauth2 header json", jsonHeaders + "Authorization: " + anonBasic + "\r\n",
			`{"grant_type":"password","username":"admin","password":"` + adminPW + `"}`, 200, ""},
		{"simple-oauth2 body json", jsonHeaders,
			`{"grant_type":"password","username":"admin","password":"` + adminPW + `","client_id":"anonymous","client_secret":""}`, 200, ""},
		// Still refused: a secret for the public client, other clients.
		{"requests-oauthlib with a secret", pyHeaders + "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("anonymous:s3cret")) + "\r\n",
			"grant_type=password&username=admin&password=" + adminPW, 401, "invalid_client"},
		{"simple-oauth2 body with a secret", jsHeaders,
			"grant_type=password&username=admin&password=" + adminPW + "&client_id=anonymous&client_secret=s3cret", 401, "invalid_client"},
		{"simple-oauth2 body json with a secret", jsonHeaders,
			`{"grant_type":"password","username":"admin","password":"` + adminPW + `","client_id":"anonymous","client_secret":"s3cret"}`, 401, "invalid_client"},
		{"simple-oauth2 header, another client", jsHeaders + "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("webapp:")) + "\r\n",
			"grant_type=password&username=admin&password=" + adminPW, 401, "invalid_client"},
		// simple-oauth2 with client.secret left undefined sends "anonymous:undefined": a wrong secret.
		{"simple-oauth2 secret undefined", jsHeaders + "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("anonymous:undefined")) + "\r\n",
			"grant_type=password&username=admin&password=" + adminPW, 401, "invalid_client"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := fmt.Sprintf("POST /oauth/token HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n%s", g.public, c.headers, len(c.body), c.body)
			r := rawDo(t, g.public, raw)
			var body map[string]any
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatalf("not JSON: %s", r.body)
			}
			if r.status != c.wantCode {
				t.Fatalf("%d %s, want %d", r.status, r.body, c.wantCode)
			}
			if r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", r.header.Get("Cache-Control"))
			}
			if c.wantError != "" {
				if body["error"] != c.wantError || r.header.Get("WWW-Authenticate") == "" || strings.Contains(string(r.body), "s3cret") {
					t.Errorf("%d %s %v", r.status, r.body, r.header)
				}
				return
			}
			at, _ := body["access_token"].(string)
			if body["token_type"] != "Bearer" || at == "" || body["refresh_token"] == nil {
				t.Fatalf("%s", r.body)
			}
			if st := bearerStatus(t, g, at); st != 200 {
				t.Errorf("access token: %d", st)
			}
		})
	}
}

// TestTokenMetadata: the RFC 8414 metadata of the binary parses, names the
// endpoints a client can use as they are (x/oauth2 gets a token from the
// advertised token_endpoint with each advertised auth method), and the
// public listener's non-OAuth errors all have keygate's error shape.
func TestTokenMetadata(t *testing.T) {
	t.Parallel()
	g := tokenGateway(t)
	resp, err := http.Get(g.url("/.well-known/oauth-authorization-server"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Issuer        string    `json:"issuer"`
		TokenEndpoint string    `json:"token_endpoint"`
		JWKSURI       *string   `json:"jwks_uri"`
		ResponseTypes *[]string `json:"response_types_supported"`
		GrantTypes    []string  `json:"grant_types_supported"`
		AuthMethods   []string  `json:"token_endpoint_auth_methods_supported"`
	}
	err = json.NewDecoder(resp.Body).Decode(&m)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("metadata: %d %v", resp.StatusCode, err)
	}
	if m.Issuer != "keygate" || m.TokenEndpoint != g.url("/oauth/token") || m.JWKSURI != nil ||
		m.ResponseTypes == nil || len(*m.ResponseTypes) != 0 ||
		!slices.Equal(m.GrantTypes, []string{"password", "refresh_token", "client_credentials"}) ||
		!slices.Equal(m.AuthMethods, []string{"none", "client_secret_basic", "client_secret_post"}) {
		t.Errorf("metadata %+v", m)
	}
	styles := map[string]oauth2.AuthStyle{"client_secret_basic": oauth2.AuthStyleInHeader, "none": oauth2.AuthStyleInParams, "client_secret_post": oauth2.AuthStyleInParams}
	for _, method := range m.AuthMethods {
		conf := &oauth2.Config{ClientID: "anonymous", Endpoint: oauth2.Endpoint{TokenURL: m.TokenEndpoint, AuthStyle: styles[method]}}
		if _, err := conf.PasswordCredentialsToken(context.Background(), "admin", adminPW); err != nil {
			t.Errorf("%s at the advertised token_endpoint: %v", method, err)
		}
	}

	// Non-OAuth errors of the public listener: {"error":{"code","message"}}.
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"JWKS with HS256", "GET", "/.well-known/jwks.json", "", 404, "not_found"},
		{"JWKS POST", "POST", "/.well-known/jwks.json", "", 405, "method_not_allowed"},
		{"metadata POST", "POST", "/.well-known/oauth-authorization-server", "", 405, "method_not_allowed"},
		{"no credentials", "GET", "/hello", "", 401, "unauthorized"},
	} {
		req, _ := http.NewRequest(c.method, g.url(c.path), strings.NewReader(c.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		var shape map[string]map[string]string
		if resp.StatusCode != c.status || json.Unmarshal(b, &shape) != nil || len(shape) != 1 ||
			len(shape["error"]) != 2 || shape["error"]["code"] != c.code || shape["error"]["message"] == "" {
			t.Errorf("%s: %d %s, want %d with error.code %s", c.name, resp.StatusCode, b, c.status, c.code)
		}
	}
}

// TestTokenGrantRehashes (issue 20 item 3): the password grant checks
// passwords as Basic does, rehash on login included. A user whose hash was
// made with outdated parameters (the fixtures' cheap ones) logs in through
// the grant; the gateway rewrites the hash with its own (default)
// parameters, keeps the generation, and the password and the token keep
// working.
func TestTokenGrantRehashes(t *testing.T) {
	t.Parallel()
	r := testredis.Start(t)
	st := auRedisStore(t, r.Addr())
	st.account("acme")
	st.user("olga", "acme", "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before, err := st.st.GetUser(ctx, "olga")
	if err != nil {
		t.Fatal(err)
	}
	g := auRedisGateway(t, r.Addr(), startEchoProc(t), "", nil)
	conf := &oauth2.Config{ClientID: "anonymous", Endpoint: oauth2.Endpoint{TokenURL: g.url("/oauth/token"), AuthStyle: oauth2.AuthStyleInHeader}}
	tok, err := conf.PasswordCredentialsToken(ctx, "olga", auPassword)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	var after *store.User
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if after, err = st.st.GetUser(ctx, "olga"); err != nil {
			t.Fatal(err)
		}
		if after.PasswordHash != before.PasswordHash || time.Now().After(deadline) {
			break
		}
	}
	p, _, _, err := password.ParsePHC(after.PasswordHash)
	if err != nil || p != password.DefaultParams {
		t.Fatalf("stored hash after a grant login: params %+v (%v), want the gateway's %+v", p, err, password.DefaultParams)
	}
	if after.Generation != before.Generation {
		t.Errorf("the rehash changed the generation %d → %d", before.Generation, after.Generation)
	}
	if st := bearerStatus(t, g, tok.AccessToken); st != 200 {
		t.Errorf("token issued before the rehash: %d", st)
	}
	if _, err := conf.PasswordCredentialsToken(ctx, "olga", auPassword); err != nil {
		t.Errorf("grant after the rehash: %v", err)
	}
}

// TestTokenMetadataIssuerURL: with tokens.issuer an https URL with a path,
// the metadata names endpoints under the issuer's origin whatever the Host,
// and is served at the RFC 8414 §3.1 path-inserted location too; tokens
// carry that iss.
func TestTokenMetadataIssuerURL(t *testing.T) {
	t.Parallel()
	echoAddr := startEchoProc(t)
	g := startGateway(t, serveOpts{
		routes: fmt.Sprintf("  - name: api\n    path_prefix: /\n    upstreams: [\"http://%s\"]\n    auth: required\n", echoAddr),
		extra:  "tokens:\n  issuer: https://auth.example.com/tenant\n",
	})
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/oauth-authorization-server/tenant"} {
		c := newAuClient(5 * time.Second)
		r := c.get(t, g.url(path), "")
		c.close()
		var m struct {
			Issuer        string `json:"issuer"`
			TokenEndpoint string `json:"token_endpoint"`
		}
		if r.status != 200 || json.Unmarshal(r.body, &m) != nil ||
			m.Issuer != "https://auth.example.com/tenant" || m.TokenEndpoint != "https://auth.example.com/oauth/token" {
			t.Errorf("%s: %d %s", path, r.status, r.body)
		}
	}
	conf := &oauth2.Config{ClientID: "anonymous", Endpoint: oauth2.Endpoint{TokenURL: g.url("/oauth/token"), AuthStyle: oauth2.AuthStyleInHeader}}
	tok, err := conf.PasswordCredentialsToken(context.Background(), "admin", adminPW)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := josejwt.ParseSigned(tok.AccessToken, []jose.SignatureAlgorithm{jose.HS256})
	if err != nil {
		t.Fatal(err)
	}
	var std josejwt.Claims
	if err := parsed.Claims([]byte(testSigningSecret), &std); err != nil || std.Issuer != "https://auth.example.com/tenant" {
		t.Errorf("iss %q (%v)", std.Issuer, err)
	}
	if st := bearerStatus(t, g, tok.AccessToken); st != 200 {
		t.Errorf("token: %d", st)
	}
}

// TestTokenClientSimpleOAuth2 runs the real simple-oauth2 (npm, pinned in
// tools/oauth-clients) against the built binary in each of its client
// authentication modes, as a public client with an empty secret: the
// header in strict and loose encoding, and the body as a form and as JSON.
// Each token must then open the proxy. Without node or the installed
// module (make node-deps) it skips, except under CI=true.
func TestTokenClientSimpleOAuth2(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	script, _ := filepath.Abs(filepath.Join("..", "tools", "oauth-clients", "fetch-token.mjs"))
	mod := filepath.Join(filepath.Dir(script), "node_modules", "simple-oauth2")
	if _, statErr := os.Stat(mod); err != nil || statErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node or simple-oauth2 missing (run make node-deps): %v %v", err, statErr)
		}
		t.Skipf("node or simple-oauth2 missing (run make node-deps): %v %v", err, statErr)
	}
	g := tokenGateway(t)
	for _, mode := range []string{"header-strict", "header-loose", "body-form", "body-json"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(node, script, g.url(""), mode, "admin") //nolint:gosec // G204: the test's own script and the gateway it started
			cmd.Stdin = strings.NewReader(adminPW)
			out, err := cmd.Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					t.Fatalf("simple-oauth2 %s: %v: %s", mode, err, ee.Stderr)
				}
				t.Fatalf("simple-oauth2 %s: %v", mode, err)
			}
			var tok struct {
				AccessToken string `json:"access_token"`
				TokenType   string `json:"token_type"`
			}
			if err := json.Unmarshal(out, &tok); err != nil || tok.AccessToken == "" || tok.TokenType != "Bearer" {
				t.Fatalf("simple-oauth2 %s: token response %q (%v)", mode, out, err)
			}
			if code := bearerStatus(t, g, tok.AccessToken); code != 200 {
				t.Errorf("simple-oauth2 %s: the token opened the proxy with %d, want 200", mode, code)
			}
		})
	}
}
