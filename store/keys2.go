package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"
	"unicode/utf8"
)

// Limits of the second-generation key fields (DESIGN.md §13), shared by both
// stores and the admin API.
const (
	// MaxMetadataLen bounds a key's metadata, compact JSON, in bytes.
	MaxMetadataLen = 4096
	// MaxMetadataKeys bounds the members of a key's metadata object.
	MaxMetadataKeys = 32
	// MaxMetadataKeyLen bounds one metadata member name, in bytes.
	MaxMetadataKeyLen = 64
	// MaxCIDRs bounds a key's allow-list.
	MaxCIDRs = 64
)

// KeyUpdate changes an API key (PATCH …/api-keys/{id}). Nil fields are left
// alone; a field added later (rate limits, quotas) is one more pointer here,
// one more case in ValidateKeyUpdate and ApplyKeyUpdate, and one more field
// in each store's codec.
type KeyUpdate struct {
	Description *string
	// Metadata replaces the metadata; an empty value or "{}" or "null"
	// clears it. ValidateMetadata compacts it.
	Metadata *json.RawMessage
	// Roles replaces the key's roles. Whether they are the owner's is the
	// admin API's rule (the owner's roles may change later: the effective
	// roles are an intersection).
	Roles *[]string
	// AllowedCIDRs replaces the allow-list; empty clears it.
	AllowedCIDRs *[]string
	// ExpiresAt moves the expiry earlier, never later: a key's life is never
	// extended. It may not be zero (that would extend a key that expires).
	ExpiresAt *time.Time
}

// Empty reports whether upd changes nothing.
func (upd KeyUpdate) Empty() bool {
	return upd.Description == nil && upd.Metadata == nil && upd.Roles == nil &&
		upd.AllowedCIDRs == nil && upd.ExpiresAt == nil
}

// KeyRotation is what RotateAPIKey needs beyond the old key: the salted hash
// of the new key's secret and how long the old key keeps working.
type KeyRotation struct {
	Hash []byte
	// Grace: the old key expires at min(its expiry, now + Grace); 0 kills it
	// at once (the leak case). Negative is invalid.
	Grace time.Duration
}

// ValidateMetadata checks m is a JSON object of at most MaxMetadataKeys
// members with names of 1–64 bytes [A-Za-z0-9_-] (they become header names:
// X-Auth-Key-Meta-<Name>), no duplicate names, and at most MaxMetadataLen
// bytes once compacted. It returns the compact form, nil for an empty value,
// "null" or "{}" (no metadata). Errors wrap ErrInvalid and never repeat a
// value.
func ValidateMetadata(m []byte) (json.RawMessage, error) {
	m = bytes.TrimSpace(m)
	if len(m) == 0 || string(m) == "null" {
		return nil, nil
	}
	if len(m) > 4*MaxMetadataLen {
		return nil, fmt.Errorf("metadata is longer than %d bytes: %w", MaxMetadataLen, ErrInvalid)
	}
	if !utf8.Valid(m) || !json.Valid(m) {
		return nil, fmt.Errorf("metadata is not valid JSON: %w", ErrInvalid)
	}
	if m[0] != '{' {
		return nil, fmt.Errorf("metadata must be a JSON object: %w", ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(m))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // '{'
		return nil, fmt.Errorf("metadata is not valid JSON: %w", ErrInvalid)
	}
	var names []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("metadata is not valid JSON: %w", ErrInvalid)
		}
		name, _ := t.(string)
		if !ValidMetadataKey(name) {
			return nil, fmt.Errorf("metadata member %d: a name is 1-%d characters [A-Za-z0-9_-]: %w", len(names), MaxMetadataKeyLen, ErrInvalid)
		}
		if slices.Contains(names, name) {
			return nil, fmt.Errorf("metadata member %q appears twice: %w", name, ErrInvalid)
		}
		names = append(names, name)
		if len(names) > MaxMetadataKeys {
			return nil, fmt.Errorf("metadata has more than %d members: %w", MaxMetadataKeys, ErrInvalid)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("metadata is not valid JSON: %w", ErrInvalid)
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, fmt.Errorf("metadata is not valid JSON: %w", ErrInvalid)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("metadata has trailing data: %w", ErrInvalid)
	}
	if len(names) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, m); err != nil {
		return nil, fmt.Errorf("metadata is not valid JSON: %w", ErrInvalid)
	}
	if buf.Len() > MaxMetadataLen {
		return nil, fmt.Errorf("metadata is longer than %d bytes: %w", MaxMetadataLen, ErrInvalid)
	}
	return json.RawMessage(buf.Bytes()), nil
}

