package upstreamcred

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
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

// registeredCodes are the token endpoint error codes of RFC 6749 §5.2
// and the extensions in use (RFC 8707, RFC 6750 for temporarily_unavailable
// and server_error). Only these are reported: any other value may be an
// echo of what was sent, the secret included.
var registeredCodes = []string{"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
	"unsupported_grant_type", "invalid_scope", "invalid_target", "access_denied", "server_error",
	"temporarily_unavailable", "invalid_token", "insufficient_scope"}

// safeCode returns c if it is a registered error code, "other" if it is
// something else, "" if empty.
func safeCode(c string) string {
	switch {
	case c == "":
		return ""
	case slices.Contains(registeredCodes, c):
		return c
	default:
		return "other"
	}
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
