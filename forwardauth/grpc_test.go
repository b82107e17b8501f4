package forwardauth

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keygate/keygate/configs"
)

// startGRPC serves e's ext_authz server on a loopback port and returns a
// connected client.
func startGRPC(t *testing.T, e *env) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	gs := e.f.GRPCServer()
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// envoyCheck is the CheckRequest Envoy sends for a request (headers in
// lower case, pseudo-headers included, the downstream address as source).
func envoyCheck(method, host, path string, hdr map[string]string) *authv3.CheckRequest {
	h := map[string]string{":method": method, ":path": path, ":authority": host, "x-forwarded-proto": "https"}
	for k, v := range hdr {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "198.51.100.20", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Host: host, Path: path, Scheme: "https", Protocol: "HTTP/1.1", Headers: h,
		}},
	}}
}

func TestGRPCCheck(t *testing.T) {
	e := newEnv(t, nil)
	cl := authv3.NewAuthorizationClient(startGRPC(t, e))
	alice := basic("alice", testPassword)
	bob := basic("bob", testPassword)
	aliceID := []string{"alice", "acme", "dev,ops", "basic", "", ""}
	anon := []string{"", "", "", "", "", ""}
	cases := []struct {
		name       string
		method     string
		path       string
		hdr        map[string]string
		code       codes.Code
		status     int      // denied HTTP status
		errCode    string   // denied JSON code
		ident      []string // allowed identity values
		remove     []string // allowed: headers_to_remove (sorted as sent)
		challenges bool
	}{
		{name: "basic", method: "GET", path: "/api/x?y=1", hdr: map[string]string{"authorization": alice}, code: codes.OK, ident: aliceID, remove: []string{"authorization"}},
		{name: "api key", method: "POST", path: "/api/x", hdr: map[string]string{"authorization": "ApiKey " + b64(e.keyID+":"+e.key)}, code: codes.OK,
			ident: []string{"alice", "acme", "dev", "api_key", e.keyID, "ci"}, remove: []string{"authorization"}},
		{name: "spoofed identity removed", method: "GET", path: "/api/x", hdr: map[string]string{"authorization": alice, "x-auth-user": "root", "x_auth_roles": "admin", "x-auth-extra": "1"},
			code: codes.OK, ident: aliceID, remove: []string{"authorization", "x-auth-extra", "x_auth_roles"}},
		{name: "forward authorization", method: "GET", path: "/fwd/x", hdr: map[string]string{"authorization": alice}, code: codes.OK, ident: aliceID},
		{name: "public anonymous", method: "GET", path: "/public/x", code: codes.OK, ident: anon, remove: []string{"authorization"}},
		{name: "no credential", method: "GET", path: "/api/x", code: codes.Unauthenticated, status: 401, errCode: "unauthorized", challenges: true},
		{name: "bad password", method: "GET", path: "/api/x", hdr: map[string]string{"authorization": basic("alice", "nope")}, code: codes.Unauthenticated, status: 401, errCode: "invalid_credentials", challenges: true},
		{name: "role missing", method: "GET", path: "/ops/x", hdr: map[string]string{"authorization": bob}, code: codes.PermissionDenied, status: 403, errCode: "forbidden"},
		{name: "role held", method: "GET", path: "/ops/x", hdr: map[string]string{"authorization": alice}, code: codes.OK, ident: aliceID, remove: []string{"authorization"}},
		{name: "no route", method: "GET", path: "/nowhere", hdr: map[string]string{"authorization": alice}, code: codes.PermissionDenied, status: 403, errCode: "no_route"},
		{name: "ambiguous path", method: "GET", path: "/public/%2e%2e/api/x", hdr: map[string]string{"authorization": alice}, code: codes.PermissionDenied, status: 403, errCode: "bad_path"},
		{name: "method refused", method: "DELETE", path: "/ro/x", hdr: map[string]string{"authorization": alice}, code: codes.PermissionDenied, status: 403, errCode: "method_not_allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := cl.Check(ctx, envoyCheck(c.method, "svc.example", c.path, c.hdr))
			must(t, err)
			if got := codes.Code(resp.GetStatus().GetCode()); got != c.code { //nolint:gosec // a gRPC status code (0..16)
				t.Fatalf("grpc status %v, want %v (%v)", got, c.code, resp)
			}
			if c.code == codes.OK {
				ok := resp.GetOkResponse()
				if ok == nil {
					t.Fatalf("no ok response: %v", resp)
				}
				set := map[string]string{}
				for _, h := range ok.GetHeaders() {
					if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
						t.Fatalf("%s appended, want overwritten", h.GetHeader().GetKey())
					}
					set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
				}
				for i, n := range identityNames {
					v, present := set[strings.ToLower(n)]
					if !present || v != c.ident[i] {
						t.Fatalf("%s = %q (present %v), want %q", n, v, present, c.ident[i])
					}
				}
				if set["x-request-id"] == "" {
					t.Fatal("no request id")
				}
				rm := strings.Join(sorted(ok.GetHeadersToRemove()), ",")
				if rm != strings.Join(c.remove, ",") {
					t.Fatalf("headers_to_remove %q, want %q", rm, c.remove)
				}
				return
			}
			d := resp.GetDeniedResponse()
			if d == nil || int(d.GetStatus().GetCode()) != c.status {
				t.Fatalf("denied %v, want HTTP %d", resp, c.status)
			}
			if got := errCode(t, []byte(d.GetBody())); got != c.errCode {
				t.Fatalf("code %q, want %q", got, c.errCode)
			}
			var www int
			var ctype string
			for _, h := range d.GetHeaders() {
				switch h.GetHeader().GetKey() {
				case "www-authenticate":
					www++
				case "content-type":
					ctype = h.GetHeader().GetValue()
				case "content-length":
					t.Fatal("content-length in a denied response")
				}
			}
			if (www == 2) != c.challenges || ctype != "application/json" {
				t.Fatalf("challenges %d content-type %q", www, ctype)
			}
		})
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// A gRPC caller outside forward_auth.trusted_proxies is refused (403), and
// the health service answers SERVING on the same listener.
func TestGRPCUntrustedAndHealth(t *testing.T) {
	e := newEnv(t, func(c *configs.Config) { c.ForwardAuth.TrustedProxies = []string{"10.0.0.0/8"} })
	cc := startGRPC(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(cc).Check(ctx, envoyCheck("GET", "svc", "/public/x", nil))
	must(t, err)
	if d := resp.GetDeniedResponse(); d == nil || d.GetStatus().GetCode() != 403 || errCode(t, []byte(d.GetBody())) != "untrusted_peer" {
		t.Fatalf("untrusted: %v", resp)
	}
	for _, svc := range []string{"", "envoy.service.auth.v3.Authorization"} {
		h, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		must(t, err)
		if h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v", svc, h.GetStatus())
		}
	}
	// A request without HTTP attributes is a gRPC error, not a decision.
	if _, err := authv3.NewAuthorizationClient(cc).Check(ctx, &authv3.CheckRequest{}); err == nil {
		t.Fatal("empty request accepted")
	}
}

