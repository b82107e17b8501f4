package admin

import (
	"encoding/base64"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/store"
)

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func toKeyJSON(k *store.APIKey, now time.Time) adminapi.Key {
	return adminapi.Key{ID: k.ID, Name: k.Name, Description: k.Description, Account: k.Account, Username: k.Username,
		Roles: nonNil(k.Roles), CreatedAt: k.CreatedAt.UTC(), ExpiresAt: timePtr(k.ExpiresAt),
		RevokedAt: timePtr(k.RevokedAt), LastUsedAt: timePtr(k.LastUsedAt), Status: k.Status(now),
		Metadata: k.Metadata, AllowedCIDRs: k.AllowedCIDRs, RotatedTo: k.RotatedTo}
}

// expiry computes a new key's expires_at (zero: never) from the expires_at
// or expires_in of a request (nil: absent).
func (a *api) expiry(expiresAt, expiresIn *string, now time.Time) (time.Time, error) {
	maxTxt := a.maxLifetime.String()
	var exp time.Time
	switch {
	case expiresAt != nil && expiresIn != nil:
		return exp, errorf(fasthttp.StatusUnprocessableEntity, "invalid", "give expires_at or expires_in, not both")
	case expiresAt != nil:
		t, err := time.Parse(time.RFC3339, *expiresAt)
		if err != nil {
			return exp, errorf(fasthttp.StatusUnprocessableEntity, "invalid", "expires_at must be an RFC 3339 time such as 2030-01-31T00:00:00Z")
		}
		exp = t.UTC()
	case expiresIn != nil:
		d, err := time.ParseDuration(*expiresIn)
		if err != nil || d <= 0 {
			return exp, errorf(fasthttp.StatusUnprocessableEntity, "invalid", `expires_in must be a positive duration such as "720h"`)
		}
		exp = now.Add(d)
	default:
		if a.maxLifetime > 0 {
			return now.Add(a.maxLifetime), nil
		}
		return time.Time{}, nil
	}
	if !exp.After(now) {
		return exp, errorf(fasthttp.StatusUnprocessableEntity, "invalid", "the expiry is in the past: give a future expires_at or a positive expires_in")
	}
	if a.maxLifetime > 0 && exp.After(now.Add(a.maxLifetime)) {
		return exp, errorf(fasthttp.StatusUnprocessableEntity, "invalid", "the expiry is beyond api_keys.max_lifetime (%s from now): choose an earlier one", maxTxt)
	}
	return exp, nil
}

// createKey creates a key for owner.
func (a *api) createKey(r *request, owner *store.User) error {
	var b adminapi.CreateKey
	if err := decode(r, &b); err != nil {
		return err
	}
	if b.Name == "" {
		return errorf(fasthttp.StatusUnprocessableEntity, "invalid", `name is required: give the key a name, e.g. {"name":"ci"}`)
	}
	if err := store.ValidateKeyName(b.Name); err != nil {
		return err
	}
	if err := store.ValidateDescription(b.Description); err != nil {
		return err
	}
	exp, err := a.expiry(b.ExpiresAt, b.ExpiresIn, r.now)
	if err != nil {
		return err
	}
	if err := a.checkLimits(&b.SetLimits); err != nil {
		return err
	}
	roles := slices.Clone(owner.Roles)
	if b.Roles != nil {
		roles = slices.Clone(*b.Roles)
		if err := ownerRoles(owner, roles); err != nil {
			return err
		}
	}
	if roles == nil {
		roles = []string{}
	}
	// Whoever holds the new key acts with its roles: the caller must hold
	// them (the owner does by construction).
	if owner.Username != r.user.Username {
		if err := checkGrant(r.user, roles, "cannot create a key with"); err != nil {
			return err
		}
	}
	secret, hash, err := newKeySecret()
	if err != nil {
		return err
	}
	k := &store.APIKey{Name: b.Name, Description: b.Description, Account: owner.Account, Username: owner.Username,
		Roles: roles, Hash: hash, CreatedAt: r.now, ExpiresAt: exp, Metadata: b.Metadata, AllowedCIDRs: b.AllowedCIDRs}
	if err := a.st.CreateAPIKey(r.c, k); err != nil {
		switch {
		case errors.Is(err, store.ErrConflict):
			return errorf(fasthttp.StatusConflict, "conflict", "this user already has an active key with this name: choose another name or revoke that key")
		case errors.Is(err, store.ErrNotFound):
			return errUserNotFound
		}
		return err
	}
	r.fields = append(r.fields, zap.String("key_id", k.ID), zap.String("key_name", k.Name))
	// The key is unknown to every cache until this returns: its limits are
	// in place before its value is.
	if err := a.applyLimits(r, store.ScopeKey, k.ID, &b.SetLimits); err != nil {
		return err
	}
	return respond(r, fasthttp.StatusCreated, createdKeyBody(k, secret, ""))
}

