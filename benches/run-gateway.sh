#!/usr/bin/env bash
# Runs meridian the way ../shared/bench/proxy_compare.py expects: in the
# foreground, listening on $BENCH_LISTEN_ADDR, proxying everything to
# $BENCH_UPSTREAM_ADDR, one worker thread, keep-alive upstream pool, no access log.
# Usage: benches/run-gateway.sh [extra TOML appended to benches/proxy.toml]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
listen="${BENCH_LISTEN_ADDR:-127.0.0.1:8080}"
upstream="${BENCH_UPSTREAM_ADDR:-127.0.0.1:9001}"
conf="$(mktemp "${TMPDIR:-/tmp}/meridian-bench.XXXXXX.toml")"
trap 'rm -f "$conf"' EXIT
sed -e "s/127.0.0.1:8080/$listen/" -e "s/127.0.0.1:9001/$upstream/" "$here/proxy.toml" > "$conf"
if [ -n "${1:-}" ]; then cat "$here/$1" >> "$conf"; fi
exec "$here/../target/release/meridian" gateway --config "$conf"
