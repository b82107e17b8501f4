package token

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"slices"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/configs"
)

// rfc8414 is the metadata as a client reads it (pointers: present or not).
type rfc8414 struct {
	Issuer                 string    `json:"issuer"`
	TokenEndpoint          string    `json:"token_endpoint"`
	JWKSURI                *string   `json:"jwks_uri"`
	ResponseTypesSupported *[]string `json:"response_types_supported"`
	GrantTypesSupported    []string  `json:"grant_types_supported"`
	TokenAuthMethods       []string  `json:"token_endpoint_auth_methods_supported"`
	AuthorizationEndpoint  *string   `json:"authorization_endpoint"`
}

// tlsConn makes RequestCtx.IsTLS report true.
type tlsConn struct{ net.Conn }

func (tlsConn) Handshake() error                         { return nil }
func (tlsConn) ConnectionState() (s tls.ConnectionState) { return }
func (tlsConn) RemoteAddr() net.Addr                     { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)} }
func (tlsConn) LocalAddr() net.Addr                      { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 2)} }

func getMetadata(t *testing.T, ep *Endpoint, method, host string, viaTLS bool) *fasthttp.Response {
	t.Helper()
	var ctx fasthttp.RequestCtx
	var conn net.Conn
	if viaTLS {
		conn = tlsConn{}
	}
	ctx.Init2(conn, nil, false)
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(MetadataPath)
	ctx.Request.Header.SetHost(host)
	ep.MetadataHandler(&ctx)
	var res fasthttp.Response
	ctx.Response.CopyTo(&res)
	return &res
}

func parseMetadata(t *testing.T, r *fasthttp.Response) rfc8414 {
	t.Helper()
	if r.StatusCode() != 200 || string(r.Header.ContentType()) != "application/json" {
		t.Fatalf("metadata: %d %s %s", r.StatusCode(), r.Header.ContentType(), r.Body())
	}
	var m rfc8414
	if err := json.Unmarshal(r.Body(), &m); err != nil {
		t.Fatalf("metadata is not JSON: %v: %s", err, r.Body())
	}
	return m
}

// TestMetadata: RFC 8414 metadata for each signing algorithm and issuer
// form, parsed as a client does.
func TestMetadata(t *testing.T) {
	testKeys(t)
	env := newEnv(t, fastHasher())
	mk := func(t *testing.T, cfg configs.Tokens, refresh bool) *Endpoint {
		t.Helper()
		s := mustSigner(t, cfg, env.clock.Now)
		opts := EndpointOptions{Store: env.s, Passwords: env.passwords()}
		if refresh {
			opts.Refresh = env.s
		}
		ep, err := NewEndpoint(cfg, s, opts)
		if err != nil {
			t.Fatal(err)
		}
		return ep
	}
	withIssuer := func(cfg configs.Tokens, iss string) configs.Tokens { cfg.Issuer = iss; return cfg }
	withPath := func(cfg configs.Tokens, p string) configs.Tokens { cfg.Path = p; return cfg }
	ed := keyConfig(t, configs.AlgEdDSA, pkcs8PEM(t, edKey))
	cases := []struct {
		name          string
		cfg           configs.Tokens
		refresh       bool
		host          string
		tls           bool
		wantIssuer    string
		wantToken     string
		wantJWKS      string // "" absent
		wantGrants    []string
		wantPaths     []string
		wantStaticURL bool // the Host does not matter
	}{
		{"HS256, name issuer, from the request", hsConfig(testSecret), true, "gw.example:8443", true,
			"keygate", "https://gw.example:8443/oauth/token", "", []string{"password", "refresh_token"}, []string{MetadataPath}, false},
		{"plain HTTP", hsConfig(testSecret), true, "127.0.0.1:8080", false,
			"keygate", "http://127.0.0.1:8080/oauth/token", "", []string{"password", "refresh_token"}, []string{MetadataPath}, false},
		{"IPv6 host", hsConfig(testSecret), true, "[2001:db8::1]:8080", false,
			"keygate", "http://[2001:db8::1]:8080/oauth/token", "", []string{"password", "refresh_token"}, []string{MetadataPath}, false},
		{"EdDSA publishes jwks_uri", ed, true, "gw.example", true,
			"keygate", "https://gw.example/oauth/token", "https://gw.example" + JWKSPath, []string{"password", "refresh_token"}, []string{MetadataPath}, false},
		{"without refresh tokens", hsConfig(testSecret), false, "gw.example", true,
			"keygate", "https://gw.example/oauth/token", "", []string{"password"}, []string{MetadataPath}, false},
		{"tokens.path /v1/oauth/token", withPath(hsConfig(testSecret), V1Path), true, "gw.example", true,
			"keygate", "https://gw.example" + V1Path, "", []string{"password", "refresh_token"}, []string{MetadataPath}, false},
		{"URL issuer", withIssuer(ed, "https://auth.example.com"), true, "internal:8080", false,
			"https://auth.example.com", "https://auth.example.com/oauth/token", "https://auth.example.com" + JWKSPath,
			[]string{"password", "refresh_token"}, []string{MetadataPath}, true},
		{"URL issuer with a path", withIssuer(hsConfig(testSecret), "https://auth.example.com/tenant/"), true, "internal", false,
			"https://auth.example.com/tenant/", "https://auth.example.com/oauth/token", "",
			[]string{"password", "refresh_token"}, []string{MetadataPath, MetadataPath + "/tenant"}, true},
		{"URL issuer with a query is a name", withIssuer(hsConfig(testSecret), "https://auth.example.com?x=1"), true, "gw.example", true,
			"https://auth.example.com?x=1", "https://gw.example/oauth/token", "", []string{"password", "refresh_token"}, []string{MetadataPath}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ep := mk(t, c.cfg, c.refresh)
			if p := ep.MetadataPaths(); !slices.Equal(p, c.wantPaths) {
				t.Errorf("MetadataPaths = %q, want %q", p, c.wantPaths)
			}
			r := getMetadata(t, ep, "GET", c.host, c.tls)
			m := parseMetadata(t, r)
			if m.Issuer != c.wantIssuer || m.TokenEndpoint != c.wantToken {
				t.Errorf("issuer %q token_endpoint %q, want %q %q", m.Issuer, m.TokenEndpoint, c.wantIssuer, c.wantToken)
			}
			if (m.JWKSURI == nil) != (c.wantJWKS == "") || (m.JWKSURI != nil && *m.JWKSURI != c.wantJWKS) {
				t.Errorf("jwks_uri %v, want %q", m.JWKSURI, c.wantJWKS)
			}
			if !slices.Equal(m.GrantTypesSupported, c.wantGrants) {
				t.Errorf("grant_types_supported %q, want %q", m.GrantTypesSupported, c.wantGrants)
			}
			if !slices.Equal(m.TokenAuthMethods, []string{"none", "client_secret_basic", "client_secret_post"}) {
				t.Errorf("token_endpoint_auth_methods_supported %q", m.TokenAuthMethods)
			}
			if m.ResponseTypesSupported == nil || len(*m.ResponseTypesSupported) != 0 || m.AuthorizationEndpoint != nil {
				t.Errorf("response_types_supported %v, authorization_endpoint %v: want [] and none", m.ResponseTypesSupported, m.AuthorizationEndpoint)
			}
			if cc := string(r.Header.Peek("Cache-Control")); cc != "public, max-age=300" {
				t.Errorf("Cache-Control %q", cc)
			}
			other := parseMetadata(t, getMetadata(t, ep, "GET", "other.example", !c.tls))
			if c.wantStaticURL != (other.TokenEndpoint == m.TokenEndpoint) {
				t.Errorf("another Host and scheme: token_endpoint %q (first %q)", other.TokenEndpoint, m.TokenEndpoint)
			}
		})
	}
}

