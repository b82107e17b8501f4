package admin

// PATCH …/api-keys/{id} and POST …/api-keys/{id}/rotate (DESIGN.md §13,
// issue 18), on the caller's own keys (/v1/user/api-keys/{id}) and on a
// user's keys (/v1/accounts/{account}/users/{username}/api-keys/{id}). An
// API-key caller cannot reach either (the write access class). Changes reach
// every instance through the store's per-key invalidation.

import (
	"errors"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/store"
)

// Audit action names of issue 18 (also what an external authorizer is asked).
const (
	ActionUpdateAPIKey = "updateApiKey"
	ActionRotateAPIKey = "rotateApiKey"
)

// keyPatch is what one PATCH changes: the store update, and the names of
// the fields given (for the audit line).
type keyPatch struct {
	upd     store.KeyUpdate
	changed []string
}

// keyPatchField is one field of PATCH …/api-keys/{id}: given reports whether
// the body names it; apply checks it against the caller, the owner and the
// key, and sets its part of the store update. A field added later (rate
// limits, quotas) is one more entry of keyPatchFields.
type keyPatchField struct {
	name  string
	given func(b *adminapi.UpdateKey) bool
	apply func(a *api, r *request, owner *store.User, k *store.APIKey, b *adminapi.UpdateKey, p *keyPatch) error
}

var keyPatchFields = []keyPatchField{
	{"description", func(b *adminapi.UpdateKey) bool { return b.Description != nil },
		func(_ *api, _ *request, _ *store.User, _ *store.APIKey, b *adminapi.UpdateKey, p *keyPatch) error {
			if err := store.ValidateDescription(*b.Description); err != nil {
				return err
			}
			p.upd.Description = b.Description
			return nil
		}},
	{"metadata", func(b *adminapi.UpdateKey) bool { return b.Metadata != nil },
		func(_ *api, _ *request, _ *store.User, _ *store.APIKey, b *adminapi.UpdateKey, p *keyPatch) error {
			if _, err := store.ValidateMetadata(*b.Metadata); err != nil {
				return err
			}
			p.upd.Metadata = b.Metadata
			return nil
		}},
	{"roles", func(b *adminapi.UpdateKey) bool { return b.Roles != nil },
		func(_ *api, r *request, owner *store.User, _ *store.APIKey, b *adminapi.UpdateKey, p *keyPatch) error {
			roles := append([]string{}, (*b.Roles)...)
			if err := ownerRoles(owner, roles); err != nil {
				return err
			}
			// Whoever holds the key acts with its roles: another caller
			// must hold them (as at creation).
			if owner.Username != r.user.Username {
				if err := checkGrant(r.user, roles, "cannot give a key"); err != nil {
					return err
				}
			}
			p.upd.Roles = &roles
			return nil
		}},
	{"allowed_cidrs", func(b *adminapi.UpdateKey) bool { return b.AllowedCIDRs != nil },
		func(_ *api, _ *request, _ *store.User, _ *store.APIKey, b *adminapi.UpdateKey, p *keyPatch) error {
			c, err := store.ValidateCIDRs(*b.AllowedCIDRs)
			if err != nil {
				return err
			}
			if c == nil {
				c = []string{}
			}
			p.upd.AllowedCIDRs = &c
			return nil
		}},
	{"expires_at", func(b *adminapi.UpdateKey) bool { return b.ExpiresAt != nil || b.ExpiresIn != nil },
		func(a *api, r *request, _ *store.User, k *store.APIKey, b *adminapi.UpdateKey, p *keyPatch) error {
			exp, err := a.expiry(b.ExpiresAt, b.ExpiresIn, r.now)
			if err != nil {
				return err
			}
			if !k.ExpiresAt.IsZero() && exp.After(k.ExpiresAt) {
				return errorf(fasthttp.StatusUnprocessableEntity, "expiry_extended",
					"a key's life is never extended: the new expiry must be before its current one (%s)", k.ExpiresAt.UTC().Format(time.RFC3339))
			}
			p.upd.ExpiresAt = &exp
			return nil
		}},
	// Issue 19: the key's rate limit and quota live apart from its record
	// (store.LimitStore); checked here, written after the record.
	{"rate_limit", func(b *adminapi.UpdateKey) bool { return b.RateLimit != nil },
		func(a *api, _ *request, _ *store.User, _ *store.APIKey, b *adminapi.UpdateKey, _ *keyPatch) error {
			return a.checkLimits(&adminapi.SetLimits{RateLimit: b.RateLimit})
		}},
	{"quota", func(b *adminapi.UpdateKey) bool { return b.Quota != nil },
		func(a *api, _ *request, _ *store.User, _ *store.APIKey, b *adminapi.UpdateKey, _ *keyPatch) error {
			return a.checkLimits(&adminapi.SetLimits{Quota: b.Quota})
		}},
}

// errKeyNotActive answers a change of a revoked or expired key.
var errKeyNotActive = errorf(fasthttp.StatusConflict, "key_not_active", "this key is revoked or expired: it cannot be changed or rotated")

