#!/usr/bin/env bash
# Proxy CPU per request with rate limits off, batched, exact, and on cache
# hits, each next to nginx in the same proxy_compare run. A redis-server for
# the region runs on CPU 0 (with the load), outside the measured process tree.
# Usage: benches/limits.sh [reps] [seconds]
set -euo pipefail
reps="${1:-2}"; secs="${2:-8}"
here="$(cd "$(dirname "$0")" && pwd)"
bench="${BENCH_DIR:-$here/../../shared/bench}"
dir="$(mktemp -d "${TMPDIR:-/tmp}/meridian-redis.XXXXXX")"
taskset -c 0 redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >/dev/null 2>&1 &
redis=$!
trap 'kill $redis 2>/dev/null; rm -rf "$dir"' EXIT
sleep 0.5
for variant in off batched exact cache; do
  echo "== $variant"
  python3 "$bench/proxy_compare.py" --pin --reps "$reps" --duration "$secs" --only nginx,gateway \
    --gateway-cmd "benches/run-gateway.sh $variant" --json "target/bench-$variant.json" 2>&1 | grep -E "^(nginx|gateway) " 
done
