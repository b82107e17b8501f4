package admin

import (
	"errors"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/ratelimit"
	"github.com/keygate/keygate/store"
)

// Rate-limit and quota assignments of keys, users and accounts (issue 19):
// set on key creation and by PATCH, shown on GET. Setting one only ever
// adds a limit to those that already apply (key, user, account and route
// limits are all enforced), so whoever may change the key, user or account
// may set its limits.

var errNoLimits = errorf(fasthttp.StatusServiceUnavailable, "unavailable", "this store keeps no rate-limit assignments")

// checkLimits validates s before anything is written.
func (a *api) checkLimits(s *adminapi.SetLimits) error {
	if s.RateLimit != nil && *s.RateLimit != "" && a.policies.Policy(*s.RateLimit) == nil {
		if !configs.ValidPolicyName(*s.RateLimit) {
			return errorf(fasthttp.StatusUnprocessableEntity, "unknown_policy", "rate_limit must name a rate_limits.policies entry")
		}
		return errorf(fasthttp.StatusUnprocessableEntity, "unknown_policy", "rate_limit %q is not a rate_limits.policies entry", *s.RateLimit)
	}
	if s.Quota != nil && s.Quota.Requests != 0 {
		if err := s.Quota.Validate(); err != nil {
			return errorf(fasthttp.StatusUnprocessableEntity, "invalid", `quota must be {"requests": N ≥ 1, "per": "day" | "month"} (requests 0 removes it)`)
		}
	}
	if s.Any() && a.ls == nil {
		return errNoLimits
	}
	return nil
}

// applyLimits merges s into the assignment of (scope, id).
func (a *api) applyLimits(r *request, scope store.LimitScope, id string, s *adminapi.SetLimits) error {
	if !s.Any() {
		return nil
	}
	cur, err := a.ls.GetLimits(r.c, scope, id)
	if err != nil {
		return err
	}
	if s.RateLimit != nil {
		cur.RateLimit = *s.RateLimit
		r.fields = append(r.fields, zap.String("rate_limit", cur.RateLimit))
	}
	if s.Quota != nil {
		if s.Quota.Requests == 0 {
			cur.Quota = nil
		} else {
			q := *s.Quota
			cur.Quota = &q
			r.fields = append(r.fields, zap.Int64("quota_requests", q.Requests), zap.String("quota_per", q.Per))
		}
	}
	cur.Scope, cur.ID = scope, id
	if err := a.ls.SetLimits(r.c, cur); err != nil {
		return err
	}
	if a.limitsHook != nil {
		a.limitsHook(r.c, scope, id)
	}
	return nil
}

// limitsOf is what GET shows of (scope, id)'s limits. A store error leaves
// them out rather than failing the read.
func (a *api) limitsOf(r *request, scope store.LimitScope, id string) adminapi.Limits {
	var out adminapi.Limits
	if a.ls == nil {
		return out
	}
	l, err := a.ls.GetLimits(r.c, scope, id)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			a.audit.Warn("admin: limits not readable", zap.String("scope", string(scope)), zap.Error(err))
		}
		return out
	}
	out.RateLimit = l.RateLimit
	if l.Quota != nil {
		st, err := ratelimit.QuotaStatus(r.c, a.ls, scope, id, l.Quota, r.now)
		if err != nil {
			st = &ratelimit.Status{Requests: l.Quota.Requests, Per: l.Quota.Per}
			_, end := l.Quota.Period(r.now)
			st.Remaining, st.Reset = l.Quota.Requests, end
		}
		out.Quota = &adminapi.QuotaStatus{Requests: st.Requests, Per: st.Per, Used: st.Used, Remaining: st.Remaining, Reset: st.Reset.UTC().Truncate(time.Second)}
	}
	return out
}

// keyWithLimits is k as GET shows it, with its rate limit and quota.
func (a *api) keyWithLimits(r *request, k *store.APIKey) adminapi.Key {
	out := toKeyJSON(k, r.now)
	out.Limits = a.limitsOf(r, store.ScopeKey, k.ID)
	return out
}

// copyLimits gives key to the rate limit and quota of key from (rotation),
// and the quota's use in the current period: rotating a key does not
// reset its quota.
func (a *api) copyLimits(r *request, from, to string) error {
	if a.ls == nil {
		return nil
	}
	l, err := a.ls.GetLimits(r.c, store.ScopeKey, from)
	if err != nil || l.Empty() {
		return err
	}
	l.ID = to
	if err := a.ls.SetLimits(r.c, l); err != nil {
		return err
	}
	if a.limitsHook != nil {
		a.limitsHook(r.c, store.ScopeKey, to)
	}
	if q := l.Quota; q != nil {
		start, end := q.Period(r.now)
		used, err := a.ls.QuotaUsed(r.c, store.QuotaCounter(store.ScopeKey, from, start))
		if err != nil {
			return err
		}
		if used > 0 {
			if _, _, err := a.ls.LeaseQuota(r.c, store.QuotaCounter(store.ScopeKey, to, start), used, q.Requests, end.Add(24*time.Hour)); err != nil {
				return err
			}
		}
	}
	return nil
}

// dropLimits removes the assignment of a deleted user or account, so that a
// later one of the same name does not inherit it. Best effort: the record is
// gone already, a failure is logged.
func (a *api) dropLimits(r *request, scope store.LimitScope, id string) {
	if a.ls == nil {
		return
	}
	if err := a.ls.SetLimits(r.c, &store.Limits{Scope: scope, ID: id}); err != nil {
		a.audit.Warn("admin: limits of a deleted record not removed", zap.String("scope", string(scope)), zap.Error(err))
		return
	}
	if a.limitsHook != nil {
		a.limitsHook(r.c, scope, id)
	}
}
