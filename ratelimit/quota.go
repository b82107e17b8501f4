package ratelimit

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/keygate/keygate/store"
)

// quotaLeaseTTL is how long leased quota units are held before they go back
// to the store (so GET shows what was really used).
const quotaLeaseTTL = 2 * time.Second

// quota is one key's, user's or account's quota: usage is counted in the
// store (it survives restarts), leased in slices like rate units.
type quota struct {
	mu        sync.Mutex
	scope     store.LimitScope
	id        string
	q         store.Quota
	instances int64
	header    []byte // RateLimit-Policy item
	item      []byte // RateLimit item prefix

	counter        string // the current period's counter
	periodEnd      int64
	onHand         int64
	leasedAt       int64
	used           int64 // usage in the store after the last lease
	exhaustedUntil int64
	degradedUntil  int64
	outageSpent    int64
}

func newQuota(scope store.LimitScope, id string, q store.Quota, instances int) *quota {
	qs := &quota{scope: scope, id: id, q: q, instances: int64(max(instances, 1))}
	name := "quota-" + q.Per
	w := int64(86400)
	if q.Per == store.QuotaMonth {
		w = 31 * 86400
	}
	qs.header = appendItem(nil, name)
	qs.header = append(qs.header, ";q="...)
	qs.header = strconv.AppendInt(qs.header, q.Requests, 10)
	qs.header = append(qs.header, ";w="...)
	qs.header = strconv.AppendInt(qs.header, w, 10)
	qs.item = append(appendItem(nil, name), ";r="...)
	return qs
}

// leaseSize: a hundredth of the quota, between 1 and 1000 units.
func (qs *quota) leaseSize() int64 { return max(min(qs.q.Requests/100, 1000), 1) }

func (qs *quota) take(ls store.LimitStore, timeout time.Duration, now int64) result {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	if now >= qs.periodEnd {
		qs.roll(ls, timeout, now)
	}
	reset := qs.periodEnd - now
	if qs.onHand > 0 {
		qs.onHand--
		return result{ok: true, remaining: max(qs.q.Requests-qs.used, 0) + qs.onHand, reset: reset}
	}
	if now < qs.exhaustedUntil {
		return result{reset: reset, retry: reset}
	}
	if now < qs.degradedUntil {
		return qs.outage(reset)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	g, used, err := ls.LeaseQuota(ctx, qs.counter, qs.leaseSize(), qs.q.Requests, time.Unix(0, qs.periodEnd).Add(24*time.Hour))
	switch {
	case err != nil:
		qs.degradedUntil = now + int64(outageRetry)
		return qs.outage(reset)
	case g == 0:
		qs.used = used
		qs.exhaustedUntil = qs.periodEnd
		return result{reset: reset, retry: reset}
	}
	qs.used, qs.onHand, qs.leasedAt, qs.outageSpent = used, g-1, now, 0
	return result{ok: true, remaining: max(qs.q.Requests-qs.used, 0) + qs.onHand, reset: reset}
}

// outage admits up to 1/instances of what was left when the store was last
// reached.
func (qs *quota) outage(reset int64) result {
	allow := max((qs.q.Requests-qs.used)/qs.instances, 0)
	if qs.outageSpent >= allow {
		return result{reset: reset, retry: min(reset, int64(outageRetry)), degraded: true}
	}
	qs.outageSpent++
	return result{ok: true, remaining: allow - qs.outageSpent, reset: reset, degraded: true}
}

// roll starts the period containing now, giving back what is left of the
// previous one's lease.
func (qs *quota) roll(ls store.LimitStore, timeout time.Duration, now int64) {
	qs.giveBack(ls, timeout)
	start, end := qs.q.Period(time.Unix(0, now))
	qs.counter = store.QuotaCounter(qs.scope, qs.id, start)
	qs.periodEnd = end.UnixNano()
	qs.used, qs.exhaustedUntil, qs.outageSpent = 0, 0, 0
}

func (qs *quota) giveBack(ls store.LimitStore, timeout time.Duration) {
	if qs.onHand <= 0 || qs.counter == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if ls.ReturnQuota(ctx, qs.counter, qs.onHand) == nil {
		qs.used -= qs.onHand
		qs.onHand = 0
	}
}

func (qs *quota) give(r result) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	if r.degraded {
		qs.outageSpent--
		return
	}
	qs.onHand++
}

func (qs *quota) sweep(ls store.LimitStore, timeout time.Duration, now int64) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	if qs.onHand > 0 && now-qs.leasedAt >= int64(quotaLeaseTTL) {
		qs.giveBack(ls, timeout)
	}
}

func (qs *quota) exhausted(now int64) bool {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	return now < qs.exhaustedUntil
}

// Status is a quota's state as GET key/user/account shows it.
type Status struct {
	Requests  int64     `json:"requests"`
	Per       string    `json:"per"`
	Used      int64     `json:"used"`
	Remaining int64     `json:"remaining"`
	Reset     time.Time `json:"reset"`
}

// QuotaStatus reads the usage of q for (scope, id) at now from the store.
// Units leased by an instance and not yet spent count as used for at most
// a few seconds.
func QuotaStatus(ctx context.Context, ls store.LimitStore, scope store.LimitScope, id string, q *store.Quota, now time.Time) (*Status, error) {
	start, end := q.Period(now)
	used, err := ls.QuotaUsed(ctx, store.QuotaCounter(scope, id, start))
	if err != nil {
		return nil, err
	}
	return &Status{Requests: q.Requests, Per: q.Per, Used: used, Remaining: max(q.Requests-used, 0), Reset: end}, nil
}