// newKeySecret draws a new key's secret and its salted hash.
func newKeySecret() (secret string, hash []byte, err error) {
	if secret, err = apikey.NewSecret(); err != nil {
		return "", nil, err
	}
	if hash, err = apikey.Hash([]byte(secret)); err != nil {
		return "", nil, err
	}
	return secret, hash, nil
}

// createdKeyBody is the one answer that shows a key's value: its creation, or
// its rotation (rotatedFrom: the key it replaced).
func createdKeyBody(k *store.APIKey, secret, rotatedFrom string) adminapi.CreatedKey {
	value := apikey.Format(k.ID, secret)
	return adminapi.CreatedKey{
		ID: k.ID, Name: k.Name, APIKey: value,
		Encoded: base64.StdEncoding.EncodeToString([]byte(k.ID + ":" + value)),
		Roles:   nonNil(k.Roles), CreatedAt: k.CreatedAt.UTC(), ExpiresAt: timePtr(k.ExpiresAt),
		RotatedFrom: rotatedFrom, Metadata: k.Metadata, AllowedCIDRs: k.AllowedCIDRs,
	}
}

// ownerRoles checks roles are valid and a subset of the key owner's (422
// unknown_role otherwise).
func ownerRoles(owner *store.User, roles []string) error {
	if err := store.ValidateRoles(roles); err != nil {
		return err
	}
	for _, role := range roles {
		if !slices.Contains(owner.Roles, role) {
			return errorf(fasthttp.StatusUnprocessableEntity, "unknown_role",
				"role %q is not one of the key owner's roles: a key's roles must be a subset of its owner's", role)
		}
	}
	return nil
}

var errKeyNotFound = errorf(fasthttp.StatusNotFound, "not_found", "api key not found")

// ownedKey returns key {id} of owner, or 404 when it is not theirs.
func (a *api) ownedKey(r *request, owner *store.User) (*store.APIKey, error) {
	id := r.p.Get("id")
	if !store.IsBase62ID(id) {
		return nil, errKeyNotFound
	}
	k, err := a.st.GetAPIKey(r.c, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errKeyNotFound
	case err != nil:
		return nil, err
	case k.Username != owner.Username || k.Account != owner.Account:
		return nil, errKeyNotFound
	}
	return k, nil
}

// revoke revokes k and answers 200 with the key (status revoked), the first
// time and every later time.
func (a *api) revoke(r *request, k *store.APIKey) error {
	r.target = "api_key:" + k.ID
	rk, already, err := a.st.RevokeAPIKey(r.c, k.ID, r.now)
	if errors.Is(err, store.ErrNotFound) {
		return errKeyNotFound
	}
	if err != nil {
		return err
	}
	r.fields = append(r.fields, zap.String("key_id", k.ID), zap.String("key_owner", k.Username), zap.Bool("already_revoked", already))
	return respond(r, fasthttp.StatusOK, toKeyJSON(rk, r.now))
}

