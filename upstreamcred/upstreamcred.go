// Package upstreamcred holds what keygate sends to an upstream on a route
// that names an upstream credential (DESIGN.md §12): the credential types
// (one file per type behind Type), encryption of their secrets at rest
// (AES-256-GCM, keyring.go), token fetching and refresh (manager.go) and
// validation.
//
// A secret never leaves this package in clear except as the header value
// sent upstream: errors, logs and metrics name the credential, its type and
// what failed (an HTTP status, a token endpoint's error code), never the
// secret, even when a token endpoint echoes it back.
package upstreamcred

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrNoKey: no encryption key is configured, so no credential may be
	// stored or read.
	ErrNoKey = errors.New("no upstream credentials key configured (upstream_credentials.key_file or KEYGATE_UPSTREAM_CREDENTIALS_KEY)")
	// ErrMissing: neither the caller's account nor account admin has the
	// credential a route names.
	ErrMissing = errors.New("upstream credential missing")
	// ErrUnavailable: the credential exists but no usable token could be
	// obtained (token endpoint failing and the last token expired).
	ErrUnavailable = errors.New("upstream credential unavailable")
	// ErrBadRequest: the credential's fields or secret are malformed.
	ErrBadRequest = errors.New("invalid upstream credential")
)

// Header is what a credential puts on an upstream request: one header,
// valid until Expiry (zero: no expiry).
type Header struct {
	Key    string
	Value  string
	Expiry time.Time
}

// Source produces a credential's header. Static types return the same
// header every time; token types fetch a new token per call.
type Source interface {
	Fetch(ctx context.Context) (Header, error)
}

// Type is one kind of upstream credential. Implementations are stateless.
type Type interface {
	// Name is the type's name in the API and the store.
	Name() string
	// Check validates the non-secret fields and the secret of a credential
	// (no I/O). Errors wrap ErrBadRequest and never contain the secret.
	Check(fields map[string]string, secret []byte) error
	// Source builds the header source of a checked credential; token
	// requests go through hc.
	Source(fields map[string]string, secret []byte, hc *http.Client) (Source, error)
	// Refreshes reports whether the type fetches tokens that expire.
	Refreshes() bool
}

var registry = map[string]Type{}

func register(t Type) { registry[t.Name()] = t }

// Lookup returns the registered type of that name.
func Lookup(name string) (Type, bool) {
	t, ok := registry[name]
	return t, ok
}

// TypeNames lists the registered type names, sorted.
func TypeNames() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Common non-secret fields.
const (
	// FieldValidateURL: when set, validation sends one GET with the
	// credential there and expects a 2xx.
	FieldValidateURL = "validate_url"
)

// allowFields checks that fields has only the named keys (plus
// validate_url) and the required ones are non-empty.
func allowFields(typ string, fields map[string]string, required []string, optional ...string) error {
	for k := range fields {
		if k != FieldValidateURL && !slices.Contains(required, k) && !slices.Contains(optional, k) {
			return fmt.Errorf("%s: unknown field %q: %w", typ, k, ErrBadRequest)
		}
	}
	for _, k := range required {
		if strings.TrimSpace(fields[k]) == "" {
			return fmt.Errorf("%s: field %q is required: %w", typ, k, ErrBadRequest)
		}
	}
	if u := fields[FieldValidateURL]; u != "" {
		if err := checkHTTPURL(typ, FieldValidateURL, u); err != nil {
			return err
		}
	}
	return nil
}

func checkHTTPURL(typ, field, u string) error {
	if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") || strings.ContainsAny(u, " \r\n\t") {
		return fmt.Errorf("%s: %s must be an http(s) URL: %w", typ, field, ErrBadRequest)
	}
	return nil
}

// checkHeaderValue refuses what cannot go into a header value.
func checkHeaderValue(typ, what string, v []byte) error {
	if len(v) == 0 {
		return fmt.Errorf("%s: %s is empty: %w", typ, what, ErrBadRequest)
	}
	for _, c := range v {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return fmt.Errorf("%s: %s contains a control character: %w", typ, what, ErrBadRequest)
		}
	}
	return nil
}

// scopes splits a scopes field (space or comma separated).
func scopes(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
}
