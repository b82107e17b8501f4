#!/usr/bin/env bash
# bench/instr.sh: user-space instructions per request (valgrind callgrind) of
# the bare fasthttp proxy (bench/cmd/bareproxy) and of keygate (auth: none,
# Basic, JWT cache hits, forward-auth check), N requests each over C
# keep-alive connections after a warm-up. Instruction counts do not move with
# the load of a shared machine, wall-clock figures do; they miss the kernel
# (the same system calls per request for both, issue 14).
#
#   bench/instr.sh                 # N=2000 C=4
#   N=5000 KEYGATE=bin/keygate bench/instr.sh
#   KEEP=1 bench/instr.sh          # keep the callgrind files (callgrind_annotate --inclusive=yes FILE)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}
C=${C:-4}
GO=${GO:-go}
command -v valgrind >/dev/null || { echo "instr.sh: valgrind is not installed (apt-get install -y valgrind)"; exit 1; }
dir=$(mktemp -d /tmp/kginstr.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ "${KEEP:-}" = 1 ]; then echo "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
KEYGATE=${KEYGATE:-$dir/keygate}
[ -x "$KEYGATE" ] || CGO_ENABLED=0 $GO build -trimpath -o "$KEYGATE" ./cmd/keygate
CGO_ENABLED=0 $GO build -trimpath -o "$dir/bareproxy" ./bench/cmd/bareproxy
CGO_ENABLED=0 $GO build -trimpath -o "$dir/reqs" ./bench/cmd/reqs
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitport() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened"; exit 1; }
# callgrind needs no async preemption signals (its signal handling asserts).
cg() { local name=$1; shift; GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --callgrind-out-file="$dir/cg.$name.%p" "$@" >"$dir/$name.log" 2>&1 & pids+=($!); }
# measure NAME PID URL [header]: warm up, zero the counters, N requests, dump.
measure() {
	local name=$1 pid=$2 url=$3; shift 3
	# A credential's first check (a password hash under valgrind) may take
	# longer than keygate's bound for it: retry until it is cached.
	for _ in $(seq 60); do "$dir/reqs" -url "$url" -n 1 -c 1 "$@" >/dev/null 2>&1 && break; sleep 1; done
	"$dir/reqs" -url "$url" -n 200 -c "$C" "$@" >/dev/null
	callgrind_control -z "$pid" >/dev/null 2>&1
	"$dir/reqs" -url "$url" -n "$N" -c "$C" "$@" >/dev/null
	callgrind_control -d "$name" "$pid" >/dev/null 2>&1
	sleep 0.5
	local f; f=$(ls -t "$dir"/cg.*."$pid".* | head -1)
	local ir; ir=$(awk '/^totals:/{print $2}' "$f")
	printf '%-28s %10d instructions/request\n' "$name" $((ir / N))
	mv "$f" "$dir/cg.$name.out"
}
eport=$(port); "$KEYGATE" echo --listen "127.0.0.1:$eport" >"$dir/echo.log" 2>&1 & pids+=($!)
waitport "$eport"
bport=$(port); cg bare "$dir/bareproxy" -listen "127.0.0.1:$bport" -upstream "127.0.0.1:$eport"; bpid=${pids[-1]}
waitport "$bport"
measure bare "$bpid" "http://127.0.0.1:$bport/bench?x=1"

pub=$(port); adm=$(port); fwd=$(port)
cat >"$dir/kg.yaml" <<YAML
listen: "127.0.0.1:$pub"
admin: { listen: "127.0.0.1:$adm" }
forward_auth: { listen: "127.0.0.1:$fwd" }
store: { driver: bolt, bolt: { path: "$dir/kg.db" } }
cache: { max_entries: 10000, ttl: 600s, negative_ttl: 5s }
auth: { failures: { per_ip_per_minute: 1000, per_user_per_minute: 1000 } }
routes:
  - { name: open, path_prefix: /open, upstreams: ["http://127.0.0.1:$eport"], auth: none, timeout: 30s }
  - { name: api, path_prefix: /, upstreams: ["http://127.0.0.1:$eport"], auth: required, timeout: 30s }
YAML
pw=instr-$(date +%s)-password
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
# The token is fetched from a keygate run outside valgrind (the password
# hash of the token endpoint is slow under it), same store and secret.
KEYGATE_ADMIN_PASSWORD=$pw KEYGATE_TOKENS_SIGNING_SECRET=$secret "$KEYGATE" serve --config "$dir/kg.yaml" >"$dir/keygate0.log" 2>&1 &
k0=$!
waitport "$pub"
tok=$(curl -s -d grant_type=password -d username=admin -d "password=$pw" -d client_id=anonymous "http://127.0.0.1:$pub/oauth/token" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
kill "$k0"; wait "$k0" 2>/dev/null || true
KEYGATE_ADMIN_PASSWORD=$pw KEYGATE_TOKENS_SIGNING_SECRET=$secret \
	cg keygate "$KEYGATE" serve --config "$dir/kg.yaml"; kpid=${pids[-1]}
waitport "$pub"; waitport "$fwd"
basic="Authorization: Basic $(printf 'admin:%s' "$pw" | base64 -w0)"
measure keygate-none "$kpid" "http://127.0.0.1:$pub/open/bench?x=1"
measure keygate-basic "$kpid" "http://127.0.0.1:$pub/bench?x=1" -H "$basic"
measure keygate-jwt "$kpid" "http://127.0.0.1:$pub/bench?x=1" -H "Authorization: Bearer $tok"
measure keygate-check-basic "$kpid" "http://127.0.0.1:$fwd/auth" -H "$basic" -H "X-Forwarded-Method: GET" \
	-H "X-Forwarded-Host: 127.0.0.1" -H "X-Forwarded-Uri: /bench?x=1"
