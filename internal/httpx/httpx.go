// Package httpx is the HTTP layer shared by keygate's listeners (proxy,
// admin, the token endpoint): one error type and its JSON writer, one
// Retry-After formatter, one WWW-Authenticate builder, the peer address and
// the failure limiter's key of a client, one fasthttp server constructor
// from limits with its logger and error handler, one upstream HostClient
// setup, and the small header-value helpers they all need. It is modelled on
// VictoriaMetrics' lib/httpserver: small, no policy of its own beyond what
// every listener shares. Everything on the request path is allocation-free.
package httpx
