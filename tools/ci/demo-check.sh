#!/usr/bin/env bash
# A short `spinwire demo` (release build, faults on): checks that it exits 0, that its summary
# JSON has the fields the issue names with sane values (messages > 0, a reconnect after the
# injected reset, ordered latency percentiles), and that every report file exists and is not
# empty. Usage: tools/ci/demo-check.sh [SECONDS] (default 3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
seconds="${1:-3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/spinwire-demo-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT

cargo build --release --locked -p spinwire-tools --bin spinwire
./target/release/spinwire demo --seconds "$seconds" --quiet \
    --summary-json "$work/summary.json" --report-dir "$work/report"

python3 - "$work/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
def count(path):
    v = s
    for k in path.split("."):
        if not isinstance(v, dict) or k not in v:
            sys.exit(f"demo-check: summary has no {path}")
        v = v[k]
    if not isinstance(v, int) or v < 0:
        sys.exit(f"demo-check: {path} = {v!r} is not a count")
    return v
for k in ["messages", "reconnects", "ring_drops"]:
    count(k)
for k in ["sent", "accepted", "rejected", "filled", "cancelled", "expired", "resent"]:
    count("orders." + k)
if count("messages") == 0:
    sys.exit("demo-check: no messages")
if count("reconnects") < 1:
    sys.exit("demo-check: no reconnect after the injected faults")
if count("orders.sent") == 0:
    sys.exit("demo-check: the strategy sent no orders")
stages = s.get("latency_ns", {})
if "wire_to_strategy" not in stages:
    sys.exit("demo-check: no wire_to_strategy latency")
for name, p in stages.items():
    vals = [count(f"latency_ns.{name}.{k}") for k in ["p50", "p99", "p999", "max"]]
    if vals != sorted(vals):
        sys.exit(f"demo-check: {name} percentiles out of order: {vals}")
print(f"demo-check: summary ok: {s['messages']} messages, {s['reconnects']} reconnects, "
      f"{s['orders']['sent']} orders, wire_to_strategy p50 "
      f"{stages['wire_to_strategy']['p50']} ns")
PY

for f in index.html run.json intervals.hlog percentiles.svg wire_to_strategy.hgrm; do
    if [ ! -s "$work/report/$f" ]; then
        echo "demo-check: report file $f is missing or empty" >&2
        exit 1
    fi
done
echo "demo-check: report ok ($(ls "$work/report" | wc -l) files)"
