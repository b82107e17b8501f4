package ui

// Rate limits and quotas (issue 19) in the key, user and account forms: a
// policy of rate_limits.policies and a quota (requests per day or month),
// sent in the same PATCH as the other fields when they changed. The forms
// show the quota's use (remaining, reset) as the API answers it.

import (
	"strconv"
	"strings"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/store"
)

// limitsData is what the "limits" template needs: the form's values, its
// errors, the policies to choose from and the current quota's use.
type limitsData struct {
	Form     map[string]string
	Errors   map[string]string
	Policies []string
	Quota    *adminapi.QuotaStatus
}

// limitsFields are the names of the limit fields of a form.
var limitsFields = [...]string{"rate_limit", "quota_requests", "quota_per"}

// putLimitsForm sets the limit fields of form from l.
func putLimitsForm(form map[string]string, l adminapi.Limits) {
	form["rate_limit"], form["quota_requests"], form["quota_per"] = l.RateLimit, "", store.QuotaDay
	if l.Quota != nil {
		form["quota_requests"], form["quota_per"] = strconv.FormatInt(l.Quota.Requests, 10), l.Quota.Per
	}
}

// setLimits is the change the form's limit fields make to cur (zero when
// none); a quota that is not a number is reported next to its field.
func setLimits(cur adminapi.Limits, form map[string]string) (adminapi.SetLimits, map[string]string) {
	var s adminapi.SetLimits
	if p := strings.TrimSpace(form["rate_limit"]); p != cur.RateLimit {
		s.RateLimit = &p
	}
	n := int64(0)
	if v := strings.TrimSpace(form["quota_requests"]); v != "" {
		var err error
		if n, err = strconv.ParseInt(v, 10, 64); err != nil || n < 0 {
			return s, map[string]string{"quota_requests": "Give a whole number of requests (0 or empty: no quota)."}
		}
	}
	per := form["quota_per"]
	switch {
	case n == 0 && cur.Quota != nil:
		s.Quota = &store.Quota{}
	case n > 0 && (cur.Quota == nil || cur.Quota.Requests != n || cur.Quota.Per != per):
		s.Quota = &store.Quota{Requests: n, Per: per}
	}
	return s, nil
}

// limitsField is the limit field an API error belongs to ("" if none).
func limitsField(code, lowerMsg string) string {
	switch {
	case code == "unknown_policy", strings.HasPrefix(lowerMsg, "rate_limit"):
		return "rate_limit"
	case strings.HasPrefix(lowerMsg, "quota"):
		return "quota_requests"
	}
	return ""
}

func (u *UI) limitsData(form, errs map[string]string, q *adminapi.QuotaStatus) limitsData {
	return limitsData{Form: form, Errors: errs, Policies: u.api.RateLimitPolicies(), Quota: q}
}
