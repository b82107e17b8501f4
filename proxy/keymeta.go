package proxy

import (
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/internal/httpx/hdr"
)

// KeyMetaHeaderPrefix starts the header of each forwarded API key metadata
// member (routes[].forward_key_metadata): X-Auth-Key-Meta-<Name>. It is
// under the X-Auth- prefix, so clients' copies are stripped with every other
// identity header.
const KeyMetaHeaderPrefix = "X-Auth-Key-Meta-"

// KeyExpiresHeader is set on responses to requests made with an API key
// that expires within api_keys.expiry_warning: its expires_at in RFC 3339.
const KeyExpiresHeader = "Keygate-Key-Expires"

var hdrKeyExpires = []byte(KeyExpiresHeader)

// metaHeader is one forwarded metadata member, built once per route.
type metaHeader struct {
	name   string // the metadata member
	header []byte // X-Auth-Key-Meta-<Name>
}

// metaHeaders builds a route's metadata headers: "team" → X-Auth-Key-Meta-Team,
// "cost_center" → X-Auth-Key-Meta-Cost-Center ('_' becomes '-', each word
// capitalised, so proxies that drop names with '_' keep it).
func metaHeaders(names []string) []metaHeader {
	if len(names) == 0 {
		return nil
	}
	out := make([]metaHeader, 0, len(names))
	for _, n := range names {
		words := strings.FieldsFunc(n, func(r rune) bool { return r == '_' || r == '-' })
		for i, w := range words {
			words[i] = strings.ToUpper(w[:1]) + strings.ToLower(w[1:])
		}
		out = append(out, metaHeader{name: n, header: []byte(KeyMetaHeaderPrefix + strings.Join(words, "-"))})
	}
	return out
}

// injectMeta sets the route's metadata headers from the caller's API key
// (members the key lacks are not sent). It does not allocate.
func injectMeta(h *fasthttp.RequestHeader, r *Route, id *authn.Identity) {
	if id.Method != authn.MethodAPIKey || len(id.Meta) == 0 {
		return
	}
	for i := range r.meta {
		if v, ok := id.MetaValue(r.meta[i].name); ok {
			h.SetBytesKV(r.meta[i].header, hdr.BytesView(v))
		}
	}
}

// setKeyExpires adds Keygate-Key-Expires to the response when the request was
// made with an API key that expires within warn of now. It does not
// allocate (the value is built with the identity).
func setKeyExpires(h *fasthttp.ResponseHeader, id *authn.Identity, warn time.Duration, now time.Time) {
	if warn <= 0 || id == nil || id.Method != authn.MethodAPIKey || id.ExpiresHeader == "" {
		return
	}
	if now.Add(warn).After(id.ExpiresAt) {
		h.SetBytesKV(hdrKeyExpires, hdr.BytesView(id.ExpiresHeader))
	}
}

var emptyMeta = []byte{}

// SetCheckKeyHeaders sets, on the answer of an allowed forward-auth check,
// the route's metadata headers (each one present, empty when the caller has
// no such member or is not an API key, so a front proxy that copies them
// always overwrites a client's) and Keygate-Key-Expires when due at now
// (the request's start: fasthttp's RequestCtx.Time, no clock read). It does
// not allocate.
func (p *Proxy) SetCheckKeyHeaders(h *fasthttp.ResponseHeader, r *Route, id *authn.Identity, now time.Time) {
	for i := range r.meta {
		v := emptyMeta
		if id != nil && id.Method == authn.MethodAPIKey {
			if s, ok := id.MetaValue(r.meta[i].name); ok {
				v = hdr.BytesView(s)
			}
		}
		h.SetBytesKV(r.meta[i].header, v)
	}
	if id != nil && id.ExpiresHeader != "" && now.IsZero() {
		now = time.Now() // a RequestCtx not from a fasthttp.Server (tests)
	}
	setKeyExpires(h, id, p.cfg.KeyExpiryWarning, now)
}
