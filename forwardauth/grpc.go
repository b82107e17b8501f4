package forwardauth

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/valyala/fasthttp"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/proxy"
	"github.com/keygate/keygate/ratelimit"
)

// GRPCServer returns a gRPC server with envoy.service.auth.v3.Authorization
// (ext_authz v3) and the gRPC health service (grpc.health.v1.Health,
// SERVING for "" and the Authorization service). The caller serves it on
// forward_auth.grpc_listen and stops it (GracefulStop) on shutdown.
func (f *Server) GRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	gs := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(gs, &extAuthz{f: f})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	return gs
}

type extAuthz struct {
	authv3.UnimplementedAuthorizationServer
	f *Server
}

// addrConn gives a RequestCtx the peer address; it is never read from.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c *addrConn) RemoteAddr() net.Addr { return c.remote }
func (c *addrConn) LocalAddr() net.Addr  { return &net.TCPAddr{} }

var ctxPool = sync.Pool{New: func() any { return new(fasthttp.RequestCtx) }}

var hXFF = []byte("X-Forwarded-For")

// Check implements the Authorization service: the request Envoy describes
// is decided like an HTTP check (proxy.Proxy.Check). Allowed: OK with the
// identity headers to set (overwriting) and, to remove, client-sent
// identity headers under other spellings (x_auth_user, x-auth-other…) and
// Authorization unless the route forwards it. Denied: the HTTP status, the
// challenges or Retry-After and the JSON body. A gRPC error is returned
// only for a request with no HTTP attributes (Envoy always sends them).
func (x *extAuthz) Check(gctx context.Context, in *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	f := x.f
	hr := in.GetAttributes().GetRequest().GetHttp()
	if hr == nil {
		return nil, errStatus(codes.InvalidArgument, "attributes.request.http is required")
	}
	var remote net.Addr = &net.TCPAddr{}
	var peerIP netip.Addr
	if p, ok := peer.FromContext(gctx); ok && p.Addr != nil {
		remote = p.Addr
		if ap, err := netip.ParseAddrPort(p.Addr.String()); err == nil {
			peerIP = ap.Addr().Unmap()
		}
	}
	ctx := ctxPool.Get().(*fasthttp.RequestCtx)
	defer ctxPool.Put(ctx)
	ctx.Request.Reset()
	ctx.Response.Reset()
	ctx.Init2(&addrConn{remote: remote}, nil, false)
	if !f.isTrusted(peerIP) {
		return x.denied(ctx, proxy.ErrUntrustedPeer), nil
	}

	req := &ctx.Request
	req.Header.SetMethod(hr.GetMethod())
	req.Header.SetRequestURI(hr.GetPath())
	req.Header.SetHost(hr.GetHost())
	var remove []string
	addHeader := func(k, v string) {
		if k == "" || k[0] == ':' || strings.EqualFold(k, "host") {
			return
		}
		req.Header.Add(k, v)
		if f.prx.IsIdentityHeader([]byte(k)) && !x.isConfigured(k) {
			remove = append(remove, strings.ToLower(k))
		}
	}
	if hm := hr.GetHeaderMap(); hm != nil && len(hm.GetHeaders()) > 0 {
		for _, h := range hm.GetHeaders() {
			v := h.GetValue()
			if v == "" && len(h.GetRawValue()) > 0 {
				v = string(h.GetRawValue())
			}
			addHeader(h.GetKey(), v)
		}
	} else {
		for k, v := range hr.GetHeaders() {
			addHeader(k, v)
		}
	}
	// The client is Envoy's downstream peer: the rightmost hop.
	if src := in.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress(); src != "" {
		if a, err := netip.ParseAddr(src); err == nil {
			xff := req.Header.PeekBytes(hXFF)
			v := a.Unmap().String()
			if len(xff) > 0 {
				v = string(xff) + ", " + v
			}
			req.Header.SetBytesKV(hXFF, []byte(v))
		}
	}

	route, ident, err := f.prx.Check(ctx)
	if err != nil {
		return x.denied(ctx, err), nil
	}
	set := x.identityHeaders(ident)
	if rid := ctx.Response.Header.PeekBytes(f.names.RequestID); len(rid) > 0 {
		set = append(set, headerOpt(strings.ToLower(string(f.names.RequestID)), string(rid)))
	}
	set, respAdd, remove := keyHeaders(f.prx, ctx, route, ident, set, remove)
	respAdd = rateLimitHeaders(ctx, respAdd)
	if !route.ForwardAuthorization {
		remove = append(remove, "authorization")
	}
	f.checks[ModeEnvoyGRPC][resAllowed].Inc()
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              set,
			HeadersToRemove:      remove,
			ResponseHeadersToAdd: respAdd,
		}},
	}, nil
}

