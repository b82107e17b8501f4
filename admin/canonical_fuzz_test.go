package admin

import (
	"slices"
	"testing"
)

// canonicalPath never panics; what it accepts the router accepts, its
// result is a fixed point, and it names the same decoded segments as the
// raw path (so the plugin is asked about exactly what the router acts on).
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/", "/v1/accounts/acme/users/svc%2Dbot/api-keys", "/v1/a%2Fb", "/debug/pprof/",
		"/v1/%2e%2e/x", "//x", "/v1/%zz", "/v1/a%00b", "/v1/%C3%A9/x", "/v1/a;b/c", "/v1/a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, ok := canonicalPath(raw)
		trimmed := raw
		if len(trimmed) > 1 && trimmed[len(trimmed)-1] == '/' {
			trimmed = trimmed[:len(trimmed)-1]
		}
		segs, routable := splitPath(trimmed)
		if ok != routable {
			t.Fatalf("canonicalPath(%q) ok=%v, router ok=%v", raw, ok, routable)
		}
		if !ok {
			return
		}
		c2, ok2 := canonicalPath(c)
		if !ok2 || c2 != c {
			t.Fatalf("not a fixed point: %q → %q → %q (%v)", raw, c, c2, ok2)
		}
		ct := c
		if len(ct) > 1 && ct[len(ct)-1] == '/' {
			ct = ct[:len(ct)-1]
		}
		csegs, _ := splitPath(ct)
		if !slices.Equal(segs, csegs) {
			t.Fatalf("segments differ: %q %v vs %q %v", raw, segs, c, csegs)
		}
	})
}
