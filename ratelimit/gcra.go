// Package ratelimit enforces request-rate policies and quotas per API key,
// user, account and route (DESIGN.md §13, issue 19). It is not the
// authentication-failure limiter (authn/failurelimit).
//
// # Algorithm: GCRA
//
// A policy {requests, per, burst} admits one request every interval =
// per/requests on average and up to burst requests at once. It is enforced
// with the generic cell rate algorithm (GCRA, the virtual-scheduling form of
// a token bucket): a bucket keeps one number, the theoretical arrival time
// TAT. A request at now is admitted when
//
//	max(TAT, now) + interval − now ≤ burst·interval
//
// and then TAT becomes max(TAT, now) + interval. Nothing ticks and nothing is
// refilled: the state is one int64, updated under the bucket's mutex, so the
// admitted path costs a lock, a few integer operations and no allocation. The
// bound is exact: over any interval of length T at most burst + T/interval
// requests are admitted, with no doubling at window edges (a fixed window
// admits up to 2× at a boundary; a sliding-window counter approximates). What
// is left for the headers is remaining = ⌊(now + burst·interval − TAT) /
// interval⌋ and the bucket is full again after TAT − now.
//
// # Across instances: leases
//
// With a shared store (store.RateLeaser, Redis) the GCRA state of each bucket
// lives in the store, and an instance takes a lease of n units at a time: one
// round trip advances the shared TAT by n·interval (as if n requests had
// arrived) and the instance then admits n requests locally with no round trip.
// Units not spent within leaseTTL are given back (TAT moves back by their
// interval), and so are units of a request another scope refused. When the
// shared bucket has nothing left, the store answers how long until it has, and
// the instance refuses locally until then, so a flood over the limit costs
// one round trip per retry-after, not per request.
//
// Accuracy: every admitted request was counted in the shared TAT when its
// unit was leased, at most leaseTTL earlier. Over any interval of length T
// the instances together admit at most burst + T/interval + I·n, where I is
// the number of instances and n the lease size (units leased before the
// interval began and spent inside it); n = clamp(rate·leaseTTL/4, 1, burst/4),
// so the error is at most I·n/(burst + T/interval) — e.g. 2 instances,
// 200 req/s, burst 200, T = 5 s: ≤ 2·12/1200 = 2%. Units leased and held
// idle by one instance are unavailable to the others for at most leaseTTL,
// which only under-admits.
//
// # Store outage
//
// When a lease cannot be taken (the store is down or slow), the bucket falls
// back for outageRetry to a local GCRA with 1/rate_limits.instances of the
// policy (interval × instances, burst / instances, at least 1), then tries the
// store again. Limits are then per instance: never unlimited, and never a
// refusal of everyone. Quotas likewise admit at most 1/instances of what
// was left when the store was last reached.
//
// bolt (one instance) has no RateLeaser: every bucket is the local GCRA.
package ratelimit

import (
	"strconv"
	"time"

	"github.com/keygate/keygate/configs"
)

// Policy is a compiled rate-limit policy.
type Policy struct {
	Name     string
	Requests int64
	Per      time.Duration
	Burst    int64

	interval int64 // ns per request
	lease    int64 // units per lease from a shared store
	// outage policy: 1/instances of the budget
	outInterval, outBurst int64
	// header is the RateLimit-Policy item: "name";q=requests;w=seconds
	header []byte
	// item is the start of a RateLimit item: "name";r=
	item []byte
}

// leaseTTL is how long leased units may be spent before they go back.
const leaseTTL = 250 * time.Millisecond

// outageRetry is how long a bucket stays local after a failed lease.
const outageRetry = time.Second

// Compile builds the policy of a config entry for instances instances.
func Compile(c configs.RatePolicy, instances int) *Policy {
	instances = max(instances, 1)
	p := &Policy{Name: c.Name, Requests: c.Requests, Per: time.Duration(c.Per), Burst: c.Burst}
	if p.Burst < 1 {
		p.Burst = p.Requests
	}
	p.interval = max(int64(p.Per)/max(p.Requests, 1), 1)
	// Lease: a quarter of what arrives in leaseTTL at full rate, at most a
	// quarter of the burst, at least one.
	p.lease = max(min(int64(leaseTTL)/p.interval/4, p.Burst/4), 1)
	p.outInterval = p.interval * int64(instances)
	p.outBurst = max(p.Burst/int64(instances), 1)
	p.header = appendItem(nil, p.Name)
	p.header = append(p.header, ";q="...)
	p.header = strconv.AppendInt(p.header, p.Requests, 10)
	p.header = append(p.header, ";w="...)
	p.header = strconv.AppendInt(p.header, int64((p.Per+time.Second-1)/time.Second), 10)
	p.item = append(appendItem(nil, p.Name), ";r="...)
	return p
}

// appendItem appends name as a structured-field string (RFC 9651); policy
// names are validated to need no escaping.
func appendItem(dst []byte, name string) []byte {
	dst = append(dst, '"')
	dst = append(dst, name...)
	return append(dst, '"')
}

// gcra is one bucket's theoretical arrival time (Unix ns).
type gcra struct{ tat int64 }

// take admits one request at now under (interval, burst). It returns whether
// it did, the units left, the time until the bucket is full again and, when
// refused, the time until one unit is available.
func (g *gcra) take(now, interval, burst int64) (ok bool, remaining, reset, retry int64) {
	tat := max(g.tat, now)
	next := tat + interval
	if next-now > burst*interval {
		return false, 0, tat - now, next - now - burst*interval
	}
	g.tat = next
	return true, (now + burst*interval - next) / interval, next - now, 0
}

// give returns one unit taken by take (the request was refused elsewhere).
func (g *gcra) give(interval int64) { g.tat -= interval }
