package proxy

import (
	"errors"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/httpx"
)

// HTTPError is an error that carries the HTTP status, a snake_case code and a
// message safe to show to the client, written as
// {"error":{"code":"...","message":"..."}}: the listeners' one error type
// (internal/httpx).
type HTTPError = httpx.Error

// Errors the pipeline answers with. Match them with errors.Is (they are
// pointers, so identity comparison works) or errors.As for the status.
var (
	ErrBadPath           = &HTTPError{Status: fasthttp.StatusBadRequest, Code: "bad_path", Message: "ambiguous or malformed request path"}
	ErrDuplicateAuth     = &HTTPError{Status: fasthttp.StatusBadRequest, Code: "bad_request", Message: "more than one Authorization header"}
	ErrBadHost           = &HTTPError{Status: fasthttp.StatusBadRequest, Code: "bad_request", Message: "missing or duplicate Host header"}
	ErrMalformedHost     = &HTTPError{Status: fasthttp.StatusBadRequest, Code: "bad_host", Message: "malformed Host header"}
	ErrMethodOverride    = &HTTPError{Status: fasthttp.StatusBadRequest, Code: "method_override", Message: "a _method query parameter or form field is not allowed on a method-restricted route"}
	ErrSmuggling         = &HTTPError{Status: fasthttp.StatusBadRequest, Code: "bad_request", Message: "ambiguous message framing or malformed header"}
	ErrUnauthorized      = &HTTPError{Status: fasthttp.StatusUnauthorized, Code: "unauthorized", Message: "authentication required"}
	ErrForbidden         = &HTTPError{Status: fasthttp.StatusForbidden, Code: "forbidden", Message: "not allowed"}
	ErrNotFound          = &HTTPError{Status: fasthttp.StatusNotFound, Code: "not_found", Message: "no route for this request"}
	ErrMethodNotAllowed  = &HTTPError{Status: fasthttp.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "method not allowed on this route"}
	ErrInternal          = &HTTPError{Status: fasthttp.StatusInternalServerError, Code: "internal_error", Message: "internal error"}
	ErrBadGateway        = &HTTPError{Status: fasthttp.StatusBadGateway, Code: "bad_gateway", Message: "upstream unavailable"}
	ErrOverloaded        = &HTTPError{Status: fasthttp.StatusServiceUnavailable, Code: "overloaded", Message: "too many concurrent connections"}
	ErrUpstreamBusy      = &HTTPError{Status: fasthttp.StatusServiceUnavailable, Code: "upstream_busy", Message: "no free upstream connection"}
	ErrUpstreamTimeout   = &HTTPError{Status: fasthttp.StatusGatewayTimeout, Code: "upstream_timeout", Message: "upstream did not answer in time"}
	errNoAvailableClient = &HTTPError{Status: fasthttp.StatusBadGateway, Code: "bad_gateway", Message: "no upstream available"}
	// fasthttp could not read the request (internal/httpx.ReadError).
	ErrBadRequest     = httpx.ErrBadRequest
	ErrRequestTimeout = httpx.ErrRequestTimeout
	ErrBodyTooLarge   = httpx.ErrBodyTooLarge
	ErrHeaderTooLarge = httpx.ErrHeaderTooLarge
)

// WriteError writes err as the JSON error body with its status. Any error is
// mapped with errors.As to *HTTPError; anything else becomes 500
// "internal_error" and its text is never shown. The response body and
// Content-Type are replaced; other response headers already set are kept.
func WriteError(ctx *fasthttp.RequestCtx, err error) {
	var he *HTTPError
	if !errors.As(err, &he) || he == nil || he.Status < 400 || he.Status > 599 {
		he = ErrInternal
	}
	httpx.WriteError(ctx, he)
}
