package authn

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// rateLimitedAudit keeps a flood of rate-limited refusals from writing one
// audit line each. A refusal for too many failures checks no credential: it
// says nothing the line that started the limit did not, while a line per
// refused request lets an attacker fill the disk (and spend a write system
// call per request) at the rate the gateway can answer 429. So per client
// address (scope ip) or username (scope user) one line is written per
// window, carrying how many refusals were left out since the previous one.
// Every refusal is still counted in keygate_auth_attempts_total
// {result="rate_limited"}; every failure that checked a credential is still
// one line.
//
// The table is fixed-size (memory does not grow with the number of
// attackers): two subjects sharing a slot each get their own lines again,
// and a left-out count can be lost when its slot is taken over (the metric
// keeps it).
type rateLimitedAudit struct {
	mu    sync.Mutex
	seed  maphash.Seed
	slots [rlAuditSlots]rlAuditSlot
}

const (
	rlAuditSlots  = 4096
	rlAuditWindow = 10 * time.Second
)

type rlAuditSlot struct {
	h          uint64
	start      time.Time
	suppressed int
}

// note records a rate-limited refusal of subject in scope at now. It
// reports whether to write a line and, if so, how many refusals of the same
// subject were left out since its previous line.
func (a *rateLimitedAudit) note(scope string, subject []byte, ip netip.Addr, now time.Time) (write bool, leftOut int) {
	var h maphash.Hash
	h.SetSeed(a.seed)
	h.WriteString(scope)
	h.WriteByte(0)
	if scope == "ip" {
		b := ip.As16()
		h.Write(b[:])
	} else {
		h.Write(subject)
	}
	sum := h.Sum64()
	if sum == 0 {
		sum = 1 // 0 marks an empty slot
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := &a.slots[sum%rlAuditSlots]
	if s.h == sum {
		if now.Sub(s.start) < rlAuditWindow && !now.Before(s.start) {
			s.suppressed++
			return false, 0
		}
		leftOut = s.suppressed
	}
	*s = rlAuditSlot{h: sum, start: now}
	return true, leftOut
}
