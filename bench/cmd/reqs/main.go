// Command reqs sends exactly -n requests to -url over -c keep-alive
// connections and fails unless every answer has status -status. bench/instr.sh
// uses it to drive a process running under valgrind --tool=callgrind, where
// a time-bounded load (wrk -d) would send an unknown number of requests.
//
//	reqs -url http://127.0.0.1:8080/x -n 2000 -c 4 -H 'Authorization: Basic …'
package main

import (
	"flag"
	"fmt"
	"log"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, "; ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	raw := flag.String("url", "", "URL to request (http)")
	n := flag.Int("n", 1000, "requests in all")
	c := flag.Int("c", 4, "connections")
	status := flag.Int("status", 200, "status every answer must have")
	var hs headers
	flag.Var(&hs, "H", "request header 'Name: value' (repeatable)")
	flag.Parse()
	u, err := url.Parse(*raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		log.Fatalf("reqs: -url must be an http URL")
	}
	hc := &fasthttp.HostClient{Addr: u.Host, MaxConns: *c, ReadTimeout: time.Minute, WriteTimeout: time.Minute}
	var left atomic.Int64
	left.Store(int64(*n))
	var bad atomic.Int64
	var wg sync.WaitGroup
	for range *c {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			req.SetRequestURI(*raw)
			for _, h := range hs {
				k, v, _ := strings.Cut(h, ":")
				req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			for left.Add(-1) >= 0 {
				if err := hc.Do(req, resp); err != nil || resp.StatusCode() != *status {
					if bad.Add(1) == 1 {
						log.Printf("reqs: status %d, error %v: %.200s", resp.StatusCode(), err, resp.Body())
					}
				}
			}
		})
	}
	wg.Wait()
	if b := bad.Load(); b > 0 {
		log.Fatalf("reqs: %d of %d requests failed", b, *n)
	}
	fmt.Printf("%d requests\n", *n)
}
