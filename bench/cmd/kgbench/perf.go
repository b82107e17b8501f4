package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// perfScenarios are profiled when BENCH_PERF=1 (perf) or BENCH_PROFILE=1
// (keygate's own pprof endpoint): after its measured run, the scenario runs
// again while the profile is taken (the profiled run is not counted:
// profiling costs CPU too) and the top of the report is saved as
// bench/results/profiles/<target>-<scenario>.txt (perf) or .pprof.txt.
var perfScenarios = map[string]bool{
	"keygate-bolt/none": true, "keygate-bolt/bearer_kg": true, "keygate-bolt/basic": true, "keygate-bolt/apikey": true,
	"keygate-redis/ws_100k": true, "keygate-redis/ws_1m": true, "keygate-redis/ws_1m_fresh": true,
	// Issue 15: where a check's CPU goes behind nginx and straight from wrk.
	"nginx+keygate/auth_request_basic": true, "keygate-bolt/check_direct_basic": true,
}

// inclusiveSymbols are listed with their inclusive share (self and
// callees) under the self-time table: the Go runtime's scheduling (a parked
// goroutine woken by the netpoller, sysmon woken when the process leaves
// idle) against the handler and the socket calls.
var inclusiveSymbols = []string{
	"runtime.sysmon", "runtime.findRunnable", "runtime.netpoll", "runtime.stopm", "runtime.startm",
	"github.com/valyala/fasthttp.(*Server).serveConnCounted", "github.com/keygate/keygate/proxy.(*Proxy).Handler",
	"github.com/keygate/keygate/forwardauth.(*Server).Handler", "net.(*conn).Write", "bufio.(*Reader).fill",
}

func (r *runner) maybeProfile(res Result, target *proc, l load) {
	if os.Getenv("BENCH_PERF") != "1" || !perfScenarios[res.Target+"/"+res.Scenario] {
		return
	}
	if _, err := exec.LookPath("perf"); err != nil {
		r.note("BENCH_PERF=1 but perf is not installed: no profile of %s %s", res.Target, res.Scenario)
		return
	}
	data := filepath.Join(r.dir, fmt.Sprintf("perf-%s-%s.data", res.Target, res.Scenario))
	secs := max(int(l.duration.Seconds()), 1)
	ctx, cancel := context.WithTimeout(context.Background(), l.duration+60*time.Second)
	defer cancel()
	rec := exec.CommandContext(ctx, "perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(target.pid()), "-o", data, "--", "sleep", strconv.Itoa(secs)) //nolint:gosec // runs the tool this harness is configured with; no client input
	if err := rec.Start(); err != nil {
		r.note("perf record: %v", err)
		return
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := runWrk(l); err != nil {
		r.note("profiled run of %s %s: %v", res.Target, res.Scenario, err)
	}
	if err := rec.Wait(); err != nil {
		r.note("perf record: %v", err)
		return
	}
	out, err := exec.CommandContext(ctx, "perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none", //nolint:gosec // runs the tool this harness is configured with; no client input
		"--percent-limit", "0.7", "--sort", "symbol").Output()
	if err != nil {
		r.note("perf report: %v", err)
		return
	}
	var keep []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") && !strings.Contains(line, "Samples") {
			continue
		}
		keep = append(keep, line)
		if len(keep) >= 60 {
			break
		}
	}
	head := fmt.Sprintf("# perf record -F 499 -g -p <%s> during a second %s run of %s · %s (self time by symbol, ≥0.7%%)\n# %s\n",
		target.name, l.duration, res.Target, res.Scenario, res.Description)
	text := head + strings.Join(keep, "\n") + "\n"
	if incl, err := exec.CommandContext(ctx, "perf", "report", "-i", data, "--stdio", "--children", "-g", "none", //nolint:gosec // runs the tool this harness is configured with; no client input
		"--sort", "symbol").Output(); err == nil {
		text += "\n# inclusive share (children, self) of some symbols\n"
		for _, line := range strings.Split(string(incl), "\n") {
			f := strings.Fields(line)
			if len(f) >= 4 && slices.Contains(inclusiveSymbols, f[3]) {
				text += fmt.Sprintf("%8s %8s  %s\n", f[0], f[1], f[3])
			}
		}
	}
	r.saveProfile(res, ".txt", text)
}

// profile re-runs a scenario under whichever profilers are on
// (BENCH_PERF, BENCH_PROFILE); each is a no-op otherwise.
func (r *runner) profile(res Result, target *proc, l load) {
	r.maybeProfile(res, target, l)
	r.maybePprof(res, target, l)
}

// saveProfile writes a profile report as
// bench/results/profiles/<target>-<scenario><ext>.
func (r *runner) saveProfile(res Result, ext, text string) {
	dir := filepath.Join(r.out, "profiles")
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // bench output, read by the peers' worker processes and by people
		return
	}
	path := filepath.Join(dir, res.Target+"-"+res.Scenario+ext)
	if err := os.WriteFile(path, []byte(text), 0o644); err == nil { //nolint:gosec // bench output, read by the peers' worker processes and by people
		step("profile: %s", path)
	}
}
