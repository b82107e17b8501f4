package proxy

import (
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// untrustedForwarded makes a missing trusted_proxies visible (issue 13.11):
// behind a reverse proxy that keygate does not trust, every client shares
// the proxy's address, so one client's failures lock the others out. Each
// request carrying X-Forwarded-For or Forwarded from a peer outside
// trusted_proxies is counted in keygate_untrusted_forwarded_total, and the
// first such request of each peer logs one warning.
//
// Memory is bounded: at most untrustedPeersMax peers are remembered; past
// that, one more line says that further peers are not logged (the metric
// still counts every request).
type untrustedForwarded struct {
	log   *zap.Logger
	count prometheus.Counter // nil without a Registerer

	mu    sync.Mutex
	seen  map[netip.Addr]struct{}
	full  bool
	lines int // warnings written (tests)
}

const untrustedPeersMax = 1024

// note records a request with forwarding headers from the untrusted peer.
func (u *untrustedForwarded) note(peer netip.Addr) {
	if u.count != nil {
		u.count.Inc()
	}
	u.mu.Lock()
	if _, ok := u.seen[peer]; ok || u.full && len(u.seen) >= untrustedPeersMax {
		u.mu.Unlock()
		return
	}
	if u.seen == nil {
		u.seen = make(map[netip.Addr]struct{})
	}
	if len(u.seen) >= untrustedPeersMax {
		u.full = true
		u.lines++
		u.mu.Unlock()
		u.log.Warn("more peers send X-Forwarded-For or Forwarded without being in trusted_proxies; further peers are not logged (see keygate_untrusted_forwarded_total)",
			zap.Int("peers_logged", untrustedPeersMax))
		return
	}
	u.seen[peer] = struct{}{}
	u.lines++
	u.mu.Unlock()
	u.log.Warn("a request carries X-Forwarded-For or Forwarded from a peer not in trusted_proxies: the header is ignored, "+
		"and the peer's address is the client address (failure limits); if this peer is your reverse proxy, add it to trusted_proxies",
		zap.String("peer", peer.String()))
}
