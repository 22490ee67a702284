#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: repeatable
# on a noisy machine, unlike CPU time. Runs meridian (benches/proxy.toml) and
# nginx (one process, keep-alive pool) in turn in front of the benchmark upstream.
# Needs valgrind, wrk, nginx, and the upstream built by ../shared/bench/proxy_compare.py.
# Usage: benches/callgrind.sh [seconds]
set -euo pipefail
secs="${1:-5}"
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=benches/lib.sh
. "$here/lib.sh"
bench_setup callgrind

write_nginx_conf "$work"
instructions meridian "$here/../target/release/meridian" gateway --config "$here/proxy.toml"
instructions nginx /usr/sbin/nginx -c "$work/nginx.conf"
