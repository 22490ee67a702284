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
work="$(mktemp -d "${TMPDIR:-/tmp}/meridian-callgrind.XXXXXX")"
upstream_bin="${TMPDIR:-/tmp}/meridian-bench/target/release/upstream"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
[ -x "$upstream_bin" ] || { echo "build the upstream first: ../shared/bench/proxy_compare.py builds it" >&2; exit 2; }
"$upstream_bin" 127.0.0.1:9001 >/dev/null 2>&1 & pids+=($!)

measure() { # name, then the command to run under callgrind
  local name="$1"; shift
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/$name.out" "$@" >/dev/null 2>&1 &
  local vg=$!; pids+=("$vg")
  for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:8080/ && break; sleep 0.2; done
  wrk -t1 -c20 -d2s http://127.0.0.1:8080/ >/dev/null
  callgrind_control -i on "$vg" >/dev/null
  local out; out="$(wrk -t1 -c20 -d"${secs}"s http://127.0.0.1:8080/)"
  callgrind_control -i off "$vg" >/dev/null
  callgrind_control -d "$vg" >/dev/null
  sleep 1
  local reqs ir
  reqs="$(awk '/requests in/ {print $1}' <<<"$out")"
  ir="$(callgrind_total "$work/$name.out")"
  printf '%-8s %8d requests  %8d instructions/request\n' "$name" "$reqs" "$((ir / reqs))"
  kill "$vg" 2>/dev/null || true; wait "$vg" 2>/dev/null || true
}

write_nginx_conf "$work"
measure meridian "$here/../target/release/meridian" gateway --config "$here/proxy.toml"
measure nginx /usr/sbin/nginx -c "$work/nginx.conf"
