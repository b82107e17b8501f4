#!/usr/bin/env bash
# bench/run.sh — `make bench`: keygate against real peers, bounded loads on
# 127.0.0.1 only. See bench/README.md.
#
# Environment: BENCH_DURATION (6s per scenario), BENCH_CONNECTIONS (32),
# BENCH_THREADS (2), BENCH_1M=1 (also the 1M-key working set),
# BENCH_PEERS (nginx,caddy,haproxy), BENCH_INSTALL=0 (never apt-get),
# BENCH_KEEP=1 (keep the work dir with configs and logs).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

# Tools: wrk is required; peers are optional. As root, missing ones are
# installed with apt-get (and this says so); otherwise their scenarios are
# skipped with a message.
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v redis-server >/dev/null || need+=(redis-server)
[[ ,${BENCH_PEERS:-nginx,caddy,haproxy}, == *,nginx,* ]] && { command -v nginx >/dev/null || need+=(nginx-light); command -v htpasswd >/dev/null || need+=(apache2-utils); }
[[ ,${BENCH_PEERS:-nginx,caddy,haproxy}, == *,haproxy,* ]] && { command -v haproxy >/dev/null || need+=(haproxy); }
[[ ,${BENCH_PEERS:-nginx,caddy,haproxy}, == *,caddy,* ]] && { command -v caddy >/dev/null || need+=(caddy); }
if ((${#need[@]})); then
  if [[ $(id -u) == 0 && ${BENCH_INSTALL:-1} != 0 && -x $(command -v apt-get) ]]; then
    echo "== installing missing tools with apt-get: ${need[*]}"
    apt-get update -qq >/dev/null || true
    for p in "${need[@]}"; do
      if apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null || echo "== could not install $p: its scenarios will be skipped"
      else
        echo "== $p is not packaged here: its scenarios will be skipped"
      fi
    done
  else
    echo "== not installed: ${need[*]} (run as root to have them installed, or install them): their scenarios will be skipped"
  fi
fi
# Peers run as services would hold their default ports: we start our own
# copies on free ports, the packaged services are left alone.

echo "== building bin/keygate, bin/bareproxy and bin/kgbench"
CGO_ENABLED=0 $GO build -trimpath -o bin/keygate ./cmd/keygate
CGO_ENABLED=0 $GO build -trimpath -o bin/bareproxy ./bench/cmd/bareproxy
CGO_ENABLED=0 $GO build -trimpath -o bin/kgbench ./bench/cmd/kgbench
exec bin/kgbench -keygate bin/keygate -out bench/results "$@"
