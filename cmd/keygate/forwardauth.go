package main

import (
	"context"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/keygate/keygate/forwardauth"
	"github.com/keygate/keygate/internal/httpx"
)

// fwdState is the forward-auth part of a gateway (DESIGN.md §11): the HTTP
// check listener and the Envoy ext_authz gRPC listener, each optional.
type fwdState struct {
	ln, grpcLn net.Listener
	srv        *fasthttp.Server
	grpcSrv    *grpc.Server
}

// bindForwardAuth opens the forward-auth listeners that are configured.
func (g *gateway) bindForwardAuth() error {
	fa := g.cfg.ForwardAuth
	var err error
	if fa.Listen != "" {
		if g.fwd.ln, err = net.Listen("tcp", fa.Listen); err != nil {
			return fmt.Errorf("cannot listen on %s (forward_auth.listen): %w", fa.Listen, err)
		}
	}
	if fa.GRPCListen != "" {
		if g.fwd.grpcLn, err = net.Listen("tcp", fa.GRPCListen); err != nil {
			return fmt.Errorf("cannot listen on %s (forward_auth.grpc_listen): %w", fa.GRPCListen, err)
		}
	}
	return nil
}

// buildForwardAuth builds the check servers on the proxy's decision.
func (g *gateway) buildForwardAuth(reg prometheus.Registerer) error {
	if g.fwd.ln == nil && g.fwd.grpcLn == nil {
		return nil
	}
	f, err := forwardauth.New(g.cfg, g.prx, forwardauth.Options{Logger: g.log.Named("forwardauth"), Registerer: reg})
	if err != nil {
		return err
	}
	if g.fwd.ln != nil {
		g.fwd.srv = f.Server()
	}
	if g.fwd.grpcLn != nil {
		g.fwd.grpcSrv = f.GRPCServer()
	}
	return nil
}

// serveForwardAuth starts the check listeners with serve (run's helper).
func (g *gateway) serveForwardAuth(serve func(string, net.Listener, func(net.Listener) error)) {
	if g.fwd.srv != nil {
		// Read and write deadlines armed coarsely, as on the public listener.
		serve("forward-auth", httpx.CoarseServerDeadlines(g.fwd.ln, g.fwd.srv.ReadTimeout, g.fwd.srv.WriteTimeout), g.fwd.srv.Serve)
	}
	if g.fwd.grpcSrv != nil {
		serve("forward-auth gRPC", g.fwd.grpcLn, g.fwd.grpcSrv.Serve)
	}
}

// forwardAuthFields are the start-up log fields of the check listeners.
func (g *gateway) forwardAuthFields() []zap.Field {
	var out []zap.Field
	if g.fwd.ln != nil {
		out = append(out, zap.String("forward_auth_listen", g.fwd.ln.Addr().String()))
	}
	if g.fwd.grpcLn != nil {
		out = append(out, zap.String("forward_auth_grpc_listen", g.fwd.grpcLn.Addr().String()))
	}
	return out
}

// shutdownForwardAuth stops the check listeners within ctx; it reports
// whether they stopped in time.
func (g *gateway) shutdownForwardAuth(ctx context.Context) bool {
	ok := true
	if g.fwd.srv != nil {
		if err := g.fwd.srv.ShutdownWithContext(ctx); err != nil {
			g.log.Error("shutdown did not finish in time", zap.String("listener", "forward-auth"), zap.Error(err))
			ok = false
		}
	}
	if g.fwd.grpcSrv != nil {
		done := make(chan struct{})
		go func() { g.fwd.grpcSrv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			g.fwd.grpcSrv.Stop()
			g.log.Error("shutdown did not finish in time", zap.String("listener", "forward-auth gRPC"))
			ok = false
		}
	}
	return ok
}

// closeForwardAuth closes listeners no server took over.
func (g *gateway) closeForwardAuth() {
	for _, ln := range []net.Listener{g.fwd.ln, g.fwd.grpcLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}
