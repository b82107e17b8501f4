package admin

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// Mount hands a whole path prefix to its handler (the web UI under /ui),
// and nothing else: a longer first segment or another path goes to the
// router.
func TestMount(t *testing.T) {
	s := newServer(t, &pingStore{}, prometheus.NewRegistry())
	s.Mount("/ui", func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(299) })
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/ui", 299},
		{"/ui/", 299},
		{"/ui/keys/new", 299},
		{"/uix", 404},
		{"/u", 404},
		{"/healthz", 200},
		{"/v1/ui", 404},
	} {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(tc.path)
		s.Handler(&ctx)
		if got := ctx.Response.StatusCode(); got != tc.status {
			t.Errorf("%s: %d, want %d", tc.path, got, tc.status)
		}
		if cc := string(ctx.Response.Header.Peek("Cache-Control")); cc != "no-store" {
			t.Errorf("%s: Cache-Control %q", tc.path, cc)
		}
	}
	// The admin API's own paths pay no allocation for the mount check.
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/v1/nothing")
	if n := testing.AllocsPerRun(100, func() {
		p := ctx.Path()
		for _, m := range s.mounts {
			_ = mounted(p, m.prefix)
		}
	}); n != 0 {
		t.Errorf("mount check: %v allocs", n)
	}
}
