package proxy

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/configs"
)

// clientRecorder records the client address the pipeline hands to
// authentication.
type clientRecorder struct{ got chan netip.Addr }

func (c clientRecorder) Authenticate(_ *fasthttp.RequestCtx, _ *Route, client netip.Addr) (*authn.Identity, error) {
	c.got <- client
	return nil, nil
}

// One rule for the client address, in the pipeline and in ClientAddr (the
// token endpoint's): the peer, or behind a trusted proxy the rightmost hop
// that is not trusted, over every X-Forwarded-For line (issue 12.6: the
// token endpoint read only the first line).
func TestClientAddrOneRule(t *testing.T) {
	up := newUpstream(t)
	cfg := baseConfig(configs.Route{Name: "opt", PathPrefix: "/", Upstreams: []string{up.url()}, Auth: configs.AuthOptional})
	cfg.TrustedProxies = []string{"127.0.0.0/8", "10.0.0.0/8"}
	rec := clientRecorder{got: make(chan netip.Addr, 1)}
	p, addr := startProxy(t, cfg, Options{Authenticator: rec})
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"no header: the peer", nil, "127.0.0.1"},
		{"one line", []string{"X-Forwarded-For: 203.0.113.9"}, "203.0.113.9"},
		{"two lines: the last one counts", []string{"X-Forwarded-For: 198.51.100.1", "X-Forwarded-For: 203.0.113.9"}, "203.0.113.9"},
		{"two lines, trusted hop last", []string{"X-Forwarded-For: 198.51.100.1", "X-Forwarded-For: 203.0.113.9, 10.1.2.3"}, "203.0.113.9"},
		{"spoofed left part ignored", []string{"X-Forwarded-For: 1.2.3.4, 203.0.113.9"}, "203.0.113.9"},
		{"malformed hop: nothing left of it", []string{"X-Forwarded-For: 203.0.113.9", "X-Forwarded-For: junk"}, "127.0.0.1"},
		{"all trusted: the peer", []string{"X-Forwarded-For: 10.0.0.1, 10.0.0.2"}, "127.0.0.1"},
		{"underscore spelling is the same header", []string{"X-Forwarded-For: 198.51.100.1", "X_Forwarded_For: 203.0.113.7"}, "203.0.113.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDo(t, addr, get("/x", tc.lines...))
			if r.Status != 200 {
				t.Fatalf("status %d %s", r.Status, r.Body)
			}
			if got := <-rec.got; got.String() != tc.want {
				t.Fatalf("pipeline: client %v, want %s", got, tc.want)
			}
			ctx := endpointCtx(t, get("/oauth/token", tc.lines...), net.IPv4(127, 0, 0, 1))
			if got := p.ClientAddr(ctx); got.String() != tc.want {
				t.Fatalf("ClientAddr: %v, want %s", got, tc.want)
			}
		})
	}
}

// A forwarding header from a peer not in trusted_proxies is counted every
// time and logged once per peer (issue 13.11).
func TestUntrustedForwardedWarning(t *testing.T) {
	up := newUpstream(t)
	core, logs := observer.New(zap.WarnLevel)
	reg := prometheus.NewRegistry()
	cfg := baseConfig(stdRoutes(up.url())...)
	p, addr := startProxy(t, cfg, Options{Logger: zap.New(core), Registerer: reg})
	sends := []struct {
		lines []string
		count bool
	}{
		{[]string{"X-Forwarded-For: 203.0.113.9"}, true},
		{[]string{"Forwarded: for=203.0.113.9"}, true},
		{[]string{"x-forwarded-for: 203.0.113.9", "X-Forwarded-For: 198.51.100.2"}, true},
		{[]string{"X-Forwarded-Proto: https"}, false},
		{nil, false},
	}
	want := 0.0
	for i, s := range sends {
		if r := rawDo(t, addr, get("/public/x", s.lines...)); r.Status != 200 {
			t.Fatalf("send %d: status %d", i, r.Status)
		}
		if s.count {
			want++
		}
	}
	// The token endpoint's path counts the same way.
	ctx := endpointCtx(t, get("/oauth/token", "X-Forwarded-For: 203.0.113.9"), net.IPv4(192, 0, 2, 55))
	if got := p.ClientAddr(ctx); got.String() != "192.0.2.55" {
		t.Fatalf("untrusted peer's XFF honoured: %v", got)
	}
	want++
	if got := counterValue(t, reg, "keygate_untrusted_forwarded_total"); got != want {
		t.Fatalf("keygate_untrusted_forwarded_total = %v, want %v", got, want)
	}
	lines := logs.FilterMessageSnippet("not in trusted_proxies").All()
	if len(lines) != 2 {
		t.Fatalf("%d warnings, want one per peer (2): %v", len(lines), lines)
	}
	for _, l := range lines {
		if !strings.Contains(l.ContextMap()["peer"].(string), ".") {
			t.Fatalf("warning without the peer: %v", l.ContextMap())
		}
	}
	// Bounded: many peers log at most untrustedPeersMax lines plus one.
	u := &untrustedForwarded{log: zap.NewNop()}
	for i := range 3 * untrustedPeersMax {
		u.note(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if len(u.seen) != untrustedPeersMax || u.lines != untrustedPeersMax+1 {
		t.Fatalf("%d peers remembered, %d lines", len(u.seen), u.lines)
	}
}

// endpointCtx is the RequestCtx of raw received from peer.
func endpointCtx(t *testing.T, raw string, peer net.IP) *fasthttp.RequestCtx {
	t.Helper()
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(&req, &net.TCPAddr{IP: peer, Port: 5555}, nil)
	return ctx
}

// counterValue reads a counter without labels from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("%s not registered", name)
	return 0
}
