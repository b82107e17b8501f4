package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn"
)

// refusingLimiter refuses every reservation with a fixed Retry-After.
type refusingLimiter struct{ ra time.Duration }

func (l refusingLimiter) Reserve([]byte) (int64, bool, time.Duration) { return 0, false, l.ra }
func (refusingLimiter) Release([]byte, int64)                         {}

// failingAuth answers every credential with err.
type failingAuth struct{ err error }

func (a failingAuth) Authenticate(context.Context, *authn.Credentials) (*authn.Identity, error) {
	return nil, a.err
}

// The chain's errors become the documented answers, and Retry-After is
// whole seconds rounded up (as authn documents and the admin API does); it
// was truncated here (1.5 s gave 1).
func TestChainAuthenticatorAnswers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		lim        authn.FailureLimiter
		authErr    error
		header     string
		status     int
		code       string
		retryAfter string
		challenges []string
	}{
		{name: "rate limited 1.5s", lim: refusingLimiter{1500 * time.Millisecond}, header: "Basic dXNlcjpwYXNz",
			status: 429, code: "rate_limited", retryAfter: "2"},
		{name: "rate limited 59.001s", lim: refusingLimiter{59*time.Second + time.Millisecond}, header: "Basic dXNlcjpwYXNz",
			status: 429, code: "rate_limited", retryAfter: "60"},
		{name: "rate limited 200ms", lim: refusingLimiter{200 * time.Millisecond}, header: "Basic dXNlcjpwYXNz",
			status: 429, code: "rate_limited", retryAfter: "1"},
		{name: "store unavailable", authErr: authn.ErrUnavailable, header: "Basic dXNlcjpwYXNz",
			status: 503, code: "unavailable", retryAfter: "5"},
		{name: "wrong password", authErr: authn.ErrInvalidCredentials, header: "Basic dXNlcjpwYXNz",
			status: 401, code: "invalid_credentials",
			challenges: []string{`Basic realm="my realm"`, `Bearer realm="my realm"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			auth := failingAuth{tc.authErr}
			if tc.authErr == nil {
				auth = failingAuth{errors.New("not reached")}
			}
			chain, err := authn.NewChain(authn.ChainConfig{
				Methods:        []authn.Method{authn.MethodBasic},
				Authenticators: map[authn.CredKind]authn.Authenticator{authn.KindBasic: auth},
				IPLimiter:      tc.lim,
			})
			if err != nil {
				t.Fatal(err)
			}
			a := NewChainAuthenticator(chain, "my realm")
			var ctx fasthttp.RequestCtx
			ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1}, nil)
			ctx.Request.Header.Set(fasthttp.HeaderAuthorization, tc.header)
			id, err := a.Authenticate(&ctx, nil, netip.MustParseAddr("192.0.2.1"))
			var he *HTTPError
			if id != nil || !errors.As(err, &he) || he.Status != tc.status || he.Code != tc.code {
				t.Fatalf("got %v, %v; want %d %s", id, err, tc.status, tc.code)
			}
			if got := string(ctx.Response.Header.Peek(fasthttp.HeaderRetryAfter)); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			var got []string
			for _, v := range ctx.Response.Header.PeekAll(fasthttp.HeaderWWWAuthenticate) {
				got = append(got, string(v))
			}
			if len(got) != len(tc.challenges) || (len(got) > 0 && (got[0] != tc.challenges[0] || got[1] != tc.challenges[1])) {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenges)
			}
		})
	}
}
