package upstreamcred

import "net/http"

// bearer: a fixed token sent as Authorization: Bearer. No fields; the
// secret is the token.
type bearerType struct{}

func (bearerType) Name() string    { return "bearer" }
func (bearerType) Refreshes() bool { return false }

func (t bearerType) Check(fields map[string]string, secret []byte) error {
	if err := allowFields(t.Name(), fields, nil); err != nil {
		return err
	}
	return checkHeaderValue(t.Name(), "token", secret)
}

func (bearerType) Source(_ map[string]string, secret []byte, _ *http.Client) (Source, error) {
	return staticSource{Header{Key: "Authorization", Value: "Bearer " + string(secret)}}, nil
}

func init() { register(bearerType{}) }

var _ Type = bearerType{}