// TestMetadataErrors: other methods and a Host that cannot go into a URL get
// keygate's JSON error shape, never an echo of the Host.
func TestMetadataErrors(t *testing.T) {
	f := newFixture(t, nil)
	cases := []struct {
		name, method, host string
		status             int
		code               string
	}{
		{"POST", "POST", "gw.example", 405, "method_not_allowed"},
		{"DELETE", "DELETE", "gw.example", 405, "method_not_allowed"},
		{"host with a quote", "GET", `gw"x`, 400, "bad_request"},
		{"host with a slash", "GET", "gw.example/evil", 400, "bad_request"},
		{"host with user info", "GET", "evil@gw.example", 400, "bad_request"},
		{"host with a space", "GET", "gw example", 400, "bad_request"},
	}
	for _, c := range cases {
		r := getMetadata(t, f.ep, c.method, c.host, false)
		if r.StatusCode() != c.status || apiErrorCode(t, r) != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, r.StatusCode(), r.Body(), c.status, c.code)
		}
		if c.status == 405 && string(r.Header.Peek("Allow")) != "GET, HEAD" {
			t.Errorf("%s: Allow %q", c.name, r.Header.Peek("Allow"))
		}
	}
	if r := getMetadata(t, f.ep, "HEAD", "gw.example", false); r.StatusCode() != 200 {
		t.Errorf("HEAD: %d", r.StatusCode())
	}
}

// FuzzValidHost: whatever validHost accepts stays inside the authority of
// the URL it is put in.
func FuzzValidHost(f *testing.F) {
	for _, s := range []string{"gw.example", "[::1]:80", "a/b", "a@b", "", "a\"b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if !validHost([]byte(h)) {
			return
		}
		var m serverMetadata
		m.doc.TokenEndpoint = "/oauth/token"
		var d metadata
		if err := json.Unmarshal(m.body("https://"+h), &d); err != nil {
			t.Fatalf("host %q: body not JSON: %v", h, err)
		}
		if d.TokenEndpoint != "https://"+h+"/oauth/token" {
			t.Fatalf("host %q: token_endpoint %q", h, d.TokenEndpoint)
		}
	})
}
