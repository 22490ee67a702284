#!/usr/bin/env bash
# Runs meridian the way ../shared/bench/proxy_compare.py expects: in the
# foreground, listening on $BENCH_LISTEN_ADDR, proxying everything to
# $BENCH_UPSTREAM_ADDR, one worker thread, keep-alive upstream pool, no access log.
# Usage: benches/run-gateway.sh [off|batched|exact|cache]   (limits and cache need
# a redis-server on $BENCH_REDIS_URL, default redis://127.0.0.1:6390/)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
listen="${BENCH_LISTEN_ADDR:-127.0.0.1:8080}"
upstream="${BENCH_UPSTREAM_ADDR:-127.0.0.1:9001}"
redis="${BENCH_REDIS_URL:-redis://127.0.0.1:6390/}"
variant="${1:-off}"
# Limits high enough never to refuse: the cost of counting is what is measured.
limit='{ requests = 1000000000, per = "1m" }'
case "$variant" in
  off) route="" ;;
  batched) route="rate_limit = { key = \"route\", scope = \"region\", mode = \"batched\", algorithm = \"sliding_window\", limits = [$limit] }" ;;
  exact) route="rate_limit = { key = \"route\", scope = \"region\", mode = \"exact\", algorithm = \"sliding_window\", limits = [$limit] }" ;;
  cache) route="cache = { ttl = \"600s\" }" ;;
  *) echo "unknown variant $variant" >&2; exit 2 ;;
esac
conf="$(mktemp "${TMPDIR:-/tmp}/meridian-bench.XXXXXX.toml")"
trap 'rm -f "$conf"' EXIT
sed -e "s/127.0.0.1:8080/$listen/" -e "s/127.0.0.1:9001/$upstream/" -e "s|# @ROUTE@|$route|" "$here/proxy.toml" > "$conf"
if [ "$variant" != off ]; then printf '\n[redis]\nurl = "%s"\n' "$redis" >> "$conf"; fi
exec "$here/../target/release/meridian" gateway --config "$conf"
