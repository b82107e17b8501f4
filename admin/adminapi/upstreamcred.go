package adminapi

import "time"

// UpstreamCredential is an upstream credential as the API shows it
// (DESIGN.md §12): never the secret, only SecretSet. A caller who may only
// read names and types (a user of the account) gets Name and Type alone.
type UpstreamCredential struct {
	Account     string            `json:"account,omitempty"`
	Name        string            `json:"name"`
	Type        string            `json:"type"`
	Fields      map[string]string `json:"fields,omitempty"`
	SecretSet   bool              `json:"secret_set,omitempty"`
	CreatedAt   *time.Time        `json:"created_at,omitempty"`
	UpdatedAt   *time.Time        `json:"updated_at,omitempty"`
	ValidatedAt *time.Time        `json:"validated_at,omitempty"`
	// Validation is the last validation's result: "ok" or "skipped".
	Validation string `json:"validation,omitempty"`
}

// UpstreamCredentials is GET /v1/accounts/{account}/upstream-credentials.
type UpstreamCredentials struct {
	UpstreamCredentials []UpstreamCredential `json:"upstream_credentials"`
}

// CreateUpstreamCredential is the body of POST
// /v1/accounts/{account}/upstream-credentials (?validate=false skips the
// validation). Secret is write-only: a password, token, header value,
// client secret, or a Google service-account JSON key.
type CreateUpstreamCredential struct {
	Name   string            `json:"name"`
	Type   string            `json:"type"`
	Fields map[string]string `json:"fields,omitempty"`
	Secret *string           `json:"secret,omitempty"`
}

// UpdateUpstreamCredential is the body of PATCH
// /v1/accounts/{account}/upstream-credentials/{name}: Fields (when sent)
// replace every field; Secret (when sent) replaces the secret. The type
// does not change.
type UpdateUpstreamCredential struct {
	Fields *map[string]string `json:"fields,omitempty"`
	Secret *string            `json:"secret,omitempty"`
}
