package upstreamcred

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"

	"github.com/keygate/keygate/store"
)

// Validation results recorded on a record.
const (
	ValidationOK      = "ok"
	ValidationSkipped = "skipped"
)

// Create checks, optionally validates, seals and stores a new credential.
// Errors: ErrNoKey, ErrBadRequest (malformed), *ValidationError (validation
// failed; nothing stored), or the store's.
func (m *Manager) Create(ctx context.Context, c *store.UpstreamCredential, secret []byte, validate bool) error {
	if m.keys == nil {
		return ErrNoKey
	}
	typ, ok := Lookup(c.Type)
	if !ok {
		return fmt.Errorf("unknown type (one of %v): %w", TypeNames(), ErrBadRequest)
	}
	if c.Fields == nil {
		c.Fields = map[string]string{}
	}
	if err := store.ValidateUpstreamCredentialName(c.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := typ.Check(c.Fields, secret); err != nil {
		return err
	}
	if err := m.record(ctx, c, typ, secret, validate); err != nil {
		return err
	}
	return m.st.CreateUpstreamCredential(ctx, c)
}

// Update changes a credential's fields (nil: kept; the whole set
// otherwise) and/or its secret (nil: kept), validates the result unless
// told not to, and re-seals the secret under the current key (a record
// sealed under the previous key moves to the current one here).
func (m *Manager) Update(ctx context.Context, account, name string, fields map[string]string, secret []byte, validate bool) (*store.UpstreamCredential, error) {
	if m.keys == nil {
		return nil, ErrNoKey
	}
	c, err := m.st.GetUpstreamCredential(ctx, account, name)
	if err != nil {
		return nil, err
	}
	typ, ok := Lookup(c.Type)
	if !ok {
		return nil, fmt.Errorf("stored type is unknown: %w", ErrBadRequest)
	}
	if secret == nil {
		if secret, err = m.keys.Open(c); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		defer clear(secret)
	}
	if fields != nil {
		c.Fields = maps.Clone(fields)
	}
	if err := typ.Check(c.Fields, secret); err != nil {
		return nil, err
	}
	if err := m.record(ctx, c, typ, secret, validate); err != nil {
		return nil, err
	}
	if err := m.st.UpdateUpstreamCredential(ctx, c); err != nil {
		return nil, err
	}
	return c, nil
}

// record validates (or not) and seals the secret into c.
func (m *Manager) record(ctx context.Context, c *store.UpstreamCredential, typ Type, secret []byte, validate bool) error {
	if validate {
		if err := m.Validate(ctx, typ, c.Fields, secret); err != nil {
			return err
		}
		c.Validation, c.ValidatedAt = ValidationOK, m.now()
	} else {
		c.Validation, c.ValidatedAt = ValidationSkipped, m.now()
	}
	return m.keys.Seal(c, secret)
}

// Validate checks that a credential works: a token type fetches a token;
// with validate_url, one GET is sent there with the credential and must
// answer 2xx. The error is a *ValidationError without the secret.
func (m *Manager) Validate(ctx context.Context, typ Type, fields map[string]string, secret []byte) error {
	src, err := typ.Source(fields, secret, m.hc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.tmo)
	defer cancel()
	h, err := src.Fetch(ctx)
	if typ.Refreshes() {
		m.met.fetches.WithLabelValues(typ.Name()).Inc()
	}
	if err != nil {
		if typ.Refreshes() {
			m.met.failures.WithLabelValues(typ.Name()).Inc()
		}
		return FetchFailure(err)
	}
	u := fields[FieldValidateURL]
	if u == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, http.NoBody)
	if err != nil {
		return &ValidationError{Step: "validate_url", Reason: "the URL is not usable"}
	}
	req.Header.Set(h.Key, h.Value)
	resp, err := m.hc.Do(req)
	if err != nil {
		var reason = "the URL could not be reached"
		if errors.Is(err, context.DeadlineExceeded) {
			reason = "the URL did not answer in time"
		}
		return &ValidationError{Step: "validate_url", Reason: reason}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &ValidationError{Step: "validate_url", Status: resp.StatusCode, Reason: "the URL refused the credential"}
	}
	return nil
}

// Get, List and Delete pass through to the store (Delete publishes the
// invalidation that reaches every instance).
func (m *Manager) Get(ctx context.Context, account, name string) (*store.UpstreamCredential, error) {
	return m.st.GetUpstreamCredential(ctx, account, name)
}

// List lists an account's credentials.
func (m *Manager) List(ctx context.Context, account string) ([]store.UpstreamCredential, error) {
	return m.st.ListUpstreamCredentials(ctx, account)
}

// Delete deletes a credential.
func (m *Manager) Delete(ctx context.Context, account, name string) error {
	return m.st.DeleteUpstreamCredential(ctx, account, name)
}
