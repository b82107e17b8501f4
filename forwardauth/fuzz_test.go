package forwardauth

import (
	"testing"
)

// FuzzCheckHTTP: whatever the front proxy's description of the original
// request (method, host, URI in each mode), the answer is one of 200, 401,
// 403, 429, 503; a refusal has a JSON body, an allow none.
func FuzzCheckHTTP(f *testing.F) {
	e := newEnv(f, nil)
	alice := basic("alice", testPassword)
	for _, s := range [][4]string{
		{"GET", "svc", "/api/x?y=1", "fwd"}, {"POST", "", "/public/../api", "orig"}, {"", "", "/check/api", "envoy"},
		{"GET", "a:1", "//x", "fwd"}, {"G T", "x y", "/%2e%2e/", "orig"}, {"GET", "svc", "*", "fwd"}, {"GET", "", "/check?x", "envoy"},
	} {
		f.Add(s[0], s[1], s[2], s[3], true)
	}
	f.Fuzz(func(t *testing.T, method, host, uri, mode string, auth bool) {
		var hdr []string
		reqURI := "/"
		switch mode {
		case "fwd":
			hdr = []string{"X-Forwarded-Method", method, "X-Forwarded-Host", host, "X-Forwarded-Uri", uri}
		case "orig":
			hdr = []string{"X-Original-Method", method, "X-Original-URI", uri}
		default:
			if uri == "" || uri[0] != '/' {
				return // not a request line fasthttp would parse
			}
			reqURI = uri
		}
		if auth {
			hdr = append(hdr, "Authorization", alice)
		}
		r := e.check(loopback, "GET", reqURI, hdr...)
		switch r.StatusCode() {
		case 200:
			if len(r.Body()) != 0 {
				t.Fatalf("200 with a body %q", r.Body())
			}
		case 401, 403, 429, 503:
			errCode(t, r.Body())
		default:
			t.Fatalf("status %d for %q %q %q (%s)", r.StatusCode(), method, host, uri, mode)
		}
	})
}
