package upstreamcred

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// ValidationError says why a credential failed validation: the step, the
// HTTP status and the token endpoint's error code when there was one. Its
// message never contains the secret (FetchFailure builds it from the
// status and code only, never from a response body).
type ValidationError struct {
	Step   string // "token" or "validate_url"
	Status int    // 0: no HTTP answer
	Code   string // RFC 6749 error code, when the token endpoint gave one
	Reason string // what happened, free of secrets
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(e.Step)
	b.WriteString(": ")
	b.WriteString(e.Reason)
	if e.Status != 0 {
		fmt.Fprintf(&b, " (status %d", e.Status)
		if e.Code != "" {
			fmt.Fprintf(&b, ", error %q", e.Code)
		}
		b.WriteString(")")
	}
	return b.String()
}

// safeCode keeps an RFC 6749 error code only if it has the form of one
// (%x20-21 / %x23-5B / %x5D-7E, here narrowed to [A-Za-z0-9_.-], ≤ 64
// bytes): anything else may be an echo of the request.
func safeCode(c string) string {
	if len(c) == 0 || len(c) > 64 {
		return ""
	}
	for i := 0; i < len(c); i++ {
		ch := c[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-' || ch == '.') {
			return ""
		}
	}
	return c
}

// FetchFailure turns a token fetch error into a ValidationError that
// carries no secret: the status and error code of a token endpoint's
// refusal, or the kind of transport failure. The original error is
// dropped (x/oauth2 quotes the endpoint's body, which may echo the
// secret).
func FetchFailure(err error) *ValidationError {
	ve := &ValidationError{Step: "token"}
	var re *oauth2.RetrieveError
	var ue *url.Error
	var ne net.Error
	switch {
	case errors.As(err, &re):
		ve.Reason = "the token endpoint refused the request"
		if re.Response != nil {
			ve.Status = re.Response.StatusCode
		}
		code := re.ErrorCode
		if code == "" && len(re.Body) > 0 {
			var body struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(bytes.TrimSpace(re.Body), &body) == nil {
				code = body.Error
			}
		}
		ve.Code = safeCode(code)
	case errors.As(err, &ne) && ne.Timeout():
		ve.Reason = "the token endpoint did not answer in time"
	case errors.As(err, &ue):
		ve.Reason = "the token endpoint could not be reached"
	default:
		ve.Reason = "the token endpoint's answer was not usable"
	}
	return ve
}
