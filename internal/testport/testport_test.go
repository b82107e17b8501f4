package testport

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The tests replace pick; none of them runs in parallel.

func TestEphemeralLow(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"32768\t60999\n", 32768},
		{"40000 50000", 40000},
		{"", defaultEphemeralLow},
		{"garbage", defaultEphemeralLow},
		{"x 60999", defaultEphemeralLow},
		{"50000 40000", defaultEphemeralLow},
		{"0 60999", defaultEphemeralLow},
		{"1024 70000", defaultEphemeralLow},
	}
	for _, tc := range tests {
		if got := ephemeralLow(tc.in); got != tc.want {
			t.Errorf("ephemeralLow(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// TestPorts hands out many ports and pairs and checks that each is inside
// the window below the ephemeral range, bindable, and never seen before.
func TestPorts(t *testing.T) {
	hi := window()
	if hi < minPort {
		t.Fatalf("window [%d, %d] is empty", minPort, hi)
	}
	seen := map[int]string{}
	tests := []struct {
		name   string
		offset int // 0: Port, else PortPair(offset)
		calls  int
	}{
		{"Port", 0, 300},
		{"PortPair redis bus", 10000, 50},
		{"PortPair adjacent", 1, 50},
		{"Port after pairs", 0, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.calls {
				p, err := portOrPair(tc.offset)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				ports := []int{p}
				if tc.offset != 0 {
					ports = append(ports, p+tc.offset)
				}
				for _, q := range ports {
					if q < minPort || q > hi {
						t.Fatalf("call %d: port %d outside [%d, %d]", i, q, minPort, hi)
					}
					if prev, ok := seen[q]; ok {
						t.Fatalf("call %d: port %d handed out twice (first by %s)", i, q, prev)
					}
					seen[q] = tc.name
					ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(q)))
					if err != nil {
						t.Fatalf("call %d: port %d not free: %v", i, q, err)
					}
					_ = ln.Close()
				}
			}
		})
	}
}

// TestHeldPortSkipped offers a port a listener holds (or a port already
// handed out) as the first candidates: it is never returned.
func TestHeldPortSkipped(t *testing.T) {
	held := holdPort(t)
	taken, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		offset int
		bad    int // offered first, must not come back
	}{
		{"Port, held by a listener", 0, held},
		{"Port, handed out before", 0, taken},
		{"PortPair, p+offset held by a listener", 10000, held - 10000},
		{"PortPair, p+offset handed out before", 1, taken - 1},
		{"PortPair, p held by a listener", 1, held},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.bad < minPort {
				t.Skipf("port %d below the window", tc.bad)
			}
			offered := 0
			orig := pick
			t.Cleanup(func() { pick = orig })
			pick = func(lo, hi int) int {
				offered++
				if offered <= 5 && tc.bad >= lo && tc.bad <= hi {
					return tc.bad
				}
				return orig(lo, hi)
			}
			p, err := portOrPair(tc.offset)
			if err != nil {
				t.Fatal(err)
			}
			if p == tc.bad {
				t.Fatalf("got port %d, which is not free", p)
			}
			if offered < 6 {
				t.Fatalf("only %d candidates tried: the bad one was not offered", offered)
			}
		})
	}
}

// TestExhausted: when every candidate is taken, the call fails after
// maxCandidates tries instead of returning a taken port or looping.
func TestExhausted(t *testing.T) {
	held := holdPort(t)
	orig := pick
	t.Cleanup(func() { pick = orig })
	tries := 0
	pick = func(int, int) int { tries++; return held }
	if p, err := Port(); err == nil {
		t.Fatalf("got port %d", p)
	}
	if tries != maxCandidates {
		t.Errorf("%d candidates tried, want %d", tries, maxCandidates)
	}
}

func TestPortPairBadOffset(t *testing.T) {
	for _, off := range []int{0, -1, window()} {
		if p, err := PortPair(off); err == nil {
			t.Errorf("PortPair(%d) = %d, want an error", off, p)
		}
	}
}

func TestAddr(t *testing.T) {
	a := Addr(t)
	host, port, err := net.SplitHostPort(a)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr = %q", a)
	}
	if p, _ := strconv.Atoi(port); p < minPort || p > window() {
		t.Fatalf("Addr = %q: port outside [%d, %d]", a, minPort, window())
	}
}

// TestConcurrent: parallel callers (run with -race) get distinct ports.
func TestConcurrent(t *testing.T) {
	const n = 8
	var wg sync.WaitGroup
	got := make([][]int, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			for range 20 {
				p, err := Port()
				if err != nil {
					errs[i] = err
					return
				}
				got[i] = append(got[i], p)
			}
		})
	}
	wg.Wait()
	seen := map[int]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		for _, p := range got[i] {
			if seen[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			seen[p] = true
		}
	}
}

// holdPort listens on a port inside the window (not handed out, near its
// top but below it, so that it can be p of a pair with a small offset and
// p+10000 of a Redis pair) until the test ends and returns it.
func holdPort(t *testing.T) int {
	t.Helper()
	for p := window() - 100; p >= minPort; p-- {
		mu.Lock()
		h := handed[p]
		mu.Unlock()
		if h {
			continue
		}
		ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			if !strings.Contains(err.Error(), "in use") {
				t.Fatal(err)
			}
			continue
		}
		t.Cleanup(func() { _ = ln.Close() })
		return p
	}
	t.Fatal("no port to hold")
	return 0
}

// portOrPair is Port for offset 0, else PortPair(offset).
func portOrPair(offset int) (int, error) {
	if offset == 0 {
		return Port()
	}
	return PortPair(offset)
}
