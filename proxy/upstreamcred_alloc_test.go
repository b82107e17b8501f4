//go:build !race

package proxy

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
)

// TestUpstreamCredentialWarmZeroAlloc: setting a cached credential (static
// and OAuth2 token) on a request allocates nothing.
func TestUpstreamCredentialWarmZeroAlloc(t *testing.T) {
	f := newCredFixture(t)
	f.add(t, store.AdminAccount, "static", "bearer", nil, "tok")
	f.add(t, "acme", "cc", "oauth2_client_credentials",
		map[string]string{"token_url": f.srv.TokenURL, "client_id": "svc-client"}, "svc-secret-1")
	cfg := baseConfig(
		configs.Route{Name: "static", PathPrefix: "/s", Upstreams: []string{"http://127.0.0.1:1"}, UpstreamCredential: "static"},
		configs.Route{Name: "cc", PathPrefix: "/c", Upstreams: []string{"http://127.0.0.1:1"}, UpstreamCredential: "cc"},
	)
	p, err := New(ConfigOf(cfg), Options{UpstreamCredentials: f.m})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var req fasthttp.Request
	s := &scratch{now: time.Now()}
	for _, r := range p.Routes() {
		if err := p.setUpstreamCredential(&req, s, r, "acme"); err != nil { // warm
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(500, func() {
			if err := p.setUpstreamCredential(&req, s, r, "acme"); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("route %s: %.1f allocs per request", r.Name, n)
		}
	}
}
