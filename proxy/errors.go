package proxy

import (
	"errors"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// HTTPError is an error that carries the HTTP status, a snake_case code and a
// message safe to show to the client. It is written as
// {"error":{"code":"...","message":"..."}}.
type HTTPError struct {
	Status  int
	Code    string
	Message string
}

// Error implements error. It returns the code and the message, never more.
func (e *HTTPError) Error() string { return e.Code + ": " + e.Message }

// Errors the pipeline answers with. Match them with errors.Is (they are
// pointers, so identity comparison works) or errors.As for the status.
var (
	ErrBadRequest        = &HTTPError{Status: fasthttp.StatusBadRequest, Code: "bad_request", Message: "malformed request"}
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
	ErrRequestTimeout    = &HTTPError{Status: fasthttp.StatusRequestTimeout, Code: "request_timeout", Message: "request not received in time"}
	ErrBodyTooLarge      = &HTTPError{Status: fasthttp.StatusRequestEntityTooLarge, Code: "body_too_large", Message: "request body too large"}
	ErrHeaderTooLarge    = &HTTPError{Status: fasthttp.StatusRequestHeaderFieldsTooLarge, Code: "header_too_large", Message: "request header too large"}
	ErrInternal          = &HTTPError{Status: fasthttp.StatusInternalServerError, Code: "internal_error", Message: "internal error"}
	ErrBadGateway        = &HTTPError{Status: fasthttp.StatusBadGateway, Code: "bad_gateway", Message: "upstream unavailable"}
	ErrOverloaded        = &HTTPError{Status: fasthttp.StatusServiceUnavailable, Code: "overloaded", Message: "too many concurrent connections"}
	ErrUpstreamBusy      = &HTTPError{Status: fasthttp.StatusServiceUnavailable, Code: "upstream_busy", Message: "no free upstream connection"}
	ErrUpstreamTimeout   = &HTTPError{Status: fasthttp.StatusGatewayTimeout, Code: "upstream_timeout", Message: "upstream did not answer in time"}
	errNoAvailableClient = &HTTPError{Status: fasthttp.StatusBadGateway, Code: "bad_gateway", Message: "no upstream available"}
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
	ctx.Response.ResetBody()
	ctx.Response.SetStatusCode(he.Status)
	ctx.Response.Header.SetContentType("application/json")
	var buf [256]byte
	ctx.Response.SetBody(appendErrorJSON(buf[:0], he.Code, he.Message))
}

// appendErrorJSON appends {"error":{"code":code,"message":msg}} to dst.
func appendErrorJSON(dst []byte, code, msg string) []byte {
	dst = append(dst, `{"error":{"code":`...)
	dst = appendJSONString(dst, code)
	dst = append(dst, `,"message":`...)
	dst = appendJSONString(dst, msg)
	return append(dst, "}}"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string literal. Invalid UTF-8 is
// replaced by U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20 || c == 0x7f || c == '<' || c == '>' || c == '&':
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
