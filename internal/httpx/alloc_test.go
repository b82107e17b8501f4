//go:build !race

package httpx

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// What the proxy calls on its request path does not allocate.
func TestNoAllocs(t *testing.T) {
	var ctx fasthttp.RequestCtx
	ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, nil)
	e := &Error{Status: 401, Code: "unauthorized", Message: "authentication required"}
	WriteError(&ctx, e)
	SetRetryAfter(&ctx.Response.Header, time.Second)
	for name, f := range map[string]func(){
		"WriteError":    func() { WriteError(&ctx, e) },
		"SetRetryAfter": func() { SetRetryAfter(&ctx.Response.Header, 1500*time.Millisecond) },
		"PeerAddr":      func() { _ = PeerAddr(&ctx) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocs", name, n)
		}
	}
}
