package authz

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/httpx"
)

// NotifierOptions tune a Notifier. Zero values take the defaults.
type NotifierOptions struct {
	Logger     *zap.Logger           // nil: zap.NewNop()
	Registerer prometheus.Registerer // nil: no metrics registered
	// Timeout bounds one delivery (default: max(external.timeout, 5s);
	// lifecycle calls are off the request path).
	Timeout time.Duration
	// BackoffMin and BackoffMax bound the exponential retry delay (defaults
	// 500ms and 1m). Each delay is drawn from [d/2, d].
	BackoffMin, BackoffMax time.Duration
	// Batch is how many pending notifications one pass reads (default 100).
	Batch int
	// Idle is how long Run sleeps with nothing due when not woken by Notify
	// (default 30s; it also picks up notifications enqueued by another
	// process sharing the outbox).
	Idle time.Duration
}

// Notifier delivers lifecycle notifications from an Outbox to the plugin:
//
//	create principal → POST   {base}/v1/principals/{name}  body {"name":"<name>"}
//	delete principal → DELETE {base}/v1/principals/{name}
//	create domain    → POST   {base}/v1/domains/{name}     body {"name":"<name>"}
//	delete domain    → DELETE {base}/v1/domains/{name}
//
// signed like authorize calls and carrying X-Keygate-Notification-Id. A 2xx
// answer (or 404 to a DELETE) acknowledges the notification; anything else is
// retried with capped exponential backoff, forever: delivery is at least once
// and in enqueue order per (kind, name) — a later notification about a name
// waits for the earlier ones. While the plugin cannot be reached (refused,
// timeout) a pass stops at the first failure instead of trying every name.
type Notifier struct {
	out   Outbox
	resch Rescheduler // nil: retry state in mem
	mem   map[string]retryState
	p     *plugin
	opts  NotifierOptions
	log   *zap.Logger
	m     *notifierMetrics
	wake  chan struct{}
}

type retryState struct {
	attempts  int
	notBefore time.Time
}

// NewNotifier builds a Notifier for the plugin at cfg.Endpoint. Start it with
// Run.
func NewNotifier(cfg configs.External, out Outbox, opts NotifierOptions) (*Notifier, error) {
	if out == nil {
		return nil, errors.New("authz: notifier: nil outbox")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = max(cfg.Timeout.D(), 5*time.Second)
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = 500 * time.Millisecond
	}
	if opts.BackoffMax < opts.BackoffMin {
		opts.BackoffMax = max(time.Minute, opts.BackoffMin)
	}
	if opts.Batch <= 0 {
		opts.Batch = 100
	}
	if opts.Idle <= 0 {
		opts.Idle = 30 * time.Second
	}
	p, err := newPlugin(cfg.Endpoint, cfg.Secret, opts.Timeout)
	if err != nil {
		return nil, err
	}
	n := &Notifier{
		out:  out,
		mem:  map[string]retryState{},
		p:    p,
		opts: opts,
		log:  opts.Logger.With(zap.String("component", "authz_notifier")),
		m:    newNotifierMetrics(opts.Registerer),
		wake: make(chan struct{}, 1),
	}
	n.resch, _ = out.(Rescheduler)
	return n, nil
}

// Notify enqueues a notification durably and wakes the delivery loop. Call it
// after the store write it reports has committed.
func (n *Notifier) Notify(ctx context.Context, op, kind, name string) error {
	if err := n.out.Enqueue(ctx, Notification{Op: op, Kind: kind, Name: name}); err != nil {
		return err
	}
	n.Wake()
	return nil
}

// Wake makes Run look at the outbox now (e.g. after another component
// enqueued directly).
func (n *Notifier) Wake() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends, then returns ctx.Err(). Run one Notifier per
// outbox.
func (n *Notifier) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
		wait := n.pass(ctx)
		timer.Reset(wait)
	}
}

