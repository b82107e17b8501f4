// Package echo is keygate's demo and test upstream (DESIGN.md §4): it answers
// every request with 200 and a JSON description of exactly what arrived, so
// anyone can see what keygate forwarded.
package echo

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/valyala/fasthttp"
)

// Response is the JSON body the echo server answers with.
type Response struct {
	// Method is the request method as received.
	Method string `json:"method"`
	// Path is the raw path exactly as it arrived (request-target up to '?'),
	// without decoding or normalisation.
	Path string `json:"path"`
	// Query is the raw query string (after '?', without the fragment).
	Query string `json:"query"`
	// Headers holds every header as received: names in their original
	// spelling, repeated headers as several values in arrival order.
	Headers map[string][]string `json:"headers"`
	// BodySize is the number of body bytes read.
	BodySize int `json:"body_size"`
}

// Limits of the echo server built by NewServer. They are generous so that the
// gateway in front, not the echo, is what enforces limits in tests.
const (
	MaxRequestBodySize = 64 << 20
	ReadBufferSize     = 256 << 10
	Timeout            = 30 * time.Second
	IdleTimeout        = 60 * time.Second
)

// Describe builds the Response for a request. It copies everything it
// keeps, so the result stays valid after the handler returns.
func Describe(req *fasthttp.Request) Response {
	uri := req.Header.RequestURI()
	path, query := uri, []byte(nil)
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		path, query = uri[:i], uri[i+1:]
	}
	if i := bytes.IndexByte(query, '#'); i >= 0 {
		query = query[:i]
	}
	r := Response{
		Method:   string(req.Header.Method()),
		Path:     string(path),
		Query:    string(query),
		Headers:  make(map[string][]string, req.Header.Len()),
		BodySize: len(req.Body()),
	}
	if len(req.Header.RawHeaders()) > 0 {
		// Re-read the raw header block: original order, spelling and
		// repetitions (fasthttp folds some of them into fields otherwise).
		for k, v := range req.Header.AllInOrder() {
			name := string(k)
			r.Headers[name] = append(r.Headers[name], string(v))
		}
	} else {
		for k, v := range req.Header.All() {
			name := string(k)
			r.Headers[name] = append(r.Headers[name], string(v))
		}
	}
	return r
}

// Handler answers every request with 200 and the JSON Response.
func Handler(ctx *fasthttp.RequestCtx) {
	body, err := json.Marshal(Describe(&ctx.Request))
	if err != nil { // cannot happen: strings, ints and maps of strings only
		ctx.Error(`{"error":{"code":"internal","message":"cannot encode"}}`, fasthttp.StatusInternalServerError)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

// NewServer returns the echo server: Handler, header names kept exactly as
// received, and explicit limits and timeouts.
func NewServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                       Handler,
		Name:                          "keygate-echo",
		DisableHeaderNamesNormalizing: true,
		NoDefaultDate:                 true,
		ReadBufferSize:                ReadBufferSize,
		MaxRequestBodySize:            MaxRequestBodySize,
		ReadTimeout:                   Timeout,
		WriteTimeout:                  Timeout,
		IdleTimeout:                   IdleTimeout,
		CloseOnShutdown:               true,
	}
}
