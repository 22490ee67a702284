#!/usr/bin/env bash
# What transformations cost end to end, nginx (no transform) in the same
# run for reference: the gateway pinned to CPU 1, wrk (one thread, 20
# connections) and the upstreams on CPU 0; CPU is the gateway process's
# utime + stime over the measured run, divided by its requests.
#
# - off / headers: the plain route, and the same route with seven header
#   edits (five on the request, two templated; two on the answer);
# - xml_passthrough / xml_to_json: a 10 KB XML answer (100 accounts from the
#   sample backend) passed as it is, and converted to JSON;
# - aggregation latency: one aggregate of three backends that each take
#   20 ms, against the same three calls made one after another by a client
#   (through the gateway, keep-alive), 200 times each;
# - off and headers again under callgrind (instructions per request).
# Usage: benches/transform.sh [reps] [seconds] [json out]
set -euo pipefail
reps="${1:-2}"; secs="${2:-5}"; out="${3:-docs/bench/transform.json}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
# shellcheck source=benches/lib.sh
. "$here/lib.sh"
bench_setup transform
meridian="$root/target/release/meridian"
taskset -c 0 "$meridian" backend --listen 127.0.0.1:9002 --name xml >/dev/null 2>&1 & pids+=($!)

config() { # variant → a node file
  case "$1" in
    off) sed -e 's|# @ROUTE@||' "$here/proxy.toml" ;;
    headers)
      sed -e 's|# @ROUTE@||' "$here/proxy.toml"
      cat <<'TOML'
[gateway.routes.transform.request.headers]
remove = ["x-debug"]
rename = { "x-old" = "x-new" }
replace = { "user-agent" = "meridian-bench" }
add = { "x-client" = "$(header.host)", "x-request" = "$(request_id)" }
[gateway.routes.transform.response.headers]
remove = ["server"]
add = { "x-served-by" = "meridian" }
TOML
      ;;
    xml_passthrough) sed -e 's|# @ROUTE@||' -e 's|127.0.0.1:9001|127.0.0.1:9002|' "$here/proxy.toml" ;;
    xml_to_json)
      sed -e 's|# @ROUTE@||' -e 's|127.0.0.1:9001|127.0.0.1:9002|' "$here/proxy.toml"
      printf '[gateway.routes.xml_to_json]\nalways_array = ["accounts.account"]\n'
      ;;
    aggregate)
      sed -e 's|# @ROUTE@|path_prefix = "/plain"|' -e 's|127.0.0.1:9001|127.0.0.1:9002|' "$here/proxy.toml"
      cat <<'TOML'
[[gateway.routes]]
name = "dashboard"
upstream = "bench"
path_exact = "/dashboard"
[gateway.routes.aggregate]
backends = [
  { path = "/users?delay_ms=20", group = "users" },
  { path = "/orders?delay_ms=20", group = "orders" },
  { path = "/billing?delay_ms=20", group = "billing" },
]
TOML
      ;;
  esac
}

write_nginx_conf "$work"
for rep in $(seq "$reps"); do
  echo "== run $rep"
  p="$(start /usr/sbin/nginx -c "$work/nginx.conf")"; url=http://127.0.0.1:8080/ measure nginx "$p"; stop "$p"
  for v in off headers xml_passthrough xml_to_json; do
    config "$v" > "$work/$v.toml"
    p="$(start "$meridian" gateway --config "$work/$v.toml")"
    case "$v" in
      off | headers) url=http://127.0.0.1:8080/ measure "$v" "$p" -H "x-debug: 1" -H "x-old: o" ;;
      xml_*) url="http://127.0.0.1:8080/accounts?xml_items=100" measure "$v" "$p" ;;
    esac
    stop "$p"
  done
done
summarise_runs "$work/results.jsonl" "$work/cpu.json"

# The same two routes under callgrind: user-space instructions per request,
# repeatable where CPU time on a virtual machine is not.
rm -f "$work/results.jsonl"
for v in off headers; do
  wrk_args=(-H "x-debug: 1" -H "x-old: o")
  url=http://127.0.0.1:8080/ instructions "$v" "$meridian" gateway --config "$work/$v.toml"
done
mv "$work/results.jsonl" "$work/instructions.jsonl"

# Aggregation: latency of one aggregate against three sequential calls.
config aggregate > "$work/aggregate.toml"
p="$(start "$meridian" gateway --config "$work/aggregate.toml")"
taskset -c 0 python3 - "$work/latency.json" <<'PY'
import http.client, json, statistics, sys, time
def timed(paths, n=200):
    c = http.client.HTTPConnection("127.0.0.1", 8080)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        for p in paths:
            c.request("GET", p)
            r = c.getresponse(); r.read()
            assert r.status == 200, (p, r.status)
        out.append((time.perf_counter() - t) * 1000)
    c.close()
    out.sort()
    return {"p50_ms": round(statistics.median(out), 2), "p99_ms": round(out[int(len(out) * 0.99) - 1], 2), "n": n}
agg = timed(["/dashboard"])
seq = timed(["/plain/users?delay_ms=20", "/plain/orders?delay_ms=20", "/plain/billing?delay_ms=20"])
print(f"aggregate of 3 (20 ms each)    p50 {agg['p50_ms']:6.2f} ms  p99 {agg['p99_ms']:6.2f} ms")
print(f"3 sequential calls (20 ms each) p50 {seq['p50_ms']:6.2f} ms  p99 {seq['p99_ms']:6.2f} ms")
json.dump({"aggregate_3x20ms": agg, "sequential_3x20ms": seq}, open(sys.argv[1], "w"), indent=2)
PY
stop "$p"

mkdir -p "$(dirname "$out")"
python3 - "$work/cpu.json" "$work/latency.json" "$work/instructions.jsonl" "$out" <<'PY'
import json, sys
cpu, latency = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
instructions = {r["variant"]: r for r in map(json.loads, open(sys.argv[3]))}
s = cpu["summary"]
derived = {
    "headers_over_off": round(s["headers"]["median_cpu_us_per_request"] / s["off"]["median_cpu_us_per_request"], 3),
    "headers_over_off_instructions": round(
        instructions["headers"]["instructions_per_request"] / instructions["off"]["instructions_per_request"], 4),
    "xml_to_json_extra_cpu_us": round(s["xml_to_json"]["median_cpu_us_per_request"] - s["xml_passthrough"]["median_cpu_us_per_request"], 2),
}
print(f"header edits: ×{derived['headers_over_off']:.3f} of off in CPU time, "
      f"×{derived['headers_over_off_instructions']:.4f} in instructions; "
      f"XML → JSON of 10 KB: +{derived['xml_to_json_extra_cpu_us']} µs CPU/request")
json.dump({**cpu, "instructions": instructions, "derived": derived, "latency": latency}, open(sys.argv[4], "w"), indent=2)
PY
echo "raw: $out"
