#!/usr/bin/env bash
# Proxy CPU per request with each authentication method, next to nginx (no
# auth) in the same run: the gateway pinned to CPU 1, wrk (one thread, 20
# connections) and the upstream on CPU 0; CPU is the gateway process's
# utime + stime from /proc over the measured run, divided by its requests.
# Cache-miss variants send every request a token never seen before (tokens
# signed beforehand by `cargo bench --bench identity -- sign`).
# With --callgrind, user-space instructions per request instead (valgrind's
# callgrind, one run per variant; repeatable where CPU time is not).
# Usage: benches/identity.sh [--callgrind] [reps] [seconds] [json out]
set -euo pipefail
callgrind=0
if [ "${1:-}" = --callgrind ]; then callgrind=1; shift; fi
reps="${1:-2}"; secs="${2:-5}"; out="${3:-docs/bench/identity.json}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
# shellcheck source=benches/lib.sh
. "$here/lib.sh"
bench_setup identity

# Keys, and tokens for the cache-miss runs (more than a run can use).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/rsa.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ec.pem" 2>/dev/null
openssl pkey -pubout -in "$work/rsa.pem" -out "$work/rsa.pub"
openssl pkey -pubout -in "$work/ec.pem" -out "$work/ec.pub"
sign() { (cd "$root" && cargo bench -q --bench identity -- sign "$1" "$2" "$3" "$4" >/dev/null 2>&1); }
sign RS256 "$work/rsa.pem" "${RS256_TOKENS:-60000}" "$work/rs256.tokens"
sign ES256 "$work/ec.pem" "${ES256_TOKENS:-60000}" "$work/es256.tokens"
rs_token="$(head -1 "$work/rs256.tokens")"; es_token="$(head -1 "$work/es256.tokens")"

# An introspection endpoint: every token is active (the gateway asks once).
cat > "$work/introspect.py" <<'PY'
import http.server, json, time
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = json.dumps({"active": True, "sub": "bench", "exp": int(time.time()) + 3600}).encode()
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", 9102), H).serve_forever()
PY
taskset -c 0 python3 "$work/introspect.py" & pids+=($!)

pepper="bench-pepper-0123456789abcdef"
echo -n "$pepper" > "$work/pepper"
key="mk_bench-key-0123456789abcdefghijklmnopqrstu"
hash="$(printf '%s' "$key" | openssl dgst -sha256 -hmac "$pepper" -r | cut -d' ' -f1)"

config() { # variant → a node file
  local auth="" extra=""
  case "$1" in
    off) ;;
    api_key) auth='auth = { api_key = {} }' ;;
    jwt_rs256*) auth='auth = { jwt = { providers = ["p"] } }'; extra="$(provider RS256 "$work/rsa.pub")" ;;
    jwt_es256*) auth='auth = { jwt = { providers = ["p"] } }'; extra="$(provider ES256 "$work/ec.pub")" ;;
    introspection) auth='auth = { introspection = { provider = "idp" } }'
      extra=$'[gateway.introspection.idp]\nendpoint = "http://127.0.0.1:9102/introspect"\nclient_id = "gw"\nclient_secret = "bench-secret"\nttl = "600s"' ;;
  esac
  sed -e "s|# @ROUTE@|$auth|" "$here/proxy.toml"
  printf '\n[identity]\npepper_file = "%s"\n' "$work/pepper"
  printf '\n[[gateway.consumers]]\nname = "bench"\napi_keys = [{ id = "k", hash = "%s", prefix = "mk_bench" }]\n' "$hash"
  printf '%s\n' "$extra"
}
provider() {
  printf '[gateway.jwt_providers.p]\nissuer = "https://bench.test"\naudiences = ["api"]\nalgorithms = ["%s"]\nkeys = [{ pem = """\n%s\n""" }]\n' "$1" "$(cat "$2")"
}
lua_tokens() { # a wrk script sending each token of $1 once
  cat > "$work/tokens.lua" <<LUA
local tokens, i = {}, 0
for line in io.lines("$1") do tokens[#tokens + 1] = line end
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("GET", "/", { ["Authorization"] = "Bearer " .. tokens[i] })
end
LUA
  echo "$work/tokens.lua"
}

write_nginx_conf "$work"

if [ "$callgrind" = 1 ]; then
  for v in off api_key jwt_rs256 jwt_es256 introspection; do
    config "$v" > "$work/$v.toml"
    case "$v" in
      off) wrk_args=() ;;
      api_key) wrk_args=(-H "x-api-key: $key") ;;
      jwt_rs256) wrk_args=(-H "authorization: Bearer $rs_token") ;;
      jwt_es256) wrk_args=(-H "authorization: Bearer $es_token") ;;
      introspection) wrk_args=(-H "authorization: Bearer opaque-bench-token") ;;
    esac
    instructions "$v" "$root/target/release/meridian" gateway --config "$work/$v.toml"
  done
  mkdir -p "$(dirname "$out")"
  python3 - "$work/results.jsonl" "$out" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
off = next(r["instructions_per_request"] for r in runs if r["variant"] == "off")
for r in runs:
    r["ratio_to_off"] = round(r["instructions_per_request"] / off, 3)
    print(f"{r['variant']:<18} {r['instructions_per_request']:8d} instructions/request  ×{r['ratio_to_off']:.3f} of off")
json.dump({"runs": runs}, open(sys.argv[2], "w"), indent=2)
PY
  echo "raw: $out"
  exit 0
fi

for rep in $(seq "$reps"); do
  echo "== run $rep"
  p="$(start /usr/sbin/nginx -c "$work/nginx.conf")"; measure nginx "$p"; stop "$p"
  for v in off api_key jwt_rs256 jwt_es256 introspection jwt_rs256_miss jwt_es256_miss; do
    config "$v" > "$work/$v.toml"
    p="$(start "$root/target/release/meridian" gateway --config "$work/$v.toml")"
    case "$v" in
      off) measure "$v" "$p" ;;
      api_key) measure "$v" "$p" -H "x-api-key: $key" ;;
      jwt_rs256) measure "$v" "$p" -H "authorization: Bearer $rs_token" ;;
      jwt_es256) measure "$v" "$p" -H "authorization: Bearer $es_token" ;;
      introspection) measure "$v" "$p" -H "authorization: Bearer opaque-bench-token" ;;
      jwt_rs256_miss) measure "$v" "$p" -s "$(lua_tokens "$work/rs256.tokens")" ;;
      jwt_es256_miss) measure "$v" "$p" -s "$(lua_tokens "$work/es256.tokens")" ;;
    esac
    stop "$p"
  done
done
summarise_runs "$work/results.jsonl" "$out"
echo "raw: $out"
