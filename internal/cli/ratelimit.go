package cli

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/store"
)

// Rate limits and quotas (issue 19): --rate-limit and --quota on key
// create, key update, user update and account update; shown by get.

func limitFlags(fs *flag.FlagSet, o *opts) {
	fs.Var(&o.rateLimit, "rate-limit", "rate_limits.policies name to apply ('' removes)")
	fs.Var(&o.quota, "quota", "quota: N/day or N/month ('none' removes)")
}

// parseQuota reads "1000/day", "50000/month" or "none".
func parseQuota(s string) (*store.Quota, error) {
	if strings.EqualFold(strings.TrimSpace(s), "none") {
		return &store.Quota{}, nil
	}
	n, per, ok := strings.Cut(strings.TrimSpace(s), "/")
	req, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
	per = strings.ToLower(strings.TrimSpace(per))
	if !ok || err != nil || req < 1 || (per != store.QuotaDay && per != store.QuotaMonth) {
		return nil, usagef("--quota %q: want N/day, N/month (N ≥ 1) or none", s)
	}
	return &store.Quota{Requests: req, Per: per}, nil
}

// setLimits is the limit part of a request body from the flags.
func setLimits(o *opts) (adminapi.SetLimits, error) {
	var s adminapi.SetLimits
	if o.rateLimit.set {
		v := o.rateLimit.val
		s.RateLimit = &v
	}
	if o.quota.set {
		q, err := parseQuota(o.quota.val)
		if err != nil {
			return s, err
		}
		s.Quota = q
	}
	return s, nil
}

// limitFields are the "Rate limit" and "Quota" lines of get.
func limitFields(l adminapi.Limits) []string {
	rl, q := "-", "-"
	if l.RateLimit != "" {
		rl = l.RateLimit
	}
	if l.Quota != nil {
		q = fmt.Sprintf("%d/%s: %d used, %d remaining, resets %s", l.Quota.Requests, l.Quota.Per, l.Quota.Used, l.Quota.Remaining, ts(l.Quota.Reset))
	}
	return []string{"Rate limit", rl, "Quota", q}
}
