package forwardauth

import (
	"bufio"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/configs"
)

// BenchmarkCheckVsProxy compares, on the same decision stack and a cache
// hit, one forward-auth check (nginx auth_request shape) with one request
// proxied to a loopback upstream (which runs in this process: its CPU is in
// the proxied figure, as keygate's own client and server work is).
// Issue 15's goal: check ≤ 0.6 × proxied.
func BenchmarkCheckVsProxy(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	must(b, err)
	us := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString(`{"ok":true}`) }}
	go func() { _ = us.Serve(ln) }()
	defer func() { _ = us.Shutdown() }()
	e := newEnv(b, func(c *configs.Config) { c.Routes[0].Upstreams = []string{"http://" + ln.Addr().String()} })
	defer e.prx.Close()
	alice := basic("alice", testPassword)
	run := func(b *testing.B, raw string, h fasthttp.RequestHandler) {
		var tmpl fasthttp.Request
		must(b, tmpl.Read(bufio.NewReader(strings.NewReader(raw))))
		var ctx fasthttp.RequestCtx
		ctx.Init(&tmpl, loopback, nil)
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := processCPU()
		for b.Loop() {
			tmpl.CopyTo(&ctx.Request)
			ctx.Response.Reset()
			h(&ctx)
			if ctx.Response.StatusCode() != 200 {
				b.Fatalf("status %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
		}
		// Process CPU (user+system, every goroutine: fasthttp's client and
		// the upstream included) per operation, beside the wall ns/op.
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	}
	b.Run("check", func(b *testing.B) {
		run(b, "GET /auth HTTP/1.1\r\nHost: svc.example\r\nX-Original-Method: GET\r\nX-Original-URI: /api/users/42?x=1\r\nAuthorization: "+alice+"\r\nAccept: */*\r\n\r\n", e.f.Handler)
	})
	b.Run("proxied", func(b *testing.B) {
		run(b, "GET /api/users/42?x=1 HTTP/1.1\r\nHost: svc.example\r\nAuthorization: "+alice+"\r\nAccept: */*\r\n\r\n", e.prx.Handler)
	})
}

func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
