package adminapi

import (
	"time"

	"github.com/keygate/keygate/store"
)

// Limits is what a key, a user or an account shows of its rate limit and
// quota (issue 19); both are absent when nothing is assigned.
type Limits struct {
	// RateLimit names a rate_limits.policies entry.
	RateLimit string       `json:"rate_limit,omitempty"`
	Quota     *QuotaStatus `json:"quota,omitempty"`
}

// QuotaStatus is a quota and its use in the current period (UTC calendar
// day or month). Remaining and Reset are what the RateLimit header of a
// request would say.
type QuotaStatus struct {
	Requests  int64     `json:"requests"`
	Per       string    `json:"per"` // day | month
	Used      int64     `json:"used"`
	Remaining int64     `json:"remaining"`
	Reset     time.Time `json:"reset"`
}

// SetLimits are the limit fields of a create or PATCH body: RateLimit ""
// removes the key's, user's or account's policy; a Quota with requests 0
// removes its quota.
type SetLimits struct {
	RateLimit *string      `json:"rate_limit,omitempty"`
	Quota     *store.Quota `json:"quota,omitempty"`
}

// Any reports whether s changes anything.
func (s *SetLimits) Any() bool { return s.RateLimit != nil || s.Quota != nil }

// Account is an account as the API shows it.
type Account struct {
	store.Account
	Limits
}