// updateKey applies PATCH …/api-keys/{id} to k of owner.
func (a *api) updateKey(r *request, owner *store.User, k *store.APIKey) error {
	var b adminapi.UpdateKey
	if err := decode(r, &b); err != nil {
		return err
	}
	var p keyPatch
	for _, f := range keyPatchFields {
		if !f.given(&b) {
			continue
		}
		if err := f.apply(a, r, owner, k, &b, &p); err != nil {
			return err
		}
		p.changed = append(p.changed, f.name)
	}
	if len(p.changed) == 0 {
		return errorf(fasthttp.StatusUnprocessableEntity, "invalid",
			`nothing to change: send one or more of "description", "metadata", "roles", "allowed_cidrs", "expires_at", "expires_in", "rate_limit", "quota"`)
	}
	if k.Status(r.now) != store.KeyActive {
		return errKeyNotActive
	}
	nk := k
	if !p.upd.Empty() {
		var err error
		if nk, err = a.st.UpdateAPIKey(r.c, k.ID, p.upd); err != nil {
			return keyWriteErr(err)
		}
	}
	r.fields = append(r.fields, zap.String("key_id", k.ID), zap.String("key_owner", k.Username), zap.Strings("changed", p.changed))
	if err := a.applyLimits(r, store.ScopeKey, k.ID, &b.SetLimits); err != nil {
		return err
	}
	return respond(r, fasthttp.StatusOK, a.keyWithLimits(r, nk))
}

// keyWriteErr maps a store error of an update or rotation.
func keyWriteErr(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errKeyNotFound
	case errors.Is(err, store.ErrConflict):
		return errKeyNotActive
	}
	return err
}

// MaxRotationGrace caps the grace of a rotation (the old key's life is
// capped by its own expiry anyway).
const MaxRotationGrace = 30 * 24 * time.Hour

// rotateKey rotates k of owner: 201 with the new key, shown once.
func (a *api) rotateKey(r *request, owner *store.User, k *store.APIKey) error {
	var b adminapi.RotateKey
	if r.ctx == nil || len(r.ctx.Request.Body()) > 0 { // nil: an in-process operation (admin.API)
		if err := decode(r, &b); err != nil {
			return err
		}
	}
	var grace time.Duration
	if b.Grace != nil {
		d, err := time.ParseDuration(*b.Grace)
		if err != nil || d < 0 || d > MaxRotationGrace {
			return errorf(fasthttp.StatusUnprocessableEntity, "invalid",
				`grace must be a duration from "0s" (the old key dies at once) to %s, such as "24h"`, MaxRotationGrace)
		}
		grace = d
	}
	if k.Status(r.now) != store.KeyActive || k.RotatedTo != "" {
		return errorf(fasthttp.StatusConflict, "key_not_active", "this key is revoked, expired or rotated already: rotate its successor")
	}
	// The holder of the new key acts with its roles: a caller other than
	// the owner must hold them (as at creation).
	if owner.Username != r.user.Username {
		if err := checkGrant(r.user, k.Roles, "cannot rotate a key with"); err != nil {
			return err
		}
	}
	secret, hash, err := newKeySecret()
	if err != nil {
		return err
	}
	nk, old, err := a.st.RotateAPIKey(r.c, k.ID, store.KeyRotation{Hash: hash, Grace: grace})
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errorf(fasthttp.StatusConflict, "key_not_active", "this key is revoked, expired or rotated already: rotate its successor")
		}
		return keyWriteErr(err)
	}
	r.fields = append(r.fields, zap.String("key_id", old.ID), zap.String("new_key_id", nk.ID), zap.String("key_owner", k.Username),
		zap.Duration("grace", grace))
	// The new key keeps the old one's rate limit and quota (DESIGN.md §13:
	// "same … limits"); the quota's use starts afresh with the new key.
	if err := a.copyLimits(r, old.ID, nk.ID); err != nil {
		return err
	}
	return respond(r, fasthttp.StatusCreated, createdKeyBody(nk, secret, old.ID))
}

// Own keys.

func (a *api) updateOwnKey(r *request) error {
	r.target = "api_key:" + r.p.Get("id")
	k, err := a.ownedKey(r, r.user)
	if err != nil {
		return err
	}
	return a.updateKey(r, r.user, k)
}

func (a *api) rotateOwnKey(r *request) error {
	r.target = "api_key:" + r.p.Get("id")
	k, err := a.ownedKey(r, r.user)
	if err != nil {
		return err
	}
	return a.rotateKey(r, r.user, k)
}

// A user's keys.

func (a *api) userKeyFor(r *request) (*store.User, *store.APIKey, error) {
	r.target = "api_key:" + r.p.Get("id")
	u, err := a.pathUser(r)
	if err != nil {
		return nil, nil, err
	}
	k, err := a.ownedKey(r, u)
	if err != nil {
		return nil, nil, err
	}
	if err := checkTouch(r.user, u); err != nil {
		return nil, nil, err
	}
	return u, k, nil
}

func (a *api) updateUserKey(r *request) error {
	u, k, err := a.userKeyFor(r)
	if err != nil {
		return err
	}
	return a.updateKey(r, u, k)
}

func (a *api) rotateUserKey(r *request) error {
	u, k, err := a.userKeyFor(r)
	if err != nil {
		return err
	}
	return a.rotateKey(r, u, k)
}
