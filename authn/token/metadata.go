package token

import (
	"encoding/json"
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/httpx"
)

// MetadataPath serves the authorization server metadata (RFC 8414 §3).
const MetadataPath = "/.well-known/oauth-authorization-server"

// authMethods are the client authentication methods of the token endpoint
// as RFC 8414 and the IANA registry name them: each way authenticateClient
// accepts the public client "anonymous".
var authMethods = []string{
	"none",                // nothing, or client_id=anonymous in the form
	"client_secret_basic", // Authorization: Basic base64(anonymous:)
	"client_secret_post",  // client_id=anonymous&client_secret= in the form
}

// metadata is the RFC 8414 §2 document. What keygate has nothing for is
// left out, as §2 allows: authorization_endpoint (no grant uses one),
// scopes_supported (scope is ignored). response_types_supported is
// REQUIRED, and keygate has no response type: [].
type metadata struct {
	Issuer                 string   `json:"issuer"`
	TokenEndpoint          string   `json:"token_endpoint"`
	JWKSURI                string   `json:"jwks_uri,omitempty"`
	ResponseTypesSupported []string `json:"response_types_supported"`
	GrantTypesSupported    []string `json:"grant_types_supported"`
	TokenAuthMethods       []string `json:"token_endpoint_auth_methods_supported"`
}

// serverMetadata is what the Endpoint needs to answer MetadataPath.
type serverMetadata struct {
	doc   metadata // TokenEndpoint and JWKSURI are paths until joined
	paths []string
	// static is the whole body when tokens.issuer is an http(s) URL: the
	// endpoints are under its origin. Otherwise each request gets its own,
	// from the scheme and Host it came with.
	static []byte
}

func newServerMetadata(issuer, tokenPath string, jwks, refresh, clientCreds bool) *serverMetadata {
	m := &serverMetadata{paths: []string{MetadataPath}}
	m.doc = metadata{
		Issuer:                 issuer,
		TokenEndpoint:          tokenPath,
		ResponseTypesSupported: []string{},
		GrantTypesSupported:    []string{"password"},
		TokenAuthMethods:       authMethods,
	}
	if refresh {
		m.doc.GrantTypesSupported = append(m.doc.GrantTypesSupported, "refresh_token")
	}
	if clientCreds {
		m.doc.GrantTypesSupported = append(m.doc.GrantTypesSupported, GrantClientCredentials)
	}
	if jwks {
		m.doc.JWKSURI = JWKSPath
	}
	origin, path, ok := issuerOrigin(issuer)
	if !ok {
		return m
	}
	if path != "" {
		// RFC 8414 §3.1: the well-known suffix goes between the issuer's
		// host and its path.
		m.paths = append(m.paths, MetadataPath+path)
	}
	m.static = m.body(origin)
	return m
}

// issuerOrigin returns scheme://host and the path (without a trailing
// slash) of an issuer that is an http(s) URL without query, fragment or
// user info (RFC 8414 §2 wants https; http is allowed for tests and
// private networks).
func issuerOrigin(issuer string) (origin, path string, ok bool) {
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", "", false
	}
	return u.Scheme + "://" + u.Host, strings.TrimSuffix(u.EscapedPath(), "/"), true
}

func (m *serverMetadata) body(origin string) []byte {
	d := m.doc
	d.TokenEndpoint = origin + d.TokenEndpoint
	if d.JWKSURI != "" {
		d.JWKSURI = origin + d.JWKSURI
	}
	b, _ := json.Marshal(d) // strings and string slices only: cannot fail
	return b
}

// MetadataPaths are the exact paths MetadataHandler answers on:
// MetadataPath, and MetadataPath followed by the issuer's path when
// tokens.issuer is a URL with a path (RFC 8414 §3.1).
func (e *Endpoint) MetadataPaths() []string { return append([]string(nil), e.meta.paths...) }

// MetadataHandler serves the RFC 8414 authorization server metadata (GET
// or HEAD): issuer (tokens.issuer, as in the tokens' iss), token_endpoint,
// jwks_uri (EdDSA and RS256 only), grant_types_supported,
// token_endpoint_auth_methods_supported and response_types_supported ([]).
// The endpoint URLs are absolute: under the issuer's origin when
// tokens.issuer is an http(s) URL, otherwise built from the request's
// scheme (TLS or not) and Host. Errors use keygate's JSON error shape
// (DESIGN.md §6).
func (e *Endpoint) MetadataHandler(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		writeAPIError(ctx, errGetOnly)
		return
	}
	body := e.meta.static
	if body == nil {
		host := ctx.Request.Header.Host()
		if !validHost(host) {
			writeAPIError(ctx, errBadHost)
			return
		}
		scheme := "http://"
		if ctx.IsTLS() {
			scheme = "https://"
		}
		body = e.meta.body(scheme + string(host))
	}
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "public, max-age=300")
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBody(body)
}

// validHost reports whether a Host header value is a plain host[:port]
// (reg-name, IPv4 or bracketed IPv6 of RFC 3986 letters, digits and
// ".-:[]"), so that it can be put in a URL as is.
func validHost(h []byte) bool {
	if len(h) == 0 || len(h) > 255 {
		return false
	}
	for _, c := range h {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '-' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// Errors of the JWKS and metadata handlers, in keygate's JSON error shape
// (DESIGN.md §6), as every error of the public listener outside the OAuth
// token endpoint (whose errors are RFC 6749 §5.2's).
var (
	errGetOnly = &httpx.Error{Status: fasthttp.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "use GET or HEAD"}
	errBadHost = &httpx.Error{Status: fasthttp.StatusBadRequest, Code: "bad_request", Message: "missing or malformed Host header"}
	errNoJWKS  = &httpx.Error{Status: fasthttp.StatusNotFound, Code: "not_found",
		Message: "no JWKS: tokens are signed with HS256, a shared secret that has no public key"}
)

// writeAPIError answers with e; a 405 names the methods allowed.
func writeAPIError(ctx *fasthttp.RequestCtx, e *httpx.Error) {
	if e == errGetOnly {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET, HEAD")
	}
	httpx.WriteError(ctx, e)
}
