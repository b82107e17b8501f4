package upstreamcred

import (
	"errors"
	"strings"
	"testing"
)

func TestTypeCheck(t *testing.T) {
	sa := `{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n","token_uri":"http://127.0.0.1:1/token"}`
	//nolint:gosec // test data, not credentials
	tests := []struct {
		typ    string
		fields map[string]string
		secret string
		ok     bool
	}{
		{"basic", map[string]string{"username": "svc"}, "pw", true},
		{"basic", map[string]string{"username": "svc", "validate_url": "https://x/y"}, "pw", true},
		{"basic", map[string]string{"username": "svc", "validate_url": "ftp://x/y"}, "pw", false},
		{"basic", map[string]string{"username": "a:b"}, "pw", false},
		{"basic", map[string]string{}, "pw", false},
		{"basic", map[string]string{"username": "svc"}, "", false},
		{"basic", map[string]string{"username": "svc"}, "pw\r\nX-Evil: 1", false},
		{"basic", map[string]string{"username": "svc", "extra": "1"}, "pw", false},
		{"bearer", nil, "tok", true},
		{"bearer", nil, "", false},
		{"bearer", nil, "a\nb", false},
		{"header", map[string]string{"name": "X-Api-Key"}, "k", true},
		{"header", map[string]string{"name": "X Api"}, "k", false},
		{"header", map[string]string{"name": "Host"}, "k", false},
		{"header", map[string]string{"name": "content-length"}, "k", false},
		{"header", map[string]string{"name": "X-Auth-User"}, "k", false},
		{"header", map[string]string{"name": "x_auth_roles"}, "k", false},
		{"header", map[string]string{"name": "X-Forwarded-For"}, "k", false},
		{"oauth2_client_credentials", map[string]string{"token_url": "https://t/token", "client_id": "c"}, "s", true},
		{"oauth2_client_credentials", map[string]string{"token_url": "https://t/token", "client_id": "c", "scopes": "a b", "audience": "x", "auth_style": "params"}, "s", true},
		{"oauth2_client_credentials", map[string]string{"token_url": "https://t/token", "client_id": "c", "auth_style": "jwt"}, "s", false},
		{"oauth2_client_credentials", map[string]string{"token_url": "file:///etc/passwd", "client_id": "c"}, "s", false},
		{"oauth2_client_credentials", map[string]string{"client_id": "c"}, "s", false},
		{"oauth2_client_credentials", map[string]string{"token_url": "https://t/token", "client_id": "c"}, "", false},
		{"google_service_account", map[string]string{"scopes": "s"}, sa, true},
		{"google_service_account", map[string]string{}, sa, false},
		{"google_service_account", map[string]string{"scopes": "s"}, "not json, secret-xyz", false},
		{"google_service_account", map[string]string{"scopes": "s"}, strings.Replace(sa, "service_account", "user", 1), false},
		{"google_service_account", map[string]string{"scopes": "s"}, strings.Replace(sa, "http://127.0.0.1:1/token", "", 1), false},
	}
	for i, tc := range tests {
		typ, ok := Lookup(tc.typ)
		if !ok {
			t.Fatalf("type %s not registered", tc.typ)
		}
		err := typ.Check(tc.fields, []byte(tc.secret))
		if (err == nil) != tc.ok {
			t.Errorf("%d %s %v: err = %v, want ok %v", i, tc.typ, tc.fields, err, tc.ok)
		}
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Errorf("%d: error does not wrap ErrBadRequest: %v", i, err)
			}
			if len(tc.secret) > 3 && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("%d: error has the secret: %v", i, err)
			}
		}
	}
	if got := strings.Join(TypeNames(), ","); got != "basic,bearer,google_service_account,header,oauth2_client_credentials" {
		t.Errorf("TypeNames = %s", got)
	}
}

func TestStaticHeaders(t *testing.T) {
	tests := []struct {
		typ        string
		fields     map[string]string
		secret     string
		key, value string
	}{
		{"basic", map[string]string{"username": "svc"}, "pa:ss", "Authorization", "Basic c3ZjOnBhOnNz"},
		{"bearer", nil, "tok123", "Authorization", "Bearer tok123"},
		{"header", map[string]string{"name": "x-api-key"}, "k1", "X-Api-Key", "k1"},
	}
	for _, tc := range tests {
		typ, _ := Lookup(tc.typ)
		src, err := typ.Source(tc.fields, []byte(tc.secret), nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := src.Fetch(t.Context())
		if err != nil || h.Key != tc.key || h.Value != tc.value || !h.Expiry.IsZero() {
			t.Errorf("%s: %+v, %v", tc.typ, h, err)
		}
	}
}
