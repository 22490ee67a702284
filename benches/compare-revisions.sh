#!/usr/bin/env bash
# Proxy CPU per request of this tree against another revision, both built in
# release mode side by side and measured by the harness's proxy comparison on
# the same machine, runs interleaved (base, head, base, head, ...) so drift
# of the machine hits both alike; nginx is measured once per round for scale.
# Raw JSON of every round lands in docs/bench/; the medians are printed.
# Usage: benches/compare-revisions.sh REV [ROUNDS] [SECONDS]
set -euo pipefail
rev="${1:?usage: benches/compare-revisions.sh REV [ROUNDS] [SECONDS]}"
rounds="${2:-3}"
seconds="${3:-10}"
root="$(cd "$(dirname "$0")/.." && pwd)"
harness="${BENCH_DIR:-$root/../shared/bench}/proxy_compare.py"
short="$(git -C "$root" rev-parse --short "$rev")"
base="${TMPDIR:-/tmp}/meridian-rev-$short"
[ -d "$base" ] || git -C "$root" worktree add -f "$base" "$rev" >/dev/null
(cd "$base" && cargo build --release --bins)
(cd "$root" && cargo build --release --bins)
out="$root/docs/bench/revisions-$(date +%F)-$short-vs-$(git -C "$root" rev-parse --short HEAD)"
mkdir -p "$out"
for i in $(seq "$rounds"); do
  for side in base head; do
    dir="$base"; [ "$side" = head ] && dir="$root"
    only=gateway; [ "$side" = base ] && only=nginx,gateway
    python3 "$harness" --pin --reps 1 --duration "$seconds" --only "$only" \
      --gateway-cmd "$dir/benches/run-gateway.sh" --json "$out/round$i-$side.json"
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def runs(side, target):
    rows = []
    for i in range(1, rounds + 1):
        doc = json.load(open(f"{out}/round{i}-{side}.json"))
        rows += [r for r in doc["runs"] if r["target"] == target and r["accepted"]]
    return rows
summary = {}
for name, side, target in [("base", "base", "gateway"), ("head", "head", "gateway"), ("nginx", "base", "nginx")]:
    rs = runs(side, target)
    med = lambda k: statistics.median(r[k] for r in rs)
    summary[name] = {"runs": len(rs), "proxy_us_per_req": [round(r["proxy_us_per_req"], 2) for r in rs],
                     "proxy_us_per_req_median": med("proxy_us_per_req"), "rps_median": med("rps"),
                     "p99_ms_median": med("p99_ms")}
summary["head_vs_base"] = summary["head"]["proxy_us_per_req_median"] / summary["base"]["proxy_us_per_req_median"]
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
for k in ("base", "head", "nginx"):
    s = summary[k]
    print(f"{k:<6} runs {s['runs']}  proxy us/req {s['proxy_us_per_req']} median {s['proxy_us_per_req_median']:.2f}"
          f"  req/s {s['rps_median']:.0f}  p99 {s['p99_ms_median']:.3f} ms")
print(f"head/base CPU per request: {summary['head_vs_base']:.3f}  ({out}/summary.json)")
PY
