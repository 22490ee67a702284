#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: repeatable
# on a noisy machine, unlike CPU time. Runs meridian (benches/proxy.toml) and
# nginx (one process, keep-alive pool) in turn in front of the benchmark upstream.
# Needs valgrind, wrk, nginx, and the upstream built by ../shared/bench/proxy_compare.py.
# Usage: benches/callgrind.sh [seconds]
set -euo pipefail
secs="${1:-5}"
here="$(cd "$(dirname "$0")" && pwd)"
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
  ir="$(callgrind_annotate "$work/$name.out".* 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen {gsub(",","",$1); print $1; seen=1}')"
  printf '%-8s %8d requests  %8d instructions/request\n' "$name" "$reqs" "$((ir / reqs))"
  kill "$vg" 2>/dev/null || true; wait "$vg" 2>/dev/null || true
}

cat > "$work/nginx.conf" <<NGINX
master_process off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nb; proxy_temp_path $work/np; fastcgi_temp_path $work/nf;
    uwsgi_temp_path $work/nu; scgi_temp_path $work/ns;
    keepalive_requests 1000000;
    upstream backend { server 127.0.0.1:9001; keepalive 64; keepalive_requests 1000000; }
    server { listen 127.0.0.1:8080; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
NGINX
echo "daemon off;" | cat - "$work/nginx.conf" > "$work/nginx2.conf"
measure meridian "$here/../target/release/meridian" gateway --config "$here/proxy.toml"
measure nginx /usr/sbin/nginx -c "$work/nginx2.conf"