// keyFilter reads the query of a key listing. allowed lists the
// parameters this endpoint accepts; an unknown one is a 400.
func keyFilter(r *request, allowed ...string) (store.KeyFilter, error) {
	var f store.KeyFilter
	var bad error
	for k, v := range r.queryArgs().All() {
		key := string(k)
		if !slices.Contains(allowed, key) {
			bad = errorf(fasthttp.StatusBadRequest, "bad_request", "unknown query parameter %q: use %v", clip(key, 40), allowed)
			break
		}
		val := string(v)
		switch key {
		case "account":
			f.Account = val
		case "username":
			f.Username = val
		case "name":
			f.Name = val
		case "status":
			f.Status = store.KeyStatus(val)
		case "cursor":
			f.Cursor = val
		case "expiring_within":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				bad = errorf(fasthttp.StatusBadRequest, "bad_request", `expiring_within must be a positive duration such as "168h"`)
			}
			f.ExpiresBefore = r.now.Add(d)
		case "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 {
				bad = errorf(fasthttp.StatusBadRequest, "bad_request", "limit must be a positive integer (at most %d)", store.MaxPageLimit)
			}
			f.Limit = n
		}
		if bad != nil {
			break
		}
	}
	if bad != nil {
		return f, bad
	}
	if _, _, err := store.NormalizeKeyFilter(f); err != nil {
		return f, errorf(fasthttp.StatusBadRequest, "bad_request", "%s", storeMessage(err))
	}
	return f, nil
}

func (a *api) listKeys(r *request, f store.KeyFilter) error {
	page, err := a.st.ListAPIKeys(r.c, f)
	if err != nil {
		return err
	}
	out := adminapi.KeyPage{APIKeys: make([]adminapi.Key, 0, len(page.Keys)), NextCursor: page.NextCursor}
	for i := range page.Keys {
		out.APIKeys = append(out.APIKeys, toKeyJSON(&page.Keys[i], r.now))
	}
	return respond(r, fasthttp.StatusOK, out)
}

// Own keys: /v1/user/api-keys.

func (a *api) listOwnKeys(r *request) error {
	f, err := keyFilter(r, "name", "status", "limit", "cursor", "expiring_within")
	if err != nil {
		return err
	}
	f.Account, f.Username = r.user.Account, r.user.Username
	return a.listKeys(r, f)
}

func (a *api) createOwnKey(r *request) error {
	r.target = "user:" + r.user.Account + "/" + r.user.Username
	return a.createKey(r, r.user)
}

func (a *api) getOwnKey(r *request) error {
	k, err := a.ownedKey(r, r.user)
	if err != nil {
		return err
	}
	return respond(r, fasthttp.StatusOK, a.keyWithLimits(r, k))
}

func (a *api) revokeOwnKey(r *request) error {
	r.target = "api_key:" + r.p.Get("id")
	k, err := a.ownedKey(r, r.user)
	if err != nil {
		return err
	}
	return a.revoke(r, k)
}

// A user's keys: /v1/accounts/{account}/users/{username}/api-keys.

func (a *api) listUserKeys(r *request) error {
	u, err := a.pathUser(r)
	if err != nil {
		return err
	}
	f, err := keyFilter(r, "name", "status", "limit", "cursor", "expiring_within")
	if err != nil {
		return err
	}
	f.Account, f.Username = u.Account, u.Username
	return a.listKeys(r, f)
}

func (a *api) createUserKey(r *request) error {
	r.target = "user:" + r.p.Get("account") + "/" + r.p.Get("username")
	u, err := a.pathUser(r)
	if err != nil {
		return err
	}
	if err := checkTouch(r.user, u); err != nil {
		return err
	}
	return a.createKey(r, u)
}

func (a *api) getUserKey(r *request) error {
	u, err := a.pathUser(r)
	if err != nil {
		return err
	}
	k, err := a.ownedKey(r, u)
	if err != nil {
		return err
	}
	return respond(r, fasthttp.StatusOK, a.keyWithLimits(r, k))
}

func (a *api) revokeUserKey(r *request) error {
	r.target = "api_key:" + r.p.Get("id")
	u, err := a.pathUser(r)
	if err != nil {
		return err
	}
	k, err := a.ownedKey(r, u)
	if err != nil {
		return err
	}
	if err := checkTouch(r.user, u); err != nil {
		return err
	}
	return a.revoke(r, k)
}

// Search and bulk revocation: /v1/api-keys.

func (a *api) searchKeys(r *request) error {
	f, err := keyFilter(r, "account", "username", "name", "status", "limit", "cursor", "expiring_within")
	if err != nil {
		return err
	}
	if f.Account, err = searchScope(r.user, f.Account); err != nil {
		return err
	}
	return a.listKeys(r, f)
}

