// Package testport hands tests TCP ports on 127.0.0.1 for processes they
// start later (a keygate binary, a redis-server) and that bind the port
// themselves.
//
// The usual trick, binding 127.0.0.1:0, reading the port the kernel chose
// and closing the listener, is racy: until the child process binds the
// port, the kernel may hand the very same port to someone else. It comes
// from the ephemeral range (/proc/sys/net/ipv4/ip_local_port_range,
// 32768–60999 by default), the range the kernel also uses for every other
// bind(":0") of a parallel test and for the local port of every outgoing
// TCP connection, so the child then fails with "address already in use".
//
// This package instead picks ports at random BELOW the ephemeral range, in
// [10000, low end of the range − 1]: neither bind(":0") nor an outgoing
// connection is ever given such a port, so only someone asking for that
// exact port could take it. Each candidate is checked by binding it (on
// 127.0.0.1 and, when the host has IPv6 loopback, on [::1]) and closing it
// again, and a process-wide set of ports already handed out keeps one test
// binary from getting the same port twice. Two test binaries running at
// the same time (go test runs packages in parallel) could still pick the
// same port, but only if both draw it from the ~20000-port window within
// the same moment, which is far less likely than the ephemeral-range
// reuse above.
//
// It is support code for tests only (like internal/testredis).
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const (
	// minPort is the lowest port handed out: well above the well-known
	// and the usual service ports.
	minPort = 10000
	// defaultEphemeralLow is the kernel's default low end of the
	// ephemeral range, used when it cannot be read.
	defaultEphemeralLow = 32768
	// maxCandidates bounds how many ports one call tries.
	maxCandidates = 200
	// rangeFile holds the kernel's ephemeral range: "low\thigh\n".
	rangeFile = "/proc/sys/net/ipv4/ip_local_port_range"
)

var (
	mu sync.Mutex
	// handed holds every port returned so far (for PortPair both ports).
	handed = map[int]bool{}

	// pick returns a candidate in [lo, hi]; tests replace it.
	pick = func(lo, hi int) int { return lo + rand.IntN(hi-lo+1) } //nolint:gosec // a test port, not a secret

	windowOnce sync.Once
	windowHi   int // highest port handed out: the ephemeral low end − 1

	ipv6Once sync.Once
	hasIPv6  bool
)

// Port returns a port that is free on 127.0.0.1, below the kernel's
// ephemeral range, and not returned before by this process.
func Port() (int, error) { return choose(0) }

// PortPair returns a port p such that p and p+offset (offset > 0) are both
// free and below the ephemeral range, for servers that also bind a second
// port at a fixed distance (a Redis Cluster node's bus is p+10000). Both
// count as handed out.
func PortPair(offset int) (int, error) {
	if offset <= 0 {
		return 0, fmt.Errorf("testport: offset %d: must be > 0", offset)
	}
	return choose(offset)
}

// Addr returns "127.0.0.1:<port>" with a port from Port, failing t when
// there is none.
func Addr(t testing.TB) string {
	t.Helper()
	p, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}

// choose returns p with p (and p+offset when offset > 0) free and new.
func choose(offset int) (int, error) {
	lo, hi := minPort, window()-offset
	if hi < lo {
		return 0, fmt.Errorf("testport: no room for a port pair %d apart in [%d, %d]", offset, minPort, window())
	}
	mu.Lock()
	defer mu.Unlock()
	for range maxCandidates {
		p := pick(lo, hi)
		if handed[p] || !free(p) {
			continue
		}
		if offset > 0 && (handed[p+offset] || !free(p+offset)) {
			continue
		}
		handed[p] = true
		if offset > 0 {
			handed[p+offset] = true
		}
		return p, nil
	}
	return 0, fmt.Errorf("testport: no free port in [%d, %d] after %d candidates", lo, hi, maxCandidates)
}

// window returns the highest port to hand out: one below the low end of
// the kernel's ephemeral range.
func window() int {
	windowOnce.Do(func() {
		b, _ := os.ReadFile(rangeFile) // absent off Linux: the default
		windowHi = ephemeralLow(string(b)) - 1
	})
	return windowHi
}

// ephemeralLow parses the low end of ip_local_port_range, or returns
// defaultEphemeralLow when s is not a valid range.
func ephemeralLow(s string) int {
	f := strings.Fields(s)
	if len(f) != 2 {
		return defaultEphemeralLow
	}
	low, err1 := strconv.Atoi(f[0])
	high, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || low < 1 || low > high || high > 65535 {
		return defaultEphemeralLow
	}
	return low
}

// free reports whether port can be bound on 127.0.0.1 (and on [::1] when
// the host has IPv6 loopback), releasing it again.
func free(port int) bool {
	if !bindable("tcp4", "127.0.0.1", port) {
		return false
	}
	return !ipv6() || bindable("tcp6", "::1", port)
}

func bindable(network, host string, port int) bool {
	ln, err := net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// ipv6 reports whether [::1] can be bound at all.
func ipv6() bool {
	ipv6Once.Do(func() {
		ln, err := net.Listen("tcp6", "[::1]:0")
		if err == nil {
			_ = ln.Close()
		}
		hasIPv6 = err == nil
	})
	return hasIPv6
}