// A limited route (issue 19): allowed checks carry RateLimit-Policy and
// RateLimit in response_headers_to_add, as the HTTP checks answer them; past
// the policy, denied 429 (RESOURCE_EXHAUSTED) with Retry-After and the
// rate-limit headers.
func TestGRPCRateLimit(t *testing.T) {
	e := newEnv(t, func(c *configs.Config) {
		c.RateLimits.Policies = []configs.RatePolicy{{Name: "two", Requests: 2, Per: configs.Duration(time.Hour)}}
		for i := range c.Routes {
			c.Routes[i].RateLimit = "two"
		}
	})
	cl := authv3.NewAuthorizationClient(startGRPC(t, e))
	req := envoyCheck("GET", "svc.example", "/api/x", map[string]string{"authorization": "ApiKey " + b64(e.keyID+":"+e.key)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 3 {
		resp, err := cl.Check(ctx, req)
		must(t, err)
		got := map[string]string{}
		if i < 2 {
			ok := resp.GetOkResponse()
			if codes.Code(resp.GetStatus().GetCode()) != codes.OK || ok == nil { //nolint:gosec // a gRPC status code
				t.Fatalf("check %d: %v, want OK", i, resp)
			}
			for _, h := range ok.GetResponseHeadersToAdd() {
				got[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			if !strings.Contains(got["ratelimit-policy"], "q=2") || !strings.Contains(got["ratelimit"], ";r=") {
				t.Fatalf("check %d: response headers %v, want ratelimit-policy and ratelimit", i, got)
			}
			continue
		}
		d := resp.GetDeniedResponse()
		if codes.Code(resp.GetStatus().GetCode()) != codes.ResourceExhausted || d == nil || d.GetStatus().GetCode() != 429 { //nolint:gosec // a gRPC status code
			t.Fatalf("check %d: %v, want denied 429", i, resp)
		}
		for _, h := range d.GetHeaders() {
			got[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		if got["retry-after"] == "" || got["ratelimit-policy"] == "" || errCode(t, []byte(d.GetBody())) != "rate_limited" {
			t.Fatalf("denied headers %v body %s; want retry-after, ratelimit-policy, rate_limited", got, d.GetBody())
		}
	}
}
