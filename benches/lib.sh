# Shared by the benchmark scripts (sourced, not run).

# nginx as the reference proxy: one process in the foreground, keep-alive
# pool to the upstream on 127.0.0.1:9001, listening on 127.0.0.1:8080, no
# access log; its files under $1. Writes $1/nginx.conf.
write_nginx_conf() {
  local work="$1"
  cat > "$work/nginx.conf" <<NGINX
daemon off;
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
}

# The instructions callgrind counted in the dumps $1.* (program totals).
callgrind_total() {
  callgrind_annotate "$1".* 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen {gsub(",","",$1); print $1; seen=1}'
}

# CPU ticks (user + system) of process $1 so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The measuring helpers below use the caller's $work (results land in
# $work/results.jsonl), $secs (seconds per run) and $url (default: the
# gateway's root on 127.0.0.1:8080).
measure() { # name, pid, then wrk arguments after the URL
  local name="$1" pid="$2"; shift 2
  taskset -c 0 wrk -t1 -c20 -d2s "$@" "${url:-http://127.0.0.1:8080/}" >/dev/null
  local before after text reqs
  before="$(cpu_ticks "$pid")"
  text="$(taskset -c 0 wrk -t1 -c20 -d"${secs}"s --latency "$@" "${url:-http://127.0.0.1:8080/}")"
  after="$(cpu_ticks "$pid")"
  reqs="$(awk '/requests in/ {print $1}' <<<"$text")"
  local non2xx; non2xx="$(awk '/Non-2xx/ {print $4}' <<<"$text")"
  local p99; p99="$(awk '$1=="99%" {print $2}' <<<"$text")"
  local us; us="$(awk -v t=$((after - before)) -v r="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t * 1e6 / hz / r}')"
  printf '%-18s %9d requests %8.0f req/s  p99 %-8s  %6s µs CPU/request  non-2xx %s\n' \
    "$name" "$reqs" "$(awk -v r="$reqs" -v s="$secs" 'BEGIN {print r / s}')" "$p99" "$us" "${non2xx:-0}"
  printf '{"variant":"%s","requests":%d,"seconds":%d,"cpu_us_per_request":%s,"p99":"%s","non_2xx":%d}\n' \
    "$name" "$reqs" "$secs" "$us" "$p99" "${non2xx:-0}" >> "$work/results.jsonl"
}

start() { # command...; waits for the port, prints the pid
  taskset -c 1 "$@" >/dev/null 2>&1 &
  local p=$!
  for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:8080/ && break; sleep 0.1; done
  echo "$p"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; sleep 0.3; }


# The median of each variant's runs in $1 (JSON lines), with its ratio to
# the variant `off`, written to $2 and printed.
summarise_runs() {
  mkdir -p "$(dirname "$2")"
  python3 - "$1" "$2" <<'PY'
import json, sys, statistics
runs = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in runs:
    by.setdefault(r["variant"], []).append(r)
summary = {v: {"median_cpu_us_per_request": statistics.median(x["cpu_us_per_request"] for x in rs),
               "median_req_per_s": statistics.median(x["requests"] / x["seconds"] for x in rs)} for v, rs in by.items()}
off = summary["off"]["median_cpu_us_per_request"]
for v in summary:
    summary[v]["ratio_to_off"] = round(summary[v]["median_cpu_us_per_request"] / off, 3)
json.dump({"runs": runs, "summary": summary}, open(sys.argv[2], "w"), indent=2)
for v, s in summary.items():
    print(f"{v:<18} {s['median_cpu_us_per_request']:7.2f} µs/request  {s['median_req_per_s']:9.0f} req/s  ×{s['ratio_to_off']:.2f} of off")
PY
}

# User-space instructions per request of a server run under callgrind,
# pinned to CPU 1: $1 names the run, the server's command follows. wrk (on
# CPU 0) sends the arguments of the array $wrk_args (none when unset) to
# $url. Uses $work and $secs.
instructions() {
  local name="$1"; shift
  local target="${url:-http://127.0.0.1:8080/}"
  taskset -c 1 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/$name.cg" "$@" >/dev/null 2>&1 &
  local vg=$!
  for _ in $(seq 100); do curl -s -o /dev/null "$target" && break; sleep 0.2; done
  taskset -c 0 wrk -t1 -c20 -d2s ${wrk_args[@]+"${wrk_args[@]}"} "$target" >/dev/null
  callgrind_control -i on "$vg" >/dev/null
  local text; text="$(taskset -c 0 wrk -t1 -c20 -d"${secs}"s ${wrk_args[@]+"${wrk_args[@]}"} "$target")"
  callgrind_control -i off "$vg" >/dev/null
  callgrind_control -d "$vg" >/dev/null
  sleep 1
  local reqs ir
  reqs="$(awk '/requests in/ {print $1}' <<<"$text")"
  ir="$(callgrind_total "$work/$name.cg")"
  printf '%-18s %8d requests  %8d instructions/request\n' "$name" "$reqs" "$((ir / reqs))"
  printf '{"variant":"%s","requests":%d,"instructions_per_request":%d}\n' "$name" "$reqs" "$((ir / reqs))" >> "$work/results.jsonl"
  kill "$vg" 2>/dev/null || true; wait "$vg" 2>/dev/null || true
}

# What every benchmark script starts with: $work (a temp dir named after
# $1), the benchmark upstream on 127.0.0.1:9001 (CPU 0), wrk present. What
# is started goes in $pids; it is stopped, and $work removed, on exit.
bench_setup() {
  work="$(mktemp -d "${TMPDIR:-/tmp}/meridian-$1.XXXXXX")"
  upstream_bin="${TMPDIR:-/tmp}/meridian-bench/target/release/upstream"
  pids=()
  trap bench_cleanup EXIT
  [ -x "$upstream_bin" ] || { echo "build the upstream first: ../shared/bench/proxy_compare.py builds it" >&2; exit 2; }
  command -v wrk >/dev/null || { echo "needs wrk (make bench-deps)" >&2; exit 2; }
  taskset -c 0 "$upstream_bin" 127.0.0.1:9001 >/dev/null 2>&1 & pids+=($!)
}
bench_cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
