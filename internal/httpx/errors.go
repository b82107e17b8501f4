package httpx

import (
	"errors"
	"net"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// Error is an error that carries the HTTP status, a snake_case code and a
// message safe to show to the client. It is written as
// {"error":{"code":"...","message":"..."}} (DESIGN.md §6).
type Error struct {
	Status  int
	Code    string
	Message string
}

// Error implements error. It returns the code and the message, never more.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errors for requests fasthttp could not read (ReadError).
var (
	ErrBadRequest     = &Error{Status: fasthttp.StatusBadRequest, Code: "bad_request", Message: "malformed request"}
	ErrRequestTimeout = &Error{Status: fasthttp.StatusRequestTimeout, Code: "request_timeout", Message: "request not received in time"}
	ErrBodyTooLarge   = &Error{Status: fasthttp.StatusRequestEntityTooLarge, Code: "body_too_large", Message: "request body too large"}
	ErrHeaderTooLarge = &Error{Status: fasthttp.StatusRequestHeaderFieldsTooLarge, Code: "header_too_large", Message: "request header too large"}
)

// WriteError answers with e: its status, Content-Type application/json and
// the JSON error body. The body is replaced; other response headers already
// set are kept. It does not allocate.
func WriteError(ctx *fasthttp.RequestCtx, e *Error) {
	Write(ctx, e.Status, e.Code, e.Message)
}

// Write answers with status and the JSON error body of code and message (see
// WriteError).
func Write(ctx *fasthttp.RequestCtx, status int, code, message string) {
	ctx.Response.ResetBody()
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	var buf [256]byte
	ctx.Response.SetBody(AppendErrorJSON(buf[:0], code, message))
}

// AppendErrorJSON appends {"error":{"code":code,"message":msg}} to dst, the
// bytes encoding/json would write for that shape.
func AppendErrorJSON(dst []byte, code, msg string) []byte {
	dst = append(dst, `{"error":{"code":`...)
	dst = AppendJSONString(dst, code)
	dst = append(dst, `,"message":`...)
	dst = AppendJSONString(dst, msg)
	return append(dst, "}}"...)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string literal, byte for byte as
// encoding/json.Marshal writes a string: <, > and & escaped, \b \f \n \r \t
// short, other control characters \u00XX, U+2028 and U+2029 escaped and
// invalid UTF-8 replaced by U+FFFD.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '<', '>', '&':
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				if c < 0x20 {
					dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
				} else {
					dst = append(dst, c)
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// ReadError maps an error fasthttp reports for a request it could not read
// to the answer: 431 header too large, 413 body too large, 408 read
// timeout, 400 anything else.
func ReadError(err error) *Error {
	var sb *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &sb):
		return ErrHeaderTooLarge
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return ErrBodyTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		return ErrRequestTimeout
	}
	return ErrBadRequest
}

// ErrorHandler is a fasthttp.Server ErrorHandler: it answers a request
// fasthttp could not read with the JSON error of ReadError.
func ErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	ctx.Response.Reset()
	WriteError(ctx, ReadError(err))
}
