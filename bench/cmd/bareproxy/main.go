// Command bareproxy is the floor of the bench (issue 14): a fasthttp server
// whose handler hands every request to one fasthttp.HostClient and returns
// what the upstream answered. No checks, no header hygiene, no metrics, no
// logs: what keygate's `auth: none` route costs beyond this is keygate's own
// pipeline. It uses keygate's default server timeouts (read/write 30 s, idle
// 60 s) and an upstream pool like keygate's, so deadlines and keep-alive
// behave alike.
//
//	bareproxy -listen 127.0.0.1:9000 -upstream 127.0.0.1:9001
package main

import (
	"flag"
	"log"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "address to listen on")
	upstream := flag.String("upstream", "", "upstream host:port")
	flag.Parse()
	if *upstream == "" {
		log.Fatal("bareproxy: -upstream is required")
	}
	hc := &fasthttp.HostClient{
		Addr: *upstream, MaxConns: 1024, MaxIdleConnDuration: 4 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		NoDefaultUserAgentHeader: true, DisablePathNormalizing: true,
	}
	s := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
				ctx.Response.Reset()
				ctx.Error("bad gateway", fasthttp.StatusBadGateway)
			}
		},
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second,
		NoDefaultServerHeader: true, NoDefaultContentType: true,
	}
	log.Fatal(s.ListenAndServe(*listen))
}
