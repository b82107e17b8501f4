package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// maybePprof: with BENCH_PROFILE=1 keygate runs with admin.pprof on and the
// scenarios in perfScenarios are run a second time (not counted) while a
// CPU profile is taken from the gateway's own /debug/pprof/profile. The
// profile goes to the work dir; `go tool pprof -top` (flat, then cumulative)
// goes to bench/results/profiles/<target>-<scenario>.pprof.txt. perf
// (BENCH_PERF=1) sees the kernel side as well; pprof sees Go frames only,
// but with no tool beyond Go itself.
func (r *runner) maybePprof(res Result, target *proc, l load) {
	if os.Getenv("BENCH_PROFILE") != "1" || !perfScenarios[res.Target+"/"+res.Scenario] {
		return
	}
	admin, ok := r.adminOf[target]
	if !ok {
		return
	}
	// The endpoint caps seconds at 60: a longer run is profiled for its
	// first minute.
	secs := min(max(int(l.duration.Seconds()), 1), 60)
	ctx, cancel := context.WithTimeout(context.Background(), l.duration+60*time.Second)
	defer cancel()
	type reply struct {
		body []byte
		err  error
	}
	got := make(chan reply, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), nil)
		if err != nil {
			got <- reply{err: err}
			return
		}
		req.SetBasicAuth(adminUser, adminPassword)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- reply{err: err}
			return
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET /debug/pprof/profile: %s %s", resp.Status, firstLine(string(body)))
		}
		got <- reply{body, err}
	}()
	time.Sleep(100 * time.Millisecond)
	if _, err := runWrk(l); err != nil {
		r.note("profiled run of %s %s: %v", res.Target, res.Scenario, err)
	}
	rep := <-got
	if rep.err != nil {
		r.note("pprof of %s %s: %v", res.Target, res.Scenario, rep.err)
		return
	}
	prof := filepath.Join(r.dir, fmt.Sprintf("cpu-%s-%s.pprof", res.Target, res.Scenario))
	if err := os.WriteFile(prof, rep.body, 0o644); err != nil { //nolint:gosec // bench output, read by the peers' worker processes and by people
		r.note("pprof: %v", err)
		return
	}
	var text strings.Builder
	fmt.Fprintf(&text, "# CPU profile from keygate's /debug/pprof/profile?seconds=%d during a second (uncounted) %s run of %s · %s\n# %s\n",
		secs, l.duration, res.Target, res.Scenario, res.Description)
	for _, mode := range [][]string{{"-top"}, {"-top", "-cum"}} {
		args := append([]string{"tool", "pprof"}, mode...)
		args = append(args, "-nodecount=40", r.bin, prof)
		out, err := exec.CommandContext(ctx, "go", args...).Output() //nolint:gosec // runs the tool this harness is configured with; no client input
		if err != nil {
			r.note("go tool pprof %s: %v", strings.Join(mode, " "), err)
			return
		}
		fmt.Fprintf(&text, "\n## go tool pprof %s\n%s", strings.Join(mode, " "), out)
	}
	r.saveProfile(res, ".pprof.txt", text.String())
}
