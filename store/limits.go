package store

import (
	"context"
	"fmt"
	"time"
)

// Rate-limit assignments and quota counters (DESIGN.md §13, issue 19).
//
// Assignments (which rate-limit policy and which quota apply to a key, a user
// or an account) are kept apart from the records they name, so that the hot
// path reads them from one in-memory table (package ratelimit) and the
// records and their codecs stay as they are. Quota usage is a counter per
// (scope, id, period) that instances lease slices of (LeaseQuota) and give
// back unused (ReturnQuota); it lives in the store, so it survives restarts.

// LimitScope is what an assignment applies to.
type LimitScope string

// Scopes. A user's assignment is shared by all of the user's credentials, an
// account's by all of its users.
const (
	ScopeKey     LimitScope = "key"
	ScopeUser    LimitScope = "user"
	ScopeAccount LimitScope = "account"
)

// Quota periods.
const (
	QuotaDay   = "day"
	QuotaMonth = "month"
)

// Quota is a number of requests per calendar period (UTC).
type Quota struct {
	Requests int64  `json:"requests"`
	Per      string `json:"per"` // QuotaDay | QuotaMonth
}

// Validate checks q.
func (q *Quota) Validate() error {
	switch {
	case q.Requests < 1:
		return fmt.Errorf("quota requests must be at least 1: %w", ErrInvalid)
	case q.Per != QuotaDay && q.Per != QuotaMonth:
		return fmt.Errorf("quota per must be %q or %q: %w", QuotaDay, QuotaMonth, ErrInvalid)
	}
	return nil
}

// Period returns the UTC calendar period of q that contains t: [start, end).
func (q *Quota) Period(t time.Time) (start, end time.Time) {
	t = t.UTC()
	if q.Per == QuotaMonth {
		start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	}
	start = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, 0, 1)
}

// Limits is the assignment of one key, user or account. An empty RateLimit
// and a nil Quota mean nothing is assigned.
type Limits struct {
	Scope     LimitScope `json:"scope"`
	ID        string     `json:"id"` // key id, username or account name
	RateLimit string     `json:"rate_limit,omitempty"`
	Quota     *Quota     `json:"quota,omitempty"`
}

// Empty reports whether l assigns nothing.
func (l *Limits) Empty() bool { return l.RateLimit == "" && l.Quota == nil }

// Validate checks the scope, the id and the quota (policy names are checked
// against the configuration by the caller).
func (l *Limits) Validate() error {
	switch l.Scope {
	case ScopeKey, ScopeUser, ScopeAccount:
	default:
		return fmt.Errorf("unknown limit scope %q: %w", l.Scope, ErrInvalid)
	}
	if l.ID == "" || len(l.ID) > 256 {
		return fmt.Errorf("limit id must be 1 to 256 bytes: %w", ErrInvalid)
	}
	if l.Quota != nil {
		return l.Quota.Validate()
	}
	return nil
}

// QuotaCounter names the usage counter of a quota: scope, id and the start
// of the period it counts.
func QuotaCounter(scope LimitScope, id string, periodStart time.Time) string {
	return string(scope) + ":" + id + ":" + periodStart.UTC().Format("20060102")
}

// LimitStore keeps assignments and quota counters. Both store drivers
// implement it and pass store/storetest's limit cases.
type LimitStore interface {
	// SetLimits stores l (an empty l deletes the assignment) and publishes
	// an invalidation naming the key, user or account, so every instance
	// reloads its table.
	SetLimits(ctx context.Context, l *Limits) error
	// GetLimits returns the assignment of (scope, id), or an empty Limits.
	GetLimits(ctx context.Context, scope LimitScope, id string) (*Limits, error)
	// ListLimits returns every assignment.
	ListLimits(ctx context.Context) ([]Limits, error)

	// LeaseQuota adds up to n to counter, never past limit, and returns
	// what it added (0 when the quota is spent) and the usage after it.
	// The counter is dropped after expires (the end of its period plus a
	// margin). It is atomic across instances.
	LeaseQuota(ctx context.Context, counter string, n, limit int64, expires time.Time) (granted, used int64, err error)
	// ReturnQuota gives back n units leased but not spent.
	ReturnQuota(ctx context.Context, counter string, n int64) error
	// QuotaUsed returns the usage of counter (0 if it does not exist).
	QuotaUsed(ctx context.Context, counter string) (int64, error)
}

// RateLeaser is a shared GCRA state per rate-limit bucket (Redis): instances
// lease units of a policy's budget from it and return the ones they did not
// spend, so most requests make no round trip (package ratelimit).
type RateLeaser interface {
	// LeaseRate takes up to n units from bucket, whose policy admits one unit
	// per interval with a burst of burst units, and returns how many it took
	// (0: none left), how many were left after it, and, when it took none,
	// how long until one is available.
	LeaseRate(ctx context.Context, bucket string, interval time.Duration, burst, n int64) (granted, remaining int64, retryAfter time.Duration, err error)
	// ReturnRate gives back n units of bucket that were leased but not spent.
	ReturnRate(ctx context.Context, bucket string, interval time.Duration, n int64) error
}