// bulkRevoke revokes the keys named by ids (each must also match the
// name, username and account given) or, without ids, every key matching
// the filter (at least one of name, username, account). Keys outside the
// caller's scope are reported as not found and left alone.
func (a *api) bulkRevoke(r *request) error {
	r.target = "api_keys"
	var b adminapi.BulkRevoke
	if err := decode(r, &b); err != nil {
		return err
	}
	scope, err := decideBulkScope(r.user, &b)
	if err != nil {
		return err
	}
	out := adminapi.BulkResult{Invalidated: []string{}, PreviouslyInvalidated: []string{}, Errors: []adminapi.BulkError{}}
	var keys []store.APIKey
	if len(b.IDs) > 0 {
		keys, err = a.bulkKeysByID(r, b.IDs, scope, &out)
	} else {
		keys, err = a.bulkKeysByFilter(r, scope, &out)
	}
	if err != nil {
		return err
	}
	var owners map[string]store.UserType // owner types, looked up once each
	if !r.isGlobalAdmin() {
		owners = map[string]store.UserType{}
	}
	for i := range keys {
		k := &keys[i]
		if owners != nil {
			t, err := a.ownerType(r, owners, k.Username)
			if err != nil {
				return err
			}
			if e := bulkOwnerDenied(r.user, k.ID, t); e != nil {
				out.Errors = append(out.Errors, *e)
				continue
			}
		}
		if a.ext != nil {
			// Each key in its own account (domain), as the revocation of
			// that one key: the bulk call is allowed above in the caller's
			// domain, not in every account its keys belong to.
			target := "admin:/v1/accounts/" + url.PathEscape(k.Account) + "/users/" + url.PathEscape(k.Username) +
				"/api-keys/" + url.PathEscape(k.ID)
			if e := bulkExternalDenied(k.ID, a.askExternal(r, ActionRevokeAPIKey, k.Account, target)); e != nil {
				out.Errors = append(out.Errors, *e)
				continue
			}
		}
		_, already, err := a.st.RevokeAPIKey(r.c, k.ID, r.now)
		recordRevoke(&out, k.ID, already, err)
	}
	out.ErrorCount = len(out.Errors)
	r.fields = append(r.fields, zap.Strings("invalidated", out.Invalidated), zap.Int("error_count", out.ErrorCount))
	return respond(r, fasthttp.StatusOK, out)
}

// bulkKeysByID fetches the keys named by ids (once each) that match scope;
// the others are "not_found" entries of out, malformed, missing or outside
// the scope alike.
func (a *api) bulkKeysByID(r *request, ids []string, scope bulkScope, out *adminapi.BulkResult) ([]store.APIKey, error) {
	var keys []store.APIKey
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		if !store.IsBase62ID(id) {
			out.Errors = append(out.Errors, bulkNotFound(clip(id, 40)))
			continue
		}
		k, err := a.st.GetAPIKey(r.c, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			out.Errors = append(out.Errors, bulkNotFound(id))
		case err != nil:
			return nil, err
		case !scope.match(k):
			out.Errors = append(out.Errors, bulkNotFound(id))
		default:
			keys = append(keys, *k)
		}
	}
	return keys, nil
}

// bulkKeysByFilter lists the keys matching scope, at most about
// MaxBulkKeys (a "too_many" entry of out says when more matched).
func (a *api) bulkKeysByFilter(r *request, scope bulkScope, out *adminapi.BulkResult) ([]store.APIKey, error) {
	var keys []store.APIKey
	f := store.KeyFilter{Account: scope.account, Username: scope.username, Name: scope.name, Status: store.StatusAll, Limit: store.MaxPageLimit}
	for {
		page, err := a.st.ListAPIKeys(r.c, f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, page.Keys...)
		if page.NextCursor == "" {
			return keys, nil
		}
		if len(keys) >= MaxBulkKeys {
			out.Errors = append(out.Errors, bulkTooMany())
			return keys, nil
		}
		f.Cursor = page.NextCursor
	}
}

// ownerType is the type of user username (zero when gone), looked up in
// the store once per request (cache).
func (a *api) ownerType(r *request, cache map[string]store.UserType, username string) (store.UserType, error) {
	if t, ok := cache[username]; ok {
		return t, nil
	}
	u, err := a.st.GetUser(r.c, username)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	var t store.UserType
	if u != nil {
		t = u.Type
	}
	cache[username] = t
	return t, nil
}
