package upstreamcred

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
)

// basic: HTTP Basic (RFC 7617). Field username; the secret is the password.
type basicType struct{}

func (basicType) Name() string    { return "basic" }
func (basicType) Refreshes() bool { return false }

func (t basicType) Check(fields map[string]string, secret []byte) error {
	if err := allowFields(t.Name(), fields, []string{"username"}); err != nil {
		return err
	}
	if strings.ContainsRune(fields["username"], ':') {
		return fmt.Errorf("basic: username may not contain ':': %w", ErrBadRequest)
	}
	if err := checkHeaderValue(t.Name(), "username", []byte(fields["username"])); err != nil {
		return err
	}
	return checkHeaderValue(t.Name(), "password", secret)
}

func (basicType) Source(fields map[string]string, secret []byte, _ *http.Client) (Source, error) {
	v := "Basic " + base64.StdEncoding.EncodeToString([]byte(fields["username"]+":"+string(secret)))
	return staticSource{Header{Key: "Authorization", Value: v}}, nil
}

// staticSource returns one header forever.
type staticSource struct{ h Header }

func (s staticSource) Fetch(context.Context) (Header, error) { return s.h, nil }

func init() { register(basicType{}) }

var _ Type = basicType{}
