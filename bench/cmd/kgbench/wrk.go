package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// load is one bounded wrk run.
type load struct {
	url           string
	authorization string   // fixed Authorization header ("" none)
	headers       []string // more fixed headers, "Name: value"
	script        string   // wrk Lua script (-s), instead of a fixed header
	scriptArgs    []string
	threads       int
	conns         int
	duration      time.Duration
}

// wrkResult is what wrk printed, parsed.
type wrkResult struct {
	Requests int64
	Seconds  float64
	RPS      float64
	P50ms    float64
	P99ms    float64
	Non2xx   int64
	Errors   int64  // socket errors: connect, read, write, timeout
	Statuses string // "401=12 429=3400", when the script reports them
	Raw      string
}

func (l load) args() []string {
	a := []string{
		"-t", strconv.Itoa(l.threads), "-c", strconv.Itoa(l.conns),
		"-d", fmt.Sprintf("%ds", int(l.duration.Seconds())),
		"--timeout", "5s", "--latency",
	}
	if l.authorization != "" {
		a = append(a, "-H", "Authorization: "+l.authorization)
	}
	for _, h := range l.headers {
		a = append(a, "-H", h)
	}
	if l.script != "" {
		a = append(a, "-s", l.script)
	}
	a = append(a, l.url)
	if len(l.scriptArgs) > 0 {
		a = append(a, "--")
		a = append(a, l.scriptArgs...)
	}
	return a
}

// runWrk runs l and parses the output. The run is bounded by l.duration
// (plus a margin, after which wrk is killed).
func runWrk(l load) (*wrkResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.duration+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "wrk", l.args()...).CombinedOutput() //nolint:gosec // runs the tool this harness is configured with; no client input
	if err != nil {
		return nil, fmt.Errorf("wrk %s: %w\n%s", strings.Join(l.args(), " "), err, out)
	}
	return parseWrk(string(out))
}

var (
	reReqs    = regexp.MustCompile(`(\d+) requests in ([\d.]+)(us|ms|s|m)`)
	reRPS     = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	reNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	reSockErr = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reLat     = regexp.MustCompile(`^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$`)
)

func parseWrk(out string) (*wrkResult, error) {
	r := &wrkResult{Raw: out}
	m := reReqs.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("wrk output not understood:\n%s", out)
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	r.Seconds = toMS(m[2], m[3]) / 1000
	if m := reRPS.FindStringSubmatch(out); m != nil {
		r.RPS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reSockErr.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.Errors += n
		}
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "statuses: "); ok {
			r.Statuses = v
		}
		if m := reLat.FindStringSubmatch(sc.Text()); m != nil {
			v := toMS(m[2], m[3])
			if m[1] == "50" {
				r.P50ms = v
			} else {
				r.P99ms = v
			}
		}
	}
	return r, nil
}

func toMS(v, unit string) float64 {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return f / 1000
	case "s":
		return f * 1000
	case "m":
		return f * 60000
	}
	return f
}

// keyListLua picks, for every request, a uniformly random line of the file
// given as the script argument: a whole Authorization value.
const keyListLua = `
local keys = {}
local n = 0
function init(args)
  for line in io.lines(args[1]) do
    n = n + 1
    keys[n] = line
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
  if n == 0 then error("no keys in " .. args[1]) end
end
function request()
  return wrk.format(nil, nil, { ["Authorization"] = keys[math.random(n)] })
end
`

// floodLua sends Basic credentials for args[1] with a new wrong password on
// every request, so neither the identity cache nor the negative cache can
// answer: each one is a guess.
const floodLua = `
local user = "alice"
local b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function enc(data)
  return ((data:gsub('.', function(x)
    local r, b = '', x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2^i - b % 2^(i-1) > 0 and '1' or '0') end
    return r
  end) .. '0000'):gsub('%d%d%d?%d?%d?%d?', function(x)
    if #x < 6 then return '' end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == '1' and 2^(6-i) or 0) end
    return b64:sub(c + 1, c + 1)
  end) .. ({ '', '==', '=' })[#data % 3 + 1])
end
local counter = 0
local salt = ""
function init(args)
  if args[1] then user = args[1] end
  salt = tostring(os.time()) .. tostring({}):sub(8)
end
function request()
  counter = counter + 1
  local h = "Basic " .. enc(user .. ":wrong-" .. salt .. "-" .. counter)
  return wrk.format(nil, nil, { ["Authorization"] = h })
end
statuses = {}
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for s, n in pairs(t:get("statuses")) do total[s] = (total[s] or 0) + n end
  end
  local out = {}
  for s, n in pairs(total) do out[#out + 1] = s .. "=" .. n end
  table.sort(out)
  io.write("statuses: " .. table.concat(out, " ") .. "\n")
end
`

// writeScripts writes the Lua scripts into dir and returns their paths.
func writeScripts(dir string) (keyList, flood string, err error) {
	keyList = filepath.Join(dir, "keylist.lua")
	flood = filepath.Join(dir, "flood.lua")
	if err = os.WriteFile(keyList, []byte(keyListLua), 0o644); err != nil { //nolint:gosec // bench output, read by the peers' worker processes and by people
		return
	}
	err = os.WriteFile(flood, []byte(floodLua), 0o644) //nolint:gosec // bench output, read by the peers' worker processes and by people
	return
}
