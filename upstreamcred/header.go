package upstreamcred

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
)

// header: one fixed header (an API key header such as X-Api-Key). Field
// name; the secret is the value.
type headerType struct{}

func (headerType) Name() string    { return "header" }
func (headerType) Refreshes() bool { return false }

// reservedHeaders may not carry a credential: framing, routing, hop-by-hop
// and keygate's own headers.
var reservedHeaders = []string{"Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive",
	"Te", "Trailer", "Upgrade", "Proxy-Connection", "Expect", "Cookie", "X-Request-Id", "Forwarded"}

func (t headerType) Check(fields map[string]string, secret []byte) error {
	if err := allowFields(t.Name(), fields, []string{"name"}); err != nil {
		return err
	}
	name := fields["name"]
	for i := 0; i < len(name); i++ {
		if !tokenByte(name[i]) {
			return fmt.Errorf("header: name is not a valid header name: %w", ErrBadRequest)
		}
	}
	canon := textproto.CanonicalMIMEHeaderKey(name)
	for _, r := range reservedHeaders {
		if canon == r {
			return fmt.Errorf("header: %s may not carry a credential: %w", r, ErrBadRequest)
		}
	}
	if n := strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(name)); strings.HasPrefix(n, "x-auth-") || strings.HasPrefix(n, "x-forwarded-") {
		return fmt.Errorf("header: identity and forwarding headers may not carry a credential: %w", ErrBadRequest)
	}
	return checkHeaderValue(t.Name(), "value", secret)
}

// tokenByte reports whether c may appear in a header name (RFC 9110 tchar).
func tokenByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func (headerType) Source(fields map[string]string, secret []byte, _ *http.Client) (Source, error) {
	return staticSource{Header{Key: textproto.CanonicalMIMEHeaderKey(fields["name"]), Value: string(secret)}}, nil
}

func init() { register(headerType{}) }

var _ Type = headerType{}