// pass delivers what is due and returns how long to wait before the next.
func (n *Notifier) pass(ctx context.Context) time.Duration {
	batch, err := n.out.Next(ctx, n.opts.Batch)
	if err != nil {
		if ctx.Err() == nil {
			n.log.Error("reading the authorization outbox", zap.Error(err))
		}
		return n.opts.BackoffMax
	}
	wait := n.opts.Idle
	blocked := map[string]bool{}
	delivered := 0
	for i := range batch {
		x := &batch[i]
		key := x.Kind + "\x00" + x.Name
		if blocked[key] {
			continue
		}
		st := retryState{attempts: x.Attempts, notBefore: x.NotBefore}
		if m, ok := n.mem[x.ID]; ok && m.attempts > st.attempts {
			st = m
		}
		now := time.Now()
		if now.Before(st.notBefore) {
			blocked[key] = true
			wait = min(wait, st.notBefore.Sub(now))
			continue
		}
		err := n.deliver(x)
		if err == nil {
			if aerr := n.out.Ack(ctx, x.ID); aerr != nil {
				// Redelivered later: at least once.
				n.log.Error("acknowledging an authorization notification", zap.String("id", x.ID), zap.Error(aerr))
				return n.opts.BackoffMin
			}
			delete(n.mem, x.ID)
			n.m.delivered.Inc()
			delivered++
			continue
		}
		if ctx.Err() != nil {
			return 0
		}
		n.m.retried.Inc()
		st.attempts++
		d := n.backoff(st.attempts)
		st.notBefore = time.Now().Add(d)
		if n.resch != nil {
			if rerr := n.resch.Reschedule(ctx, x.ID, st.attempts, st.notBefore); rerr != nil {
				n.log.Error("recording a notification retry", zap.String("id", x.ID), zap.Error(rerr))
				n.mem[x.ID] = st
			}
		} else {
			n.mem[x.ID] = st
		}
		var f *failure
		down := errors.As(err, &f) && f.status == 0
		n.log.Warn("authorization notification not delivered",
			zap.String("id", x.ID), zap.String("op", x.Op), zap.String("kind", x.Kind),
			zap.Int("attempts", st.attempts), zap.Duration("retry_in", d), zap.Error(err))
		blocked[key] = true
		wait = min(wait, d)
		if down {
			// The plugin is unreachable: do not try every other name now.
			return wait
		}
	}
	if delivered > 0 && len(batch) == n.opts.Batch {
		return 0 // more may be pending beyond this batch
	}
	return wait
}

// backoff returns the delay after the attempts-th failure: BackoffMin·2^(attempts-1)
// capped at BackoffMax, drawn from [d/2, d].
func (n *Notifier) backoff(attempts int) time.Duration {
	d := n.opts.BackoffMin
	for i := 1; i < attempts && d < n.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, n.opts.BackoffMax)
	half := d / 2
	return half + rand.N(d-half+1) //nolint:gosec // jitter, not a secret
}

// deliver sends one notification. nil means acknowledged by the plugin.
func (n *Notifier) deliver(x *Notification) error {
	path := n.p.base + PathPrincipals + "/" + url.PathEscape(x.Name)
	if x.Kind == KindDomain {
		path = n.p.base + PathDomains + "/" + url.PathEscape(x.Name)
	}
	method := fasthttp.MethodPost
	var body []byte
	if x.Op == OpDelete {
		method = fasthttp.MethodDelete
	} else {
		body = httpx.AppendJSONString([]byte(`{"name":`), x.Name)
		body = append(body, '}')
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	now := time.Now()
	n.p.prepare(req, method, path, body, now)
	req.Header.Set(HeaderNotificationID, x.ID)
	if err := n.p.hc.DoDeadline(req, resp, now.Add(n.opts.Timeout)); err != nil {
		return classifyTransport(err)
	}
	code := resp.StatusCode()
	if code >= 200 && code < 300 || code == fasthttp.StatusNotFound && x.Op == OpDelete {
		return nil
	}
	return &failure{kind: "status", status: code, err: fmt.Errorf("%w: notification rejected", ErrUnavailable)}
}