// keyHeaders adds what the route forwards of an API key's metadata
// (X-Auth-Key-Meta-*, each one set, empty when absent, and so not also
// removed) to the upstream headers, and Keygate-Key-Expires, when due, to
// the client's response (issue 18), as the HTTP checks answer them.
func keyHeaders(prx *proxy.Proxy, ctx *fasthttp.RequestCtx, route *proxy.Route, id *authn.Identity,
	set []*corev3.HeaderValueOption, remove []string) ([]*corev3.HeaderValueOption, []*corev3.HeaderValueOption, []string) {
	var h fasthttp.ResponseHeader
	prx.SetCheckKeyHeaders(&h, route, id, ctx.Time())
	var respAdd []*corev3.HeaderValueOption
	for k, v := range h.All() {
		name := strings.ToLower(string(k))
		switch {
		case strings.HasPrefix(name, strings.ToLower(proxy.KeyMetaHeaderPrefix)):
			set = append(set, headerOpt(name, string(v)))
			remove = slices.DeleteFunc(remove, func(r string) bool { return r == name })
		case name == strings.ToLower(proxy.KeyExpiresHeader):
			respAdd = append(respAdd, headerOpt(name, string(v)))
		}
	}
	return set, respAdd, remove
}

// rateLimitHeaders adds the RateLimit-Policy and RateLimit headers of an
// allowed check on a limited route (set by proxy.Check on ctx.Response) to
// the client's response, as the HTTP checks answer them (issue 19). A refusal
// carries them, with Retry-After, in the denied response (denied).
func rateLimitHeaders(ctx *fasthttp.RequestCtx, respAdd []*corev3.HeaderValueOption) []*corev3.HeaderValueOption {
	for _, n := range [...]string{ratelimit.HeaderPolicy, ratelimit.HeaderRateLimit} {
		if v := ctx.Response.Header.Peek(n); len(v) > 0 {
			respAdd = append(respAdd, headerOpt(strings.ToLower(n), string(v)))
		}
	}
	return respAdd
}

// isConfigured reports whether k is one of the configured identity header
// names (which the OK response overwrites rather than removes).
func (x *extAuthz) isConfigured(k string) bool {
	for _, n := range x.f.lowerNames {
		if strings.EqualFold(k, n) {
			return true
		}
	}
	return false
}

func headerOpt(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// identityHeaders are the identity headers to set, every one of them,
// empty when anonymous or not applicable.
func (x *extAuthz) identityHeaders(id *authn.Identity) []*corev3.HeaderValueOption {
	var v [6]string
	if id != nil {
		v[0], v[1], v[2], v[3] = id.Username, id.Account, id.RolesHeader, id.Method.String()
		if id.Method == authn.MethodAPIKey {
			v[4], v[5] = id.KeyID, id.KeyName
		}
	}
	out := make([]*corev3.HeaderValueOption, 0, 7)
	for i, n := range x.f.lowerNames {
		out = append(out, headerOpt(n, v[i]))
	}
	return out
}

// denied turns a refusal into Envoy's denied response: the HTTP status, the
// response headers the decision set (WWW-Authenticate, Retry-After, the
// request id) and the JSON body.
func (x *extAuthz) denied(ctx *fasthttp.RequestCtx, err error) *authv3.CheckResponse {
	x.f.deny(ctx, ModeEnvoyGRPC, err) // writes status, headers and body on ctx.Response; counts
	r := &ctx.Response
	var hdrs []*corev3.HeaderValueOption
	for k, v := range r.Header.All() {
		if strings.EqualFold(string(k), fasthttp.HeaderContentLength) {
			continue // Envoy frames the body itself
		}
		hdrs = append(hdrs, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: strings.ToLower(string(k)), Value: string(v)},
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
		})
	}
	code := codes.PermissionDenied
	switch r.StatusCode() {
	case fasthttp.StatusUnauthorized:
		code = codes.Unauthenticated
	case fasthttp.StatusTooManyRequests:
		code = codes.ResourceExhausted
	case fasthttp.StatusServiceUnavailable:
		code = codes.Unavailable
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(r.StatusCode())}, //nolint:gosec // an HTTP status (100..599)
			Headers: hdrs,
			Body:    string(r.Body()),
		}},
	}
}

func errStatus(c codes.Code, msg string) error { return grpcstatus.Error(c, msg) }