// ValidMetadataKey reports whether name may name a metadata member: 1–64
// bytes of [A-Za-z0-9_-].
func ValidMetadataKey(name string) bool {
	if name == "" || len(name) > MaxMetadataKeyLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidateCIDRs checks an allow-list: at most MaxCIDRs IPv4 or IPv6 prefixes
// ("10.0.0.0/8", "2001:db8::/32") or single addresses (a /32 or /128), no
// zones. It returns the canonical form (masked prefixes, IPv4-mapped IPv6
// unmapped), without duplicates, nil when empty.
func ValidateCIDRs(cidrs []string) ([]string, error) {
	if len(cidrs) > MaxCIDRs {
		return nil, fmt.Errorf("more than %d allowed_cidrs: %w", MaxCIDRs, ErrInvalid)
	}
	var out []string
	for i, c := range cidrs {
		p, err := ParseCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("allowed_cidrs[%d] is not an IP address or CIDR prefix: %w", i, ErrInvalid)
		}
		if s := p.String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// ParseCIDR parses one allow-list entry (see ValidateCIDRs) into its
// canonical prefix.
func ParseCIDR(c string) (netip.Prefix, error) {
	if len(c) > 64 {
		return netip.Prefix{}, fmt.Errorf("too long: %w", ErrInvalid)
	}
	p, err := netip.ParsePrefix(c)
	if err != nil {
		a, aerr := netip.ParseAddr(c)
		if aerr != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("not a prefix: %w", ErrInvalid)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("an IPv4-mapped prefix shorter than /96: %w", ErrInvalid)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// ValidateKeyUpdate validates the non-nil fields of upd, normalising
// Metadata and AllowedCIDRs in place.
func ValidateKeyUpdate(upd *KeyUpdate) error {
	if upd.Description != nil {
		if err := ValidateDescription(*upd.Description); err != nil {
			return err
		}
	}
	if upd.Metadata != nil {
		m, err := ValidateMetadata(*upd.Metadata)
		if err != nil {
			return err
		}
		*upd.Metadata = m
	}
	if upd.Roles != nil {
		if err := ValidateRoles(*upd.Roles); err != nil {
			return err
		}
	}
	if upd.AllowedCIDRs != nil {
		c, err := ValidateCIDRs(*upd.AllowedCIDRs)
		if err != nil {
			return err
		}
		*upd.AllowedCIDRs = c
	}
	if upd.ExpiresAt != nil && upd.ExpiresAt.IsZero() {
		return fmt.Errorf("expires_at may only move earlier, never be removed: %w", ErrInvalid)
	}
	return nil
}

// checkActive refuses to change a key that is revoked or expired.
func checkActive(k *APIKey, now time.Time) error {
	switch k.Status(now) {
	case KeyRevoked:
		return fmt.Errorf("api key %s is revoked: %w", k.ID, ErrConflict)
	case KeyExpired:
		return fmt.Errorf("api key %s is expired: %w", k.ID, ErrConflict)
	default: // active
		return nil
	}
}

// ApplyKeyUpdate validates upd (ValidateKeyUpdate) against k and applies it.
// k must be active (ErrConflict otherwise). A key without expiry may be
// given one; a key with one may only get an earlier one (ErrInvalid). k is left unchanged on error. It reports
// whether anything changed; the store then writes k back and publishes an
// invalidation of the key. A store calls it on the record it read in the
// same transaction (or whose state its write re-checks).
func ApplyKeyUpdate(k *APIKey, upd KeyUpdate, now time.Time) (bool, error) {
	if err := ValidateKeyUpdate(&upd); err != nil {
		return false, err
	}
	if err := checkActive(k, now); err != nil {
		return false, err
	}
	if upd.ExpiresAt != nil && !k.ExpiresAt.IsZero() && upd.ExpiresAt.After(k.ExpiresAt) {
		return false, fmt.Errorf("api key %s: expires_at may only move earlier (a key's life is never extended): %w", k.ID, ErrInvalid)
	}
	changed := false
	if upd.Description != nil && *upd.Description != k.Description {
		k.Description, changed = *upd.Description, true
	}
	if upd.Metadata != nil && !bytes.Equal(*upd.Metadata, k.Metadata) {
		k.Metadata, changed = slices.Clone(*upd.Metadata), true
	}
	if upd.Roles != nil && !slices.Equal(*upd.Roles, k.Roles) {
		k.Roles, changed = slices.Clone(*upd.Roles), true
	}
	if upd.AllowedCIDRs != nil && !slices.Equal(*upd.AllowedCIDRs, k.AllowedCIDRs) {
		k.AllowedCIDRs, changed = slices.Clone(*upd.AllowedCIDRs), true
	}
	if upd.ExpiresAt != nil && !upd.ExpiresAt.Equal(k.ExpiresAt) {
		k.ExpiresAt, changed = upd.ExpiresAt.UTC(), true
	}
	return changed, nil
}

// NewRotatedKey validates r and derives, from the old key at now, the new
// key (no ID yet: the store assigns it) and the old key's new expiry. The
// new key has the old one's name, description, roles, metadata, allow-list,
// owner and expiry (rotation never extends a key's life); the old key must be
// active and not rotated before (ErrConflict).
func NewRotatedKey(old *APIKey, r KeyRotation, now time.Time) (newKey *APIKey, oldExpires time.Time, err error) {
	if err := validHash("key hash", len(r.Hash), true); err != nil {
		return nil, time.Time{}, err
	}
	if r.Grace < 0 {
		return nil, time.Time{}, fmt.Errorf("negative grace: %w", ErrInvalid)
	}
	if err := checkActive(old, now); err != nil {
		return nil, time.Time{}, err
	}
	if old.RotatedTo != "" {
		return nil, time.Time{}, fmt.Errorf("api key %s was rotated already: %w", old.ID, ErrConflict)
	}
	oldExpires = now.Add(r.Grace)
	if !old.ExpiresAt.IsZero() && old.ExpiresAt.Before(oldExpires) {
		oldExpires = old.ExpiresAt
	}
	newKey = &APIKey{
		Name:         old.Name,
		Description:  old.Description,
		Account:      old.Account,
		Username:     old.Username,
		Roles:        slices.Clone(old.Roles),
		Hash:         slices.Clone(r.Hash),
		CreatedAt:    now,
		ExpiresAt:    old.ExpiresAt,
		Metadata:     slices.Clone(old.Metadata),
		AllowedCIDRs: slices.Clone(old.AllowedCIDRs),
	}
	return newKey, oldExpires, nil
}

// ValidateKeyExtras validates and normalises a new key's metadata and
// allow-list (ValidateNewAPIKey calls it).
func ValidateKeyExtras(k *APIKey) error {
	m, err := ValidateMetadata(k.Metadata)
	if err != nil {
		return err
	}
	c, err := ValidateCIDRs(k.AllowedCIDRs)
	if err != nil {
		return err
	}
	k.Metadata, k.AllowedCIDRs = m, c
	return nil
}
