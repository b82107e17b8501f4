package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// startBare starts bench/cmd/bareproxy in front of the upstream: a fasthttp
// server handing every request to a fasthttp.HostClient, no checks (issue
// 14's floor: keygate auth: none is compared with it).
func (r *runner) startBare() (*proc, error) {
	if _, err := os.Stat(r.bareBin); err != nil {
		return nil, fmt.Errorf("%s not built (bench/run.sh builds it): %w", r.bareBin, errSkip)
	}
	r.bareAddr = fmt.Sprintf("127.0.0.1:%d", mustFreePort())
	p, err := r.startProc("bareproxy", nil, r.bareBin, "-listen", r.bareAddr, "-upstream", r.echoAddr)
	if err != nil {
		return nil, err
	}
	if err := waitTCP(p, r.bareAddr, 10*time.Second); err != nil {
		return nil, err
	}
	step("started the bare fasthttp proxy at %s", r.bareAddr)
	return p, nil
}

// microJWT are the figures of BenchmarkChainHitJWT's basic_serial and
// serial (JWT) runs: the same chain and cache, one goroutine.
type microJWT struct {
	basicNs, jwtNs         []float64
	basicAllocs, jwtAllocs float64 // the highest seen
	err                    string
}

var benchLine = regexp.MustCompile(`^BenchmarkChainHitJWT/(basic_serial|serial)-\d+\s+\d+\s+([\d.]+) ns/op\s+\d+ B/op\s+(\d+) allocs/op`)

// runMicroJWT runs the JWT vs Basic cache-hit micro-benchmark (issue 14:
// a JWT hit ≤ 1.2× a Basic hit, 0 allocations) from the source tree.
func runMicroJWT() *microJWT {
	m := &microJWT{}
	if _, err := os.Stat("authn/token"); err != nil {
		m.err = "source tree not found (run from the repository root)"
		return m
	}
	step("micro-benchmark: JWT vs Basic cache hit (go test -bench BenchmarkChainHitJWT, -count 6)")
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "BenchmarkChainHitJWT/(basic_serial|serial)$", //nolint:gosec // fixed arguments
		"-benchmem", "-count", "6", "-benchtime", "300ms", "./authn/token/")
	out, err := cmd.CombinedOutput()
	if err != nil {
		m.err = fmt.Sprintf("go test: %v: %s", err, firstLine(string(out)))
		return m
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		g := benchLine.FindStringSubmatch(sc.Text())
		if g == nil {
			continue
		}
		ns, _ := strconv.ParseFloat(g[2], 64)
		allocs, _ := strconv.ParseFloat(g[3], 64)
		if g[1] == "serial" {
			m.jwtNs, m.jwtAllocs = append(m.jwtNs, ns), max(m.jwtAllocs, allocs)
		} else {
			m.basicNs, m.basicAllocs = append(m.basicNs, ns), max(m.basicAllocs, allocs)
		}
	}
	if len(m.jwtNs) == 0 || len(m.basicNs) != len(m.jwtNs) {
		m.err = "no benchmark lines in the output"
	}
	return m
}

// goal is the micro-benchmark's goal row: the median of the per-run
// ratios (runs alternate within one go test -count run) and their range.
func (m *microJWT) goal() Goal {
	g := Goal{Goal: "JWT cache hit ≤ 1.2× Basic hit, 0 allocs (micro-benchmark, BenchmarkChainHitJWT)", Want: "≤ 1.2, 0 allocs"}
	if m == nil {
		g.NA = "not run (BENCH_MICRO_JWT=0 or hits phase not run)"
		return g
	}
	if m.err != "" {
		g.NA = m.err
		return g
	}
	rr := make([]float64, len(m.jwtNs))
	for i := range rr {
		rr[i] = m.jwtNs[i] / m.basicNs[i]
	}
	g.Ratio = median(rr)
	g.Met = g.Ratio <= 1.2 && m.jwtAllocs == 0
	g.Detail = fmt.Sprintf("%.0f vs %.0f ns/hit (medians), %.0f and %.0f allocs/hit; median of %d per-run ratios, %.2f–%.2f",
		median(m.jwtNs), median(m.basicNs), m.jwtAllocs, m.basicAllocs, len(rr), slices.Min(rr), slices.Max(rr))
	return g
}
