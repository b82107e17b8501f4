package main

import (
	"encoding/json"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Result is one measured (or skipped) scenario.
type Result struct {
	Target      string  `json:"target"`
	Scenario    string  `json:"scenario"`
	Description string  `json:"description,omitempty"`
	RPS         float64 `json:"rps"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	Requests    int64   `json:"requests"`
	Non2xx      int64   `json:"non_2xx"`
	Errors      int64   `json:"socket_errors"`
	Connections int     `json:"connections,omitempty"`
	Seconds     float64 `json:"seconds,omitempty"`
	// CPUusPerReq is the measured process tree's utime+stime during the run
	// divided by the requests served (the gateway's, not wrk's nor the
	// upstream's — except for "direct", where it is the upstream's).
	CPUusPerReq float64 `json:"cpu_us_per_request"`
	// PeakRSSMB is VmHWM (summed over the process tree) after the run: the
	// process's peak so far, not this scenario's alone.
	PeakRSSMB float64 `json:"peak_rss_mb"`
	Process   string  `json:"process,omitempty"`
	SideRPS   float64 `json:"second_client_rps,omitempty"`
	Notes     string  `json:"notes,omitempty"`
	Skipped   string  `json:"skipped,omitempty"`
	// Rounds are the figures of each interleaved round when the scenario
	// was measured more than once (the fields above are their medians).
	Rounds []Round `json:"rounds,omitempty"`
}

// Round is one measurement of a scenario measured in rounds.
type Round struct {
	RPS         float64 `json:"rps"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	CPUusPerReq float64 `json:"cpu_us_per_request"`
}

// medianResult folds the rounds of one scenario: the median of each
// figure, request and error counts summed, the highest peak RSS.
func medianResult(rs []Result) Result {
	out := rs[0]
	if len(rs) == 1 {
		return out
	}
	var rps, p50, p99, cpu []float64
	out.Requests, out.Non2xx, out.Errors, out.Seconds = 0, 0, 0, 0
	for _, x := range rs {
		rps, p50, p99, cpu = append(rps, x.RPS), append(p50, x.P50ms), append(p99, x.P99ms), append(cpu, x.CPUusPerReq)
		out.Requests += x.Requests
		out.Non2xx += x.Non2xx
		out.Errors += x.Errors
		out.Seconds += x.Seconds
		out.PeakRSSMB = max(out.PeakRSSMB, x.PeakRSSMB)
		out.Rounds = append(out.Rounds, Round{x.RPS, x.P50ms, x.P99ms, x.CPUusPerReq})
	}
	out.RPS, out.P50ms, out.P99ms, out.CPUusPerReq = median(rps), median(p50), median(p99), median(cpu)
	parts := make([]string, len(rps))
	for i, v := range rps {
		parts[i] = strconv.FormatFloat(v, 'f', 0, 64)
	}
	note := fmt.Sprintf("median of %d rounds (%s req/s)", len(rs), strings.Join(parts, ", "))
	if out.Notes != "" {
		note = out.Notes + "; " + note
	}
	out.Notes = note
	return out
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if n := len(v); n%2 == 1 {
		return v[n/2]
	} else if n > 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return 0
}

func minRPS(rs []Result) float64 {
	m := rs[0].RPS
	for _, x := range rs {
		m = min(m, x.RPS)
	}
	return m
}

func maxRPS(rs []Result) float64 {
	m := rs[0].RPS
	for _, x := range rs {
		m = max(m, x.RPS)
	}
	return m
}

// roundRatios are num/den per round when both were measured in the same
// rounds (nil otherwise).
func roundRatios(num, den *Result, cpu bool) []float64 {
	if len(num.Rounds) < 2 || len(num.Rounds) != len(den.Rounds) {
		return nil
	}
	out := make([]float64, len(num.Rounds))
	for i := range num.Rounds {
		if cpu {
			out[i] = num.Rounds[i].CPUusPerReq / den.Rounds[i].CPUusPerReq
		} else {
			out[i] = num.Rounds[i].RPS / den.Rounds[i].RPS
		}
	}
	return out
}

// Goal is one of the targets, evaluated on this run's figures.
type Goal struct {
	Goal   string  `json:"goal"`
	Want   string  `json:"want"`
	Ratio  float64 `json:"ratio"`
	Met    bool    `json:"met"`
	Detail string  `json:"detail"`
	NA     string  `json:"not_available,omitempty"`
}

type report struct {
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Host     map[string]string `json:"host"`
	Versions map[string]string `json:"versions"`
	Settings map[string]any    `json:"settings"`
	Results  []Result          `json:"results"`
	Goals    []Goal            `json:"goals"`
	Notes    []string          `json:"notes"`
}

func (r *runner) find(target, scenario string) *Result {
	for i := range r.results {
		if res := &r.results[i]; res.Target == target && res.Scenario == scenario && res.Skipped == "" && res.Requests > 0 {
			return res
		}
	}
	return nil
}

func (r *runner) goals() []Goal {
	var gs []Goal
	ratio := func(goal, want string, num, den *Result, min, max float64, cpu bool) {
		g := Goal{Goal: goal, Want: want}
		switch {
		case num == nil:
			g.NA = "scenario not measured"
		case den == nil:
			g.NA = "reference not measured"
		case cpu:
			g.Ratio = num.CPUusPerReq / den.CPUusPerReq
			g.Detail = fmt.Sprintf("%.1f vs %.1f µs/req", num.CPUusPerReq, den.CPUusPerReq)
		default:
			g.Ratio = num.RPS / den.RPS
			g.Detail = fmt.Sprintf("%.0f vs %.0f req/s", num.RPS, den.RPS)
		}
		if num != nil && den != nil {
			// Measured in the same rounds: the median of the per-round
			// ratios (each taken minutes apart at most) is the figure.
			if rr := roundRatios(num, den, cpu); rr != nil {
				g.Ratio = median(rr)
				g.Detail += fmt.Sprintf(" (medians); median of %d per-round ratios, %.2f–%.2f", len(rr), slices.Min(rr), slices.Max(rr))
			}
			if cpu {
				g.Met = g.Ratio <= max
			} else {
				g.Met = g.Ratio >= min
			}
		}
		gs = append(gs, g)
	}
	forms := []string{"basic", "basic_api_key", "apikey", "bearer_kg", "bearer_jwt"}
	bare := r.find("bare", "proxy")
	for _, kg := range []string{"keygate-bolt", "keygate-redis"} {
		none := r.find(kg, "none")
		if none != nil {
			// Issue 14: keygate's own proxy core against the bare fasthttp
			// proxy of the same rounds.
			ratio(kg+" auth:none CPU/req ≤ 1.10× bare fasthttp proxy", "≤ 1.10", none, bare, 0, 1.10, true)
			ratio(kg+" auth:none req/s vs bare fasthttp proxy", "report", none, bare, 0, 0, false)
		}
		for _, f := range forms {
			hit := r.find(kg, f)
			if hit == nil {
				continue
			}
			p := kg + " " + f
			ratio(p+" ≥ 1.0× nginx proxy_pass", "≥ 1.0", hit, r.find("nginx", "proxy"), 1.0, 0, false)
			ratio(p+" ≥ 0.95× keygate auth:none", "≥ 0.95", hit, none, 0.95, 0, false)
			ratio(p+" ≥ 3× nginx auth_basic apr1", "≥ 3", hit, r.find("nginx", "basic_apr1"), 3, 0, false)
			ratio(p+" ≥ 2.5× Caddy basic_auth", "≥ 2.5", hit, r.find("caddy", "basic_auth"), 2.5, 0, false)
			ratio(p+" CPU/req ≤ 1.05× auth:none", "≤ 1.05", hit, none, 0, 1.05, true)
		}
		// Issue 19: a rate-limited cache hit ≥ 0.9× an unlimited one.
		ratio(kg+" rate-limited hit (rl_hit) ≥ 0.9× unlimited hit (bearer_kg)", "≥ 0.9", r.find(kg, "rl_hit"), r.find(kg, "bearer_kg"), 0.9, 0, false)
	}
	// Issue 15: keygate's CPU per check behind nginx against its CPU per
	// proxied hit of the same form, and the pair's req/s against nginx
	// auth_basic apr1; the direct check (keygate as busy as when it
	// proxies) is reported beside it.
	for _, f := range []string{"basic", "bearer_kg"} {
		check, proxied := r.find("nginx+keygate", "auth_request_"+f), r.find("keygate-bolt", f)
		ratio("forward-auth "+f+": keygate CPU per check (nginx auth_request) ≤ 0.6× its proxied hit", "≤ 0.6", check, proxied, 0, 0.6, true)
		ratio("forward-auth "+f+": keygate CPU per check (wrk → forward-auth listener) vs its proxied hit", "report", r.find("keygate-bolt", "check_direct_"+f), proxied, 0, 0, true)
		ratio("forward-auth "+f+": nginx+keygate req/s ≥ 2× nginx auth_basic apr1", "≥ 2", check, r.find("nginx", "basic_apr1"), 2, 0, false)
	}
	gs = append(gs, r.micro.goal())
	// The all-hit reference of the working sets is ws_100k (100k keys in a
	// 100k cache: every request a hit once walked) when measured: the same
	// keygate, the same wrk script picking a random key per request, a
	// minute earlier. Else the fixed-key bearer_kg of the hits phase.
	allHit, allHitName := r.find("keygate-redis", "ws_1k_ref"), "ws_1k_ref"
	if allHit == nil {
		allHit, allHitName = r.find("keygate-redis", "ws_100k"), "ws_100k"
	}
	if allHit == nil || !strings.Contains(allHit.Notes, "hit ratio 100.0%") {
		allHit, allHitName = r.find("keygate-redis", "bearer_kg"), "bearer_kg"
	}
	for _, ws := range []string{"ws_1k", "ws_100k", "ws_1m", "ws_1m_fresh"} {
		want := "report"
		if ws == "ws_1m" || ws == "ws_1m_fresh" {
			want = "≥ 0.6"
		}
		if ws == allHitName {
			continue
		}
		g := Goal{Goal: "keygate-redis " + ws + " vs all-hit (" + allHitName + ")", Want: want}
		num := r.find("keygate-redis", ws)
		switch {
		case num == nil:
			g.NA = "not measured"
		case allHit == nil:
			g.NA = "all-hit not measured"
		default:
			g.Ratio = num.RPS / allHit.RPS
			g.Detail = fmt.Sprintf("%.0f vs %.0f req/s; %s", num.RPS, allHit.RPS, num.Notes)
			if rr := roundRatios(num, allHit, false); rr != nil {
				g.Ratio = median(rr)
				g.Detail += fmt.Sprintf("; median of %d per-round ratios, %.2f–%.2f", len(rr), slices.Min(rr), slices.Max(rr))
			}
			g.Met = want != "≥ 0.6" || g.Ratio >= 0.6
		}
		gs = append(gs, g)
	}
	for _, v := range [][2]string{{"keygate-bolt", ""}, {"keygate-bolt-nolimit", "_nolimit"}, {"keygate-bolt-nolimit-hc1", "_nolimit_hc1"}} {
		kg, suffix := v[0], v[1]
		alone := r.find("keygate-bolt", "basic")
		fl := r.find(kg, "flood_cached"+suffix)
		ctl := r.find(kg, "flood_control"+suffix)
		ratio(kg+" cached Basic during wrong-password flood ≥ 0.8× alone", "≥ 0.8", fl, alone, 0.8, 0, false)
		ratio(kg+" cached Basic during flood vs control (2nd client cached)", "≥ 0.8", fl, ctl, 0.8, 0, false)
	}
	return gs
}

func (r *runner) write() error {
	rep := report{
		Started:  r.start,
		Finished: time.Now().UTC(),
		Host:     hostInfo(),
		Versions: r.versions,
		Settings: map[string]any{
			"duration_per_scenario": r.dur.String(), "wrk_threads": r.threads, "wrk_connections": r.conns,
			"keygate_cache": "max_entries 100000, ttl 60s, negative_ttl 5s", "one_million_keys": r.oneMillion,
			"fixture_created_via": r.seededVia,
		},
		Results: r.results,
		Goals:   r.goals(),
		Notes:   r.notes,
	}
	if err := os.MkdirAll(r.out, 0o755); err != nil { //nolint:gosec // bench output, read by the peers' worker processes and by people
		return err
	}
	stamp := r.start.Format("2006-01-02T150405Z")
	js, _ := json.MarshalIndent(rep, "", "  ")
	md := markdown(&rep, stamp)
	svg := chart(&rep)
	for _, name := range []string{stamp, "latest"} {
		for ext, b := range map[string][]byte{".json": append(js, '\n'), ".md": []byte(md), ".svg": []byte(svg)} {
			if err := os.WriteFile(filepath.Join(r.out, name+ext), b, 0o644); err != nil { //nolint:gosec // bench output, read by the peers' worker processes and by people
				return err
			}
		}
	}
	fmt.Println()
	fmt.Print(md)
	step("results: %s/%s.{md,json,svg} and latest.{md,json,svg}", r.out, stamp)
	return nil
}

func hostInfo() map[string]string {
	h := map[string]string{"cpus": fmt.Sprint(runtime.NumCPU()), "goos": runtime.GOOS, "goarch": runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				h["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		h["loadavg_at_end"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h["kernel"] = strings.TrimSpace(string(b))
	}
	return h
}

func markdown(rep *report, stamp string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# keygate bench — %s\n\n", stamp)
	fmt.Fprintf(&b, "Host: %s, %s CPUs, kernel %s; load average at the end %s. ", rep.Host["cpu"], rep.Host["cpus"], rep.Host["kernel"], rep.Host["loadavg_at_end"])
	fmt.Fprintf(&b, "wrk -t%v -c%v for %v per scenario; all processes (wrk, gateway, upstream, Redis) share the same CPUs, so compare ratios within this run only.\n\n",
		rep.Settings["wrk_threads"], rep.Settings["wrk_connections"], rep.Settings["duration_per_scenario"])
	b.WriteString("| target | scenario | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MB | non-2xx | notes |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rep.Results {
		if r.Skipped != "" {
			fmt.Fprintf(&b, "| %s | %s | — | — | — | — | — | — | skipped: %s |\n", r.Target, r.Scenario, mdEscape(r.Skipped))
			continue
		}
		notes := r.Description
		if r.Notes != "" {
			notes += "; " + r.Notes
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.2f | %.2f | %.1f | %.1f | %d | %s |\n",
			r.Target, r.Scenario, r.RPS, r.P50ms, r.P99ms, r.CPUusPerReq, r.PeakRSSMB, r.Non2xx+r.Errors, mdEscape(notes))
	}
	b.WriteString("\nCPU µs/req: utime+stime of the measured process (and its children) over the run ÷ requests; for `direct` it is the upstream's own cost. Peak RSS: VmHWM after the run (the process's peak so far).\n\n")
	b.WriteString("## Goals (ratios measured side by side in this run)\n\n| goal | want | ratio | met | detail |\n|---|---|---:|---|---|\n")
	for _, g := range rep.Goals {
		if g.NA != "" {
			fmt.Fprintf(&b, "| %s | %s | — | n/a | %s |\n", g.Goal, g.Want, g.NA)
			continue
		}
		met := "no"
		if g.Met {
			met = "yes"
		}
		if g.Want == "report" {
			met = "—"
		}
		fmt.Fprintf(&b, "| %s | %s | %.3f | %s | %s |\n", g.Goal, g.Want, g.Ratio, met, mdEscape(g.Detail))
	}
	if len(rep.Notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range rep.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	b.WriteString("\nVersions: ")
	first := true
	for _, k := range []string{"keygate", "go", "wrk", "nginx", "caddy", "haproxy", "redis"} {
		if v, ok := rep.Versions[k]; ok {
			if !first {
				b.WriteString("; ")
			}
			first = false
			fmt.Fprintf(&b, "%s: `%s`", k, v)
		}
	}
	b.WriteString("\n")
	return b.String()
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}

// chart draws two horizontal bar panels: throughput and p99 per scenario.
func chart(rep *report) string {
	var rows []Result
	for _, r := range rep.Results {
		if r.Skipped == "" && r.Requests > 0 {
			rows = append(rows, r)
		}
	}
	const (
		labelW = 300
		panelW = 360
		gap    = 40
		rowH   = 20
		top    = 50
	)
	width := labelW + 2*panelW + gap + 20
	height := top + rowH*len(rows) + 40
	var maxRPS, maxP99 float64
	for _, r := range rows {
		maxRPS = max(maxRPS, r.RPS)
		maxP99 = max(maxP99, r.P99ms)
	}
	if maxRPS == 0 {
		maxRPS = 1
	}
	if maxP99 == 0 {
		maxP99 = 1
	}
	color := func(t string) string {
		switch {
		case strings.HasPrefix(t, "keygate-redis"):
			return "#d62728"
		case strings.HasPrefix(t, "keygate"):
			return "#1f77b4"
		case t == "nginx":
			return "#2ca02c"
		case t == "caddy":
			return "#9467bd"
		case t == "haproxy":
			return "#8c564b"
		}
		return "#7f7f7f"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="18" font-size="14" font-weight="bold">keygate bench %s — throughput (req/s, longer is better) and p99 latency (ms, shorter is better)</text>`+"\n",
		rep.Started.Format("2006-01-02 15:04Z"))
	x1 := labelW
	x2 := labelW + panelW + gap
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">requests/s (max %.0f)</text>`+"\n", x1, top-10, maxRPS)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">p99 ms (max %.2f)</text>`+"\n", x2, top-10, maxP99)
	for i, r := range rows {
		y := top + i*rowH
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW-8, y+14, html.EscapeString(r.Target+" · "+r.Scenario))
		w1 := r.RPS / maxRPS * (panelW - 70)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x1, y+3, w1, rowH-6, color(r.Target))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%.0f</text>`+"\n", float64(x1)+w1+4, y+14, r.RPS)
		w2 := r.P99ms / maxP99 * (panelW - 70)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s" opacity="0.6"/>`+"\n", x2, y+3, w2, rowH-6, color(r.Target))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%.2f</text>`+"\n", float64(x2)+w2+4, y+14, r.P99ms)
	}
	fmt.Fprintf(&b, `<text x="10" y="%d" fill="#555">Same 2-CPU host for wrk, gateways, upstream and Redis; compare within one run. Colours: blue keygate (bolt), red keygate (Redis), green nginx, purple Caddy, brown HAProxy, grey upstream.</text>`+"\n", height-12)
	b.WriteString("</svg>\n")
	return b.String()
}
