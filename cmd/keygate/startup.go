package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/internal/httpx"
	"github.com/keygate/keygate/proxy"
	"github.com/keygate/keygate/store"
)

// Start-up with a store that is not reachable yet (Redis starting next to
// keygate, as under docker compose): serve binds its listeners and answers
// at once, and initialises the store (store.BootstrapTo) in the background,
// retrying with backoff for store.startup_timeout. Until it succeeds:
//
//   - GET /readyz answers 503 {"status":"starting",…,"failed":["startup"]};
//     /healthz and /metrics work;
//   - the public listener answers 503 (Retry-After: 1) to requests that
//     carry credentials and to the token endpoint; routes with auth none,
//     and anonymous requests on optional routes, are served;
//   - the admin API answers 503 {"error":{"code":"starting",…}}.
//
// Past store.startup_timeout keygate exits 1 with the last error. Errors
// that retrying cannot fix (anything not wrapping store.ErrUnavailable)
// exit at once, as does any failure when startup_timeout is 0.
const (
	startupFirstBackoff = 100 * time.Millisecond
	startupMaxBackoff   = time.Second
	// bootstrapAttempt bounds one bootstrap attempt (a few round trips).
	bootstrapAttempt = 30 * time.Second
	// startingRetryAfter is the Retry-After of the 503s while starting: the
	// store is tried again within one backoff at most.
	startingRetryAfter = startupMaxBackoff
)

var (
	errStarting = &admin.ReadyState{Status: "starting",
		Reason: "the store is not reachable yet; retrying until store.startup_timeout"}
	startingHTTPError = &proxy.HTTPError{Status: fasthttp.StatusServiceUnavailable, Code: "starting",
		Message: "keygate is starting: the identity store is not reachable yet; retry later"}
	startingAdminBody = httpx.AppendErrorJSON(nil, "starting", "keygate is starting: the store is not reachable yet; retry later")
	startingTokenBody = []byte(`{"error":"temporarily_unavailable","error_description":"keygate is starting; retry later"}`)
)

// startupTimeoutOf is store.startup_timeout (0: no retry).
func (g *gateway) startupTimeoutOf() time.Duration { return g.cfg.Store.StartupTimeout.D() }

// initStoreFirst makes the first bootstrap attempt, before the listeners
// serve. It returns exitOK when the store is initialised or will be retried
// in the background (g.retryStore true), else the exit code after printing
// the reason.
func (g *gateway) initStoreFirst() int {
	g.storeDeadline = time.Now().Add(g.startupTimeoutOf())
	err := g.bootstrapOnce()
	switch {
	case err == nil:
		g.started.Store(true)
		return exitOK
	case errors.Is(err, store.ErrUnavailable) && g.startupTimeoutOf() > 0:
		g.retryStore = true
		g.log.Warn("store not reachable at start; serving 503 and retrying",
			zap.String("store", storeDriver(g.cfg)), zap.Duration("startup_timeout", g.startupTimeoutOf()), zap.Error(err))
		return exitOK
	default:
		fmt.Fprintf(g.e.stderr, "keygate: cannot initialise the store: %v\n", err)
		return exitFailure
	}
}

// bootstrapOnce runs store.BootstrapTo once, within bootstrapAttempt and the
// start-up deadline.
func (g *gateway) bootstrapOnce() error {
	ctx, cancel := context.WithTimeout(context.Background(), bootstrapAttempt)
	defer cancel()
	if g.startupTimeoutOf() > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithDeadline(ctx, g.storeDeadline)
		defer c2()
	}
	// A generated password goes to a 0600 file whose path is printed, or to
	// the terminal when stderr is one (passwordSink), never into the log.
	created, err := store.BootstrapTo(ctx, g.store, g.hasher().Hash, g.adminPassword, passwordSink(g.cfg, g.e.stderr))
	if err != nil {
		return err
	}
	g.adminPassword = "" // kept until the bootstrap succeeded: a retry needs it
	if created {
		g.log.Info("store initialised: created account and user \"admin\"")
	}
	return nil
}

// retryStoreLoop retries the bootstrap with backoff until it succeeds, the
// start-up deadline passes (an error on fatal) or ctx ends.
func (g *gateway) retryStoreLoop(ctx context.Context, fatal chan<- error) {
	backoff := startupFirstBackoff
	attempts := 1
	for {
		wait := min(backoff, time.Until(g.storeDeadline))
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		attempts++
		err := g.bootstrapOnce()
		switch {
		case err == nil:
			g.started.Store(true)
			g.log.Info("store reachable: serving", zap.Int("attempts", attempts),
				zap.Duration("after", time.Since(g.storeDeadline.Add(-g.startupTimeoutOf())).Round(time.Millisecond)))
			return
		case !errors.Is(err, store.ErrUnavailable):
			fatal <- fmt.Errorf("cannot initialise the store: %w", err)
			return
		case !time.Now().Before(g.storeDeadline):
			fatal <- fmt.Errorf("the %s store was not reachable within store.startup_timeout (%s, %d attempts); last error: %w",
				storeDriver(g.cfg), g.startupTimeoutOf(), attempts, err)
			return
		}
		g.log.Warn("store not reachable yet; retrying", zap.Int("attempt", attempts),
			zap.Duration("remaining", time.Until(g.storeDeadline).Round(time.Second)), zap.Error(err))
		backoff = min(2*backoff, startupMaxBackoff)
	}
}

// readyChecks are the admin /readyz checks of serve.
func (g *gateway) readyChecks() []admin.ReadyCheck {
	return []admin.ReadyCheck{{Name: "startup", Check: func(context.Context) error {
		if g.started.Load() {
			return nil
		}
		return errStarting
	}}}
}

// startGate answers for the authenticator while the store is not
// initialised: a request with credentials gets 503 (nothing could verify
// them); one without is anonymous as usual.
type startGate struct {
	g    *gateway
	next proxy.Authenticator
}

func (s startGate) Authenticate(ctx *fasthttp.RequestCtx, r *proxy.Route, client netip.Addr) (*authn.Identity, error) {
	if !s.g.started.Load() && len(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)) > 0 {
		httpx.SetRetryAfter(&ctx.Response.Header, startingRetryAfter)
		return nil, startingHTTPError
	}
	return s.next.Authenticate(ctx, r, client)
}

// gateHandler wraps a handler that needs the store: 503 body until started.
func (g *gateway) gateHandler(h fasthttp.RequestHandler, body []byte) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if g.started.Load() {
			h(ctx)
			return
		}
		httpx.SetRetryAfter(&ctx.Response.Header, startingRetryAfter)
		ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}
}

// gateAdmin lets /healthz, /readyz and /metrics through while starting and
// answers 503 to the admin API.
func (g *gateway) gateAdmin(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	gated := g.gateHandler(h, startingAdminBody)
	return func(ctx *fasthttp.RequestCtx) {
		if g.started.Load() {
			h(ctx)
			return
		}
		switch p := ctx.Path(); {
		case bytes.Equal(p, []byte("/healthz")), bytes.Equal(p, []byte("/readyz")), bytes.Equal(p, []byte("/metrics")):
			h(ctx)
		default:
			gated(ctx)
		}
	}
}
