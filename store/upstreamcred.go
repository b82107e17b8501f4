package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"
)

// UpstreamCredential is what keygate sends to an upstream on a route that
// names it (DESIGN.md §12). The store keeps the secret only as the opaque
// ciphertext upstreamcred sealed (AES-256-GCM); it never sees it in clear.
type UpstreamCredential struct {
	Account string `json:"account"`
	// Name is unique per account.
	Name string `json:"name"`
	// Type is one of upstreamcred's registered types; the store does not
	// interpret it beyond validating its form.
	Type string `json:"type"`
	// Fields are the type's non-secret settings (token_url, client_id,
	// scopes, validate_url, …).
	Fields map[string]string `json:"fields,omitempty"`
	// Sealed is the encrypted secret. Never serialised to clients.
	Sealed []byte `json:"-"`
	// KeyID names the encryption key Sealed was written under (a key
	// fingerprint, not the key).
	KeyID string `json:"-"`
	// Version is assigned by the store: 1 on create, +1 on every update.
	Version   uint64    `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// ValidatedAt and Validation record the last validation (zero and ""
	// when it was skipped).
	ValidatedAt time.Time `json:"validated_at,omitzero"`
	Validation  string    `json:"validation,omitempty"`
}

// Clone returns a deep copy of c.
func (c *UpstreamCredential) Clone() *UpstreamCredential {
	n := *c
	n.Fields = maps.Clone(c.Fields)
	n.Sealed = append([]byte(nil), c.Sealed...)
	return &n
}

// UpstreamCredentialRef names one upstream credential in an Invalidation.
type UpstreamCredentialRef struct {
	Account string `json:"a"`
	Name    string `json:"n"`
}

// UpstreamCredentials keeps the upstream credentials. Both drivers implement
// it (store.Driver) and pass storetest's UpstreamCredentials suite. Every
// write publishes Invalidation{UpstreamCredential: …} so that every
// instance drops its cached token and header at once; deleting an account
// deletes its credentials too.
type UpstreamCredentials interface {
	// CreateUpstreamCredential stores c (Version 1; CreatedAt and UpdatedAt
	// now when zero). ErrNotFound if the account does not exist,
	// ErrConflict if the account has a credential of that name.
	CreateUpstreamCredential(ctx context.Context, c *UpstreamCredential) error
	// GetUpstreamCredential reads one credential (ErrNotFound).
	GetUpstreamCredential(ctx context.Context, account, name string) (*UpstreamCredential, error)
	// ListUpstreamCredentials lists an account's credentials ordered by
	// name (empty, not ErrNotFound, for an account without any).
	ListUpstreamCredentials(ctx context.Context, account string) ([]UpstreamCredential, error)
	// UpdateUpstreamCredential replaces the stored record of c.Account and
	// c.Name if its Version still equals c.Version (compare-and-set:
	// ErrConflict otherwise, nothing changed; ErrNotFound if it is gone),
	// then sets c.Version to the next version and c.UpdatedAt to now.
	// CreatedAt is kept.
	UpdateUpstreamCredential(ctx context.Context, c *UpstreamCredential) error
	// DeleteUpstreamCredential deletes one credential (ErrNotFound).
	DeleteUpstreamCredential(ctx context.Context, account, name string) error
}

// MaxUpstreamFields bounds the number of non-secret fields of a credential;
// MaxUpstreamFieldLen the length of one value; MaxSealedLen the ciphertext.
const (
	MaxUpstreamFields   = 32
	MaxUpstreamFieldLen = 4096
	MaxSealedLen        = 64 << 10
)

// ValidateUpstreamCredentialName checks a credential name: the rules of
// account names (it appears in admin API paths and route configs).
func ValidateUpstreamCredentialName(name string) error {
	return validPathName("upstream credential name", name)
}

// ValidateUpstreamCredential checks what a store keeps of c and applies the
// defaults of a create (Version, timestamps) when create is set.
func ValidateUpstreamCredential(c *UpstreamCredential, now time.Time, create bool) error {
	if c == nil {
		return fmt.Errorf("nil upstream credential: %w", ErrInvalid)
	}
	if err := ValidateAccountName(c.Account); err != nil {
		return err
	}
	if err := ValidateUpstreamCredentialName(c.Name); err != nil {
		return err
	}
	if err := validName("upstream credential type", c.Type); err != nil {
		return err
	}
	if len(c.Fields) > MaxUpstreamFields {
		return fmt.Errorf("upstream credential: more than %d fields: %w", MaxUpstreamFields, ErrInvalid)
	}
	for k, v := range c.Fields {
		if err := validName("upstream credential field name", k); err != nil {
			return err
		}
		if len(v) > MaxUpstreamFieldLen {
			return fmt.Errorf("upstream credential: field %q longer than %d bytes: %w", k, MaxUpstreamFieldLen, ErrInvalid)
		}
	}
	if len(c.Sealed) == 0 || len(c.Sealed) > MaxSealedLen {
		return fmt.Errorf("upstream credential: sealed secret missing or longer than %d bytes: %w", MaxSealedLen, ErrInvalid)
	}
	if create {
		c.Version = 1
		if c.CreatedAt.IsZero() {
			c.CreatedAt = now
		}
		if c.UpdatedAt.IsZero() {
			c.UpdatedAt = c.CreatedAt
		}
	}
	return nil
}

// UpstreamCredentialInvalidation is what a write to (account, name)
// publishes.
func UpstreamCredentialInvalidation(account, name string) Invalidation {
	return Invalidation{UpstreamCredential: UpstreamCredentialRef{Account: account, Name: name}}
}

// upstreamRecord is how both drivers store a credential (JSON; account and
// name are the key).
type upstreamRecord struct {
	Type        string            `json:"t"`
	Fields      map[string]string `json:"f,omitempty"`
	Sealed      []byte            `json:"s"`
	KeyID       string            `json:"k,omitempty"`
	Version     uint64            `json:"v"`
	CreatedAt   time.Time         `json:"c"`
	UpdatedAt   time.Time         `json:"u"`
	ValidatedAt time.Time         `json:"va,omitzero"`
	Validation  string            `json:"vr,omitempty"`
}

// EncodeUpstreamCredential is the stored form of c, without its account
// and name (the drivers keep those in the key).
func EncodeUpstreamCredential(c *UpstreamCredential) ([]byte, error) {
	return json.Marshal(&upstreamRecord{Type: c.Type, Fields: c.Fields, Sealed: c.Sealed, KeyID: c.KeyID,
		Version: c.Version, CreatedAt: c.CreatedAt.UTC(), UpdatedAt: c.UpdatedAt.UTC(),
		ValidatedAt: c.ValidatedAt.UTC(), Validation: c.Validation})
}

// DecodeUpstreamCredential reads what EncodeUpstreamCredential wrote. A
// corrupt record is ErrUnavailable (the store cannot serve it; not the
// caller's fault).
func DecodeUpstreamCredential(account, name string, v []byte) (*UpstreamCredential, error) {
	var r upstreamRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("upstream credential %q in account %q: corrupt record: %w: %w", name, account, ErrUnavailable, err)
	}
	return &UpstreamCredential{Account: account, Name: name, Type: r.Type, Fields: r.Fields,
		Sealed: r.Sealed, KeyID: r.KeyID, Version: r.Version, CreatedAt: r.CreatedAt,
		UpdatedAt: r.UpdatedAt, ValidatedAt: r.ValidatedAt, Validation: r.Validation}, nil
}

// ErrUpstreamNotFound is the error of a missing credential.
func ErrUpstreamNotFound(account, name string) error {
	return fmt.Errorf("upstream credential %q in account %q: %w", name, account, ErrNotFound)
}

// ApplyUpstreamUpdate is the compare-and-set rule of
// UpdateUpstreamCredential: n must carry the stored record's version
// (ErrConflict otherwise); n then takes the next version, the stored
// CreatedAt and now as UpdatedAt.
func ApplyUpstreamUpdate(old, n *UpstreamCredential, now time.Time) error {
	if old.Version != n.Version {
		return fmt.Errorf("upstream credential %q in account %q changed meanwhile: %w", n.Name, n.Account, ErrConflict)
	}
	n.Version, n.CreatedAt, n.UpdatedAt = old.Version+1, old.CreatedAt, now
	return nil
}
