#!/usr/bin/env bash
# bench/micro.sh — Go micro-benchmarks of the hot path, compared with the
# saved baseline (bench/micro/baseline.txt) by benchstat.
#
#   bench/micro.sh             run, save bench/micro/latest.txt, compare
#   bench/micro.sh --baseline  run and overwrite the baseline
#
# BENCH_COUNT (default 6) runs of each benchmark, BENCH_TIME (default 300ms)
# each; BENCH_PKGS (default ./...). benchstat needs several runs of each side
# to say whether a change is significant: keep BENCH_COUNT >= 5 for that.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
COUNT=${BENCH_COUNT:-6}
TIME=${BENCH_TIME:-300ms}
PKGS=${BENCH_PKGS:-./...}
out=bench/micro/latest.txt
if [[ ${1:-} == --baseline ]]; then out=bench/micro/baseline.txt; fi

echo "== go test -run '^\$' -bench . -benchmem -count $COUNT -benchtime $TIME $PKGS  →  $out"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
# -p 1: one package at a time, so packages do not compete for the CPUs.
$GO test -p 1 -run '^$' -bench . -benchmem -count "$COUNT" -benchtime "$TIME" $PKGS | tee "$tmp"
mv "$tmp" "$out"
trap - EXIT

if [[ $out == bench/micro/baseline.txt ]]; then
  echo "== baseline saved: $out"
  exit 0
fi
BENCHSTAT=$(command -v benchstat || true)
if [[ -z $BENCHSTAT && -x "$($GO env GOPATH)/bin/benchstat" ]]; then BENCHSTAT="$($GO env GOPATH)/bin/benchstat"; fi
if [[ -z $BENCHSTAT ]]; then
  echo "== installing benchstat (GOFLAGS= go install golang.org/x/perf/cmd/benchstat@latest)"
  if GOFLAGS= $GO install golang.org/x/perf/cmd/benchstat@latest; then
    BENCHSTAT="$($GO env GOPATH)/bin/benchstat"
  else
    echo "== benchstat could not be installed: compare bench/micro/baseline.txt and $out by hand" >&2
    exit 0
  fi
fi
if [[ ! -s bench/micro/baseline.txt ]]; then
  echo "== no baseline yet: run bench/micro.sh --baseline" >&2
  exit 0
fi
echo "== benchstat bench/micro/baseline.txt $out"
"$BENCHSTAT" bench/micro/baseline.txt "$out"
