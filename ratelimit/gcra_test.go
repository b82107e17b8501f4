package ratelimit

import (
	"testing"
	"time"

	"github.com/keygate/keygate/configs"
)

func pol(req int64, per time.Duration, burst int64) *Policy {
	return Compile(configs.RatePolicy{Name: "p", Requests: req, Per: configs.Duration(per), Burst: burst}, 1)
}

// TestGCRA drives the algorithm with an injected clock: burst, steady rate,
// the exact boundary of a unit's availability, and idle refill.
func TestGCRA(t *testing.T) {
	const s = int64(time.Second)
	type step struct {
		at      int64 // ns since start
		ok      bool
		rem     int64
		retryNS int64 // when refused
	}
	tests := []struct {
		name  string
		p     *Policy
		steps []step
	}{
		{name: "burst then refuse", p: pol(10, time.Second, 3), steps: []step{
			{0, true, 2, 0}, {0, true, 1, 0}, {0, true, 0, 0}, {0, false, 0, s / 10},
		}},
		{name: "boundary", p: pol(10, time.Second, 1), steps: []step{
			{0, true, 0, 0},
			{s/10 - 1, false, 0, 1}, // 1 ns early
			{s / 10, true, 0, 0},    // exactly on time
		}},
		{name: "steady rate", p: pol(2, time.Second, 1), steps: []step{
			{0, true, 0, 0}, {s / 2, true, 0, 0}, {s, true, 0, 0}, {s + s/4, false, 0, s / 4}, {3 * s / 2, true, 0, 0},
		}},
		{name: "idle refills to burst, never beyond", p: pol(10, time.Second, 5), steps: []step{
			{0, true, 4, 0}, {0, true, 3, 0}, {100 * s, true, 4, 0}, {100 * s, true, 3, 0},
		}},
		{name: "default burst is requests", p: pol(3, time.Minute, 0), steps: []step{
			{0, true, 2, 0}, {0, true, 1, 0}, {0, true, 0, 0}, {0, false, 0, 20 * s},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var g gcra
			base := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC).UnixNano()
			for i, st := range tc.steps {
				ok, rem, _, retry := g.take(base+st.at, tc.p.interval, tc.p.Burst)
				if ok != st.ok || rem != st.rem || (!ok && retry != st.retryNS) {
					t.Fatalf("step %d at %v: ok=%v rem=%d retry=%v; want %v %d %v", i, time.Duration(st.at), ok, rem, time.Duration(retry), st.ok, st.rem, time.Duration(st.retryNS))
				}
			}
		})
	}
}

// TestGCRABound: hammered for T, GCRA admits exactly burst + T/interval.
func TestGCRABound(t *testing.T) {
	p := pol(100, time.Second, 20)
	var g gcra
	admitted := 0
	step := int64(time.Millisecond) / 4
	for now := int64(0); now < int64(10*time.Second); now += step {
		if ok, _, _, _ := g.take(now, p.interval, p.Burst); ok {
			admitted++
		}
	}
	if want := 20 + 1000 - 1; admitted < want || admitted > want+1 {
		t.Fatalf("admitted %d in 10s; want burst+rate*T = %d", admitted, want+1)
	}
}

func TestPolicyHeader(t *testing.T) {
	p := Compile(configs.RatePolicy{Name: "std", Requests: 100, Per: configs.Duration(time.Minute)}, 4)
	if got := string(p.header); got != `"std";q=100;w=60` {
		t.Fatalf("header %s", got)
	}
	if p.Burst != 100 || p.outBurst != 25 || p.outInterval != 4*p.interval || p.lease < 1 || p.lease > 25 {
		t.Fatalf("compiled %+v", p)
	}
}
