#!/usr/bin/env bash
# DNS throughput: dnsperf against `meridian gslb` (a steered service name,
# both regions reporting and probed) and against knot serving the same name
# as a static record, each pinned to one core, same machine, same run.
# Needs: dnsperf, knot, curl, openssl (apt), a release build.
# Usage: benches/dns.sh [seconds]
set -euo pipefail
secs="${1:-10}"
here="$(cd "$(dirname "$0")" && pwd)"
bin="$here/../target/release/meridian"
work="$(mktemp -d "${TMPDIR:-/tmp}/meridian-dns.XXXXXX")"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for t in dnsperf knotd curl openssl; do command -v "$t" >/dev/null || { echo "missing $t (apt-get install dnsperf knot curl openssl)" >&2; exit 2; }; done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
probe=$(free_port); dns=$(free_port); api=$(free_port); knot_port=$(free_port)
echo -n "eu-bench-secret-0123" > "$work/eu.secret"
echo -n "us-bench-secret-0123" > "$work/us.secret"
cat > "$work/gslb.toml" <<TOML
[gslb]
name = "bench"
dns = "127.0.0.1:$dns"
api = "127.0.0.1:$api"
[telemetry]
log_level = "warn"
[zone]
origin = "example.test."
nameservers = ["ns1"]
[[regions]]
name = "eu"
secret_file = "$work/eu.secret"
location = { lat = 50.1, lon = 8.7 }
vips = ["127.0.1.1", "127.0.1.2"]
probe = { port = $probe }
[[regions]]
name = "us"
secret_file = "$work/us.secret"
location = { lat = 38.9, lon = -77.0 }
vips = ["127.0.2.1", "127.0.2.2"]
probe = { port = $probe }
[[services]]
name = "api"
policy = "nearest"
[[geo]]
cidr = "127.0.0.0/8"
location = { lat = 48.9, lon = 2.35 }
TOML
for ip in 127.0.1.1 127.0.1.2 127.0.2.1 127.0.2.2; do
  "$bin" backend --listen "$ip:$probe" --name "$ip" >/dev/null 2>&1 & pids+=($!)
done
taskset -c 1 "$bin" gslb --config "$work/gslb.toml" >"$work/gslb.log" 2>&1 & pids+=($!)
report() { # region secret
  local body sig
  body=$(printf '{"region":"%s","timestamp_ms":%s,"nonce":"%s","sender":1,"healthy_nodes":[1],"vips":{},"config_version":1,"load":0}' \
    "$1" "$(date +%s%3N)" "$(openssl rand -hex 16)")
  sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$2" -r | cut -d' ' -f1)
  curl -s -o /dev/null -H "x-meridian-signature: $sig" --data "$body" "http://127.0.0.1:$api/v1/report" || true
}
( for _ in $(seq $(( (secs + 30) * 4 ))); do report eu eu-bench-secret-0123; report us us-bench-secret-0123; sleep 0.25; done ) & pids+=($!)
for _ in $(seq 100); do curl -s "http://127.0.0.1:$api/v1/regions" 2>/dev/null | grep -q '"served":true.*"served":true' && break; sleep 0.1; done
printf 'api.example.test A\n' > "$work/queries.txt"

run_dnsperf() { # port
  taskset -c 0 dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries.txt" -l "$secs" -q 256 -c 8 2>&1 \
    | awk '/Queries per second/ {q=$4} /Average Latency/ {l=$4} /Queries lost/ {lost=$3} END {printf "%.0f %s %s", q, l, lost}'
}
read -r m_qps m_lat m_lost <<<"$(run_dnsperf "$dns")"

mkdir -p "$work/knot"
cat > "$work/knot/example.test.zone" <<ZONE
\$ORIGIN example.test.
\$TTL 5
@   300 IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 30
@   300 IN NS  ns1.example.test.
api     IN A   127.0.1.1
api     IN A   127.0.1.2
ZONE
cat > "$work/knot/knot.conf" <<KNOT
server:
    listen: 127.0.0.1@$knot_port
    rundir: "$work/knot"
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$work/knot"
log:
  - target: stderr
    any: error
zone:
  - domain: example.test.
    file: "$work/knot/example.test.zone"
KNOT
taskset -c 1 knotd -c "$work/knot/knot.conf" >"$work/knot.log" 2>&1 & pids+=($!)
sleep 1
read -r k_qps k_lat k_lost <<<"$(run_dnsperf "$knot_port")"

printf '%-16s %12s %14s %8s\n' "server" "queries/s" "avg latency s" "lost"
printf '%-16s %12s %14s %8s\n' "meridian gslb" "$m_qps" "$m_lat" "$m_lost"
printf '%-16s %12s %14s %8s\n' "knot" "$k_qps" "$k_lat" "$k_lost"
python3 -c "print('meridian/knot throughput ratio: %.2f' % ($m_qps / max($k_qps, 1)))"
